"""Goal (issue 4): on the hardest built-in task `accurate` reaches at least 5 points more mAP50-95 than
`fast`; on the easiest, `fast` reaches at least 95% mAP50 and is within 2 points of `accurate`.

    python benchmarks/bench_train_accuracy.py [--hard fine --hard-epochs 30] [--easy shapes --easy-epochs 15]

Trains both sizes on both tasks with the same settings (default task size: 600 images at 256 px, batch
16, from scratch) and evaluates the best checkpoint of each on the task's test split through the same
preprocessing and postprocessing the engine uses. Prints mAP50 / mAP50-95 per task and size, the
differences, and training time. Long: about (fast + accurate) x 2 tasks x epochs x 25-65 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness import machine_line

from speedmap.data.tasks import make_task
from speedmap.train.config import TrainConfig
from speedmap.train.trainer import train
from speedmap.train.validate import evaluate_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--easy", default="shapes")
    ap.add_argument("--hard", default="fine")
    ap.add_argument("--hard-epochs", type=int, default=30)
    ap.add_argument("--easy-epochs", type=int, default=15)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-accuracy"))
    args = ap.parse_args()
    print(machine_line())
    results: dict[str, dict[str, dict[str, float]]] = {}
    for task, epochs in ((args.hard, args.hard_epochs), (args.easy, args.easy_epochs)):
        data = make_task(task, args.out / "data" / task, images=args.images, imgsz=args.imgsz)
        for size in ("fast", "accurate"):
            run = args.out / f"{task}-{size}"
            t = time.perf_counter()
            if not (run / "train.json").is_file() or json.loads((run / "train.json").read_text())["epochs"] < epochs:
                cfg = TrainConfig(
                    data=str(data),
                    size=size,
                    epochs=epochs,
                    imgsz=args.imgsz,
                    batch=args.batch,
                    out=str(run),
                    resume=(run / "last.pt").is_file(),
                )
                train(cfg, log=lambda m: None)
            rec = json.loads((run / "train.json").read_text())
            m = evaluate_checkpoint(run / "best.pt", data)
            map50, map_ = m.map50, m.map
            results.setdefault(task, {})[size] = {
                "map50": map50,
                "map": map_,
                "train_s": rec["total_seconds"],
                "wall_s": time.perf_counter() - t,
            }
            print(
                f"  {task:<8} {size:<9} test mAP50 {map50:.3f}  mAP50-95 {map_:.3f}  "
                f"training {rec['total_seconds'] / 60:.1f} min ({rec['epochs']} epochs)",
                flush=True,
            )
    e, h = results[args.easy], results[args.hard]
    gain_hard = (h["accurate"]["map"] - h["fast"]["map"]) * 100
    gap_easy = (e["accurate"]["map50"] - e["fast"]["map50"]) * 100
    print(
        f"hard task {args.hard!r}: accurate - fast = {gain_hard:+.1f} points mAP50-95 "
        f"-> {'PASS' if gain_hard >= 5 else 'FAIL'} (goal >= +5)"
    )
    ok95 = "PASS" if e["fast"]["map50"] >= 0.95 else "FAIL"
    ok2 = "PASS" if abs(gap_easy) <= 2 else "FAIL"
    print(
        f"easy task {args.easy!r}: fast mAP50 {e['fast']['map50'] * 100:.1f}% ({ok95}, goal >= 95%), "
        f"accurate - fast = {gap_easy:+.1f} points mAP50 ({ok2}, goal within 2)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
