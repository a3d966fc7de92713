"""A learning rate that converges in fewer epochs, on real datasets (issue 25, section 5's lever; issue 26 takes
the recipe further): each size at the automatic AdamW rate and at ``--scales`` times it, equal epochs, the same
seed, at the input size `compare` chooses for the dataset, scored on the test split.

    python benchmarks/bench_real_lr.py /work/data/real/raccoon /work/data/real/bccd --epochs 15 \
        --scales 3 --out runs/bench-real-lr

Prints one markdown row per dataset, size and rate: test mAP50-95 / mAP50 and the gain over the automatic
rate in points. Finished runs are reused (bench_imgsz.run_one). Run it alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_imgsz import run_one
from harness import machine_line

from speedmap.data import load_dataset
from speedmap.data.imgsz import choose_imgsz


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--sizes", default="fast,accurate")
    ap.add_argument("--scales", default="3")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-real-lr"))
    args = ap.parse_args()
    scales = [1.0, *(float(s) for s in args.scales.split(","))]
    print(machine_line(f"seed {args.seed}"))
    print("| dataset | imgsz | size | lr (x automatic) | epochs | test mAP50-95 | mAP50 | points vs x1 | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for data in args.data:
        imgsz = choose_imgsz(load_dataset(data, auto_split=True))[0]
        for size in args.sizes.split(","):
            base = None
            for sc in scales:
                r = run_one(data, size, imgsz, args.epochs, args.out, args.seed, sc)
                base = r["map"] if base is None else base
                print(
                    f"| {data.name} | {imgsz} | {size} | x{sc:g} | {args.epochs} | {r['map']:.3f} | {r['map50']:.3f} "
                    f"| {100 * (r['map'] - base):+.1f} | {r['seconds_per_epoch']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
