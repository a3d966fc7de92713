"""`speedmap serve --ray`: the same API from Ray Serve replicas on a local Ray instance."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from speedmap.engine import Model
from tests.test_serve import boxes, free_port

pytest.importorskip("ray.serve")


def test_ray_serve_replicas_answer_like_the_engine(model_store: Path, tiny_run: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speedmap",
            "serve",
            "--models",
            str(model_store),
            "--ray",
            "--replicas",
            "2",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.5)
        data = Path(json.loads((tiny_run / "train.json").read_text())["dataset"]["abspath"])
        image = sorted((data / "test").glob("*.jpg"))[0]
        want = boxes(
            Model.load("shapes/1", models_dir=model_store)
            .predict(image, conf=0.05, iou=0.3)
            .to_roboflow()["predictions"]
        )
        raw = base64.b64encode(image.read_bytes())
        for _ in range(6):  # spread over both replicas
            r = httpx.post(f"{url}/shapes/1", params={"confidence": 0.05}, content=raw, timeout=60)
            assert r.status_code == 200, r.text
            assert boxes(r.json()["predictions"]) == want
        bad = httpx.post(f"{url}/shapes/404", content=raw, timeout=60)
        assert bad.status_code == 404 and "not found" in bad.json()["message"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        # what the server's Ray left behind, in the server's own session only: `ray stop --force` (here before)
        # killed every Ray on the machine, the Ray study's cluster on the other test worker included
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
