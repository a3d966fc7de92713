"""The training loop: :func:`train` runs a :class:`Trainer` built from a :class:`TrainConfig`.

Single process on CPU or CUDA, or several under ``torchrun`` (DistributedDataParallel: gloo on CPU,
NCCL on GPUs; only rank 0 validates and writes). Checkpoints (:mod:`speedmap.train.checkpoint`) are
written atomically after every epoch, so ``resume`` loses at most the epoch in progress. The learning-rate
schedule is :mod:`speedmap.train.schedule`.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from speedmap import __version__
from speedmap.cpustat import CONTENDED_SHARE, CpuMeter, CpuSample
from speedmap.data import load_dataset
from speedmap.detections import Detections
from speedmap.eval import Metrics, evaluate_predictions
from speedmap.jsonfile import write_json_atomic
from speedmap.models import Detector, count_flops, count_params, create_model
from speedmap.postprocess import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, postprocess
from speedmap.preprocess import to_input
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
from speedmap.train.convergence import convergence, patience_stop, plateau_epoch, time_to_fraction
from speedmap.train.data import AugmentConfig, TrainData, ValData, collate
from speedmap.train.device import amp_dtype, default_workers, resolve_device
from speedmap.train.ema import ModelEMA, ema_horizon, epoch_ema
from speedmap.train.loss import DetectionLoss
from speedmap.train.plots import plot_training
from speedmap.train.schedule import (
    ADAMW_BETA2,
    MAX_GRAD_NORM,
    MOMENTUM,
    SCHEDULES,
    SGD_LR,
    WEIGHT_DECAY_BATCH,
    Schedule,
    auto_adamw_lr,
    auto_optimizer,
    cooldown_epochs,
    stable_cap,
    warmup_iterations,
)
from speedmap.train.weights import resolve_weights, weights_record

IMGSZ_STRIDE = 32  # the input size must be a multiple of the model's largest stride ...
IMGSZ_MAX = 4096  # ... and at most this
EPOCH_SEED_STRIDE = 100_003  # an epoch's shuffle seed is seed * this + epoch: distinct for every (seed, epoch)
VAL_BATCH = 32  # images per forward pass in validation


@dataclass
class TrainConfig:
    data: str
    size: str = "fast"
    epochs: int = 50
    imgsz: int = field(kw_only=True)  # input size, chosen by the caller (speedmap.data.tasks.default_imgsz)
    batch: int = 16
    weights: str | None = None
    out: str | None = None
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    workers: int | None = None
    seed: int = 0
    # wsd: the constant-rate phase ends after this many epochs without a gain of the smoothed validation mAP50-95
    # (0: at the epoch cap), then the run cools down; linear / cosine: stop after them (not annealed)
    patience: int = 50
    resume: bool = False
    close_mosaic: int = 10
    optimizer: str = "auto"  # auto | sgd | adamw
    lr0: float | None = None
    lrf: float = 0.01
    schedule: str = "wsd"  # wsd (warm-up, stable, cooldown: every run ends annealed) | linear | cosine
    cos_lr: bool = False  # the older switch: cosine decay (schedule "cosine")
    warmup_epochs: float = 3.0
    weight_decay: float = 5e-4
    ema_tau: float = 2000.0  # with ema_epochs None: the EMA's decay (0.9999) ramps up as 1 - exp(-updates / ema_tau)
    ema_epochs: float | None = 5.0  # the EMA averages over about this many epochs (None: the update-count ramp)
    warmup_min_iters: int = 100  # warm-up lasts at least this many optimizer steps
    aug_scale: float = 0.5  # random scaling of training samples: 1 +- this
    mosaic: float = 1.0  # probability of a mosaic sample (before close_mosaic)
    val: bool = True
    # seconds this run may take (training and validation); after its first epoch the run fits its epochs into
    # them (the schedule shortened to what fits), and it stops when the next epoch would not fit
    time_limit: float | None = None


@dataclass
class EpochLog:
    epoch: int
    box_loss: float
    cls_loss: float
    dfl_loss: float
    lr: float
    seconds: float
    images_per_second: float
    map50: float | None = None
    map: float | None = None
    cpu_seconds: float | None = None  # this process's CPU time in the epoch's training loop
    other_cpu_share: float | None = None  # share of the machine's CPU used by other processes meanwhile


Progress = Callable[[dict[str, Any]], None]


def _rank() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def check_imgsz(imgsz: int) -> int:
    """``imgsz`` if the model can take it, else a :class:`TrainError` that says what it can take."""
    if not isinstance(imgsz, int) or imgsz % IMGSZ_STRIDE or not IMGSZ_STRIDE <= imgsz <= IMGSZ_MAX:
        raise TrainError(
            f"--imgsz must be a multiple of {IMGSZ_STRIDE} between {IMGSZ_STRIDE} and {IMGSZ_MAX}, got {imgsz}"
        )
    return imgsz


def _default_out(data: Path, size: str) -> Path:
    base = Path("runs") / "train" / f"{data.resolve().name}-{size}"
    out, k = base, 2
    while out.exists():
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Three groups, in this order: decayed weights, BatchNorm weights, biases (schedule.BIAS_GROUP)."""
    decay, no_decay, bias = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                bias.append(p)
            elif isinstance(module, nn.BatchNorm2d):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": bias, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, iterations: int, nc: int) -> torch.optim.Optimizer:
    """SGD for long schedules, AdamW (with a class-count-scaled rate) for short ones."""
    name = auto_optimizer(iterations) if cfg.optimizer == "auto" else cfg.optimizer
    groups = _param_groups(model, cfg.weight_decay * cfg.batch / WEIGHT_DECAY_BATCH)
    if name == "sgd":
        lr = cfg.lr0 or SGD_LR
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=MOMENTUM, nesterov=True)
    elif name == "adamw":
        lr = cfg.lr0 or auto_adamw_lr(nc)
        opt = torch.optim.AdamW(groups, lr=lr, betas=(MOMENTUM, ADAMW_BETA2))
    else:
        raise TrainError(f"unknown optimizer {cfg.optimizer!r}; choose auto, sgd or adamw")
    for g in opt.param_groups:
        g["initial_lr"] = lr
    return opt


