"""Goal (issue 3): evaluating 5,000 images with 100 detections each takes under 10 s on this machine.

    python benchmarks/bench_eval.py [--images 5000] [--dets 100] [--repeats 3] [--no-pycocotools]

Times, side by side in one run, on the same synthetic data (10 classes, ~7 ground-truth boxes per
640x480 image, detections near the objects plus random ones, so matching does real work):
  - `speedmap.eval.evaluate_predictions(split, detections)`: the in-process path training and compare use;
  - `speedmap eval --gt GT.json --pred PRED.json --json` in a fresh process: files, end to end;
  - pycocotools COCOeval on the same files (yardstick; its numbers must be identical).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import machine_line


def synth(n_images: int, n_dets: int, seed: int = 0):
    from speedmap.data import DatasetSplit, ImageRecord
    from speedmap.detections import Detections

    rng = np.random.default_rng(seed)
    records, preds, gt_anns, results = [], [], [], []
    for i in range(n_images):
        n = int(rng.integers(3, 12))
        wh = rng.uniform(8, 200, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh)
        boxes = np.column_stack([xy, xy + wh])
        cls = rng.integers(0, 10, n)
        records.append(ImageRecord(Path(f"{i}.jpg"), 640, 480, boxes, cls))
        near = boxes[rng.integers(0, n, n_dets // 2)] + rng.normal(0, 6, (n_dets // 2, 4))
        wh2 = rng.uniform(8, 200, (n_dets - n_dets // 2, 2))
        xy2 = rng.uniform(0, 1, (len(wh2), 2)) * (np.array([640, 480]) - wh2)
        det_boxes = np.vstack([near, np.column_stack([xy2, xy2 + wh2])])
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
        scores, det_cls = rng.random(n_dets), rng.integers(0, 10, n_dets)
        preds.append(Detections(det_boxes, scores, det_cls))
        for b, c in zip(boxes, cls, strict=True):
            w, h = b[2:] - b[:2]
            box = [*b[:2].tolist(), float(w), float(h)]
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": i,
                    "category_id": int(c) + 1,
                    "bbox": box,
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
        d32 = preds[-1]
        for b, s, c in zip(d32.xyxy.astype(float), d32.confidence.astype(float), d32.class_id, strict=True):
            results.append(
                {"image_id": i, "category_id": int(c) + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            )
    classes = [f"class{k}" for k in range(10)]
    gt = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_images)],
        "annotations": gt_anns,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)],
    }
    return DatasetSplit("test", classes, records), preds, gt, results


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-pycocotools", action="store_true")
    args = ap.parse_args()

    from speedmap.eval import evaluate_predictions

    split, preds, gt, results = synth(args.images, args.dets)
    work = Path(tempfile.mkdtemp(prefix="speedmap-bench-eval-"))
    (work / "gt.json").write_text(json.dumps(gt))
    (work / "pred.json").write_text(json.dumps(results))

    t_lib, m = median_time(lambda: evaluate_predictions(split, preds).metrics, args.repeats)
    cli = [
        sys.executable,
        "-m",
        "speedmap",
        "eval",
        "--gt",
        str(work / "gt.json"),
        "--pred",
        str(work / "pred.json"),
        "--json",
    ]
    t_cli, proc = median_time(lambda: subprocess.run(cli, check=True, capture_output=True, text=True), args.repeats)
    cli_stats = json.loads(proc.stdout)  # type: ignore[union-attr]

    print(machine_line())
    print(
        f"data: {args.images} images, {len(gt['annotations'])} GT boxes, {len(results)} detections; "
        f"medians of {args.repeats}"
    )
    print(f"  evaluate_predictions(split, detections)     {t_lib:7.2f} s   mAP50-95 {m.map:.6f}")  # type: ignore[union-attr]
    print(f"  `speedmap eval --gt --pred --json` CLI     {t_cli:7.2f} s   mAP50-95 {cli_stats['map']:.6f}")
    if not args.no_pycocotools:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        def pycoco() -> np.ndarray:
            with contextlib.redirect_stdout(io.StringIO()):
                g = COCO(str(work / "gt.json"))
                ev = COCOeval(g, g.loadRes(str(work / "pred.json")), "bbox")
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            return ev.stats

        t_ref, ref = median_time(pycoco, 1)
        same = np.abs(np.array([cli_stats[k] for k in list(cli_stats)[:12]]) - ref).max()  # type: ignore[arg-type]
        print(f"  pycocotools COCOeval on the same files     {t_ref:7.2f} s   max |diff| of 12 stats {same:.1e}")
        print(f"  speed-up over pycocotools (CLI)            {t_ref / t_cli:7.1f}x")
    print(f"  CLI / goal (10 s)                          {t_cli / 10:7.2f}   -> {'PASS' if t_cli < 10 else 'FAIL'}")


if __name__ == "__main__":
    main()
