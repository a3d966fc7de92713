"""The training loop: :func:`train` runs a :class:`Trainer` built from a :class:`TrainConfig`.

Single process on CPU or CUDA, or several under ``torchrun`` (DistributedDataParallel: gloo on CPU,
NCCL on GPUs; only rank 0 validates and writes). Checkpoints (:mod:`speedmap.train.checkpoint`) are
written atomically after every epoch, so ``resume`` loses at most the epoch in progress. The learning-rate
schedule is :mod:`speedmap.train.schedule`.
"""

from __future__ import annotations

import math
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from speedmap import __version__
from speedmap.cpustat import CpuMeter, CpuSample
from speedmap.data import load_dataset
from speedmap.eval import Metrics
from speedmap.jsonfile import write_json_atomic
from speedmap.models import Detector, count_flops, count_params, create_model
from speedmap.train.checkpoint import (
    BEST,
    LAST,
    RunState,
    TrainError,
    checkpoint_spec,
    load_checkpoint,
    load_train_weights,
    model_from_checkpoint,
    model_meta,
    restore_training,
    save_best,
    save_last,
    saved_config,
)
from speedmap.train.config import EpochLog, Progress, TrainConfig, check_imgsz
from speedmap.train.convergence import convergence, object_step, time_to_fraction
from speedmap.train.data import AugmentConfig, TrainData, ValData, collate
from speedmap.train.device import default_workers, resolve_device
from speedmap.train.ema import ModelEMA, ema_horizon, epoch_ema
from speedmap.train.ending import RunEnding
from speedmap.train.loss import DetectionLoss
from speedmap.train.plots import plot_training
from speedmap.train.record import cpu_summary, write_metrics_csv
from speedmap.train.schedule import (
    SCHEDULES,
    Schedule,
    warmup_iterations,
)
from speedmap.train.step import Step, build_optimizer
from speedmap.train.validate import validation_metrics
from speedmap.train.weights import resolve_weights, weights_record

PLOT_EVERY_S = 30.0  # results.png is redrawn after an epoch when this long has passed since the last drawing
EPOCH_SEED_STRIDE = 100_003  # an epoch's shuffle seed is seed * this + epoch: distinct for every (seed, epoch)


def _rank() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _default_out(data: Path, size: str) -> Path:
    base = Path("runs") / "train" / f"{data.resolve().name}-{size}"
    out, k = base, 2
    while out.exists():
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _score(m: Metrics) -> float:
    """What early stopping and best.pt go by: validation mAP50-95."""
    return max(m.map, 0.0)