@torch.no_grad()
def predict_split(
    model: nn.Module,
    val: ValData,
    device: torch.device,
    batch: int = VAL_BATCH,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = EVAL_MAX_DET,
) -> list[Detections]:
    """Detections for every validation image, through the shared preprocessing and postprocessing."""
    model.eval()
    out: list[Detections] = []
    for i in range(0, len(val), batch):
        x = torch.from_numpy(to_input(val.images[i : i + batch])).to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        pred = model(x).float().cpu().numpy()
        for p, lb in zip(pred, val.letterboxes[i : i + batch], strict=True):
            det = postprocess(p, conf=conf, iou=iou, max_det=max_det)
            det.xyxy = lb.to_original(det.xyxy)
            out.append(det)
    return out


def validation_metrics(model: nn.Module, val: ValData, device: torch.device) -> Metrics:
    return evaluate_predictions(val.split, predict_split(model, val, device)).metrics


def evaluate_checkpoint(path: str | Path, data: str | Path, split: str = "test") -> Metrics:
    """COCO metrics of a checkpoint on one split of a dataset, at the checkpoint's input size."""
    ckpt = load_checkpoint(path)
    view = load_dataset(data, auto_split=True, decode=(split,)).split(split)
    return validation_metrics(model_from_checkpoint(ckpt), ValData(view, ckpt["imgsz"]), torch.device("cpu"))


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _score(m: Metrics) -> float:
    """What early stopping and best.pt go by: validation mAP50-95."""
    return max(m.map, 0.0)


@dataclass
class Step:
    """One training step: forward, loss, backward, clipped optimizer step, EMA update. The training loop
    and the timing probe (:mod:`speedmap.train.probe`) both run this, so the probe times what training does."""

    net: nn.Module  # the model, or its DDP wrapper
    model: Detector
    criterion: DetectionLoss
    optimizer: torch.optim.Optimizer
    ema: ModelEMA
    device: torch.device
    world: int = 1

    def __post_init__(self) -> None:
        self.amp = amp_dtype(self.device)  # bf16 or fp16 autocast on a GPU; fp16 needs loss scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Train on one batch (uint8 images, collated targets); returns the detached loss parts."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            raw, shapes = self.net(x)
        loss, parts = self.criterion(raw, shapes, targets.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.world).backward()  # DDP averages gradients; keep the per-image scale
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        return parts.detach()


