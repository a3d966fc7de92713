"""One benchmark: warm-up (cold first request apart), then the scenarios, with provenance. A run found
UNSTABLE is tried again with twice, then four times the duration, and a run during which other processes
took over 20% of the CPU once more at the same duration (``BenchConfig.retry_unstable``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from speedmap import __version__
from speedmap.bench.clients import ClientPool, client_warnings, run_async, run_here
from speedmap.bench.loadgen import RunResult, error_kind
from speedmap.bench.recorder import Recorder
from speedmap.bench.results import BenchReport, Target
from speedmap.cpustat import CpuMeter, listening_pids
from speedmap.errors import SpeedmapError


@dataclass
class BenchConfig:
    scenario: str | None = None  # None: single, then a concurrency sweep
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 100])
    rate: float | None = None
    arrivals: str = "poisson"
    duration: float = 10.0
    requests: int = 100
    warmup: int = 10
    clients: int = 1  # client processes (HTTP targets)
    warmup_seconds: float = 0.0  # warm-up lasts at least this long as well as ``warmup`` requests
    # an UNSTABLE run is tried again at 2x, then 4x the duration and requests; a contended one once more
    retry_unstable: bool = True


RETRY_FACTORS = (1, 2, 4)  # the tries of a run, as multiples of the configured duration and requests
CONTENDED_RETRIES = 1  # a run during which others took over 20% of the CPU is tried again this many times
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


class Tries:
    """The tries of one run: an UNSTABLE try again at the next of :data:`RETRY_FACTORS`, a contended one
    (others took over 20% of the CPU) again at the same duration, :data:`CONTENDED_RETRIES` times;
    ``retry=False``: one try. ``attempts`` records every try, the last being the result."""

    def __init__(self, retry: bool = True) -> None:
        self.factors = RETRY_FACTORS if retry else RETRY_FACTORS[:1]
        self.step = 0
        self.contended_left = CONTENDED_RETRIES if retry else 0
        self.attempts: list[dict[str, Any]] = []

    @property
    def factor(self) -> int:
        """The next try's duration and requests, as a multiple of the configured ones."""
        return self.factors[self.step]

    def again(self, res: RunResult, min_duration: float) -> str | None:
        """Record a try; why to run another, None when this one is the result."""
        share = res.other_cpu_share
        self.attempts.append(
            {"duration_s": res.duration_s, "min_duration_s": min_duration, "valid": res.valid, "other_cpu_share": share}
        )
        if res.recorder.count == 0:  # nothing succeeded: a longer run would not settle anything
            return None
        if share is not None and res.contended and self.contended_left > 0:
            self.contended_left -= 1
            return f"other processes took {share:.0%} of the CPU"
        if not res.valid and self.step < len(self.factors) - 1:
            self.step += 1
            return f"UNSTABLE after {res.duration_s:.1f} s"
        return None


def own_pids(target: Target) -> list[int]:
    """The processes whose CPU is the benchmark's own: this one and what it started (the server of a
    study, client processes, the browser), and for a server on this machine, the processes listening on
    its port (where ``/proc`` shows them)."""
    pids = [os.getpid()]
    url = urlsplit(str((target.spec or {}).get("url") or ""))
    if url.hostname in LOOPBACK and url.port is not None:
        pids += listening_pids(url.port)
    return pids


def contention_warning(res: RunResult) -> list[str]:
    """The warning for a run that others' CPU use may have slowed (empty otherwise)."""
    if not res.contended:
        return []
    return [
        f"other processes took {res.other_cpu_share:.0%} of the machine's CPU during this run (over 20%): "
        "its times are not comparable with a quiet machine's"
    ]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_models() -> list[str]:
    """NVIDIA GPUs as nvidia-smi names them (empty without one)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    """Versions and hardware: the part of every provenance (benchmarks and studies) that says where."""
    import numpy
    import onnxruntime

    from speedmap.runtime import available_cpus

    return {
        "speedmap": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "gpus": gpu_models(),
        "available_providers": onnxruntime.get_available_providers(),
        "cpus": os.cpu_count(),
        "usable_cpus": available_cpus(),
    }


def provenance(
    target_name: str, model_info: dict[str, Any] | None, images: list[bytes], cfg: BenchConfig
) -> dict[str, Any]:
    """What was measured where: :func:`machine`, the target, the model, the image set, the config."""
    digest = hashlib.sha256()
    for b in images:
        digest.update(hashlib.sha256(b).digest())
    return {
        **machine(),
        "target": target_name,
        "model": model_info,
        "images": len(images),
        "image_set_sha256": digest.hexdigest()[:16],
        "config": asdict(cfg),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


async def warm_up(target: Target, n: int, seconds: float = 0.0) -> dict[str, Any]:
    """The cold first request, then warm-up until ``n`` requests AND ``seconds`` have passed; with the
    target's model load time when it has one."""
    t = time.perf_counter()
    try:
        await target.send(0)
    except Exception as exc:  # nothing to measure: say why, once
        detail = getattr(exc, "text", None) or str(exc)
        detail = detail[:300]
        raise SpeedmapError(f"the first request to {target.name} failed ({error_kind(exc)}): {detail}") from None
    cold = time.perf_counter() - t
    t = time.perf_counter()
    i = 1
    while i < n or time.perf_counter() - t + cold < seconds:
        await target.send(i)
        i += 1
    doc = {"cold_first_request_ms": cold * 1e3, "requests": i, "seconds": time.perf_counter() - t + cold}
    if target.load_ms is not None:
        doc["model_load_ms"] = target.load_ms
    return doc


