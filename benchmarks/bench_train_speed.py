"""Goal (issue 4): at equal epochs, image size and data, `fast` trains at least 2x faster per epoch
than `accurate` on this CPU.

    python benchmarks/bench_train_speed.py [--task shapes] [--epochs 3] [--imgsz 256] [--batch 16]

Trains both sizes one after the other in this process on the same generated task, and prints per-epoch
wall-clock seconds (training only, validation excluded), the median over epochs after the first, training
images/s, and the accurate/fast ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from harness import machine_line

from speedmap.data.tasks import make_task
from speedmap.train.config import TrainConfig
from speedmap.train.trainer import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="shapes")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="speedmap-bench-train-"))
    data = make_task(args.task, work / args.task, images=args.images, imgsz=args.imgsz)
    print(machine_line(f"{torch.get_num_threads()} torch threads"))
    print(
        f"data: built-in task {args.task!r}, {args.images} images (70% train), {args.imgsz}px, batch {args.batch}, "
        f"{args.epochs} epochs per size"
    )
    results = {}
    for size in ("fast", "accurate"):
        rec = train(
            TrainConfig(
                data=str(data),
                size=size,
                epochs=args.epochs,
                imgsz=args.imgsz,
                batch=args.batch,
                workers=args.workers,
                out=str(work / size),
                val=False,
            ),
            log=lambda m: None,
        )
        secs = rec["epoch_seconds"]
        steady = statistics.median(secs[1:]) if len(secs) > 1 else secs[0]
        results[size] = (steady, rec)
        print(
            f"  {size:<9} {rec['params'] / 1e6:5.2f} M params {rec['flops'] / 1e9:5.2f} GFLOPs  epochs "
            f"{', '.join(f'{s:.1f}' for s in secs)} s  median {steady:.1f} s/epoch  "
            f"{rec['dataset']['train_images'] / steady:.1f} img/s"
        )
    ratio = results["accurate"][0] / results["fast"][0]
    flops = results["accurate"][1]["flops"] / results["fast"][1]["flops"]
    print(
        f"  accurate/fast: {ratio:.2f}x time per epoch ({flops:.2f}x FLOPs)  -> {'PASS' if ratio >= 2 else 'FAIL'} "
        f"(goal: fast at least 2x faster)"
    )
    print(json.dumps({s: {"median_epoch_s": r[0], "epoch_seconds": r[1]["epoch_seconds"]} for s, r in results.items()}))


if __name__ == "__main__":
    main()
