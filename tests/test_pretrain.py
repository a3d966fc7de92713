"""`speedmap pretrain`: generated scenes, training that survives an interruption and continues exactly,
provenance that reproduces it, and fine-tuning from its weights."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from speedmap.data import load_dataset
from speedmap.data.tasks import TASKS, make_task
from speedmap.train.checkpoint import TrainError
from speedmap.train.pretrain import PretrainConfig, pretrain
from speedmap.train.weights import packaged_weights, portable_command

TINY = dict(sizes=["fast"], images=40, imgsz=64, epochs=3, batch=8, workers=0)


def test_mixture_scenes_are_wider_than_the_tasks_and_not_one_of_them(tmp_path: Path) -> None:
    ds = load_dataset(make_task("mixture", tmp_path / "mix", images=60, imgsz=128))
    assert "mixture" not in TASKS  # never part of a study
    assert len(ds.classes) > max(len(t.classes) for t in TASKS.values())
    records = [r for s in ("train", "valid", "test") for r in ds.split(s).records]
    counts = [len(r.boxes) for r in records]
    sides = [float(max(b[2] - b[0], b[3] - b[1])) for r in records for b in r.boxes]
    assert max(counts) >= 15 and min(counts) <= 3  # sparse and dense scenes
    assert min(sides) < 8 and max(sides) > 50  # tiny and large objects
    assert len({int(c) for r in records for c in r.class_ids}) >= 12


class Interrupt(Exception):
    pass


def _stop_at(epoch: int):  # type: ignore[no-untyped-def]
    def progress(ev: dict[str, Any]) -> None:
        if ev.get("epoch") == epoch and ev.get("batch") == 1:
            raise Interrupt  # as a Ctrl-C in the middle of an epoch

    return progress


def test_an_interrupted_pretraining_continues_where_it_stopped_and_ends_as_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    whole = pretrain(PretrainConfig(out=str(tmp_path / "whole"), **TINY), log=lambda m: None)["fast"]
    cfg = PretrainConfig(out=str(tmp_path / "cut"), **TINY)
    with pytest.raises(Interrupt):
        pretrain(cfg, progress=_stop_at(2), log=lambda m: None)
    cut = tmp_path / "cut" / "fast"
    assert json.loads((cut / "train.json").read_text())["epochs_run"] == 2  # epochs 1-2 kept, 3 lost
    lines: list[str] = []
    resumed = pretrain(cfg, log=lines.append)["fast"]
    assert any("continuing" in m for m in lines)
    assert resumed["epochs_run"] == whole["epochs_run"] == 3
    hist_cut = [line.split(",")[1:4] for line in (cut / "metrics.csv").read_text().splitlines()[1:]]
    hist_whole = [line.split(",")[1:4] for line in (tmp_path / "whole/fast/metrics.csv").read_text().splitlines()[1:]]
    assert hist_cut == hist_whole  # the same losses epoch by epoch: the same run
    prov = json.loads((cut / "pretrain.json").read_text())
    assert prov["command"].startswith("speedmap pretrain ") and "--seed 0" in prov["command"]
    assert prov["config"] == {"images": 40, "imgsz": 64, "epochs": 3, "batch": 8, "seed": 0, "size": "fast"}
    assert prov["code"]["speedmap"] and len(prov["continued"]) == 1
    # a finished run is skipped; other settings in the same folder are refused, not mixed in
    again: list[str] = []
    pretrain(cfg, log=again.append)
    assert any("already pretrained" in m for m in again)
    with pytest.raises(TrainError, match="other settings"):
        pretrain(PretrainConfig(out=str(tmp_path / "cut"), **{**TINY, "epochs": 5}), log=lambda m: None)


def test_fine_tuning_from_pretrained_weights_records_where_it_started(tmp_path: Path) -> None:
    pretrain(PretrainConfig(out=str(tmp_path / "pre"), **{**TINY, "epochs": 1}), log=lambda m: None)
    data = make_task("fine", tmp_path / "fine", images=24, imgsz=64)  # 6 classes, not the scenes' 16
    env_run = tmp_path / "ft"
    cmd = [sys.executable, "-m", "speedmap", "train", str(data), "--epochs", "1", "--imgsz", "64", "--batch", "8"]
    cmd += ["--workers", "0", "--out", str(env_run), "--weights", str(tmp_path / "pre" / "fast" / "best.pt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "class head re-initialised" in proc.stderr
    rec = json.loads((env_run / "train.json").read_text())
    assert rec["weights"]["start"] == "checkpoint"
    assert rec["weights"]["pretrain"]["command"].startswith("speedmap pretrain ")
    scratch = json.loads((tmp_path / "pre" / "fast" / "train.json").read_text())["weights"]
    assert scratch == {"start": "scratch"}


def test_weights_that_do_not_exist_fail_clearly(tmp_path: Path) -> None:
    data = make_task("shapes", tmp_path / "shapes", images=12, imgsz=64)
    base = [sys.executable, "-m", "speedmap", "train", str(data), "--epochs", "1", "--imgsz", "64"]
    missing = subprocess.run([*base, "--weights", str(tmp_path / "nope.pt")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such checkpoint file" in missing.stderr
    assert str(tmp_path) not in missing.stderr  # the file's name, not its path
    assert missing.returncode == 2  # and nothing was trained


@pytest.mark.parametrize("size", ["fast", "accurate"])
def test_the_shipped_weights_load_and_fine_tune_by_default(size: str, tmp_path: Path) -> None:
    """The package ships both sizes' pretrained weights (fp16, with their provenance); `speedmap train` starts
    from them unless told --weights scratch, and one epoch of fine-tuning on another class set runs."""
    import torch

    from speedmap.train.checkpoint import load_checkpoint, model_from_checkpoint

    path = packaged_weights(size)
    assert path is not None and path.stat().st_size < 25e6
    ckpt = load_checkpoint(path)
    assert ckpt["size"] == size and ckpt["num_classes"] == 16
    assert {v.dtype for v in ckpt["model"].values() if v.is_floating_point()} == {torch.float16}
    pre = ckpt["pretrain"]
    assert pre["command"].startswith("speedmap pretrain ") and pre["code"]["git_commit"]
    assert pre["config"]["seed"] == 0 and pre["scenes"]["task"] == "mixture"
    meta = json.dumps({k: v for k, v in ckpt.items() if k != "model"}, default=str)
    assert not re.search(r'"(/|[A-Za-z]:\\\\)', meta), "the shipped provenance names a path of the machine that made it"
    shipped = model_from_checkpoint(ckpt).state_dict()
    data = make_task("shapes", tmp_path / "shapes", images=16, imgsz=64)
    run = tmp_path / "ft"
    cmd = [sys.executable, "-m", "speedmap", "train", str(data), "--size", size, "--epochs", "1", "--imgsz", "64"]
    proc = subprocess.run([*cmd, "--batch", "8", "--workers", "0", "--out", str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((run / "train.json").read_text())
    assert rec["weights"]["start"] == "pretrained" and rec["weights"]["pretrain"] == pre
    assert rec["epochs_run"] == 1 and (run / "best.pt").is_file()
    tuned = load_checkpoint(run / "last.pt")["model_train"]
    stem = next(k for k in shipped if k.startswith("backbone.") and k.endswith("conv.weight"))
    assert shipped[stem].dtype == torch.float32 and tuned[stem].shape == shipped[stem].shape
    assert 0 < (tuned[stem] - shipped[stem]).abs().max() < shipped[stem].abs().max()  # moved from the shipped


def test_the_packed_command_names_no_folder_of_the_machine_that_made_it() -> None:
    cmd = "speedmap pretrain --out /home/someone/runs/pt --size fast --images 6000 --seed 0"
    assert portable_command(cmd) == "speedmap pretrain --size fast --images 6000 --seed 0"
    assert portable_command("speedmap pretrain --out=/tmp/x --epochs 3") == "speedmap pretrain --epochs 3"


def test_the_packed_command_names_pool_folders_and_start_weights_by_name() -> None:
    cmd = "speedmap pretrain --out /x/pt --pool /data/pool/pets --pool /data/helmet/dataset --weights /x/a/best.pt"
    assert portable_command(cmd) == "speedmap pretrain --pool pets --pool helmet --weights best.pt"
    assert portable_command("speedmap pretrain --weights pretrained") == "speedmap pretrain --weights pretrained"


REAL = Path(__file__).parent / "data" / "real"


def test_pretraining_on_a_pool_of_real_datasets_continues_given_weights_and_records_the_chain(tmp_path: Path) -> None:
    """--pool merges labelled folders of any layout with the scenes (classes kept apart by source, images shrunk
    to the pool's size, a share held out to validate); --weights continues earlier weights, and pretrain.json
    records the sources by name and fingerprint and the start's own provenance, with no path."""
    from speedmap.data.pool import read_pool_record

    first = pretrain(PretrainConfig(out=str(tmp_path / "pre"), **{**TINY, "epochs": 1}), log=lambda m: None)
    assert first["fast"]["epochs_run"] == 1
    start = tmp_path / "pre" / "fast" / "best.pt"
    sources = [str(REAL / "raccoon"), str(REAL / "roadsign")]
    cfg = PretrainConfig(
        out=str(tmp_path / "pool"), **{**TINY, "epochs": 1}, pool=sources, weights=str(start), pool_images=10
    )
    rec = pretrain(cfg, log=lambda m: None)["fast"]
    assert rec["epochs_run"] == 1 and rec["weights"]["start"] == "checkpoint"
    pool = load_dataset(tmp_path / "pool" / "pool")
    real = [load_dataset(s) for s in sources]
    assert pool.classes[:16] == load_dataset(tmp_path / "pool" / "data").classes
    assert set(pool.classes[16:]) == {f"raccoon/{c}" for c in real[0].classes} | {
        f"roadsign/{c}" for c in real[1].classes
    }
    pooled = [r for _, r in pool.all_records()]
    assert [ds.num_images for ds in real] == [12, 6]  # raccoon sampled to --pool-images 10, all of roadsign
    assert len(pooled) == 10 + 6 + 28 + 6 + 6  # the real images, the scenes' train, valid and test
    assert len(pool.split_records("test")) == 6  # the scenes' own: training carves no real image away
    assert all(max(r.width, r.height) <= 64 for r in pooled)
    assert len(pool.split_records("valid")) > 6  # the scenes' valid and a share of the real images
    record = read_pool_record(tmp_path / "pool" / "pool")
    assert record is not None and [d["name"] for d in record["detail"]] == ["raccoon", "roadsign"]
    assert [d["fingerprint"] for d in record["detail"]] == [ds.fingerprint() for ds in real]
    prov = json.loads((tmp_path / "pool" / "fast" / "pretrain.json").read_text())
    assert prov["config"]["pool"] == ["raccoon", "roadsign"] and prov["config"]["weights"] == "best.pt"
    assert "--pool-images 10" in prov["command"] and [d["images"] for d in record["detail"]] == [10, 6]
    assert prov["pool"]["detail"] == record["detail"]
    first_command = json.loads((start.parent / "pretrain.json").read_text())["command"]
    assert prov["start"]["pretrain"]["command"] == portable_command(first_command)
    assert str(tmp_path) not in portable_command(prov["command"])
    # a pooled dataset whose contents changed under the same name is refused, not mixed into the run
    changed = tmp_path / "roadsign"
    shutil.copytree(REAL / "roadsign", changed)
    next(changed.rglob("*.xml")).unlink()
    with pytest.raises(TrainError, match="other contents of the pooled datasets"):
        pretrain(PretrainConfig(**{**cfg.__dict__, "pool": [sources[0], str(changed)]}), log=lambda m: None)
    assert read_pool_record(tmp_path / "pool" / "pool") == record  # the pool the run began on is kept
    assert str(tmp_path) not in json.dumps({k: v for k, v in prov.items() if k != "command"})


def test_a_pool_folder_that_does_not_exist_fails_before_any_work(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "speedmap", "pretrain", "--out", str(tmp_path / "pt"), "--size", "fast"]
    proc = subprocess.run([*cmd, "--pool", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--pool" in proc.stderr and "no such folder" in proc.stderr
    assert not (tmp_path / "pt").exists()  # no scene generated
