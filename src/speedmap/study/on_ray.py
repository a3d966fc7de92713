"""The study's training steps as Ray tasks (``speedmap compare --ray ADDRESS``).

Every (dataset, size) training run is one Ray task that asks for its resources (one GPU where the cluster has
GPUs, else CPUs) and trains into the study's run folder, which must be on a path every node reads and writes.
Ray retries a task whose worker died; the retry finds the run's ``last.pt`` and continues from its last epoch.
Export, scoring and benchmarks stay in the study's own process, on the machine ``--bench-node`` names, so
timings are never mixed across hardware. Ray's primitives only: tasks, resources, retries.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedmap.errors import MissingExtra, SpeedmapError

WORKER_FILE = "worker.json"  # in the run folder: which process trains it now, and every attempt so far
MAX_RETRIES = 3  # attempts after a worker or node died (Ray's task retries; application errors are not retried)


@dataclass
class TrainJob:
    """One training step to run on the cluster: the study's step name and key, and the trainer's config."""

    step: str
    key: str
    inputs: tuple[Any, ...]
    config: dict[str, Any]  # TrainConfig fields, with absolute paths
    run: Path  # the run folder as the study names it


def connect(address: str) -> dict[str, Any]:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine belongs to, else a local one);
    returns its resources. `leave` undoes it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtra("the study on Ray", "ray", exc) from None
    opts: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
    if not ray.is_initialized():
        try:
            if address in ("", "local"):  # a Ray of its own, not one found on this machine
                ray.init(address="local", **opts)
            elif address == "auto" and not os.environ.get("RAY_ADDRESS"):
                try:  # the cluster this node belongs to ...
                    ray.init(address="auto", **opts)
                except ConnectionError:  # ... else one on this machine alone
                    ray.init(address="local", **opts)
            else:
                _reachable(address)
                ray.init(address=address, **opts)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SpeedmapError(f"--ray {address}: cannot join a Ray cluster there ({exc})") from None
        _joined.append(address)
    return dict(ray.cluster_resources())


_joined: list[str] = []  # the clusters `connect` joined (at most one), for `leave`


def leave() -> None:
    """Disconnect from the cluster `connect` joined (stopping the Ray it started on this machine), when the
    study's training is done, rather than at interpreter exit; a Ray its caller had started stays."""
    if _joined:
        import ray

        _joined.clear()
        ray.shutdown()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's own minute-long retries, when nothing answers at ``HOST:PORT`` (or
    ``ray://HOST:PORT``)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # not HOST:PORT: Ray's own parsing decides
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise SpeedmapError(
            f"--ray {address}: nothing answers there ({why}); start the head with `ray start --head` "
            "and pass the address it prints, or use --ray auto on a node of the cluster"
        ) from None


def task_resources(cluster: dict[str, Any], device: str) -> dict[str, float]:
    """What each training task asks for: a GPU where the cluster has them (unless --device cpu), else the CPUs
    of the smallest node (a task cannot span nodes), at least one."""
    import ray

    if cluster.get("GPU", 0) >= 1 and device != "cpu":
        return {"num_gpus": 1.0, "num_cpus": 1.0}
    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return {"num_cpus": float(max(1, int(min(nodes, default=1))))}


def train_on_ray(
    jobs: list[TrainJob], resources: dict[str, float], note: Callable[[str], None]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Run ``jobs`` as Ray tasks, all at once (Ray places them as resources allow); returns, per job, the
    trainer's record and where and when it ran (``worker``)."""
    import ray

    remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_train_task).options(**resources)
    device = "cuda" if resources.get("num_gpus") else "cpu"
    threads = int(resources.get("num_cpus", 1))
    refs = [remote.remote(j.config | {"device": device}, threads) for j in jobs]
    for j in jobs:
        note(f"{j.step}: submitted to Ray ({', '.join(f'{k} {v:g}' for k, v in resources.items())})")
    try:
        return list(ray.get(refs))
    except ray.exceptions.RayTaskError as exc:  # the trainer's own error, e.g. a bad dataset: show it plainly
        raise SpeedmapError(f"a training step failed on the cluster: {exc.cause}") from None
    except ray.exceptions.RayError as exc:  # retries used up: a worker or node kept dying
        raise SpeedmapError(f"a training step failed on the cluster after {MAX_RETRIES} retries: {exc}") from None


def _train_task(config: dict[str, Any], threads: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """On a Ray worker: train one run, continuing from its ``last.pt`` when an earlier attempt died."""
    import torch

    from speedmap.train.checkpoint import LAST, load_checkpoint
    from speedmap.train.config import TrainConfig
    from speedmap.train.trainer import train

    torch.set_num_threads(threads)
    run = Path(config["out"])
    run.mkdir(parents=True, exist_ok=True)
    # epochs an earlier attempt finished (its last.pt): this attempt continues after them
    resumed_from = int(load_checkpoint(run / LAST)["epoch"]) + 1 if (run / LAST).is_file() else None
    attempts = _read(run / WORKER_FILE).get("attempts", [])
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "resumed_after_epoch": resumed_from}
    _write(run / WORKER_FILE, {"attempts": [*attempts, me]})
    record = train(TrainConfig(**{**config, "resume": resumed_from is not None}), log=lambda m: None)
    if not record:  # the run had already finished: its record is on disk
        record = json.loads((run / "train.json").read_text(encoding="utf-8"))
    me["finished"] = time.time()
    worker = {**me, "attempt": len(attempts) + 1, "threads": threads, "device": config.get("device")}
    _write(run / WORKER_FILE, {"attempts": [*attempts, me]})
    return record, worker


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _write(path: Path, doc: dict[str, Any]) -> None:
    from speedmap.jsonfile import write_json_atomic

    write_json_atomic(path, doc)


def check_bench_node(bench_node: str | None) -> str:
    """The node benchmarks run on: this process's machine. ``--bench-node`` names the deployment hardware;
    the study refuses to benchmark anywhere else (timings are never mixed across machines)."""
    import ray

    here = ray.util.get_node_ip_address()
    if bench_node and bench_node not in (here, socket.gethostname(), "local"):
        raise SpeedmapError(
            f"--bench-node {bench_node}: benchmarks run where the study runs, and this is {here}; start "
            f"`speedmap compare --ray ...` on {bench_node} (training still spreads over the cluster)"
        )
    return here
