"""The training device: ``auto`` picks CUDA when present and the CPU otherwise; asking for a GPU that is not there
fails at once with a clear message. The CUDA paths themselves need a GPU (``benchmarks/gpu_check.sh``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.data.tasks import make_task
from speedmap.train.checkpoint import TrainError, load_checkpoint
from speedmap.train.config import TrainConfig
from speedmap.train.device import amp_dtype, default_workers, resolve_device
from speedmap.train.trainer import train

runner = CliRunner()
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the no-GPU paths cannot run")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (run benchmarks/gpu_check.sh)")


@no_gpu
def test_auto_is_the_cpu_without_a_gpu_and_cuda_fails_clearly() -> None:
    assert resolve_device("auto") == "cpu"
    assert resolve_device("CPU") == "cpu"
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(TrainError, match=rf"--device {spec}: PyTorch sees no CUDA device.*--device cpu or auto"):
            resolve_device(spec)
    with pytest.raises(TrainError, match="choose auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    assert amp_dtype(torch.device("cpu")) is None


def test_workers_follow_the_device() -> None:
    assert default_workers("cuda") >= 1  # a GPU needs the CPU for data loading only
    assert default_workers("cpu") <= default_workers("cuda")


@no_gpu
@pytest.mark.parametrize("command", ["train", "pretrain", "compare"])
def test_cuda_without_a_gpu_fails_before_any_work(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"  # the device is checked before the data is even looked at
    args = {
        "train": ["train", str(missing), "--size", "fast"],
        "pretrain": ["pretrain", "--out", str(tmp_path / "pt"), "--size", "fast"],
        "compare": ["compare", str(missing), "--out", str(tmp_path / "study")],
    }[command]
    result = runner.invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == 2, result.output
    assert "PyTorch sees no CUDA device" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "pt").exists() and not (tmp_path / "study").exists()


@no_gpu
def test_auto_trains_on_the_cpu_as_today(tmp_path: Path) -> None:
    data = make_task("shapes", tmp_path / "shapes", images=24, imgsz=64, seed=3)
    base = dict(data=str(data), size="fast", epochs=1, imgsz=64, batch=8, seed=0, patience=0, workers=0)
    auto = train(TrainConfig(**base, out=str(tmp_path / "auto")), log=lambda m: None)
    cpu = train(TrainConfig(**base, out=str(tmp_path / "cpu"), device="cpu"), log=lambda m: None)
    assert auto["device"] == cpu["device"] == "cpu"
    saved = json.loads((tmp_path / "auto" / "train.json").read_text())
    assert saved["device"] == "cpu"
    a, c = load_checkpoint(tmp_path / "auto" / "last.pt"), load_checkpoint(tmp_path / "cpu" / "last.pt")
    for k, v in c["model"].items():  # same seed, same device: the same weights
        assert torch.equal(a["model"][k], v), k


@gpu
def test_gpu_training_uses_mixed_precision() -> None:
    dev = torch.device(resolve_device("auto"))
    assert dev.type == "cuda"
    assert amp_dtype(dev) in (torch.bfloat16, torch.float16)
