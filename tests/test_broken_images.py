"""An image that decodes partially never stops a study (issue 33, section 5).

A dataset with a JPEG truncated by 20 bytes (train), a zero-byte file (valid) and a PNG with a bad CRC (test):
the zero-byte file is skipped when the dataset is read (no header), the other two when their pixels are
decoded, which reading the headers cannot tell. `train`, `compare` (its training-speed probe included),
`export --int8` and `eval` each skip them, name them, count them in their results and go on; every split
holds the same records whichever command reads it.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from speedmap.cli import app
from speedmap.data import load_dataset, verify
from speedmap.data.problems import Action, Kind
from speedmap.data.tasks import make_task
from speedmap.imageio import ImageReadError, image_size, read_image
from tests.conftest import write_image

torch = pytest.importorskip("torch")

runner = CliRunner()
# 30 generated images: train 22, valid 4, test 4 (70/15/15); one broken file in each split
TRAIN, VALID, TEST = 22, 4, 4


def invoke(*args: str) -> tuple[Result, str]:
    """Run a command as in its own process (no decode verdicts kept from an earlier one) and on one torch
    thread (a busy 2-core machine stretches training on two many times); its result and its output with
    the whitespace folded (rich wraps lines at the terminal's width)."""
    verify._verdicts.clear()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = runner.invoke(app, list(args))
    finally:
        torch.set_num_threads(before)
    assert r.exit_code == 0, r.output
    return r, " ".join(r.output.split())


def bad_crc_png(src: Path, dst: Path) -> Path:
    """``src`` rewritten as a PNG at ``dst`` whose IHDR checksum is wrong (the header's fields are intact)."""
    buf = io.BytesIO()
    Image.open(src).convert("RGB").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[29] ^= 0xFF  # signature 8, length 4, type 4, IHDR data 13: the CRC starts at byte 29
    dst.write_bytes(bytes(data))
    return dst


def break_dataset(root: Path) -> dict[str, Path]:
    """Truncate a train JPEG by 20 bytes, empty a valid image, and turn a test image into a PNG with a bad CRC
    (its annotation renamed to match); the broken files by what was done to them."""
    cut = sorted((root / "train").glob("*.jpg"))[3]
    cut.write_bytes(cut.read_bytes()[:-20])
    empty = sorted((root / "valid").glob("*.jpg"))[0]
    empty.write_bytes(b"")
    jpg = sorted((root / "test").glob("*.jpg"))[0]
    png = bad_crc_png(jpg, jpg.with_suffix(".png"))
    jpg.unlink()
    ann = root / "test" / "_annotations.coco.json"
    doc = json.loads(ann.read_text())
    for im in doc["images"]:
        if im["file_name"] == jpg.name:
            im["file_name"] = png.name
    ann.write_text(json.dumps(doc))
    return {"truncated": cut, "empty": empty, "png": png}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = make_task("shapes", tmp_path_factory.mktemp("broken") / "shapes", images=30, imgsz=64, seed=1)
    return root, break_dataset(root)


def test_what_reading_and_decoding_each_broken_file_does(tmp_path: Path) -> None:
    """The zero-byte file fails at the header, so reading the dataset skips it; the truncated JPEG and the PNG
    whose CRC is wrong have good headers and fail only when decoded. Errors name the file of a path, never a
    path for bytes (the server's input)."""
    jpg = write_image(tmp_path / "a.jpg", 64, 48)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpg.read_bytes()[:-20])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    png = bad_crc_png(jpg, tmp_path / "crc.png")
    with pytest.raises(ImageReadError, match=r"empty\.jpg"):
        image_size(empty)
    for path in (cut, png):
        assert image_size(path) == (64, 48)
        with pytest.raises(ImageReadError, match=re.escape(path.name)):
            read_image(path)
        with pytest.raises(ImageReadError) as info:
            read_image(path.read_bytes())
        assert str(tmp_path) not in str(info.value)
    # only the IDAT chunk's CRC wrong, its data intact: Pillow does not check it, and the pixels are right
    data = bytearray(tmp_path.joinpath("crc.png").read_bytes())
    data[29] ^= 0xFF  # the IHDR CRC put right again
    idat = data.index(b"IDAT")
    n = int.from_bytes(data[idat - 4 : idat], "big")
    data[idat + 4 + n] ^= 0xFF
    assert read_image(bytes(data)).shape == (48, 64, 3)


def test_a_dropped_image_changes_no_split_and_no_fingerprint(tmp_path: Path) -> None:
    """Images that do not decode are dropped after the automatic split: every other image keeps its split, and
    the dataset's identity is the one it has as read, whichever splits a command decodes."""
    root = tmp_path / "y"
    for i in range(14):
        write_image(root / "images" / f"im{i:02d}.jpg", 64, 48)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"im{i:02d}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("a\n")
    as_read = load_dataset(root, auto_split=True)
    victim = as_read.split_records("test")[0].path
    victim.write_bytes(victim.read_bytes()[:-20])
    before = {s: [r.path.name for r in as_read.split_records(s)] for s in ("train", "valid", "test")}
    for decode in (("test",), ("train", "valid", "test")):
        ds = load_dataset(root, auto_split=True, decode=decode)
        after = {s: [r.path.name for r in ds.split_records(s)] for s in ("train", "valid", "test")}
        assert after == {s: [n for n in names if n != victim.name] for s, names in before.items()}
        assert ds.fingerprint() == as_read.fingerprint()
        [p] = [p for p in ds.problems.items if p.kind is Kind.CORRUPT_IMAGE]
        assert p.file == str(victim) and p.action is Action.SKIPPED_IMAGE and "truncated" in p.message


