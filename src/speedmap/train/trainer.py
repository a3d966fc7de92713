"""The training loop: one function, :func:`train`, driven by a :class:`TrainConfig`.

Single process on CPU or CUDA, or several under ``torchrun`` (DistributedDataParallel: gloo on CPU,
NCCL on GPUs; only rank 0 validates and writes). Checkpoints are written atomically after every
epoch, so ``resume`` loses at most the epoch in progress.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from speedmap import __version__
from speedmap.data import Dataset, load_dataset
from speedmap.data.tasks.make import TASK_FILE
from speedmap.detections import Detections
from speedmap.errors import SpeedmapError
from speedmap.eval import Metrics, evaluate_predictions
from speedmap.models import Detector, count_flops, count_params, create_model
from speedmap.postprocess import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET, postprocess
from speedmap.preprocess import to_input
from speedmap.train.convergence import convergence, patience_stop, time_to_fraction
from speedmap.train.cpustat import CONTENDED_SHARE, CpuMeter
from speedmap.train.data import TrainData, ValData, collate
from speedmap.train.ema import ModelEMA
from speedmap.train.loss import DetectionLoss
from speedmap.train.plots import plot_training


class TrainError(SpeedmapError):
    pass


@dataclass
class TrainConfig:
    data: str
    size: str = "fast"
    epochs: int = 50
    imgsz: int | None = None  # 256 for built-in tasks, 640 for other data
    batch: int = 16
    weights: str | None = None
    out: str | None = None
    device: str = "cpu"
    workers: int | None = None
    seed: int = 0
    patience: int = 50  # stop after this many epochs without a gain in validation mAP50-95 (0: never)
    resume: bool = False
    close_mosaic: int = 10
    optimizer: str = "auto"  # auto | sgd | adamw
    lr0: float | None = None
    lrf: float = 0.01
    cos_lr: bool = False
    warmup_epochs: float = 3.0
    weight_decay: float = 5e-4
    val: bool = True


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
    extra: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[dict[str, Any]], None]


def default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus // 2)


def _rank() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside ``path``, flush to disk, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise TrainError(f"{path} is not a readable speedmap checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "size" not in ckpt:
        raise TrainError(f"{path} is not a speedmap checkpoint (no model weights and size)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> Detector:
    model = create_model(ckpt["size"], ckpt["num_classes"])
    model.load_state_dict(ckpt["model"])
    return model


def _default_out(data: Path, size: str) -> Path:
    base = Path("runs") / "train" / f"{data.resolve().name}-{size}"
    out, k = base, 2
    while out.exists():
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
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
    name = cfg.optimizer
    if name == "auto":
        name = "sgd" if iterations > 10_000 else "adamw"
    wd = cfg.weight_decay * cfg.batch / 64
    groups = _param_groups(model, wd)
    if name == "sgd":
        lr = cfg.lr0 or 0.01
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.937, nesterov=True)
    elif name == "adamw":
        lr = cfg.lr0 or round(0.002 * 5 / (4 + nc), 6)
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.937, 0.999))
    else:
        raise TrainError(f"unknown optimizer {cfg.optimizer!r}; choose auto, sgd or adamw")
    for g in opt.param_groups:
        g["initial_lr"] = lr
    return opt


def lr_factor(epoch_progress: float, cfg: TrainConfig) -> float:
    """Decay from 1 to ``lrf`` over the run, cosine or linear (``epoch_progress`` in epochs)."""
    x = min(epoch_progress / max(cfg.epochs, 1), 1.0)
    if cfg.cos_lr:
        return ((1 - math.cos(x * math.pi)) / 2) * (cfg.lrf - 1) + 1
    return (1 - x) * (1.0 - cfg.lrf) + cfg.lrf


@torch.no_grad()
def predict_split(
    model: nn.Module,
    val: ValData,
    device: torch.device,
    batch: int = 32,
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


def validate(model: nn.Module, val: ValData, device: torch.device) -> Metrics:
    return evaluate_predictions(val.split, predict_split(model, val, device)).metrics


def evaluate_checkpoint(path: str | Path, data: str | Path, split: str = "test") -> Metrics:
    """COCO metrics of a checkpoint on one split of a dataset, at the checkpoint's input size."""
    ckpt = load_checkpoint(path)
    view = load_dataset(data).split(split)
    return validate(model_from_checkpoint(ckpt), ValData(view, ckpt["imgsz"]), torch.device("cpu"))


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
        self.cuda = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Train on one batch (uint8 images, collated targets); returns the detached loss parts."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
            raw, shapes = self.net(x)
        loss, parts = self.criterion(raw, shapes, targets.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.world).backward()  # DDP averages gradients; keep the per-image scale
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        return parts.detach()