def train(cfg: TrainConfig, progress: Progress | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a detector; returns the run record written to ``train.json`` (empty on ranks other than 0)."""
    return Trainer(cfg, progress, log).run()


class Trainer(RunEnding):
    """One training run. Building it reads the data, builds the model and optimizer (restored from
    ``last.pt`` with ``resume``) and prepares the run folder; :meth:`run` then trains epoch after epoch
    (:meth:`train_epoch`, :meth:`validate`, :meth:`end_epoch`) until the last epoch or early stopping."""

    def __init__(self, cfg: TrainConfig, progress: Progress | None = None, log: Callable[[str], None] = print):
        self.t_built = time.perf_counter()  # a time limit counts from here: reading and caching the data count
        self.plotted_at, self.plotted_epochs = float("-inf"), 0  # results.png: when, and with how many epochs
        self.progress, self.log = progress, log
        self.rank, self.world, local_rank = _rank()
        self.main, self.ddp = self.rank == 0, self.world > 1
        self.device = self._init_device(cfg.device, local_rank)
        self.out = Path(cfg.out) if cfg.out else None
        self.resume_ckpt: dict[str, Any] | None = None
        self.cfg = self._resumed_config(cfg) if cfg.resume else cfg
        self._load_data()
        random.seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)
        self.model = self._build_model()
        self._build_optimizer()
        self.net: nn.Module = nn.parallel.DistributedDataParallel(self.model) if self.ddp else self.model
        self.step = Step(
            self.net, self.model, DetectionLoss(self.model), self.optimizer, self.ema, self.device, self.world
        )
        self.out = self.out or _default_out(Path(self.cfg.data), self.cfg.size)
        self._prepare_out()
        self._build_data()
        self.flops, self.params = count_flops(self.model, self.imgsz), count_params(self.model)
        self.meta = model_meta(self.model, self.ds.classes, self.imgsz, self.fingerprint)
        self.record: dict[str, Any] = {}
        self.budget: dict[str, Any] = {}  # what a time limit changed (run_record's "budget")
        if self.main:
            self._log_start()

    # ---- setting up

    def _init_device(self, device: str, local_rank: int) -> torch.device:
        device = resolve_device(device)
        cuda = device.startswith("cuda")
        if self.ddp and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        dev = torch.device(f"cuda:{local_rank}" if cuda and self.ddp else device)
        if cuda:
            torch.cuda.set_device(dev)
        return dev

    def _resumed_config(self, cfg: TrainConfig) -> TrainConfig:
        """The config saved in the run's ``last.pt``; only the device and the worker count come from ``cfg``."""
        if self.out is None:
            raise TrainError("--resume needs --out RUN, the run folder to continue")
        self.resume_ckpt = load_checkpoint(self.out / LAST)
        saved = saved_config(self.resume_ckpt)
        return TrainConfig(
            **{**saved, "resume": True, "out": str(self.out), "device": cfg.device, "workers": cfg.workers}
        )

    def _load_data(self) -> None:
        cfg, log = self.cfg, self.log
        self.ds = ds = load_dataset(cfg.data, auto_split=True, decode=("train", "valid", "test"))
        for line in ds.problems.report_lines(cfg.data) if self.main else []:  # skipped images by name
            log(line)
        self.train_split = ds.split("train")
        if len(self.train_split) == 0:
            raise TrainError(f"{cfg.data}: no usable training images (the train split is empty after validation)")
        self.val_split = next((ds.split(s) for s in ("valid", "test") if ds.split_records(s)), None)
        if self.main and self.val_split is not None and self.val_split.name == "test":
            log("no valid split: validating on the test split (its mAP then also picks best.pt)")
        self.imgsz = check_imgsz(cfg.imgsz)
        self.nc = len(ds.classes)
        self.n_train = len(self.train_split)
        self.fingerprint = ds.fingerprint()
        if cfg.batch < self.world:
            raise TrainError(f"--batch {cfg.batch} is smaller than the number of processes ({self.world})")

    def _build_model(self) -> Detector:
        # a resumed run keeps the architecture it started with, even if its size's registered spec changed
        model = create_model(self.cfg.size, self.nc, checkpoint_spec(self.resume_ckpt) if self.resume_ckpt else None)
        model.head.init_bias(self.imgsz)
        start = resolve_weights(self.cfg.weights, self.cfg.size)
        self.start_weights = weights_record(self.cfg.weights, start)
        if start and not self.resume_ckpt:
            model = self._transferred(start)
        if self.resume_ckpt:
            load_train_weights(model, self.resume_ckpt)
        model.to(self.device)
        if self.device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        return model

    def _transferred(self, weights: str) -> Detector:
        """The model of ``--weights``, with a new class head when the classes differ from the dataset's."""
        src = load_checkpoint(weights)
        if src["size"] != self.cfg.size:
            raise TrainError(f"--weights {weights} is a {src['size']!r} model, but --size is {self.cfg.size!r}")
        model = model_from_checkpoint(src)
        if src["num_classes"] != self.nc or list(src.get("classes", [])) != self.ds.classes:
            model.reset_classes(self.nc)
            model.head.init_bias(self.imgsz)
            if self.main:
                self.log(f"transfer: {src['num_classes']} -> {self.nc} classes, class head re-initialised")
        return model

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        self.per_rank_batch = cfg.batch // self.world
        self.batches_per_epoch = math.ceil(self.n_train / self.world / self.per_rank_batch)
        self.optimizer = build_optimizer(self.model, cfg, cfg.epochs * self.batches_per_epoch, self.nc)
        if cfg.ema_epochs is not None and not self.resume_ckpt:  # resolved once; the saved config keeps it
            cfg.ema_epochs = ema_horizon(cfg.ema_epochs, cfg.epochs)
        decay, tau = (
            (0.9999, cfg.ema_tau) if cfg.ema_epochs is None else epoch_ema(self.batches_per_epoch, cfg.ema_epochs)
        )
        self.ema = ModelEMA(self.model, decay=decay, tau=tau)
        self.state = RunState()
        if self.resume_ckpt:
            self.state = restore_training(self.resume_ckpt, self.optimizer, self.ema)
            if self.state.epoch + 1 >= cfg.epochs:
                raise TrainError(f"{self.out} already finished all {cfg.epochs} epochs; nothing to resume")

    def _prepare_out(self) -> None:
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            args = {**asdict(self.cfg), "out": str(self.out)}
            (self.out / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False), encoding="utf-8")

    def _build_data(self) -> None:
        cfg = self.cfg
        aug = AugmentConfig(mosaic=cfg.mosaic, scale=cfg.aug_scale)
        self.data = TrainData(self.train_split, self.imgsz, cfg.seed, aug)
        use_val = self.val_split is not None and cfg.val and self.main
        self.val = ValData(self.val_split, self.imgsz) if use_val else None
        ids = (r.class_ids[~r.iscrowd] for r in self.val_split.records) if self.val is not None else ()
        self.val_step = object_step(ids, self.ds.classes)
        self.workers = default_workers(self.device.type) if cfg.workers is None else cfg.workers
        warmup = warmup_iterations(cfg.warmup_epochs, self.batches_per_epoch, cfg.warmup_min_iters)
        self.warmup_epochs = math.ceil(warmup / self.batches_per_epoch)  # the epochs warm-up reaches into
        kind = "cosine" if cfg.cos_lr else cfg.schedule
        if kind not in SCHEDULES:
            raise TrainError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        ph = self.state.phases  # a resumed run that had begun its cooldown goes on with it
        start, cool = (ph["stable_end"], ph["cooldown"]) if ph.get("stable_end") is not None else (None, 0)
        self.schedule = Schedule(cfg.epochs, cfg.lrf, kind, self.batches_per_epoch, warmup, start, cool)

    def _log_start(self) -> None:
        cfg = self.cfg
        self.log(
            f"training {cfg.size} ({self.params / 1e6:.2f} M params, {self.flops / 1e9:.2f} GFLOPs at {self.imgsz}px) "
            f"on {self.n_train} images, {self.nc} classes, {cfg.epochs} epochs, batch {cfg.batch}, device "
            f"{self.device}{f', {self.world} processes' if self.ddp else ''}; run folder {self.out}"
        )
        step = self.val_step
        if step is not None and not step.resolves_plateau and self.schedule.kind == "wsd" and cfg.patience > 0:
            self.log(
                f"validation: {step.sentence()}, more than a plateau can resolve: the constant phase runs to the epoch "
                "cap or the time budget"
            )

    # ---- the loop

    def run(self) -> dict[str, Any]:
        """Train from the first unfinished epoch; returns the run record (``train.json``)."""
        self.first = epoch = self.state.epoch + 1
        self.setup_s = time.perf_counter() - self.t_built  # reading and caching the images
        while epoch < self.cfg.epochs:  # not a range: the cooldown or a time limit sets the end mid-run
            losses, cpu = self.train_epoch(epoch)
            self.state.epoch_seconds.append(cpu.wall_s)
            metrics = self.validate()
            stop = self.end_epoch(epoch, losses, cpu, metrics) if self.main else False
            if self._agree(stop):
                break
            epoch += 1
        if self.main and self.plotted_epochs != len(self.state.history):
            self.plot()  # the last epochs' curve, skipped by the refresh interval
        if self.ddp:
            dist.barrier()
            dist.destroy_process_group()
        return self.record

    def _loader(self, epoch: int) -> torch.utils.data.DataLoader:
        """This rank's share of the epoch's shuffled order, the same order on every rank and every resume."""
        cfg = self.cfg
        self.data.set_epoch(epoch, epoch < cfg.epochs - cfg.close_mosaic)
        gen = torch.Generator().manual_seed(cfg.seed * EPOCH_SEED_STRIDE + epoch)
        order = torch.randperm(self.n_train, generator=gen).tolist()
        return torch.utils.data.DataLoader(
            self.data,
            batch_size=self.per_rank_batch,
            sampler=order[self.rank :: self.world],
            collate_fn=collate,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",  # page-locked batches copy to the GPU asynchronously
            drop_last=False,
        )

    def train_epoch(self, epoch: int) -> tuple[list[float], CpuSample]:
        """One pass over the training data; returns the mean box, cls and dfl losses and the CPU sample."""
        loader = self._loader(epoch)
        self.net.train()
        sums = torch.zeros(3)
        seen = 0
        meter = CpuMeter(children=self.workers > 0)
        for i, (images, targets) in enumerate(loader):
            self.schedule.apply(self.optimizer, epoch, i)
            sums += self.step(images, targets).cpu()
            seen += len(images)
            if self.progress is not None and self.main:
                self.progress(self._batch_event(epoch, i, len(loader), sums, seen, meter.elapsed()))
        cpu = meter.stop()
        return (sums / max(len(loader), 1)).tolist(), cpu

    def _batch_event(
        self, epoch: int, i: int, batches: int, sums: torch.Tensor, seen: int, elapsed: float
    ) -> dict[str, Any]:
        """The progress event after batch ``i``: mean losses of the epoch so far and images/s of all ranks."""
        mean = (sums / (i + 1)).tolist()
        return {
            "epoch": epoch,
            "epochs": self.cfg.epochs,
            "batch": i + 1,
            "batches": batches,
            "box": mean[0],
            "cls": mean[1],
            "dfl": mean[2],
            "ips": seen * self.world / max(elapsed, 1e-9),
        }

    def validate(self) -> Metrics | None:
        """Validation metrics of the EMA weights; None without validation (and on ranks other than 0)."""
        return validation_metrics(self.ema.ema, self.val, self.device) if self.val is not None else None

    def end_epoch(self, epoch: int, losses: list[float], cpu: CpuSample, metrics: Metrics | None) -> bool:
        """Rank 0 after an epoch: keep score, save the checkpoints, write the logs; True to stop early."""
        st = self.state
        fit = _score(metrics) if metrics is not None else float(epoch)
        cool = self.schedule.cooldown_start
        # wsd: best.pt is picked among the annealed epochs once the cooldown has begun (see annealed_best)
        improved = fit > st.best_fitness or (cool is not None and epoch >= cool > st.best_epoch)
        if improved:
            st.best_fitness, st.best_epoch = fit, epoch
        entry = EpochLog(
            epoch + 1,
            *losses,
            self.optimizer.param_groups[0]["lr"],
            cpu.wall_s,
            self.n_train / cpu.wall_s,
            metrics.map50 if metrics else None,
            metrics.map if metrics else None,
            round(cpu.cpu_s, 3),
            _round(cpu.other_share, 4),
        )
        st.history.append(asdict(entry))
        st.epoch = epoch
        stop = self._decide(epoch)
        self.save(improved, metrics)
        self.write_logs()
        if self.progress is not None:
            self.progress({"epoch_done": entry, "best": improved})
        return stop

    def save(self, improved: bool, metrics: Metrics | None) -> None:
        """``last.pt`` after every epoch; ``best.pt`` when the epoch is the best so far."""
        save_last(self.out / LAST, self.meta, self.model, self.ema, self.optimizer, self.state, asdict(self.cfg))
        if improved:
            save_best(self.out / BEST, self.meta, self.ema, self.state.epoch, metrics.to_json() if metrics else None)

    def write_logs(self) -> None:
        """``metrics.csv`` and ``train.json`` as of the latest epoch; ``results.png`` at most every
        :data:`PLOT_EVERY_S` seconds (and at the end): drawing it costs 0.3-0.5 s, a quarter of a small
        task's epoch."""
        write_metrics_csv(self.state.history, self.out / "metrics.csv")
        if time.perf_counter() - self.plotted_at >= PLOT_EVERY_S:
            self.plot()
        self.record = self.run_record()
        write_json_atomic(self.out / "train.json", self.record)

    def plot(self) -> None:
        plot_training(self.state.history, self.out / "results.png")
        self.plotted_at, self.plotted_epochs = time.perf_counter(), len(self.state.history)

    def run_record(self) -> dict[str, Any]:
        """What ``train.json`` says about the run so far."""
        cfg, ds, st = self.cfg, self.ds, self.state
        history = st.history
        best = next((h for h in history if h["epoch"] == st.best_epoch + 1), history[-1])
        total = float(sum(st.epoch_seconds))
        n_train = len(ds.split_records("train"))
        phases = st.phases if self.schedule.kind == "wsd" else None
        converged, conv = convergence(history, cfg.patience, cfg.epochs, phases)
        t95 = time_to_fraction(history)
        return {
            "size": cfg.size,
            "params": self.params,
            "flops": self.flops,
            "imgsz": self.imgsz,
            "epochs": len(st.epoch_seconds),
            "epochs_planned": cfg.epochs,
            "budget": self.budget or None,
            "batch": cfg.batch,
            "epoch_seconds": [round(s, 3) for s in st.epoch_seconds],
            "total_seconds": round(total, 3),
            "train_images_per_second": round(n_train * len(st.epoch_seconds) / total, 3) if total else None,
            "best_epoch": best["epoch"],
            "best_map": best["map"],
            "best_map50": best["map50"],
            "epochs_run": len(history),
            "converged": converged,
            "convergence": conv,
            "time_to_95_seconds": None if t95 is None else round(t95[0], 3),
            "epoch_to_95": None if t95 is None else t95[1],
            **cpu_summary(history),
            "dataset": {
                "path": str(cfg.data),
                "abspath": str(Path(cfg.data).resolve()),
                "fingerprint": self.fingerprint,
                "classes": ds.classes,
                "train_images": n_train,
                "valid_images": len(ds.split_records("valid")),
                "corrupt_images": ds.problems.corrupt_images(),  # skipped: unreadable or not decodable
            },
            "device": str(self.device),
            "processes": self.world,
            "threads": torch.get_num_threads(),
            "seed": cfg.seed,
            "weights": self.start_weights,
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "speedmap": __version__,
            "run": str(self.out),
        }