def test_a_verdict_is_kept_per_version_of_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "a.jpg", 64, 48)
    calls: list[object] = []

    def counted(source: object) -> object:
        calls.append(source)
        return read_image(source)  # type: ignore[arg-type]

    monkeypatch.setattr(verify, "read_image", counted)
    assert verify.decode_error(path) is None and verify.decode_error(path) is None
    assert len(calls) == 1
    path.write_bytes(path.read_bytes()[:-20])  # another size: decoded again
    why = verify.decode_error(path)
    assert len(calls) == 2 and why is not None and "truncated" in why and not why.startswith(str(path))


@pytest.fixture(scope="module")
def trained(broken: tuple[Path, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`speedmap train` on the broken dataset (1 epoch, 64 px): its output and run folder."""
    data, _ = broken
    run = tmp_path_factory.mktemp("train") / "run"
    args = ("--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0", "--weights", "scratch")
    _, said = invoke("train", str(data), *args, "--out", str(run))
    return said, run


def test_train_skips_names_and_counts_them(trained: tuple[str, Path], broken: tuple[Path, dict[str, Path]]) -> None:
    said, run = trained
    _, bad = broken
    for path in bad.values():
        assert path.name in said, path
    assert "3 dataset problem(s)" in said and "image skipped" in said
    dataset = json.loads((run / "train.json").read_text())["dataset"]
    assert sorted(Path(f).name for f in dataset["corrupt_images"]) == sorted(p.name for p in bad.values())
    assert dataset["train_images"] == TRAIN - 1 and dataset["valid_images"] == VALID - 1


@pytest.fixture(scope="module")
def exported(
    trained: tuple[str, Path], broken: tuple[Path, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """`speedmap export --int8` of that run, calibrated on the broken dataset: its output and model store."""
    _, run = trained
    data, _ = broken
    store = tmp_path_factory.mktemp("store")
    _, said = invoke("export", str(run), "--out", str(store / "shapes" / "1"), "--int8", str(data))
    return said, store


def test_int8_calibration_and_scoring_skip_and_name_them(
    exported: tuple[str, Path], broken: tuple[Path, dict[str, Path]]
) -> None:
    said, store = exported
    _, bad = broken
    assert "calibrating int8 on 21 images" in said  # the train split's images that decode
    assert bad["truncated"].name in said and bad["png"].name in said
    metrics = json.loads((store / "shapes" / "1" / "model.json").read_text())["metrics"]
    assert metrics["split"] == "test" and metrics["images"] == TEST - 1
    assert {bad["png"].name, bad["empty"].name} <= {Path(f).name for f in metrics["corrupt_images"]}


def test_eval_skips_names_and_counts_them(exported: tuple[str, Path], broken: tuple[Path, dict[str, Path]]) -> None:
    _, store = exported
    data, bad = broken
    r, said = invoke("eval", "--model", "shapes/1", "--models", str(store), "--data", str(data), "--json")
    assert bad["png"].name in said
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["images"] == TEST - 1  # the ground truth holds no box of the skipped image: none counts as missed
    assert bad["png"].name in {Path(f).name for f in doc["corrupt_images"]}
    scored = json.loads((store / "shapes" / "1" / "model.json").read_text())["metrics"]
    assert doc["map"] == pytest.approx(scored["map"], abs=1e-9)  # export's score: the same records


def test_compare_skips_names_and_counts_them(broken: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    data, bad = broken
    out = tmp_path / "study"
    # the smallest study that still runs the probe (both sizes): one epoch, one benchmark repeat, no int8
    r, said = invoke(
        "compare",
        str(data),
        *("--epochs", "1", "--imgsz", "64", "--batch", "4", "--weights", "scratch", "--no-int8", "--budget", "0"),
        *("--targets", "local", "--bench-seconds", "0.2", "--bench-repeats", "1", "--no-bench-retry"),
        *("--out", str(out)),
    )
    assert "timing Fast and Accurate side by side" in said  # the training-speed probe ran
    unfolded = r.output.replace("\n", "")  # rich folds a long path anywhere, even inside a file name
    for path in bad.values():
        assert path.name in unfolded, path
    task = json.loads((out / "results.json").read_text())["tasks"]["shapes"]
    assert sorted(Path(f).name for f in task["corrupt_images"]) == sorted(p.name for p in bad.values())
    assert task["train_speed_probe"]["ratio"] > 0
    for size in ("fast", "accurate"):
        e = task["sizes"][size]
        assert e["test_images"] == TEST - 1 and e["train"]["train_images"] == TRAIN - 1
        assert e["speed"]["local"]["single"]["errors"] == 0
    md = (out / "report.md").read_text()
    assert "Skipped: 3 images that cannot be decoded" in md and all(p.name in md for p in bad.values())
