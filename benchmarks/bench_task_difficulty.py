"""Verify the built-in tasks' difficulty claims by training: `fast` for N epochs on each task, then
test-split mAP through the engine's pre/postprocessing.

    python benchmarks/bench_task_difficulty.py [--tasks shapes,tiny,crowd,fine,clutter] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import machine_line

from speedmap.data.tasks import TASKS, make_task
from speedmap.train.config import TrainConfig
from speedmap.train.trainer import train
from speedmap.train.validate import evaluate_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--size", default="fast")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-difficulty"))
    args = ap.parse_args()
    print(
        machine_line(f"{args.size}, {args.epochs} epochs, 600 images per task at {args.imgsz}px, batch 16"),
        flush=True,
    )
    out = {}
    for task in args.tasks.split(","):
        data = make_task(task, args.out / "data" / task, imgsz=args.imgsz)
        run = args.out / f"{task}-{args.size}-{args.epochs}"
        if not (run / "best.pt").is_file():
            train(
                TrainConfig(
                    data=str(data),
                    size=args.size,
                    epochs=args.epochs,
                    imgsz=args.imgsz,
                    out=str(run),
                    close_mosaic=max(1, args.epochs // 5),
                ),
                log=lambda m: None,
            )
        m = evaluate_checkpoint(run / "best.pt", data)
        map50, map_ = m.map50, m.map
        rec = json.loads((run / "train.json").read_text())
        out[task] = {"map50": map50, "map": map_, "train_s": rec["total_seconds"]}
        print(
            f"  {task:<8} test mAP50 {map50:.3f}  mAP50-95 {map_:.3f}  ({rec['total_seconds'] / 60:.1f} min)  "
            f"claimed: {TASKS[task].difficulty}",
            flush=True,
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
