"""One optimizer step, shared by the training loop and the timing probe, and the optimizer it steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speedmap.models import Detector
from speedmap.train.checkpoint import TrainError
from speedmap.train.config import TrainConfig
from speedmap.train.device import amp_dtype
from speedmap.train.ema import ModelEMA
from speedmap.train.loss import DetectionLoss
from speedmap.train.schedule import (
    ADAMW_BETA2,
    MAX_GRAD_NORM,
    MOMENTUM,
    SGD_LR,
    WEIGHT_DECAY_BATCH,
    auto_adamw_lr,
    auto_optimizer,
)


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
