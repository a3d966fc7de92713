"""How long each built-in task takes to generate at its default size (600 images, 256 px).

    python benchmarks/bench_tasks.py [--images 600] [--imgsz 256]

Issue 2 asks for tasks "generated in seconds"; this prints seconds per task and images per second.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from harness import machine_line

from speedmap.data import load_dataset
from speedmap.data.tasks import TASKS, make_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--imgsz", type=int, default=256)
    args = ap.parse_args()
    print(machine_line())
    print(f"{'task':<10}{'seconds':>9}{'images/s':>10}{'boxes':>8}")
    work = Path(tempfile.mkdtemp(prefix="speedmap-bench-tasks-"))
    try:
        for name in TASKS:
            t = time.perf_counter()
            make_task(name, work / name, images=args.images, imgsz=args.imgsz)
            dt = time.perf_counter() - t
            boxes = sum(r.num_boxes for _, r in load_dataset(work / name).all_records())
            print(f"{name:<10}{dt:>9.2f}{args.images / dt:>10.0f}{boxes:>8}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
