"""Read A, write B, read B: same images, classes and boxes for every pair of formats."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

from speedmap.data import FORMATS, SPLITS, Dataset, detect_format, load_dataset, save_dataset


def assert_same(a: Dataset, b: Dataset, crowd: bool = True) -> None:
    assert a.classes == b.classes
    for split in SPLITS:
        ra = sorted(a.split_records(split), key=lambda r: r.path.stem)
        rb = sorted(b.split_records(split), key=lambda r: r.path.stem)
        assert [r.path.stem for r in ra] == [r.path.stem for r in rb], split
        for x, y in zip(ra, rb, strict=True):
            assert (x.width, x.height) == (y.width, y.height)
            kx = np.ones(x.num_boxes, bool) if crowd else ~x.iscrowd
            order_x = np.lexsort((*x.boxes[kx].T, x.class_ids[kx]))
            order_y = np.lexsort((*y.boxes.T, y.class_ids))
            np.testing.assert_array_equal(x.class_ids[kx][order_x], y.class_ids[order_y])
            np.testing.assert_allclose(x.boxes[kx][order_x], y.boxes[order_y], atol=1e-3, rtol=0)
            if crowd:
                np.testing.assert_array_equal(x.iscrowd[order_x], y.iscrowd[order_y])


@pytest.mark.parametrize(("fmt_a", "fmt_b"), list(permutations(FORMATS, 2)))
def test_round_trip_every_pair(tmp_path: Path, sample: Dataset, fmt_a: str, fmt_b: str) -> None:
    save_dataset(sample, tmp_path / "a", fmt_a)
    assert detect_format(tmp_path / "a") == fmt_a
    a = load_dataset(tmp_path / "a", strict=True)
    assert a.format == fmt_a
    assert_same(sample, a)
    save_dataset(a, tmp_path / "b", fmt_b)
    b = load_dataset(tmp_path / "b", strict=True)
    assert b.format == fmt_b
    assert_same(a, b)
    # negatives survive every format
    assert sum(r.num_boxes == 0 for _, r in b.all_records()) == sum(r.num_boxes == 0 for _, r in sample.all_records())


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_crowd_flag_round_trips_where_the_format_has_one(tmp_path: Path, fmt: str) -> None:
    from tests.conftest import sample_dataset

    ds = sample_dataset(tmp_path / "imgs", crowd=True)
    save_dataset(ds, tmp_path / "out", fmt)
    assert_same(ds, load_dataset(tmp_path / "out", strict=True))


def test_yolo_reports_crowd_regions_it_cannot_hold(tmp_path: Path) -> None:
    from tests.conftest import sample_dataset

    ds = sample_dataset(tmp_path / "imgs", crowd=True)
    notes = save_dataset(ds, tmp_path / "out", "yolo")
    assert notes and "crowd" in notes[0]
    assert_same(ds, load_dataset(tmp_path / "out", strict=True), crowd=False)


def test_writer_refuses_a_non_empty_folder(tmp_path: Path, sample: Dataset) -> None:
    from speedmap.errors import DatasetError

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        save_dataset(sample, tmp_path / "busy", "yolo")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_name_collisions_across_folders_get_unique_stems(tmp_path: Path) -> None:
    from speedmap.data import ImageRecord
    from tests.conftest import write_image

    a = write_image(tmp_path / "x" / "same.jpg", 20, 20)
    b = write_image(tmp_path / "y" / "same.png", 30, 20, "PNG")
    ds = Dataset(
        ["c"], {"train": [ImageRecord(a, 20, 20, [[1, 1, 5, 5]], [0]), ImageRecord(b, 30, 20)]}, "coco", tmp_path
    )
    for fmt in FORMATS:
        save_dataset(ds, tmp_path / fmt, fmt)
        back = load_dataset(tmp_path / fmt, strict=True)
        assert sorted((r.width, r.num_boxes) for r in back.split_records("train")) == [(20, 1), (30, 0)]
