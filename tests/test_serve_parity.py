"""Roboflow parity, shown with the real clients where one exists (inference-sdk in its own venv):
visualisations, named confidences, model management with the SDK's default key transport, tasks that are
not served, /readiness."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from speedmap.engine import Model
from tests.test_serve import KEY, b64, boxes, expected, start_server


@pytest.fixture(scope="module")
def server(model_store: Path) -> Iterator[str]:
    proc, url = start_server(model_store, "--api-key", KEY)
    yield url
    proc.terminate()
    proc.wait(10)


def _sdk(client_python: Path, body: str) -> dict:
    script = "import json, sys, warnings\nwarnings.simplefilter('ignore')\n"
    script += "from inference_sdk import InferenceHTTPClient, InferenceConfiguration\n" + body
    proc = subprocess.run([str(client_python), "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sdk_visualisation_named_confidence_and_unload(
    server: str, images: list[Path], engine: Model, client_python: Path
) -> None:
    image = str(images[0])
    out = _sdk(
        client_python,
        f"""
client = InferenceHTTPClient(api_url="{server}", api_key="{KEY}")
client.configure(InferenceConfiguration(confidence_threshold=0.05, visualize_predictions=True))
out = {{"vis": client.infer({image!r}, model_id="shapes/1")}}
client.configure(InferenceConfiguration(confidence_threshold="best"))
out["best"] = client.infer({image!r}, model_id="shapes/1")
client.configure(InferenceConfiguration(confidence_threshold="default"))
out["default"] = client.infer({image!r}, model_id="shapes/1")
client.configure(InferenceConfiguration(confidence_threshold=0.05, format="image_and_json"))
client.select_api_v0()
out["v0_image_and_json"] = client.infer({image!r}, model_id="shapes/1")
client.select_api_v1()
# against a server with --api-key, unloading needs the key: the SDK sends it (in the header) with this transport
client.configure(InferenceConfiguration(api_key_transport="both"))
client.load_model("shapes/1")
out["unload"] = client.unload_model("shapes/1").to_dict() if hasattr(client, "unload_model") else None
client.load_model("shapes/1")
out["unload_all"] = client.unload_all_models().to_dict()
print(json.dumps(out, default=str))
""",
    )
    want = expected(engine, images[0], 0.05)
    vis = out["vis"]
    assert boxes(vis["predictions"]) == want
    assert base64.b64decode(vis["visualization"])[:3] == b"\xff\xd8\xff"  # the annotated JPEG
    best = engine.meta.best_confidence
    assert best is not None  # measured at export
    assert boxes(out["best"]["predictions"]) == expected(engine, images[0], best)
    assert boxes(out["default"]["predictions"]) == expected(engine, images[0], 0.4)
    v0 = out["v0_image_and_json"]
    assert boxes(v0["predictions"]) == want and base64.b64decode(v0["visualization"])[:2] == b"\xff\xd8"
    assert out["unload"] == {"models": []} and out["unload_all"] == {"models": []}


def test_legacy_formats_defaults_and_clamps(server: str, images: list[Path], engine: Model) -> None:
    url, raw = f"{server}/shapes/1", b64(images[0])
    q = {"api_key": KEY, "confidence": 0.05}
    both = httpx.post(url, params={**q, "format": "image_and_json"}, content=raw)
    assert both.status_code == 200 and boxes(both.json()["predictions"]) == expected(engine, images[0], 0.05)
    assert base64.b64decode(both.json()["visualization"])[:2] == b"\xff\xd8"
    plain = httpx.post(url, params=q, content=raw).json()
    assert "visualization" not in plain
    # Roboflow draws no labels and a 1 px stroke unless asked: the default drawing differs from a labelled one
    default = httpx.post(url, params={**q, "format": "image"}, content=raw).content
    labelled = httpx.post(url, params={**q, "format": "image", "labels": "true", "stroke": 3}, content=raw).content
    assert default[:2] == b"\xff\xd8" and default != labelled
    explicit = httpx.post(url, params={**q, "format": "image", "labels": "false", "stroke": 1}, content=raw).content
    assert explicit == default
    # confidence 0 is raised to 0.01, as Roboflow does
    zero = httpx.post(url, params={**q, "confidence": 0}, content=raw).json()
    assert boxes(zero["predictions"]) == expected(engine, images[0], 0.01)


def test_unserved_tasks_readiness_and_key_policy(server: str) -> None:
    for task in ("classification", "instance_segmentation", "keypoints_detection", "workflows"):
        r = httpx.post(f"{server}/infer/{task}", json={"model_id": "shapes/1", "api_key": KEY})
        assert r.status_code == 501 and "not served" in r.json()["message"], (task, r.text)
    assert httpx.get(f"{server}/readiness").json() == {"status": "ready"}
    # model management needs the key like every route: missing, empty, wrong or not a string is 401
    for body in ({}, {"api_key": ""}, {"api_key": None}, {"api_key": "wrong"}, {"api_key": [KEY]}):
        assert httpx.post(f"{server}/model/clear", json=body).status_code == 401, body
    assert httpx.post(f"{server}/model/clear", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{server}/model/registry").status_code == 401  # reading is not management
