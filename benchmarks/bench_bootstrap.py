"""Goal: a paired bootstrap of COCO mAP (1,000 resamples, models A and B) on a 200-image test split
takes under 10 s on 2 cores.

    python benchmarks/bench_bootstrap.py [--images 200] [--resamples 1000] [--repeats 3] [--goal 10]

Synthetic data: 3 classes, 5-15 ground-truth boxes per 640x480 image (some crowd), each model
detecting most objects with boxes jittered by 6-7% of their size (B a little tighter than A) plus
2-10 false positives per image; continuous scores. Prints the median wall time of
``paired_bootstrap`` (matching both models once, then 1,000 replicates each) and exits 1 when it
misses the goal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from harness import machine_line


def synth(n_images: int, seed: int = 0) -> tuple[dict, list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    anns: list[dict] = []
    preds: tuple[list[dict], list[dict]] = ([], [])
    for i in range(n_images):
        n = int(rng.integers(5, 16))
        wh = rng.uniform(10, 200, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh)
        cls = rng.integers(1, 4, n)
        for b, c in zip(np.column_stack([xy, wh]).tolist(), cls.tolist(), strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": c,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": int(rng.random() < 0.02),
                }
            )
        for out, noise, recall in zip(preds, (0.07, 0.06), (0.8, 0.82), strict=True):
            found = rng.random(n) < recall
            jit = rng.normal(0, noise, (int(found.sum()), 4)) * np.tile(wh[found], 2)  # relative to box size
            boxes = np.column_stack([xy[found], wh[found]]) + jit
            boxes[:, 2:] = np.maximum(boxes[:, 2:], 2)
            labels = np.where(rng.random(len(boxes)) < 0.92, cls[found], rng.integers(1, 4, len(boxes)))
            n_fp = int(rng.integers(2, 11))
            fp_wh = rng.uniform(10, 200, (n_fp, 2))
            fp = np.column_stack([rng.uniform(0, 1, (n_fp, 2)) * (np.array([640, 480]) - fp_wh), fp_wh])
            scores = np.concatenate([rng.beta(5, 2, len(boxes)), rng.beta(2, 4, n_fp)])
            for b, c, s in zip(
                np.vstack([boxes, fp]).tolist(),
                [*labels.tolist(), *rng.integers(1, 4, n_fp).tolist()],
                scores.tolist(),
                strict=True,
            ):
                out.append({"image_id": i, "category_id": c, "bbox": b, "score": s})
    cats = [{"id": k, "name": f"class{k}"} for k in (1, 2, 3)]
    return {"images": images, "annotations": anns, "categories": cats}, preds[0], preds[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--goal", type=float, default=10.0, help="seconds")
    args = ap.parse_args()

    from speedmap.eval.bootstrap import paired_bootstrap

    gt, a, b = synth(args.images)
    times, result = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        result = paired_bootstrap(gt, a, b, resamples=args.resamples, seed=0)
        times.append(time.perf_counter() - t)
    assert result is not None
    wall = statistics.median(times)

    print(machine_line())
    print(
        f"data: {args.images} images, 3 classes, {len(gt['annotations'])} GT boxes, {len(a)} + {len(b)} "
        f"detections (A + B); {args.resamples} resamples; median of {args.repeats}"
    )
    p = result.point
    print(
        f"  point    mAP A {p['a_map']:.4f}  B {p['b_map']:.4f}  delta {p['delta_map']:+.4f}   "
        f"mAP50 A {p['a_map50']:.4f}  B {p['b_map50']:.4f}  delta {p['delta_map50']:+.4f}"
    )
    print(
        f"  95% CI   delta mAP [{result.delta_map.low:+.4f}, {result.delta_map.high:+.4f}]  "
        f"delta mAP50 [{result.delta_map50.low:+.4f}, {result.delta_map50.high:+.4f}]  "
        f"images needed (mAP) {result.images_needed()}"
    )
    print(f"  paired_bootstrap wall time   {wall:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})")
    ok = wall < args.goal
    print(f"  wall / goal ({args.goal:g} s)          {wall / args.goal:7.2f}   -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
