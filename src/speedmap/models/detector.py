"""The detector: backbone, neck and head, and the size registry (timm-style factory)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from speedmap.models.backbone import Backbone
from speedmap.models.blocks import ACTIVATIONS, Conv, RepConv, set_activation
from speedmap.models.head import STRIDES, Head
from speedmap.models.neck import PAN


@dataclass(frozen=True)
class SizeSpec:
    """Depth and width multipliers over the base (stage depths 3-6-6-3, channels 64..1024)."""

    depth: float
    width: float
    max_channels: int = 1024
    block: str = "csp"  # backbone and neck blocks: "csp" or "rep" (RepVGG, fused into plain convs at export)
    act: str = "silu"  # one of blocks.ACTIVATIONS: silu, relu, relu6, lrelu (LeakyReLU 0.1), hardswish
    deep_act: str | None = None  # the activation of layers with output at stride 16 and 32 (None: act)
    early_act: str | None = None  # the activation of the stem and stage 2, at stride 2 and 4 (None: act)
    cls_act: str | None = None  # the activation of the head's class branch, every level (None: as set above)
    reg_max: int = 16  # bins of each box side's distribution (DFL); the reach is reg_max - 1 cells
    box: str = "dense"  # the head's box branch: "dense" or "separable"
    int8_float: tuple[str, ...] = ()  # modules (paths such as "backbone.stage2") that `export --int8` keeps in float
    levels: int = 3  # detection levels: 3 (strides 8, 16, 32) or 2 (8, 16: no stride-32 stage, SPPF on stage 4)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("block", self.block, ("csp", "rep")),
            ("act", self.act, tuple(ACTIVATIONS)),
            ("deep_act", self.deep_act or self.act, tuple(ACTIVATIONS)),
            ("early_act", self.early_act or self.act, tuple(ACTIVATIONS)),
            ("cls_act", self.cls_act or self.act, tuple(ACTIVATIONS)),
            ("box", self.box, ("dense", "separable")),
        ):
            if value not in allowed:
                raise ValueError(f"SizeSpec {name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.reg_max < 2:
            raise ValueError(f"SizeSpec reg_max must be at least 2, got {self.reg_max}")
        if self.levels not in (2, 3):
            raise ValueError(f"SizeSpec levels must be 2 or 3, got {self.levels}")

    def channels(self) -> tuple[int, int, int, int, int]:
        return tuple(  # type: ignore[return-value]
            _round8(min(c, self.max_channels) * self.width) for c in (64, 128, 256, 512, 1024)
        )

    def depths(self) -> tuple[int, int, int, int]:
        return tuple(max(round(n * self.depth), 1) for n in (3, 6, 6, 3))  # type: ignore[return-value]


def _round8(x: float) -> int:
    return int(math.ceil(x / 8) * 8)


SIZES: dict[str, SizeSpec] = {}


def register_size(name: str, spec: SizeSpec) -> None:
    SIZES[name] = spec


register_size("fast", SizeSpec(depth=0.33, width=0.25))
# int8 rounding of stage 2 (stride 4, where small objects' detail is) cost `accurate` most of its int8 loss;
# kept in float it costs 7-14% of the int8 latency (BENCHMARKS.md, issue 17, fourth pass)
register_size("accurate", SizeSpec(depth=0.33, width=0.50, int8_float=("backbone.stage2",)))


class Detector(nn.Module):
    """Anchor-free single-stage detector. In training mode ``forward`` returns the raw head output
    and grid shapes (for the loss); in eval mode, decoded ``(B, N, 4 + nc)`` boxes and scores."""

    def __init__(self, size: str, num_classes: int, spec: SizeSpec | None = None) -> None:
        super().__init__()
        if spec is None:  # the registered architecture; a checkpoint passes the one it was trained with
            if size not in SIZES:
                raise ValueError(f"unknown model size {size!r}; known sizes: {', '.join(SIZES)}")
            spec = SIZES[size]
        self.size, self.num_classes, self.reg_max, self.size_spec = size, num_classes, spec.reg_max, spec
        ch, depth = spec.channels(), spec.depths()
        self.strides = STRIDES[: spec.levels]
        self.backbone = Backbone(ch, depth, spec.block, spec.levels)
        self.neck = PAN(ch[2 : 2 + spec.levels], depth[-1], spec.block)
        self.head = Head(num_classes, ch[2 : 2 + spec.levels], spec.reg_max, spec.box, self.strides)
        self.head.init_bias()
        _set_activations(self, spec)
        for path in spec.int8_float:
            try:
                self.get_submodule(path)
            except AttributeError as exc:
                raise ValueError(f"size {size!r}: int8_float names {path!r}, not a module of the model") from exc

    def fuse(self) -> Detector:
        """For export: BatchNorms folded into their convolutions and RepConv branches into one conv."""
        modules = list(self.modules())
        for m in modules:  # RepConvs first: they fold their branches' BatchNorms themselves
            if isinstance(m, RepConv):
                m.fuse()
        for m in modules:
            if isinstance(m, Conv):
                m.fuse()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[tuple[int, int]]]:
        raw, shapes = self.head(self.neck(self.backbone(x)))
        return (raw, shapes) if self.training else self.head.decode(raw, shapes)

    def reset_classes(self, num_classes: int) -> None:
        """A new class branch output layer (transfer to a dataset with other classes)."""
        ch = self.size_spec.channels()[2 : 2 + len(self.strides)]  # the neck's outputs, the head's inputs
        new = Head(num_classes, ch, self.reg_max, self.size_spec.box, self.strides)
        _set_activations(new, self.size_spec, head_only=True)
        new.init_bias()
        new.box.load_state_dict(self.head.box.state_dict())  # the box branch does not depend on classes
        for old_seq, new_seq in zip(self.head.cls, new.cls, strict=True):  # keep all but the output layer
            for a, b in zip(list(old_seq)[:-1], list(new_seq)[:-1], strict=True):
                if all(
                    x.shape == y.shape for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
                ):
                    b.load_state_dict(a.state_dict())
        self.head, self.num_classes = new, num_classes

    def spec(self) -> dict[str, object]:
        return {"size": self.size, "num_classes": self.num_classes, "reg_max": self.reg_max, **asdict(self.size_spec)}


def _set_activations(model: Detector | Head, spec: SizeSpec, head_only: bool = False) -> None:
    """``spec.act`` everywhere, then ``spec.deep_act`` in the layers whose output is at stride 16 or 32 and
    ``spec.early_act`` in those at stride 2 and 4 (the backbone's stem and second stage), and ``spec.cls_act``
    in the head's class branch."""
    set_activation(model, spec.act)
    if spec.early_act is not None and not head_only:
        for m in (model.backbone.stem, model.backbone.stage2):  # type: ignore[union-attr]
            set_activation(m, spec.early_act)
    head = model if head_only else model.head
    if spec.deep_act is not None:
        deep: list[nn.Module] = [*head.box[1:], *head.cls[1:]]  # type: ignore[index]
        if not head_only:
            b, n = model.backbone, model.neck  # type: ignore[union-attr]
            names = ("stage4", "stage5", "td4", "down3", "bu4", "down4", "bu5")  # a 2-level model has no stage5 ...
            deep += [getattr(m, k) for m in (b, n) for k in names if hasattr(m, k)]
        for m in deep:
            set_activation(m, spec.deep_act)
    if spec.cls_act is not None:
        set_activation(head.cls, spec.cls_act)  # type: ignore[arg-type]


def create_model(size: str, num_classes: int, spec: SizeSpec | None = None) -> Detector:
    """The factory: ``create_model("fast", 3)``; ``spec`` overrides the registered architecture."""
    return Detector(size, num_classes, spec)


def spec_from_record(record: dict[str, object]) -> SizeSpec:
    """The ``SizeSpec`` that ``Detector.spec()`` recorded. Raises ``ValueError`` for an option this version
    does not know (a model from a newer speedmap); an option it lacks (an older one) takes its default."""
    known = {f.name for f in fields(SizeSpec)}
    unknown = sorted(set(record) - known - {"size", "num_classes"})
    if unknown:
        raise ValueError(f"the model uses architecture options this speedmap does not know: {', '.join(unknown)}")
    values = {k: v for k, v in record.items() if k in known}
    if "int8_float" in values:
        values["int8_float"] = tuple(values["int8_float"])  # type: ignore[arg-type]
    return SizeSpec(**values)  # type: ignore[arg-type]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, imgsz: int) -> int:
    """Floating-point operations (2 x multiply-adds) of one forward pass at ``imgsz`` x ``imgsz``,
    counted over the convolutions (the family has no linear layers) with forward hooks."""
    total = 0

    def conv_hook(m: nn.Conv2d, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += 2 * k * out.numel() // out.shape[0]

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
