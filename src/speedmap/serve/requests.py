"""Parsing what Roboflow clients send: base64 bodies under any content type, multipart files, v1 JSON
requests, thresholds in either scale. Pure functions with one bound per parameter: errors are
:class:`BadRequest` with a 4xx status and a message naming the parameter."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from speedmap.serve.errors import BadRequest

# Roboflow's hosted-API defaults, on both route families.
DEFAULT_CONFIDENCE, DEFAULT_OVERLAP, DEFAULT_MAX_DETECTIONS = 0.4, 0.3, 300
MIN_CONFIDENCE = 0.01  # Roboflow clamps confidence 0 to this
MAX_DETECTIONS, MAX_CLASSES, MAX_NAME = 1000, 100, 100
MAX_STROKE = 100  # pixels; the drawing cost grows with it (see annotate)
MAX_MODEL_ID = 201
CONFIDENCE_WORDS = ("best", "default")  # inference-sdk's named thresholds

_DATA_URL = re.compile(rb"^\s*data:[\w/+.-]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Params:
    """Postprocessing parameters of one request."""

    confidence: float = DEFAULT_CONFIDENCE
    overlap: float = DEFAULT_OVERLAP
    max_detections: int = DEFAULT_MAX_DETECTIONS
    classes: tuple[str, ...] | None = None
    agnostic: bool = False


def _show(value: Any) -> str:
    return repr(str(value)[:40])


def threshold(value: Any, name: str, default: float) -> float:
    """A 0-1 threshold from a number or text; 1 to 100 is a percentage (40 -> 0.40), as Roboflow reads it."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(400, f"{name} must be a number, got a {type(value).__name__}")
    try:
        v = float(value)
    except (ValueError, OverflowError):
        raise BadRequest(400, f"{name} must be a number, got {_show(value)}") from None
    if not math.isfinite(v) or v < 0 or v > 100:
        raise BadRequest(400, f"{name} must be between 0 and 1 (or a percentage up to 100), got {_show(value)}")
    return v / 100 if v >= 1 else v


def confidence(value: Any, best: float | None) -> float:
    """``confidence``: a threshold, or ``"best"`` (the model's best-F1 threshold measured at export) or
    ``"default"`` (0.4); 0 is raised to 0.01, as Roboflow does."""
    if isinstance(value, str) and value.strip().lower() in CONFIDENCE_WORDS:
        word = value.strip().lower()
        return best if word == "best" and best is not None else DEFAULT_CONFIDENCE
    return max(MIN_CONFIDENCE, threshold(value, "confidence", DEFAULT_CONFIDENCE))


