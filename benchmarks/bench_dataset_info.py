"""Goal (issue 2): reading the annotations of a 10,000-image COCO dataset and printing `info`
takes under 2 s on this machine (annotation parsing and header reads only).

    python benchmarks/bench_dataset_info.py [--images 10000] [--repeats 5] [--cache DIR]

Builds the dataset once (real 256x256 JPEGs, ~7 boxes each, Roboflow COCO layout with the unused
category 0), then times, side by side in one run:
  - in-process `load_dataset` + `dataset_info` (median of N);
  - the CLI end to end, `speedmap datasets info DIR --json` in a fresh process (median of N),
    which adds interpreter start-up and imports;
  - pycocotools' COCO() on the same JSON as a yardstick (annotation parsing only, no image headers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness import machine_line
from PIL import Image


def build(root: Path, n: int) -> Path:
    ann = root / "train" / "_annotations.coco.json"
    if ann.is_file() and len(json.loads(ann.read_text())["images"]) == n:
        return root
    (root / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    images, anns = [], []
    cats = [{"id": 0, "name": "things", "supercategory": "none"}] + [
        {"id": k, "name": f"class{k}", "supercategory": "things"} for k in range(1, 11)
    ]
    for i in range(n):
        name = f"img_{i:05d}.jpg"
        path = root / "train" / name
        if not path.exists():
            base.save(path, quality=80)
        images.append({"id": i, "file_name": name, "width": 256, "height": 256})
        for _ in range(int(rng.integers(3, 12))):
            x, y = rng.uniform(0, 200, 2)
            w, h = rng.uniform(4, 56, 2)
            anns.append(
                {
                    "id": len(anns),
                    "image_id": i,
                    "category_id": int(rng.integers(1, 11)),
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "speedmap-bench-coco")
    args = ap.parse_args()

    from speedmap.data import dataset_info, load_dataset

    root = build(args.cache / f"coco{args.images}", args.images)
    n_boxes = len(json.loads((root / "train" / "_annotations.coco.json").read_text())["annotations"])

    def inproc() -> None:
        ds = load_dataset(root, strict=True)
        json.dumps(dataset_info(ds))

    cli = [sys.executable, "-m", "speedmap", "datasets", "info", str(root), "--json"]

    def run_cli() -> None:
        subprocess.run(cli, check=True, capture_output=True)

    inproc()  # warm the file cache once; all figures below are warm-cache
    t_in = median_time(inproc, args.repeats)
    t_cli = median_time(run_cli, args.repeats)
    t_startup = median_time(
        lambda: subprocess.run([sys.executable, "-c", "import speedmap.cli"], check=True), args.repeats
    )
    try:
        import contextlib
        import io

        from pycocotools.coco import COCO

        def pycoco() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                COCO(str(root / "train" / "_annotations.coco.json"))

        t_ref = median_time(pycoco, args.repeats)
    except ImportError:
        t_ref = float("nan")

    print(machine_line())
    print(f"dataset: {args.images} images, {n_boxes} boxes (COCO, Roboflow layout); medians of {args.repeats}")
    print(f"  load_dataset + info, in process      {t_in:7.3f} s   ({t_in / args.images * 1e6:.0f} us/image)")
    print(f"  `speedmap datasets info --json` CLI  {t_cli:7.3f} s   (of which import start-up {t_startup:.3f} s)")
    print(f"  pycocotools COCO() parse only        {t_ref:7.3f} s   (no image headers; yardstick)")
    print(f"  ratio CLI / goal (2 s)               {t_cli / 2.0:7.2f}   -> {'PASS' if t_cli < 2.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
