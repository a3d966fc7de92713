"""`speedmap compare --ray`: the study's training steps as Ray tasks on a real local cluster (a head and one more
node, one CPU each). Same accuracy as a local run with the same seeds, training in parallel, and a worker killed
mid-training is retried and resumes from the run's last epoch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from speedmap.cli import app

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
from ray.cluster_utils import Cluster  # noqa: E402

runner = CliRunner()
TINY = [
    "--tasks",
    "shapes",
    "--images",
    "30",
    "--imgsz",
    "64",
    "--batch",
    "4",
    "--bench-seconds",
    "0.3",
    "--bench-repeats",
    "1",
]
TINY += ["--targets", "local", "--no-int8", "--seed", "3", "--bench-requests", "10", "--no-bench-retry"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:  # this process starts the nodes but never joins them: the studies on Ray run as `speedmap` processes
        yield c.address
    finally:
        c.shutdown()


def compare(out: Path, *args: str) -> dict[str, Any]:
    """The study as a user runs it: with --ray, a `speedmap compare` process, whose exit status counts too (a
    driver that crashed at exit after its study would fail here); else in this process."""
    argv = ["compare", *TINY, "--out", str(out), *args]
    if "--ray" in args:
        proc = subprocess.run([sys.executable, "-m", "speedmap", *argv], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    else:
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def test_ray_auto_without_a_cluster_starts_one_on_this_machine() -> None:
    """`--ray auto` where no cluster runs: Ray's own "auto" refuses, so the study starts a Ray on this machine
    alone, as the README says. In a fresh process, before this module's cluster exists."""
    code = (
        "import ray; from speedmap.study.on_ray import connect, leave; r = connect('auto'); n = len(ray.nodes()); "
        "leave(); print('CPU', r.get('CPU', 0), 'nodes', n, 'after', ray.is_initialized())"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's sockets live there
    try:  # and no ray_current_cluster of another run to find
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1].split()
    assert line[0] == "CPU" and float(line[1]) >= 1 and line[2:] == ["nodes", "1", "after", "False"], proc.stdout


def test_ray_at_an_address_where_nothing_answers_fails_in_seconds(tmp_path: Path) -> None:
    """Not after Ray's own connection retries (over a minute): a clear message naming the address."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    result = runner.invoke(app, ["compare", *TINY, "--out", str(tmp_path / "s"), "--ray", f"127.0.0.1:{port}"])
    assert result.exit_code != 0 and time.perf_counter() - t < 30
    assert f"--ray 127.0.0.1:{port}: nothing answers there (connection refused)" in result.output, result.output
    assert not (tmp_path / "s" / "results.json").exists() and not ray.is_initialized()


def kill_accurate_once_saved(out: Path, killed: list[int]) -> None:
    """Kill the worker training `accurate` once its first epoch is saved."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not killed:
        for run in (out / "runs").glob("shapes-accurate-*"):
            try:
                pid = json.loads((run / "worker.json").read_text())["attempts"][-1]["pid"]
            except (OSError, ValueError, KeyError, IndexError):
                continue
            if (run / "last.pt").is_file():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_the_study_on_ray_trains_in_parallel_survives_a_killed_worker_and_scores_as_a_local_run(
    cluster: str, tmp_path: Path
) -> None:
    """One study on the cluster, its `accurate` worker killed after its first epoch: the task is retried, resumes
    from the run's last epoch, and the study's models score exactly as a local study's with the same seeds (one
    study where there were two: each costs about a minute and a half of the suite)."""
    out, killed = tmp_path / "ray", []
    thread = threading.Thread(target=kill_accurate_once_saved, args=(out, killed), daemon=True)
    thread.start()
    args = ("--epochs", "3", "--patience", "0")
    on_ray = compare(out, *args, "--ray", cluster)
    thread.join(5)
    assert killed, "the accurate run finished before it could be killed"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task (one CPU): the same arithmetic, so the same weights
    try:
        local = compare(tmp_path / "local", *args)
    finally:
        torch.set_num_threads(before)
    sizes_ray, sizes_local = on_ray["tasks"]["shapes"]["sizes"], local["tasks"]["shapes"]["sizes"]
    for size in ("fast", "accurate"):
        a, b = sizes_ray[size], sizes_local[size]
        assert a["metrics"] == b["metrics"], size  # test-split metrics of the exported models
        assert a["train"]["best_map"] == b["train"]["best_map"] and a["train"]["epochs_run"] == 3
        assert b["train"]["worker"] is None
    fast, accurate = (sizes_ray[s]["train"]["worker"] for s in ("fast", "accurate"))
    assert fast["attempt"] == 1 and accurate["attempt"] == 2 and accurate["pid"] != killed[0]
    assert accurate["resumed_after_epoch"] >= 1  # the retry continued, it did not start over
    run = next((out / "runs").glob("shapes-accurate-*"))
    attempts = json.loads((run / "worker.json").read_text())["attempts"]
    assert len(attempts) == 2 and attempts[0]["pid"] == killed[0] and "finished" not in attempts[0]
    assert fast["pid"] not in (attempts[0]["pid"], accurate["pid"])
    assert max(fast["started"], attempts[0]["started"]) < fast["finished"], (fast, attempts)  # they overlapped
    assert on_ray["complete"] and on_ray["recommendation"]["choices"]
    assert f"--ray {cluster}" in on_ray["provenance"]["command"]  # the command that reproduces the study