def plan(cfg: BenchConfig) -> list[tuple[str, float]]:
    """The runs a config asks for, in order."""
    out: list[tuple[str, float]] = []
    if cfg.scenario in (None, "single"):
        out.append(("single", 1))
    if cfg.scenario in (None, "concurrency"):
        out += [("concurrency", c) for c in cfg.concurrency if not (cfg.scenario is None and c == 1)]
    if cfg.scenario == "rate":
        if not cfg.rate or cfg.rate <= 0:
            raise SpeedmapError("--scenario rate needs --rate R (requests per second, above 0)")
        out.append(("rate", cfg.rate))
    if cfg.scenario == "offline":
        out.append(("offline", max(cfg.concurrency)))
    return out


@dataclass
class Live:
    """The run in progress, for a live display: its label, start, minimum duration and recorder (None
    when client processes record it)."""

    label: str = ""
    started: float = 0.0
    recorder: Recorder | None = None
    duration: float | None = None


Note = Callable[[str], None]


class Runner:
    """Runs scenarios on a target, in this process or on a pool of client processes; an UNSTABLE run is
    tried again (``cfg.retry_unstable``) and ``note`` says so."""

    def __init__(self, cfg: BenchConfig, live: Live | None = None, note: Note | None = None) -> None:
        self.cfg = cfg
        self.pool: ClientPool | None = None
        self.live = live
        self.note = note
        self.own: dict[str, list[int]] = {}  # target name -> own_pids(target)

    @staticmethod
    def window(duration: float) -> float:
        """The stability windows' width for a run of ``duration`` seconds: five windows where it can."""
        return max(0.25, min(1.0, duration / 5))

    async def run(self, target: Target, kind: str, value: float) -> RunResult:
        """One run; while UNSTABLE (and something succeeded), again with the next duration of
        :data:`RETRY_FACTORS`; while contended, once more (:class:`Tries`). The last try is the result;
        ``attempts`` lists every try."""
        cfg = self.cfg
        tries = Tries(cfg.retry_unstable)
        for n in range(len(RETRY_FACTORS) + CONTENDED_RETRIES):
            duration, requests = cfg.duration * tries.factor, cfg.requests * tries.factor
            res = await self._once(target, kind, value, duration, requests, n)
            why = tries.again(res, duration)
            if why is None:
                break
            if self.note is not None:
                self.note(
                    f"{kind} {value:g}: {why}; trying again for at least {cfg.duration * tries.factor:g} s "
                    f"and {cfg.requests * tries.factor} requests"
                )
        res.attempts = tries.attempts
        res.warnings += contention_warning(res)
        return res

    async def _once(self, target: Target, kind: str, value: float, duration: float, requests: int, n: int) -> RunResult:
        cfg = self.cfg
        remote = cfg.clients > 1 and target.spec is not None
        rec = Recorder()
        if self.live is not None:
            tail = f" (try {n + 1})" if n else ""
            self.live.label, self.live.started = f"{kind} {value:g}{tail}", time.perf_counter()
            self.live.recorder, self.live.duration = None if remote else rec, duration
        if remote and self.pool is None:
            self.pool = await asyncio.to_thread(ClientPool, cfg.clients)
        if target.name not in self.own:
            self.own[target.name] = own_pids(target)
        meter = CpuMeter(own_pids=self.own[target.name])
        if remote:
            assert target.spec is not None and self.pool is not None
            res = await asyncio.to_thread(
                self.pool.run, target.spec, kind, value, duration, requests, cfg.arrivals, self.window(duration)
            )
        else:
            res = await run_here(target, kind, value, duration, requests, cfg.arrivals, self.window(duration), rec)
        res.other_cpu_share = meter.stop().other_share
        res.warnings = client_warnings(res, remote=target.spec is not None)
        return res

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


async def run_scenarios(
    target: Target, cfg: BenchConfig, progress: Any = None, live: Live | None = None, note: Note | None = None
) -> tuple[dict[str, Any], list[RunResult]]:
    warm = await warm_up(target, cfg.warmup, cfg.warmup_seconds)
    runner = Runner(cfg, live, note)
    runs = []
    try:
        for kind, value in plan(cfg):
            if progress is not None:
                progress(kind, value)
            runs.append(await runner.run(target, kind, value))
    finally:
        runner.close()
    return warm, runs


def benchmark(
    target: Target,
    cfg: BenchConfig,
    model_info: dict[str, Any] | None,
    images: list[bytes],
    progress: Any = None,
    live: Live | None = None,
    note: Note | None = None,
) -> tuple[BenchReport, list[RunResult]]:
    """One benchmark: its report, and its runs (with their histograms, for plots). ``progress(kind,
    value)`` before each run, ``note(text)`` when a run is tried again; the target is closed at the end."""

    async def main() -> tuple[dict[str, Any], list[RunResult]]:
        try:
            return await run_scenarios(target, cfg, progress, live, note)
        finally:
            await target.close()

    prov = provenance(target.name, model_info, images, cfg)
    warm, runs = run_async(main())
    prov["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    model = (model_info or {}).get("model_id")
    report = BenchReport(target.name, model, prov, warm, [r.summary() for r in runs])
    return report, runs
