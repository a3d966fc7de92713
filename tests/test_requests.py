"""Unit tests of every request parser in speedmap.serve.requests: accepted values and the exact refusal."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from speedmap.serve.errors import BadRequest
from speedmap.serve.requests import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_OVERLAP,
    MAX_CLASSES,
    MAX_DETECTIONS,
    MAX_MODEL_ID,
    MAX_NAME,
    MIN_CONFIDENCE,
    Params,
    b64_image,
    bounded_int,
    class_list,
    confidence,
    flag,
    json_body,
    legacy_body,
    model_id_of,
    threshold,
    v1_image,
    v1_request,
)

HELLO = b"hello"
HELLO_B64 = base64.b64encode(HELLO).decode()  # "aGVsbG8="
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def refused(call: Callable[[], Any], status: int, *words: str) -> BadRequest:
    """``call()`` raises BadRequest with ``status`` and a message containing each of ``words``."""
    with pytest.raises(BadRequest) as info:
        call()
    err = info.value
    assert err.status == status, err.message
    for word in words:
        assert word in err.message, f"{word!r} not in {err.message!r}"
    return err


# --- threshold --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0.3),  # absent: the default
        ("", 0.3),
        (0, 0.0),
        (0.5, 0.5),
        ("0.5", 0.5),
        (" 0.25 ", 0.25),  # float() strips spaces
        (0.999, 0.999),
        (1, 0.01),  # 1 to 100 is a percentage: 1 -> 1%
        (40, 0.4),
        ("40", 0.4),
        (62.5, 0.625),
        (100, 1.0),
        ("1e1", 0.1),  # 10 -> 10%
    ],
)
def test_threshold_accepts(value: Any, expected: float) -> None:
    assert threshold(value, "overlap", 0.3) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (True, ("overlap", "number", "bool")),  # a bool is not 1
        (False, ("overlap", "number", "bool")),
        ([0.5], ("overlap", "number", "list")),
        ({"v": 1}, ("overlap", "number", "dict")),
        ("abc", ("overlap", "number", "'abc'")),
        ("0.5.1", ("overlap", "number")),
        (math.nan, ("overlap", "between 0 and 1")),
        ("nan", ("overlap", "between 0 and 1")),
        (math.inf, ("overlap", "between 0 and 1")),
        ("-inf", ("overlap", "between 0 and 1")),
        (-0.1, ("overlap", "between 0 and 1", "-0.1")),
        (100.5, ("overlap", "between 0 and 1")),
        ("1e3", ("overlap", "between 0 and 1")),
    ],
)
def test_threshold_refuses(value: Any, words: tuple[str, ...]) -> None:
    refused(lambda: threshold(value, "overlap", 0.3), 400, *words)


def test_threshold_message_shows_at_most_40_characters_of_the_value() -> None:
    err = refused(lambda: threshold("x" * 500, "overlap", 0.3), 400, "overlap")
    assert "x" * 40 in err.message and "x" * 41 not in err.message


# --- confidence -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "best", "expected"),
    [
        (None, 0.37, DEFAULT_CONFIDENCE),
        ("", None, DEFAULT_CONFIDENCE),
        ("best", 0.37, 0.37),  # the model's best-F1 threshold
        (" BEST ", 0.37, 0.37),
        ("best", None, DEFAULT_CONFIDENCE),  # a model without one: the default
        ("default", 0.37, DEFAULT_CONFIDENCE),
        ("Default", None, DEFAULT_CONFIDENCE),
        (0, 0.37, MIN_CONFIDENCE),  # 0 is raised to 0.01, as Roboflow does
        ("0", None, MIN_CONFIDENCE),
        (0.005, None, MIN_CONFIDENCE),
        (0.5, 0.37, 0.5),
        (50, None, 0.5),  # a percentage
        ("75", None, 0.75),
    ],
)
def test_confidence_accepts(value: Any, best: float | None, expected: float) -> None:
    assert confidence(value, best) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["better", "nan", math.inf, -1, 101, True, [0.5]])
def test_confidence_refuses(value: Any) -> None:
    refused(lambda: confidence(value, 0.37), 400, "confidence")


# --- bounded_int ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 300), ("", 300), (1, 1), (1000, 1000), ("5", 5), (3.0, 3), ("3.0", 3), (" 7 ", 7), ("1e2", 100)],
)
def test_bounded_int_accepts(value: Any, expected: int) -> None:
    out = bounded_int(value, "max_detections", 300, 1, 1000)
    assert out == expected and type(out) is int


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (True, ("max_detections", "integer", "bool")),  # a bool is not 1
        (False, ("max_detections", "integer", "bool")),
        ([5], ("max_detections", "integer", "list")),
        ("five", ("max_detections", "integer", "'five'")),
        (3.5, ("max_detections", "from 1 to 1000", "3.5")),
        ("3.5", ("max_detections", "from 1 to 1000")),
        (math.nan, ("max_detections", "from 1 to 1000")),
        (math.inf, ("max_detections", "from 1 to 1000")),
        ("inf", ("max_detections", "from 1 to 1000")),
        ("1e400", ("max_detections", "from 1 to 1000")),  # float('1e400') is inf
        (0, ("max_detections", "from 1 to 1000", "0")),
        (-1, ("max_detections", "from 1 to 1000")),
        (1001, ("max_detections", "from 1 to 1000", "1001")),
    ],
)
def test_bounded_int_refuses(value: Any, words: tuple[str, ...]) -> None:
    refused(lambda: bounded_int(value, "max_detections", 300, 1, 1000), 400, *words)


@pytest.mark.parametrize("parse", [lambda v: bounded_int(v, "n", 1, 1, 10), lambda v: threshold(v, "n", 0.4)])
def test_huge_int_is_a_bad_request(parse: Callable[[Any], Any]) -> None:
    refused(lambda: parse(10**400), 400, "n")


# --- flag -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),  # the default
        ("", True),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("True", True),
        (" YES ", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_flag_accepts(value: Any, expected: bool) -> None:
    assert flag(value, "visualize", True) is expected


@pytest.mark.parametrize("value", [2, -1, 0.0, 1.0, "maybe", "tru", "2", [True], {}])
def test_flag_refuses(value: Any) -> None:
    refused(lambda: flag(value, "visualize", True), 400, "visualize", "true or false")


# --- class_list -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ([], None),
        (",", None),  # only empty names: no filter
        ("cat", ("cat",)),
        ("cat,dog", ("cat", "dog")),
        (" cat , ,traffic light ", ("cat", "traffic light")),
        (["cat", 3], ("cat", "3")),  # ids as ints become text
        (("cat", "dog"), ("cat", "dog")),
        (["x" * MAX_NAME], ("x" * MAX_NAME,)),
        (["c"] * MAX_CLASSES, ("c",) * MAX_CLASSES),
    ],
)
def test_class_list_accepts(value: Any, expected: tuple[str, ...] | None) -> None:
    assert class_list(value, "class_filter") == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (5, ("class_filter", "comma-separated")),
        ({"cat": 1}, ("class_filter", "comma-separated")),
        ([1.5], ("class_filter", "comma-separated")),
        (["cat", None], ("class_filter", "comma-separated")),
        ([["cat"]], ("class_filter", "comma-separated")),
        (["c"] * (MAX_CLASSES + 1), ("class_filter", f"at most {MAX_CLASSES}")),
        (["x" * (MAX_NAME + 1)], ("class_filter", f"{MAX_NAME} characters")),
        (",".join(["c"] * (MAX_CLASSES + 1)), ("class_filter", f"at most {MAX_CLASSES}")),
    ],
)
def test_class_list_refuses(value: Any, words: tuple[str, ...]) -> None:
    refused(lambda: class_list(value, "class_filter"), 400, *words)


def test_class_list_default_name() -> None:
    refused(lambda: class_list(5), 400, "classes")


# --- b64_image --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        HELLO_B64,  # "aGVsbG8="
        HELLO_B64.encode(),  # bytes too
        "aGVsbG8",  # missing padding is restored
        "data:image/jpeg;base64," + HELLO_B64,
        "  DATA:image/png;base64,aGVs\nbG8=\r\n",  # prefix case, leading spaces, line breaks
        "aGVs bG8=",
    ],
)
def test_b64_image_accepts(text: str | bytes) -> None:
    assert b64_image(text) == HELLO


def test_b64_image_url_safe_alphabet() -> None:
    raw = bytes([0xFB, 0xFF, 0xBF])  # standard base64 "+/+/", URL-safe "-_-_"
    assert base64.b64encode(raw) == b"+/+/"
    assert b64_image("-_-_") == raw
    assert b64_image("+/+/") == raw


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ("body", "empty")),
        (" \n ", ("body", "empty")),
        ("data:image/png;base64,", ("body", "empty")),
        ("aGVsb", ("body", "not valid base64")),  # truncated: 5 characters is 1 more than a multiple of 4
        ("aGVsbG8=!!", ("body", "not valid base64")),
        ("héllo", ("body", "not valid base64")),
        ("aGVs=bG8", ("body", "not valid base64")),  # padding in the middle
    ],
)
def test_b64_image_refuses(text: str, words: tuple[str, ...]) -> None:
    refused(lambda: b64_image(text), 400, *words)


def test_b64_image_names_what_was_sent() -> None:
    refused(lambda: b64_image("!!!!", "image value"), 400, "image value", "not valid base64")


# --- json_body --------------------------------------------------------------------------------------------------------


def test_json_body_accepts() -> None:
    assert json_body(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert json_body(b'"text"') == "text"


@pytest.mark.parametrize(
    "body", [b'{"model_id": "p/1", "image": "aGVs', b"", b"{", b"NaN", b'{"a": Infinity}', b"[" * 2000 + b"]" * 2000]
)
def test_json_body_refuses(body: bytes) -> None:
    refused(lambda: json_body(body), 400, "malformed JSON body")


# --- legacy_body ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (HELLO_B64.encode(), "application/x-www-form-urlencoded", HELLO),  # curl / roboflow-python
        (b"image=aGVsbG8%3D", "application/x-www-form-urlencoded", HELLO),  # a form field, percent-encoded
        (HELLO_B64.encode(), "text/plain", HELLO),
        (HELLO_B64.encode(), "", HELLO),
        (JPEG, "application/octet-stream", JPEG),  # raw image bytes pass through
        (PNG, "image/png", PNG),
        (JPEG, "application/x-www-form-urlencoded", JPEG),
        (b'"' + HELLO_B64.encode() + b'"', "application/json", HELLO),  # inference-sdk v0: a JSON string
        (b'  {"image": "' + HELLO_B64.encode() + b'"}', "Application/JSON; charset=utf-8", HELLO),
        (b'{"image": {"type": "url", "value": "https://x/a.jpg"}}', "application/json", "https://x/a.jpg"),
        (HELLO_B64.encode(), "application/json", HELLO),  # raw base64 under a JSON content type
    ],
)
def test_legacy_body_accepts(body: bytes, content_type: str, expected: bytes | str) -> None:
    assert legacy_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"image": "aGVs', "application/json", 400, ("malformed JSON body",)),  # truncated JSON
        (b'{"picture": "aGVsbG8="}', "application/json", 400, ("JSON body", "image")),
        (b'"!!!!"', "application/json", 400, ("not valid base64",)),
        (b'{"image": {"type": "file", "value": "x"}}', "application/json", 422, ("'file'", "not supported")),
        (b"", "text/plain", 400, ("body", "empty")),
        (b"not base64 at all!", "text/plain", 400, ("body", "not valid base64")),
        (b"image=%21%21", "application/x-www-form-urlencoded", 400, ("body", "not valid base64")),
    ],
)
def test_legacy_body_refuses(body: bytes, content_type: str, status: int, words: tuple[str, ...]) -> None:
    refused(lambda: legacy_body(body, content_type), status, *words)


# --- v1_image ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (HELLO_B64, HELLO),  # a bare string is base64
        ({"type": "base64", "value": HELLO_B64}, HELLO),
        ({"type": "BASE64", "value": HELLO_B64}, HELLO),
        ({"value": HELLO_B64}, HELLO),  # the type defaults to base64
        ({"type": "url", "value": "https://example.com/a.jpg"}, "https://example.com/a.jpg"),
        ({"type": "URL", "value": "http://x/y"}, "http://x/y"),
    ],
)
def test_v1_image_accepts(spec: Any, expected: bytes | str) -> None:
    assert v1_image(spec) == expected


@pytest.mark.parametrize(
    ("spec", "status", "words"),
    [
        (5, 422, ("image must be",)),
        (None, 422, ("image must be",)),
        ([HELLO_B64], 422, ("image must be",)),
        ({"type": "base64"}, 422, ("image must be", "value")),
        ({"type": "file", "value": "x"}, 422, ("image type 'file'", "not supported")),
        ({"type": 3, "value": "x"}, 422, ("image type '3'", "not supported")),
        ({"type": "url", "value": 5}, 422, ("url image value", "string")),
        ({"type": "base64", "value": None}, 422, ("base64 image value", "string")),
        ({"type": "base64", "value": "aGVsb"}, 400, ("image value", "not valid base64")),
        ({"type": "base64", "value": ""}, 400, ("image value", "empty")),
        ("!!!!", 400, ("image value", "not valid base64")),
    ],
)
def test_v1_image_refuses(spec: Any, status: int, words: tuple[str, ...]) -> None:
    refused(lambda: v1_image(spec), status, *words)


# --- model_id_of ------------------------------------------------------------------------------------------------------


def test_model_id_of() -> None:
    assert model_id_of("proj/1") == "proj/1"
    longest = "p" * MAX_MODEL_ID
    assert model_id_of(longest) == longest
    for bad in (None, "", 5, ["p/1"], True):
        refused(lambda bad=bad: model_id_of(bad), 422, "model_id", "required")
    refused(lambda: model_id_of(longest + "p"), 400, "model_id", f"longer than {MAX_MODEL_ID}")


# --- v1_request -------------------------------------------------------------------------------------------------------


def body_of(**doc: Any) -> bytes:
    return orjson.dumps(doc)


B64_SPEC = {"type": "base64", "value": HELLO_B64}


def test_v1_request_single_image() -> None:
    req = v1_request(body_of(model_id="proj/2", image=B64_SPEC, api_key="k"), max_images=4)
    assert req.model_id == "proj/2"
    assert req.images == [B64_SPEC] and req.as_list is False
    assert req.api_key == "k"
    assert req.decoded_images() == [HELLO]
    # no parameters: Roboflow's defaults
    assert req.params(best=0.37) == Params(DEFAULT_CONFIDENCE, DEFAULT_OVERLAP, DEFAULT_MAX_DETECTIONS, None, False)
    assert (req.visualize, req.labels, req.stroke) == (False, True, None)


def test_v1_request_image_list_up_to_max_images() -> None:
    url = {"type": "url", "value": "https://x/a.jpg"}
    req = v1_request(body_of(model_id="p/1", image=[B64_SPEC, url]), max_images=2)
    assert req.as_list is True
    assert req.decoded_images() == [HELLO, "https://x/a.jpg"]
    assert v1_request(body_of(model_id="p/1", image=[B64_SPEC]), max_images=1).as_list is True


def test_v1_request_over_max_images() -> None:
    body = body_of(model_id="p/1", image=[B64_SPEC] * 3)
    refused(lambda: v1_request(body, max_images=2), 413, "3 images", "at most 2")


def test_v1_request_params() -> None:
    doc = {
        "model_id": "p/1",
        "image": B64_SPEC,
        "confidence": "best",
        "iou_threshold": 50,  # a percentage: 0.5
        "overlap": 0.1,  # ignored: iou_threshold wins
        "max_detections": "7",
        "class_filter": "cat, dog",
        "class_agnostic_nms": "false",
        "visualize_predictions": "yes",
        "visualization_labels": 0,
        "visualization_stroke_width": "5",
    }
    req = v1_request(orjson.dumps(doc), max_images=1)
    assert req.params(best=0.37) == Params(0.37, 0.5, 7, ("cat", "dog"), False)
    assert (req.visualize, req.labels, req.stroke) == (True, False, 5)
    # overlap is the fallback name for iou_threshold
    assert v1_request(body_of(model_id="p/1", image=B64_SPEC, overlap=30), 1).params(None).overlap == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("confidence", "high", ("confidence",)),
        ("iou_threshold", -1, ("iou_threshold",)),
        ("overlap", "x", ("iou_threshold",)),  # read under its main name
        ("max_detections", 0, ("max_detections", f"from 1 to {MAX_DETECTIONS}")),
        ("max_detections", MAX_DETECTIONS + 1, ("max_detections",)),
        ("max_detections", True, ("max_detections", "bool")),
        ("class_filter", 5, ("class_filter",)),
        ("class_agnostic_nms", "maybe", ("class_agnostic_nms",)),
    ],
)
def test_v1_request_bad_params(key: str, value: Any, words: tuple[str, ...]) -> None:
    req = v1_request(body_of(model_id="p/1", image=B64_SPEC, **{key: value}), max_images=1)  # read lazily
    refused(lambda: req.params(best=None), 400, *words)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("visualize_predictions", "sure", ("visualize_predictions",)),
        ("visualization_labels", 2, ("visualization_labels",)),
        ("visualization_stroke_width", 0, ("visualization_stroke_width", "from 1 to 100")),
        ("visualization_stroke_width", 101, ("visualization_stroke_width",)),
    ],
)
def test_v1_request_bad_visualization(key: str, value: Any, words: tuple[str, ...]) -> None:
    req = v1_request(body_of(model_id="p/1", image=B64_SPEC, **{key: value}), max_images=1)
    refused(lambda: (req.visualize, req.labels, req.stroke), 400, *words)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"model_id": "p/1", "image": {"type": "base64", "val', 400, ("malformed JSON body",)),  # truncated
        (b"", 400, ("malformed JSON body",)),
        (b"[]", 422, ("JSON object",)),
        (b'"p/1"', 422, ("JSON object",)),
        (b'{"image": "aGVsbG8="}', 422, ("model_id", "required")),
        (b'{"model_id": 7, "image": "aGVsbG8="}', 422, ("model_id",)),
        (b'{"model_id": "p/1"}', 422, ("image is required",)),
        (b'{"model_id": "p/1", "image": []}', 422, ("image list is empty",)),
    ],
)
def test_v1_request_refuses(body: bytes, status: int, words: tuple[str, ...]) -> None:
    refused(lambda: v1_request(body, max_images=4), status, *words)


def test_v1_request_bad_image_is_found_when_decoding() -> None:
    req = v1_request(body_of(model_id="p/1", image=[B64_SPEC, {"type": "ftp", "value": "x"}]), max_images=4)
    refused(req.decoded_images, 422, "'ftp'")