def _resolve_imgsz(cfg: TrainConfig, ds: Dataset) -> int:
    imgsz = cfg.imgsz or (256 if (ds.root / TASK_FILE).is_file() else 640)
    if imgsz % 32 or not 32 <= imgsz <= 4096:
        raise TrainError(f"--imgsz must be a multiple of 32 between 32 and 4096, got {imgsz}")
    return imgsz


def train(cfg: TrainConfig, progress: Progress | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a detector; returns the run record written to ``train.json``."""
    rank, world, local_rank = _rank()
    main = rank == 0
    ddp = world > 1
    cuda = cfg.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise TrainError("--device cuda asked for, but PyTorch sees no CUDA device")
    if ddp and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cuda and ddp else cfg.device)
    if cuda:
        torch.cuda.set_device(device)

    out = Path(cfg.out) if cfg.out else None
    resume_ckpt = None
    if cfg.resume:
        if out is None:
            raise TrainError("--resume needs --out RUN, the run folder to continue")
        resume_ckpt = load_checkpoint(out / "last.pt")
        saved = resume_ckpt["config"]
        cfg = TrainConfig(**{**saved, "resume": True, "out": str(out), "device": cfg.device, "workers": cfg.workers})

    ds = load_dataset(cfg.data)
    if ds.problems and main:
        log(f"{len(ds.problems)} dataset problem(s) skipped or fixed (see `speedmap datasets validate {cfg.data}`):")
        for line in ds.problems.summary_lines():
            log(line)
    train_split = ds.split("train")
    if len(train_split) == 0:
        raise TrainError(f"{cfg.data}: no usable training images (the train split is empty after validation)")
    val_split = next((ds.split(s) for s in ("valid", "test") if ds.split_records(s)), None)
    if main and val_split is not None and val_split.name == "test":
        log("no valid split: validating on the test split (its mAP then also picks best.pt)")
    imgsz = _resolve_imgsz(cfg, ds)
    nc = len(ds.classes)
    if cfg.batch < world:
        raise TrainError(f"--batch {cfg.batch} is smaller than the number of processes ({world})")

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    model = create_model(cfg.size, nc)
    model.head.init_bias(imgsz)
    if cfg.weights and not resume_ckpt:
        src = load_checkpoint(cfg.weights)
        if src["size"] != cfg.size:
            raise TrainError(f"--weights {cfg.weights} is a {src['size']!r} model, but --size is {cfg.size!r}")
        model = model_from_checkpoint(src)
        if src["num_classes"] != nc or list(src.get("classes", [])) != ds.classes:
            model.reset_classes(nc)
            model.head.init_bias(imgsz)
            if main:
                log(f"transfer: {src['num_classes']} -> {nc} classes, class head re-initialised")
    if resume_ckpt:
        model.load_state_dict(resume_ckpt["model_train"])
    model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)

    per_rank_batch = cfg.batch // world
    n_train = len(train_split)
    batches_per_epoch = math.ceil(n_train / world / per_rank_batch)
    optimizer = build_optimizer(model, cfg, cfg.epochs * batches_per_epoch, nc)
    ema = ModelEMA(model)
    start_epoch, best_fit, best_epoch = 0, -1.0, -1
    history: list[dict[str, Any]] = []
    epoch_seconds: list[float] = []
    if resume_ckpt:
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        ema.ema.load_state_dict(resume_ckpt["model"])
        ema.updates = resume_ckpt["ema_updates"]
        start_epoch = resume_ckpt["epoch"] + 1
        best_fit, best_epoch = resume_ckpt["best_fitness"], resume_ckpt["best_epoch"]
        history, epoch_seconds = resume_ckpt["history"], resume_ckpt["epoch_seconds"]
        maps = [h.get("map") for h in history]
        if maps and None not in maps:  # older checkpoints kept a mAP50/mAP50-95 mix
            best_fit = max(max(m, 0.0) for m in maps)
            best_epoch = next(i for i, m in enumerate(maps) if max(m, 0.0) == best_fit)
        if start_epoch >= cfg.epochs:
            raise TrainError(f"{out} already finished all {cfg.epochs} epochs; nothing to resume")
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if ddp else model
    step = Step(net, model, DetectionLoss(model), optimizer, ema, device, world)

    if out is None:
        out = _default_out(Path(cfg.data), cfg.size)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "args.yaml").write_text(
            yaml.safe_dump({**asdict(cfg), "imgsz": imgsz, "out": str(out)}, sort_keys=False), encoding="utf-8"
        )
    data = TrainData(train_split, imgsz, cfg.seed)
    val = ValData(val_split, imgsz) if (val_split is not None and cfg.val and main) else None
    workers = default_workers() if cfg.workers is None else cfg.workers
    warmup_iters = max(round(cfg.warmup_epochs * batches_per_epoch), 100) if cfg.warmup_epochs > 0 else 0
    flops = count_flops(model, imgsz)
    params = count_params(model)
    record: dict[str, Any] = {}
    if main:
        log(
            f"training {cfg.size} ({params / 1e6:.2f} M params, {flops / 1e9:.2f} GFLOPs at {imgsz}px) on "
            f"{n_train} images, {nc} classes, {cfg.epochs} epochs, batch {cfg.batch}, device {device}"
            f"{f', {world} processes' if ddp else ''}; run folder {out}"
        )

    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        mosaic_on = epoch < cfg.epochs - cfg.close_mosaic
        data.set_epoch(epoch, mosaic_on)
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(n_train, generator=gen).tolist()
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=per_rank_batch,
            sampler=order[rank::world],
            collate_fn=collate,
            num_workers=workers,
            drop_last=False,
        )
        net.train()
        sums = torch.zeros(3)
        seen = 0
        meter = CpuMeter(children=workers > 0)
        for i, (images, targets) in enumerate(loader):
            it = i + batches_per_epoch * epoch
            if it < warmup_iters:
                frac = it / warmup_iters
                for j, g in enumerate(optimizer.param_groups):
                    start = 0.1 if j == 2 else 0.0  # biases warm down from 0.1
                    g["lr"] = start + (g["initial_lr"] * lr_factor(epoch, cfg) - start) * frac
                    if "momentum" in g:
                        g["momentum"] = 0.8 + (0.937 - 0.8) * frac
            else:
                for g in optimizer.param_groups:
                    g["lr"] = g["initial_lr"] * lr_factor(epoch + i / batches_per_epoch, cfg)
            sums += step(images, targets).cpu()
            seen += len(images)
            if progress is not None and main:
                elapsed = meter.elapsed()
                mean = (sums / (i + 1)).tolist()
                ips = seen * world / max(elapsed, 1e-9)
                progress(
                    {
                        "epoch": epoch,
                        "epochs": cfg.epochs,
                        "batch": i + 1,
                        "batches": len(loader),
                        "box": mean[0],
                        "cls": mean[1],
                        "dfl": mean[2],
                        "ips": ips,
                    }
                )
        cpu = meter.stop()
        seconds = cpu.wall_s
        epoch_seconds.append(seconds)
        mean = (sums / max(len(loader), 1)).tolist()
        metrics = validate(ema.ema, val, device) if val is not None else None
        if main:
            fit = _score(metrics) if metrics is not None else float(epoch)
            improved = fit > best_fit
            if improved:
                best_fit, best_epoch = fit, epoch
            entry = EpochLog(
                epoch + 1,
                *mean,
                optimizer.param_groups[0]["lr"],
                seconds,
                n_train / seconds,
                metrics.map50 if metrics else None,
                metrics.map if metrics else None,
                round(cpu.cpu_s, 3),
                _round(cpu.other_share, 4),
            )
            history.append({k: v for k, v in asdict(entry).items() if k != "extra"})
            meta = {
                "size": cfg.size,
                "num_classes": nc,
                "classes": ds.classes,
                "imgsz": imgsz,
                "spec": model.spec(),
                "dataset": ds.fingerprint(),
                "speedmap": __version__,
            }
            ckpt = {
                **meta,
                "model": ema.ema.state_dict(),
                "model_train": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema_updates": ema.updates,
                "epoch": epoch,
                "best_fitness": best_fit,
                "best_epoch": best_epoch,
                "history": history,
                "epoch_seconds": epoch_seconds,
                "config": asdict(cfg),
            }
            save_atomic(ckpt, out / "last.pt")
            if improved:
                save_atomic(
                    {
                        **meta,
                        "model": ema.ema.state_dict(),
                        "epoch": epoch,
                        "metrics": metrics.to_json() if metrics else None,
                    },
                    out / "best.pt",
                )
            _write_metrics_csv(history, out / "metrics.csv")
            plot_training(history, out / "results.png")
            record = _record(cfg, ds, out, imgsz, params, flops, history, epoch_seconds, best_epoch, world, device)
            (out / "train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            if progress is not None:
                progress({"epoch_done": entry, "best": improved})
            last = epoch + 1 >= cfg.epochs
            stop = val is not None and not last and patience_stop(best_fit, epoch - best_epoch, cfg.patience)
            if stop:
                log(f"early stop: no mAP50-95 gain for {cfg.patience} epochs (best epoch {best_epoch + 1})")
        if ddp:
            flag = torch.tensor([int(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            break
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return record


def _write_metrics_csv(history: list[dict[str, Any]], path: Path) -> None:
    keys = [f.name for f in fields(EpochLog) if f.name != "extra"]
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


def _record(
    cfg: TrainConfig,
    ds: Dataset,
    out: Path,
    imgsz: int,
    params: int,
    flops: int,
    history: list[dict[str, Any]],
    epoch_seconds: list[float],
    best_epoch: int,
    world: int,
    device: torch.device,
) -> dict[str, Any]:
    best = next((h for h in history if h["epoch"] == best_epoch + 1), history[-1])
    n_train = len(ds.split_records("train"))
    total = float(sum(epoch_seconds))
    converged, conv = convergence(history, cfg.patience, cfg.epochs)
    t95 = time_to_fraction(history)
    return {
        "size": cfg.size,
        "params": params,
        "flops": flops,
        "imgsz": imgsz,
        "epochs": len(epoch_seconds),
        "epochs_planned": cfg.epochs,
        "batch": cfg.batch,
        "epoch_seconds": [round(s, 3) for s in epoch_seconds],
        "total_seconds": round(total, 3),
        "train_images_per_second": round(n_train * len(epoch_seconds) / total, 3) if total else None,
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
            "fingerprint": ds.fingerprint(),
            "classes": ds.classes,
            "train_images": n_train,
            "valid_images": len(ds.split_records("valid")),
        },
        "device": str(device),
        "processes": world,
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
        "speedmap": __version__,
        "run": str(out),
    }
