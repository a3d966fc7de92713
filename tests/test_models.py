"""The family's options: activation, DFL bins, separable box branch, RepVGG blocks fused at export."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from speedmap.models import SIZES, SizeSpec, create_model, register_size  # noqa: E402
from speedmap.models.blocks import CSPBlock, RepConv  # noqa: E402

SPECS = {
    "t-rep": SizeSpec(0.33, 0.25, block="rep", act="relu", reg_max=8, box="separable"),
    "t-hswish": SizeSpec(0.33, 0.25, act="hardswish", reg_max=8),
    "t-lrelu": SizeSpec(0.33, 0.25, act="lrelu"),
    "t-relu6": SizeSpec(0.33, 0.25, act="relu6"),
    "t-p4": SizeSpec(0.33, 0.25, levels=2),
    "t-rep-p4": SizeSpec(0.33, 0.25, block="rep", act="relu", levels=2),
}


@pytest.fixture(autouse=True)
def _registered() -> None:
    for name, spec in SPECS.items():
        register_size(name, spec)
    yield
    for name in SPECS:
        SIZES.pop(name, None)


def _random_bn(model: nn.Module) -> nn.Module:
    """BatchNorm statistics far from the identity, so that folding them is really tested."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def test_repconv_fuses_three_branches_into_one_conv_with_the_same_output() -> None:
    block = _random_bn(RepConv(8, 8)).eval()
    x = torch.rand(2, 8, 10, 10)
    with torch.no_grad():
        before = block(x)
        block.fuse()
        after = block(x)
    assert isinstance(block.fused, nn.Conv2d) and block.fused.kernel_size == (3, 3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_a_strided_repconv_has_no_identity_branch() -> None:
    assert RepConv(8, 8, s=2).id is None and RepConv(8, 16).id is None and RepConv(8, 8).id is not None


@pytest.mark.parametrize("size", ["fast", "t-rep", "t-hswish", "t-p4", "t-rep-p4"])
def test_fused_detector_equals_the_trained_one_and_holds_no_batchnorm(size: str) -> None:
    model = _random_bn(create_model(size, 3)).eval()
    x = torch.rand(1, 3, 64, 64)
    fused = copy.deepcopy(model).fuse()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=2e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


def test_options_reach_the_layers() -> None:
    rep = create_model("t-rep", 3)
    assert rep.reg_max == 8 and rep.head.box[0][-1].out_channels == 4 * 8
    assert not any(isinstance(m, nn.SiLU) for m in rep.modules())
    assert any(isinstance(m, nn.ReLU) for m in rep.modules())
    assert any(isinstance(m, RepConv) for m in rep.backbone.modules())
    assert any(isinstance(m, nn.Hardswish) for m in create_model("t-hswish", 3).modules())
    leaky = [m for m in create_model("t-lrelu", 3).modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.1 for m in leaky)
    assert any(isinstance(m, nn.ReLU6) for m in create_model("t-relu6", 3).modules())
    fast = create_model("fast", 3)  # today's sizes keep their defaults
    assert fast.reg_max == 16 and any(isinstance(m, nn.SiLU) for m in fast.modules())
    assert not any(isinstance(m, RepConv) for m in fast.modules())


def test_a_two_level_model_predicts_at_strides_8_and_16_and_trains() -> None:
    from speedmap.train.loss import DetectionLoss

    model = create_model("t-p4", 3)
    assert model.strides == (8, 16) and not hasattr(model.backbone, "stage5") and not hasattr(model.neck, "bu5")
    raw, shapes = model.train()(torch.rand(2, 3, 64, 64))
    assert shapes == [(8, 8), (4, 4)] and raw.shape == (2, 8 * 8 + 4 * 4, 4 * 16 + 3)
    targets = torch.tensor([[0, 1, 8.0, 8.0, 40.0, 30.0], [1, 0, 30.0, 20.0, 60.0, 62.0]])
    loss, _ = DetectionLoss(model)(raw, shapes, targets)
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.stage4[-1].cv1.conv.weight.grad is not None  # SPPF ends stage 4
    out = model.eval()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 80, 4 + 3)
    model.reset_classes(5)
    assert model.head.strides == (8, 16) and model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 80, 4 + 5)


def test_three_level_models_keep_their_checkpoints_parameter_names() -> None:
    """Checkpoints trained before 2-level models load unchanged: the last stage ends in SPPF at the same index."""
    csp = create_model("fast", 3).state_dict()
    rep = create_model("t-rep", 3).state_dict()
    assert "backbone.stage5.2.cv1.conv.weight" in csp and "neck.bu5.cv1.conv.weight" in csp
    assert "backbone.stage5.1.cv1.conv.weight" in rep and "backbone.stage5.0.0.c3.conv.weight" in rep


def test_a_new_class_head_keeps_the_sizes_activation() -> None:
    model = create_model("t-rep", 3)
    model.reset_classes(5)
    assert model.num_classes == 5
    assert not any(isinstance(m, nn.SiLU) for m in model.head.modules())


