"""How much slower is an `accurate` training step than a `fast` one, on this machine, right now?

:func:`probe_train_speed` times the real training step (:class:`speedmap.train.step.Step`: model,
loss, backward, optimizer, EMA) of both sizes on the same pre-collated batches, in four segments ordered
Fast, Accurate, Accurate, Fast. Averaging each size's two segments cancels any drift that is linear in time
(a machine warming up or a background job ramping up or down): both sizes then have the same mean
position in time. Model building and batch preparation stay outside the timed steps.

What is timed is the CPU time of the step, on ONE intra-op thread by default. Measured on a 2-core
machine (64 px, batch 4): with training's 2 threads, two busy-looping processes made steps 3-30x slower
and the accurate/fast ratio swung from 2.0 (quiet) to 0.39, because every operator ends in a fork-join
barrier that waits a whole scheduler slice for a descheduled thread, so the slowdown follows the number of
operators, not the work. One thread has no barriers: its CPU time per step is the step's work, which a
competitor does not change (ratio 2.49-2.61 quiet, 2.43-2.63 with both cores burned). The price: the ratio is
the single-thread one (2.5 there) where training with 2 threads showed 2.0 on a quiet machine, since
the small model gains less from a second thread; ``threads=None`` keeps training's thread count.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speedmap.cpustat import CpuMeter
from speedmap.data import DatasetSplit, load_dataset
from speedmap.models import create_model
from speedmap.train.checkpoint import TrainError
from speedmap.train.config import TrainConfig
from speedmap.train.data import TrainData, collate
from speedmap.train.ema import ModelEMA
from speedmap.train.loss import DetectionLoss
from speedmap.train.step import Step, build_optimizer

ORDER = ("fast", "accurate", "accurate", "fast")  # ABBA: linear drift cancels in each size's mean


@dataclass
class ProbeResult:
    fast_step_s: float  # CPU s per optimizer step (= wall s when quiet): mean of the size's two segment medians
    accurate_step_s: float
    ratio: float  # accurate_step_s / fast_step_s
    steps: int
    batch: int
    imgsz: int
    segments: list[dict[str, Any]]  # run order: size, seconds_per_step (wall), cpu_per_step, other_cpu_share
    other_cpu_share: float | None  # over all timed segments, wall-time-weighted
    threads: int  # torch intra-op threads during the timed steps

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _batches(
    split: DatasetSplit, data: str | Path, imgsz: int, batch: int, count: int, seed: int
) -> list[tuple[torch.Tensor, ...]]:
    if len(split) == 0:
        raise TrainError(f"{data}: no usable training images")
    td = TrainData(split, imgsz, seed)
    td.set_epoch(0, True)
    n = len(td)
    return [collate([td[(k * batch + j) % n] for j in range(batch)]) for k in range(count)]


def _segment(
    size: str,
    nc: int,
    imgsz: int,
    batch: int,
    batches: list[tuple[torch.Tensor, ...]],
    steps: int,
    warmup: int,
    seed: int,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = create_model(size, nc)
    model.head.init_bias(imgsz)
    model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(data="", size=size, imgsz=imgsz, batch=batch, seed=seed)
    optimizer = build_optimizer(model, cfg, 1, nc)
    model.train()
    step = Step(model, model, DetectionLoss(model), optimizer, ModelEMA(model), torch.device("cpu"))
    for i in range(warmup):
        step(*batches[i % len(batches)])
    walls, cpus = [], []
    meter = CpuMeter()
    for i in range(warmup, warmup + steps):
        images, targets = batches[i % len(batches)]
        w0, c0 = time.perf_counter(), time.process_time()
        step(images, targets)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    sample = meter.stop()
    return {
        "size": size,
        "seconds_per_step": statistics.median(walls),
        "cpu_per_step": statistics.median(cpus),
        "other_cpu_share": sample.other_share,
        "wall_s": sample.wall_s,
    }


def probe_train_speed(
    data: str | Path, imgsz: int, batch: int, steps: int = 8, warmup: int = 2, seed: int = 0, threads: int | None = 1
) -> ProbeResult:
    """Time ``steps`` training steps (after ``warmup`` untimed ones) of each size, twice, in ABBA order, on
    ``threads`` torch threads (None: leave the count as training has it)."""
    if steps < 1 or warmup < 0 or batch < 1:
        raise TrainError("probe: steps and batch must be at least 1, warmup at least 0")
    split = load_dataset(data, auto_split=True, decode=("train",)).split("train")  # as training reads it
    batches = _batches(split, data, imgsz, batch, min(warmup + steps, 4), seed)
    nc = len(split.classes)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        segs = [_segment(size, nc, imgsz, batch, batches, steps, warmup, seed) for size in ORDER]
    finally:
        torch.set_num_threads(before)
    per = {s: float(np.mean([g["cpu_per_step"] for g in segs if g["size"] == s])) for s in ("fast", "accurate")}
    known = [(g["other_cpu_share"], g.pop("wall_s")) for g in segs]
    known = [(s, w) for s, w in known if s is not None]
    wall = sum(w for _, w in known)
    other = sum(s * w for s, w in known) / wall if known and wall > 0 else None
    return ProbeResult(
        per["fast"], per["accurate"], per["accurate"] / per["fast"], steps, batch, imgsz, segs, other, threads or before
    )
