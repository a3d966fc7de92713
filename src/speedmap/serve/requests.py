"""Parsing what Roboflow clients send: base64 bodies under any content type, multipart files, v1 JSON
requests, thresholds in either scale. Pure functions: errors are :class:`BadRequest` with the status."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

# Roboflow's hosted-API defaults, on both route families.
DEFAULT_CONFIDENCE, DEFAULT_OVERLAP, DEFAULT_MAX_DETECTIONS = 0.4, 0.3, 300

_DATA_URL = re.compile(rb"^\s*data:[\w/+.-]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")


class BadRequest(Exception):
    """A request the server refuses, with the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Params:
    """Postprocessing parameters of one request."""

    confidence: float = DEFAULT_CONFIDENCE
    overlap: float = DEFAULT_OVERLAP
    max_detections: int = DEFAULT_MAX_DETECTIONS
    classes: tuple[str, ...] | None = None
    agnostic: bool = False


def threshold(value: Any, name: str, default: float) -> float:
    """A 0-1 threshold from a number or text; 1 or more is a percentage (40 -> 0.40), as Roboflow reads it."""
    if value is None or value == "":
        return default
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BadRequest(400, f"{name} must be a number, got {str(value)[:40]!r}") from None
    if v != v or v < 0 or v > 100:
        raise BadRequest(400, f"{name} must be between 0 and 1 (or a percentage up to 100), got {value}")
    return v / 100 if v >= 1 else v


def positive_int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        v = int(float(value))
    except (TypeError, ValueError):
        raise BadRequest(400, f"{name} must be an integer, got {str(value)[:40]!r}") from None
    if v < 1:
        raise BadRequest(400, f"{name} must be at least 1, got {v}")
    return v


def class_list(value: Any) -> tuple[str, ...] | None:
    """``classes``: a comma-separated string or a list of names; empty means no filter."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise BadRequest(400, "classes must be a comma-separated list of class names")
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


def legacy_body(body: bytes, content_type: str) -> bytes | str:
    """The image of a legacy ``POST /{project}/{version}`` body (bytes), or a URL found in it (str).

    Clients send the base64 text raw under ``application/x-www-form-urlencoded`` (curl, roboflow-python,
    Node) or ``text/plain``; inference-sdk's v0 mode sends JSON. Multipart is handled by the route."""
    ct = content_type.split(";")[0].strip().lower()
    # inference-sdk's v0 mode sends the raw base64 text under application/json: only {...} or "..." is JSON
    if ct == "application/json" and body.lstrip()[:1] in (b"{", b'"'):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(400, f"malformed JSON body: {exc}") from None
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
    """One v1 image ``{"type": "base64"|"url"|"numpy", "value": ...}``: bytes, or the URL string."""
    if isinstance(spec, str):
        return b64_image(spec, "image value")
    if not isinstance(spec, dict) or "value" not in spec:
        raise BadRequest(422, 'image must be {"type": "base64" | "url", "value": ...}')
    kind = str(spec.get("type", "base64")).lower()
    value = spec["value"]
    if kind == "base64":
        if not isinstance(value, str):
            raise BadRequest(422, "a base64 image value must be a string")
        return b64_image(value, "image value")
    if kind == "url":
        if not isinstance(value, str):
            raise BadRequest(422, "a url image value must be a string")
        return value
    raise BadRequest(422, f"image type {kind!r} is not supported (use base64 or url)")


def v1_request(body: bytes) -> tuple[str, list[bytes | str], bool, Params, str | None]:
    """Parse ``POST /infer/object_detection``: model id, images, whether a list was sent, params, api key."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(422, "the request body must be a JSON object")
    model_id = doc.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise BadRequest(422, "model_id is required")
    if "image" not in doc:
        raise BadRequest(422, "image is required")
    images = doc["image"] if isinstance(doc["image"], list) else [doc["image"]]
    if not images:
        raise BadRequest(422, "image list is empty")
    params = Params(
        confidence=threshold(doc.get("confidence"), "confidence", DEFAULT_CONFIDENCE),
        overlap=threshold(doc.get("iou_threshold", doc.get("overlap")), "iou_threshold", DEFAULT_OVERLAP),
        max_detections=positive_int(doc.get("max_detections"), "max_detections", DEFAULT_MAX_DETECTIONS),
        classes=class_list(doc.get("class_filter")),
        agnostic=bool(doc.get("class_agnostic_nms") or False),
    )
    key = doc.get("api_key")
    return model_id, [v1_image(i) for i in images], isinstance(doc["image"], list), params, key
