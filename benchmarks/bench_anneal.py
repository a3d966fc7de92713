"""Would a longer run overturn the verdict? (issue 33, sections 2-3)

For each dataset and size: train as the study does (``speedmap compare``'s defaults on a dataset folder: from
the shipped weights, up to 120 epochs, patience 8 and half the run, batch 16, seed 0, the box rule's input
size; ``--weights scratch`` for the first pass's runs, which started from scratch), then train the same size
again for twice the epochs that run took (``--patience 0``: the whole stable phase to the cap, then the
cooldown). Both are scored on the test split (best.pt, the checkpoint the study exports), and the two sizes'
difference at the study's stop is set against the 95% paired-bootstrap interval of their difference at 2x.

    python benchmarks/bench_anneal.py /work/data/real/raccoon /work/data/real/kangaroo --out /work/runs/anneal

Prints two markdown tables: per dataset and size (test mAP50-95 at the stop and at 2x, the difference, what
the convergence rule said, whether a "converged" run is within 1.5 points of its 2x run), and per dataset
(the study's Fast-Accurate difference, the 2x difference and its interval, whether the former lies in the
latter). "What the rule said" is the current code's judgement of the stop run's saved history (the judgement
runs after training, so it is what the trainer would write today). Finished runs are reused: a study's own
runs (its ``runs/<dataset>-<size>-<key>`` folders) copied to ``OUT/<dataset>-<size>-s<seed>`` serve as the
stops, and the 2x runs train at their input size. Run it alone: it trains for tens of minutes per dataset.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

import torch
from harness import machine_line, md_table, paired_points, score_test_split, trained

from speedmap.cli.compare import DATA_DEFAULTS
from speedmap.data import load_dataset
from speedmap.data.imgsz import choose_imgsz
from speedmap.eval.bootstrap import paired_bootstrap
from speedmap.train.convergence import convergence

SIZES = ("fast", "accurate")
WITHIN = 0.015  # the goal: a converged run is within 1.5 points of its 2x run
SIZE_HEADER = (
    "dataset",
    "imgsz",
    "size",
    "epochs at the stop (stable phase ended by)",
    "test mAP50-95 at the stop",
    "epochs 2x",
    "test mAP50-95 at 2x",
    "points [95% CI, paired]",
    "what the rule said",
    "within 1.5 if converged",
    "minutes (stop / 2x)",
)
VERDICT_HEADER = (
    "dataset",
    "Accurate - Fast at the stop (points)",
    "at 2x [95% CI]",
    "the stop's difference in the 2x interval",
)


def run(data: Path, size: str, imgsz: int, out: Path, args: argparse.Namespace, epochs: int, patience: int) -> Any:
    """Train (or reuse) one run; its train.json."""
    cfg = {"epochs": epochs, "imgsz": imgsz, "batch": 16, "seed": args.seed, "patience": patience}
    rec = trained(out, data=str(data), size=size, weights=args.weights, **cfg)
    start = (rec.get("weights") or {}).get("start")
    if start != args.weights:
        raise SystemExit(f"{out} started from {start}, not {args.weights}: move it away or pass --weights")
    return rec


def judged(run_dir: Path, rec: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """The current code's convergence judgement of a finished run, from its per-epoch log and phases."""
    with open(run_dir / "metrics.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    c = rec["convergence"]
    return convergence(history, int(c["patience"]), int(rec["epochs_planned"]), c.get("phases"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-anneal"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=DATA_DEFAULTS["epochs"])
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--weights", default="pretrained", help="where every run starts (the study's default)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(machine_line(f"seed {args.seed}"))
    sizes_rows: list[list[Any]] = []
    verdict_rows: list[list[Any]] = []
    for data in args.data:
        imgsz, why = choose_imgsz(load_dataset(data, auto_split=True))
        ev: dict[tuple[str, str], Any] = {}
        for size in SIZES:
            base = args.out / f"{data.name}-{size}-s{args.seed}"
            stop = run(data, size, imgsz, base, args, args.epochs, args.patience)
            at = int(stop.get("imgsz") or imgsz)  # a stop run copied from a study may have trained at a grown size
            twice = run(data, size, at, base.with_name(base.name + "-2x"), args, 2 * stop["epochs_run"], 0)
            ev[size, "stop"], ev[size, "2x"] = (
                score_test_split(base, data),
                score_test_split(base.with_name(base.name + "-2x"), data),
            )
            m_stop, m_2x = ev[size, "stop"].metrics.map, ev[size, "2x"].metrics.map
            converged, c = judged(base, stop)
            ended = (c.get("phases") or {}).get("stable_end_reason")
            ok = "yes" if not converged or abs(m_2x - m_stop) <= WITHIN else "**no**"
            sizes_rows.append(
                [
                    data.name,
                    at,
                    size,
                    f"{stop['epochs_run']} ({ended})",
                    f"{m_stop:.3f}",
                    twice["epochs_run"],
                    f"{m_2x:.3f}",
                    paired_points(ev[size, "stop"], ev[size, "2x"]),
                    f"{'converged' if converged else 'not converged'}: {c['reason']}",
                    ok,
                    f"{stop.get('wall_s', 0) / 60:.1f} / {twice.get('wall_s', 0) / 60:.1f}",
                ]
            )
        f2, a2 = ev["fast", "2x"], ev["accurate", "2x"]
        bs = paired_bootstrap(f2.gt, f2.predictions, a2.predictions, resamples=1000, seed=0)
        d_stop = ev["accurate", "stop"].metrics.map - ev["fast", "stop"].metrics.map
        lo, hi = bs.delta_map.low, bs.delta_map.high
        holds = "yes" if lo <= d_stop <= hi else "**no**"
        ci = f"{100 * bs.point['delta_map']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        verdict_rows.append([data.name, f"{100 * d_stop:+.1f}", ci, holds])
        print(f"{data.name}: input size {imgsz} px ({why})", flush=True)
    print()
    print(md_table(SIZE_HEADER, sizes_rows))
    print()
    print(md_table(VERDICT_HEADER, verdict_rows))


if __name__ == "__main__":
    main()