def train(cfg: TrainConfig, progress: Progress | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a detector; returns the run record written to ``train.json`` (empty on ranks other than 0)."""
    return Trainer(cfg, progress, log).run()


class Trainer:
    """One training run. Building it reads the data, builds the model and optimizer (restored from
    ``last.pt`` with ``resume``) and prepares the run folder; :meth:`run` then trains epoch after epoch
    (:meth:`train_epoch`, :meth:`validate`, :meth:`end_epoch`) until the last epoch or early stopping."""

    def __init__(self, cfg: TrainConfig, progress: Progress | None = None, log: Callable[[str], None] = print):
        self.t_built = time.perf_counter()  # a time limit counts from here: reading and caching the data count
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
        if self.ddp:
            dist.barrier()
            dist.destroy_process_group()
        return self.record

    def _fit_time_limit(self, epoch: int, per_epoch: float, spent: float, replan: bool) -> bool:
        """After the first epoch, shorten the schedule to the epochs that fit ``time_limit`` (an epoch's cost is
        known now; two epochs at least); after any later epoch, True when the next one would not fit."""
        cfg = self.cfg
        limit = float(cfg.time_limit or 0.0)
        if replan:
            fit = max(epoch + 2, epoch + 1 + int((limit - spent) / max(per_epoch, 1e-9)))
            if fit < cfg.epochs:
                self.log(
                    f"time budget {limit / 60:.1f} min at {per_epoch:.1f} s per epoch: {fit} epochs instead of "
                    f"{cfg.epochs} (the schedule is shortened to fit)"
                )
                self.budget = {"seconds": round(limit, 1), "epochs_requested": cfg.epochs, "epochs_fitted": fit}
                cfg.epochs = fit
                self.schedule = replace(self.schedule, epochs=fit)
            return False  # at least one more epoch: a run of one epoch says nothing
        if epoch + 1 < cfg.epochs and spent + per_epoch > limit * 1.05:
            self.log(f"time budget spent after {epoch + 1} epochs ({spent / 60:.1f} of {limit / 60:.1f} min)")
            self.budget = {**self.budget, "seconds": round(limit, 1), "stopped_at": epoch + 1}
            cfg.epochs = epoch + 1  # end_epoch writes train.json next, with this budget record
            return True
        return False

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
        improved = fit > st.best_fitness
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

    def _decide(self, epoch: int) -> bool:
        """After an epoch, on rank 0: fit the time limit, end wsd's stable phase, or stop; True to stop now."""
        spent = time.perf_counter() - self.t_built
        per_epoch = (spent - self.setup_s) / (epoch + 1 - self.first)
        if self.cfg.time_limit and not self.ddp and self._fit_time_limit(epoch, per_epoch, spent, epoch == self.first):
            return True
        if self.schedule.kind == "wsd":
            self._end_stable_phase(epoch, per_epoch, spent)
            return False
        return self._patience_stop(epoch)

    def _plateau(self) -> int | None:
        """The 1-based epoch where the smoothed validation curve peaked, if that is ``patience`` epochs ago;
        judged from the last warm-up epoch on (a rising rate first shakes a pretrained model's scores)."""
        maps = [h.get("map") for h in self.state.history]
        if self.val is None or None in maps:
            return None
        w = max(self.warmup_epochs - 1, 0)
        b = plateau_epoch(maps[w:], self.cfg.patience)
        return None if b is None else b + w + 1

    def _stable_end_reason(self, done: int, per_epoch: float, spent: float) -> tuple[str | None, int]:
        """Why wsd's stable phase ends after ``done`` epochs (None: it goes on) and the epochs the run may
        have in all: a plateau of the smoothed validation curve, the epoch cap, or the time budget."""
        cfg = self.cfg
        if self._plateau() is not None:
            return "plateau", cfg.epochs
        if done >= stable_cap(cfg.epochs):
            return "epochs", cfg.epochs
        if cfg.time_limit and not self.ddp:
            fit = done + int((float(cfg.time_limit) - spent) / max(per_epoch, 1e-9))
            if done >= stable_cap(max(fit, done + 1)):
                return "time", min(cfg.epochs, max(fit, done + 1))
        return None, cfg.epochs

    def _end_stable_phase(self, epoch: int, per_epoch: float, spent: float) -> None:
        """wsd: when the stable phase ends, begin the cooldown (its epochs set the run's end) and record why."""
        if self.schedule.cooldown_start is not None:
            return
        done = epoch + 1
        why, allowed = self._stable_end_reason(done, per_epoch, spent)
        if why is None:
            return
        cool = allowed - done if why == "epochs" else min(cooldown_epochs(done), allowed - done)
        self.state.phases = {
            "warmup_end": self.warmup_epochs,
            "stable_end": done,
            "stable_end_reason": why,
            "smoothed_best": self._plateau() if why == "plateau" else None,
            "cooldown": max(cool, 0),
        }
        if cool <= 0:
            return  # the cap is here already (a run of one epoch): nothing left to cool down in
        self.schedule = replace(self.schedule, cooldown_start=done, cooldown=cool)
        self.cfg.epochs = done + cool
        what = {"plateau": "the validation curve plateaued", "epochs": "the epoch cap", "time": "the time budget"}
        self.log(f"epoch {done}: {what[why]}; the learning rate cools down over {cool} epochs, to epoch {done + cool}")

    def _patience_stop(self, epoch: int) -> bool:
        st, cfg = self.state, self.cfg
        last = epoch + 1 >= cfg.epochs
        stop = self.val is not None and not last and patience_stop(st.best_fitness, epoch - st.best_epoch, cfg.patience)
        if stop:
            self.log(f"early stop: no mAP50-95 gain for {cfg.patience} epochs (best epoch {st.best_epoch + 1})")
        return stop

    def _agree(self, stop: bool) -> bool:
        """Rank 0's decision to stop, and its schedule (the cooldown, the epochs), on every rank."""
        if self.ddp:
            sch = self.schedule
            start = -1 if sch.cooldown_start is None else sch.cooldown_start
            flag = torch.tensor([int(stop), start, sch.cooldown, self.cfg.epochs], device=self.device)
            dist.broadcast(flag, 0)
            stop, start, cool, self.cfg.epochs = (int(v) for v in flag.tolist())
            if start >= 0:
                self.schedule = replace(sch, cooldown_start=start, cooldown=cool)
        return bool(stop)

    def save(self, improved: bool, metrics: Metrics | None) -> None:
        """``last.pt`` after every epoch; ``best.pt`` when the epoch is the best so far."""
        save_last(self.out / LAST, self.meta, self.model, self.ema, self.optimizer, self.state, asdict(self.cfg))
        if improved:
            save_best(self.out / BEST, self.meta, self.ema, self.state.epoch, metrics.to_json() if metrics else None)

    def write_logs(self) -> None:
        """``metrics.csv``, ``results.png`` and ``train.json`` as of the latest epoch."""
        _write_metrics_csv(self.state.history, self.out / "metrics.csv")
        plot_training(self.state.history, self.out / "results.png")
        self.record = self.run_record()
        write_json_atomic(self.out / "train.json", self.record)

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
            **_cpu_summary(history),
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


def _write_metrics_csv(history: list[dict[str, Any]], path: Path) -> None:
    keys = [f.name for f in fields(EpochLog)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: h.get(k) for k in keys})


def _cpu_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU seconds of the run, and how much of the machine other processes took (wall-time-weighted mean
    over epochs, the worst epoch, and the epochs above :data:`CONTENDED_SHARE`)."""
    cpu = [h.get("cpu_seconds") for h in history]
    known = [(h["other_cpu_share"], h["seconds"], h["epoch"]) for h in history if h.get("other_cpu_share") is not None]
    wall = sum(w for _, w, _ in known)
    mean = sum(s * w for s, w, _ in known) / wall if wall > 0 else None
    return {
        "cpu_seconds": round(sum(c for c in cpu if c is not None), 3) if any(c is not None for c in cpu) else None,
        "other_cpu_share": None if mean is None else round(mean, 4),
        "other_cpu_share_max": max((s for s, _, _ in known), default=None),
        "contended": mean is not None and mean > CONTENDED_SHARE,
        "contended_epochs": [e for s, _, e in known if s > CONTENDED_SHARE],
    }