def test_a_rep_model_trains_in_channels_last_on_cpu() -> None:
    """The trainer's CPU layout: a RepConv stem (1x1 stride-2 branch on 3 channels) made torch's backward
    corrupt the heap and abort the process, so this runs in a child process and checks that it lives."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from speedmap.models import SizeSpec, create_model, register_size\n"
        "register_size('x', SizeSpec(0.17, 0.1875, block='rep', act='relu', reg_max=8, box='separable'))\n"
        "m = create_model('x', 2).train().to(memory_format=torch.channels_last)\n"
        "for _ in range(2):\n"
        "    x = torch.rand(4, 3, 128, 128).contiguous(memory_format=torch.channels_last)\n"
        "    raw, _ = m(x)\n"
        "    raw.float().square().mean().backward()\n"
        "print('alive')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "alive" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"act": "gelu"}, "act must be one of silu, relu, relu6, lrelu, hardswish"),
        ({"block": "vit"}, "block"),
        ({"reg_max": 1}, "2"),
        ({"levels": 4}, "levels must be 2 or 3"),
    ],
)
def test_a_size_spec_refuses_unknown_options(kw: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        SizeSpec(0.33, 0.25, **kw)


def test_the_exported_decode_has_no_matrix_vector_product(tmp_path: Path) -> None:
    """The expected DFL bin is a multiply-and-sum: as a MatMul with the bins vector, ONNX Runtime spent
    0.5 ms on it, 12% of a ReLU Fast in int8. The decoded boxes are unchanged (parity tests)."""
    onnx = pytest.importorskip("onnx")
    from speedmap.export.onnx import trace_to_onnx

    model = create_model("fast", 3).eval().fuse()
    model.head.fix_anchors(64)
    trace_to_onnx(model, torch.zeros(1, 3, 64, 64), tmp_path / "m.onnx", dynamic=False)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "MatMul" not in ops and {"Softmax", "ReduceSum"} <= ops


def test_the_csp_split_exports_without_shape_arithmetic(tmp_path: Path) -> None:
    """The CSP blocks split with static sizes: one Split node each. ``chunk`` exported as Shape, Gather,
    Div and two Slices, which int8 ONNX Runtime ran in float between Q/DQ pairs and transposes
    (fast-relu int8 4.47 -> 3.91 ms, BENCHMARKS.md issue 17)."""
    onnx = pytest.importorskip("onnx")
    from speedmap.export.onnx import trace_to_onnx

    model = create_model("fast", 3).eval().fuse()
    trace_to_onnx(model, torch.zeros(1, 3, 64, 64), tmp_path / "m.onnx", dynamic=True)
    nodes = onnx.load(str(tmp_path / "m.onnx")).graph.node
    body = [n for n in nodes if n.name.startswith(("/backbone/", "/neck/"))]
    csp_blocks = sum(isinstance(m, CSPBlock) for m in model.modules())
    assert sum(n.op_type == "Split" for n in body) == csp_blocks
    assert not [n.name for n in body if n.op_type in ("Shape", "Gather", "Slice")]


def test_deep_act_changes_only_the_stride_16_and_32_layers() -> None:
    register_size("test-hybrid", SizeSpec(0.33, 0.25, act="relu", deep_act="silu"))
    try:
        model = create_model("test-hybrid", 3)
        kinds = {name: type(m) for name, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.SiLU))}
        deep = ("backbone.stage4", "backbone.stage5", "neck.td4", "neck.down3", "neck.bu4", "neck.down4", "neck.bu5")
        deep += ("head.box.1", "head.box.2", "head.cls.1", "head.cls.2")
        assert kinds and all((k is nn.SiLU) == name.startswith(deep) for name, k in kinds.items()), kinds
        model.reset_classes(5)  # a new head keeps the split
        assert isinstance(model.head.cls[0][0][0].act, nn.ReLU) and isinstance(model.head.cls[2][0][0].act, nn.SiLU)
    finally:
        SIZES.pop("test-hybrid")


def test_early_act_changes_only_the_stem_and_stage_2() -> None:
    register_size("test-early", SizeSpec(0.33, 0.25, early_act="relu"))
    try:
        model = create_model("test-early", 3)
        kinds = {name: type(m) for name, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.SiLU))}
        early = ("backbone.stem", "backbone.stage2")
        assert kinds and all((k is nn.ReLU) == name.startswith(early) for name, k in kinds.items()), kinds
    finally:
        SIZES.pop("test-early")


def test_int8_float_must_name_modules_of_the_model() -> None:
    assert SIZES["accurate"].int8_float == ("backbone.stage2",) and SIZES["fast"].int8_float == ()
    register_size("test-int8-float", SizeSpec(0.33, 0.25, int8_float=("backbone.stage9",)))
    try:
        with pytest.raises(ValueError, match=r"'backbone\.stage9', not a module of the model"):
            create_model("test-int8-float", 3)
    finally:
        SIZES.pop("test-int8-float")


def test_a_checkpoint_loads_in_the_architecture_it_recorded_after_its_size_changes(tmp_path: Path) -> None:
    """Rebuilt from the registry, an old run would load into today's architecture of its size (or fail
    on parameter names): checkpoints record their SizeSpec, and loading builds that one."""
    from speedmap.train.checkpoint import TrainError, model_from_checkpoint, model_meta

    register_size("t-moving", SizeSpec(0.33, 0.25, act="relu", int8_float=("backbone.stage2",)))
    try:
        model = create_model("t-moving", 3).eval()
        torch.save({**model_meta(model, ["a", "b", "c"], 64, "x"), "model": model.state_dict()}, tmp_path / "m.pt")
        ckpt = torch.load(tmp_path / "m.pt", weights_only=False)
        register_size("t-moving", SizeSpec(0.33, 0.25, levels=2))  # the registered size changes afterwards
        loaded = model_from_checkpoint(ckpt).eval()
        assert loaded.strides == (8, 16, 32) and loaded.size_spec.int8_float == ("backbone.stage2",)
        assert not any(isinstance(m, nn.SiLU) for m in loaded.modules())
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))
        del ckpt["spec"]["levels"]  # recorded by an older speedmap: the option takes its default
        assert model_from_checkpoint(ckpt).strides == (8, 16, 32)
        ckpt["spec"]["attention"] = "global"  # recorded by a newer one
        with pytest.raises(TrainError, match=r"'t-moving' model cannot be built.*attention"):
            model_from_checkpoint(ckpt)
    finally:
        SIZES.pop("t-moving", None)