def bounded_int(value: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer in ``[low, high]`` from a number or text (``3.0`` is 3; ``inf`` and ``3.5`` are not)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(400, f"{name} must be an integer, got a {type(value).__name__}")
    try:
        v = float(value)
    except (ValueError, OverflowError):
        raise BadRequest(400, f"{name} must be an integer, got {_show(value)}") from None
    if not math.isfinite(v) or v != int(v) or not low <= v <= high:
        raise BadRequest(400, f"{name} must be an integer from {low} to {high}, got {_show(value)}")
    return int(v)


def flag(value: Any, name: str, default: bool) -> bool:
    """A boolean from JSON ``true``/``false`` or text (``"false"``, ``"0"``, ``"off"`` are false)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(400, f"{name} must be true or false, got {_show(value)}")


def class_list(value: Any, name: str = "classes") -> tuple[str, ...] | None:
    """``classes``: a comma-separated string or a list of names; empty means no filter."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(c, str | int) for c in items):
        raise BadRequest(400, f"{name} must be a comma-separated list of class names")
    if len(items) > MAX_CLASSES or any(len(str(c)) > MAX_NAME for c in items):
        raise BadRequest(400, f"{name} may hold at most {MAX_CLASSES} names of {MAX_NAME} characters")
    names = tuple(str(c).strip() for c in items if str(c).strip())
    return names or None


def b64_image(data: bytes | str, what: str = "body") -> bytes:
    """Image bytes from base64 text: a ``data:image/...;base64,`` prefix and line breaks are tolerated."""
    raw = data.encode() if isinstance(data, str) else data
    raw = _WHITESPACE.sub(b"", _DATA_URL.sub(b"", raw, count=1))
    if not raw:
        raise BadRequest(400, f"the {what} is empty: send the image as base64 or as a multipart 'file' part")
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")  # URL-safe alphabet too
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(400, f"the {what} is not valid base64 image data") from None


def json_body(body: bytes) -> Any:
    """A JSON document (orjson refuses nesting beyond 1024 levels, NaN and Infinity)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON body: {str(exc)[:120]}") from None


def legacy_body(body: bytes, content_type: str) -> bytes | str:
    """The image of a legacy ``POST /{project}/{version}`` body (bytes), or a URL found in it (str).

    Clients send the base64 text raw under ``application/x-www-form-urlencoded`` (curl, roboflow-python,
    Node) or ``text/plain``; inference-sdk's v0 mode sends JSON. Multipart is handled by the route."""
    ct = content_type.split(";")[0].strip().lower()
    # inference-sdk's v0 mode sends the raw base64 text under application/json: only {...} or "..." is JSON
    if ct == "application/json" and body.lstrip()[:1] in (b"{", b'"'):
        doc = json_body(body)
        if isinstance(doc, str):
            return b64_image(doc)
        if isinstance(doc, dict) and "image" in doc:
            return v1_image(doc["image"])
        raise BadRequest(400, 'a JSON body must be the base64 image string or {"image": ...}')
    if body[:3] == b"\xff\xd8\xff" or body[:8] == b"\x89PNG\r\n\x1a\n":
        return body  # raw image bytes (e.g. --data-binary @image.jpg)
    if ct == "application/x-www-form-urlencoded" and body[:6] == b"image=":  # a form field instead of raw
        from urllib.parse import unquote_to_bytes

        body = unquote_to_bytes(body.split(b"=", 1)[1])
    return b64_image(body)


def v1_image(spec: Any) -> bytes | str:
    """One v1 image ``{"type": "base64"|"url", "value": ...}``: bytes, or the URL string."""
    if isinstance(spec, str):
        return b64_image(spec, "image value")
    if not isinstance(spec, dict) or "value" not in spec:
        raise BadRequest(422, 'image must be {"type": "base64" | "url", "value": ...}')
    kind = spec.get("type", "base64")
    kind = kind.lower() if isinstance(kind, str) else repr(kind)[:20]
    value = spec["value"]
    if kind not in ("base64", "url"):
        raise BadRequest(422, f"image type {kind[:20]!r} is not supported (use base64 or url)")
    if not isinstance(value, str):
        raise BadRequest(422, f"a {kind} image value must be a string")
    return b64_image(value, "image value") if kind == "base64" else value


@dataclass(frozen=True)
class V1Request:
    """``POST /infer/object_detection`` after the JSON is read and before any image is decoded (the key is
    checked in between)."""

    model_id: str
    images: list[Any]
    as_list: bool
    doc: dict[str, Any]

    @property
    def api_key(self) -> object:
        return self.doc.get("api_key")

    def params(self, best: float | None) -> Params:
        d = self.doc
        return Params(
            confidence=confidence(d.get("confidence"), best),
            overlap=threshold(d.get("iou_threshold", d.get("overlap")), "iou_threshold", DEFAULT_OVERLAP),
            max_detections=bounded_int(
                d.get("max_detections"), "max_detections", DEFAULT_MAX_DETECTIONS, 1, MAX_DETECTIONS
            ),
            classes=class_list(d.get("class_filter"), "class_filter"),
            agnostic=flag(d.get("class_agnostic_nms"), "class_agnostic_nms", False),
        )

    @property
    def visualize(self) -> bool:
        return flag(self.doc.get("visualize_predictions"), "visualize_predictions", False)

    @property
    def labels(self) -> bool:
        return flag(self.doc.get("visualization_labels"), "visualization_labels", True)

    @property
    def stroke(self) -> int | None:
        return (
            bounded_int(self.doc.get("visualization_stroke_width"), "visualization_stroke_width", 1, 1, MAX_STROKE)
            if "visualization_stroke_width" in self.doc
            else None
        )

    def decoded_images(self) -> list[bytes | str]:
        return [v1_image(i) for i in self.images]


def model_id_of(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(422, "model_id is required (a string project/version)")
    if len(value) > MAX_MODEL_ID:
        raise BadRequest(400, f"model_id is longer than {MAX_MODEL_ID} characters")
    return value


def v1_request(body: bytes, max_images: int) -> V1Request:
    """Read the JSON of ``POST /infer/object_detection`` (images still encoded)."""
    doc = json_body(body)
    if not isinstance(doc, dict):
        raise BadRequest(422, "the request body must be a JSON object")
    model_id = model_id_of(doc.get("model_id"))
    if "image" not in doc:
        raise BadRequest(422, "image is required")
    as_list = isinstance(doc["image"], list)
    images = doc["image"] if as_list else [doc["image"]]
    if not images:
        raise BadRequest(422, "image list is empty")
    if len(images) > max_images:
        raise BadRequest(413, f"{len(images)} images in one request; this server takes at most {max_images}")
    return V1Request(model_id, images, as_list, doc)
