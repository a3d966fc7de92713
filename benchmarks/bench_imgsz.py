"""Accuracy and training time against the input size, on real datasets: the measurement behind
``speedmap.data.imgsz`` (issue 25, section 4).

    python benchmarks/bench_imgsz.py /work/data/real/bccd /work/data/real/raccoon --sizes 128,192,256,320 \
        --epochs 12 --out runs/bench-imgsz
    python benchmarks/bench_imgsz.py /work/data/real/cards --sizes 128,192,256 --epochs 120 --equal-time \
        --weights pretrained --out runs/bench-imgsz-time

``--equal-time`` asks what the study's budget trades (issue 33, section 4): the first size trains ``--epochs``,
each larger one the epochs that take the same time by the time plan's scaling (size^1.7: 60 at 192 px, 37 at
256 px for 120 at 128), each schedule ending annealed.

For each dataset (as speedmap loads it: an unsplit one gets its automatic split) and input size, trains
`fast` for a fixed number of epochs (no early stopping: equal epochs, so the sizes differ only in the input
size), scores the best checkpoint on the test split, and records the wall time per epoch. Prints the table,
the size the rule chooses and its reason, and plots mAP50-95 and seconds per epoch against the size
(``OUT/imgsz.png``). Finished runs are reused (delete OUT to measure again). Run it alone: timings of two
CPU-heavy jobs at once are meaningless on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from harness import machine_line, paired_points, score_test_split

from speedmap.data import load_dataset
from speedmap.data.imgsz import TIME_EXPONENT, choose_imgsz
from speedmap.plotting import pyplot
from speedmap.train.config import TrainConfig
from speedmap.train.schedule import auto_adamw_lr
from speedmap.train.trainer import train


def run_one(
    data: Path,
    size: str,
    imgsz: int,
    epochs: int,
    out: Path,
    seed: int,
    lr_scale: float = 1.0,
    weights: str | None = None,
) -> tuple[Any, dict[str, float]]:
    """Train ``size`` for ``epochs`` (no early stopping; ``lr_scale`` != 1: AdamW at that multiple of the automatic
    rate; ``weights``: where it starts, default from scratch) and score its best checkpoint on the test split."""
    tag = f"-lr{lr_scale:g}" if lr_scale != 1 else ""
    tag += f"-{Path(weights).stem}-e{epochs}" if weights else ""  # a checkpoint path: its name
    run = out / f"{data.name}-{size}-{imgsz}{tag}{f'-s{seed}' if seed else ''}"
    done = run / "train.json"
    if not done.is_file() or json.loads(done.read_text()).get("epochs_run", 0) < epochs:
        recipe: dict = {}
        if lr_scale != 1:
            recipe = {"optimizer": "adamw", "lr0": auto_adamw_lr(len(load_dataset(data).classes)) * lr_scale}
        cfg = TrainConfig(
            data=str(data),
            size=size,
            epochs=epochs,
            imgsz=imgsz,
            batch=16,
            out=str(run),
            seed=seed,
            patience=0,
            weights=weights,
            **recipe,
        )
        cfg.resume = (run / "last.pt").is_file()
        train(cfg, log=lambda m: None)
    rec = json.loads(done.read_text())
    ev = score_test_split(run, data)
    secs = rec.get("total_seconds") or 0.0
    return ev, {
        "map": ev.metrics.map,
        "map50": ev.metrics.map50,
        "seconds": secs,
        "seconds_per_epoch": secs / max(1, rec.get("epochs_run", epochs)),
        "other_cpu_share": rec.get("other_cpu_share"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--sizes", default="128,192,256,320")
    ap.add_argument("--size", default="fast")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-imgsz"))
    ap.add_argument("--weights", default=None, help="where each run starts (default: from scratch)")
    ap.add_argument("--equal-time", action="store_true", help="larger sizes train fewer epochs, at equal time")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    epochs = {s: args.epochs for s in sizes}
    if args.equal_time:
        epochs = {s: max(1, round(args.epochs * (sizes[0] / s) ** TIME_EXPONENT)) for s in sizes}
    print(machine_line(f"{args.size}, epochs {epochs}, seed {args.seed}, from {args.weights or 'scratch'}"))
    results: dict[str, dict[int, dict[str, float]]] = {}
    t0 = time.perf_counter()
    for data in args.data:
        ds = load_dataset(data, auto_split=True)
        chosen, why = choose_imgsz(ds)
        print(
            f"\n{data.name}: {len(ds.split_records('train'))} train / {len(ds.split_records('test'))} test images; "
            f"the rule chooses {chosen} px: {why}"
        )
        results[data.name] = {}
        evals: dict[int, Any] = {}  # test-split predictions: each size against the first, paired
        for s in sizes:
            evals[s], r = run_one(data, args.size, s, epochs[s], args.out, args.seed, weights=args.weights)
            vs = f"  vs {sizes[0]} px {paired_points(evals[sizes[0]], evals[s])}" if s != sizes[0] else ""
            results[data.name][s] = r
            share = r["other_cpu_share"]
            print(
                f"  {s:4d} px  {epochs[s]:3d} epochs  mAP50-95 {r['map']:.3f}  mAP50 {r['map50']:.3f}  "
                f"{r['seconds_per_epoch']:6.1f} s/epoch  {r['seconds'] / 60:5.1f} min{vs}"
                f"  (others' CPU {share if share is None else f'{share:.0%}'})",
                flush=True,
            )
        results[data.name]["chosen"] = {"imgsz": chosen, "reason": why}  # type: ignore[assignment]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "imgsz.json").write_text(json.dumps(results, indent=1))
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in results.items():
        xs = [s for s in sizes if s in rows]
        line = a1.plot(xs, [rows[s]["map"] for s in xs], marker="o", label=name)[0]
        a2.plot(xs, [rows[s]["seconds_per_epoch"] for s in xs], marker="o", label=name, color=line.get_color())
        chosen = rows["chosen"]["imgsz"]  # type: ignore[index]
        a1.axvline(chosen, color=line.get_color(), ls=":", lw=1)
    after = "equal training time" if args.equal_time else f"{args.epochs} epochs"
    a1.set(xlabel="input size (px)", ylabel=f"test mAP50-95 after {after}", title="accuracy")
    a2.set(xlabel="input size (px)", ylabel="seconds per epoch (2 cores)", title="training time")
    a1.legend()
    fig.suptitle(f"{args.size}: accuracy and time against input size (dotted: the rule's choice)")
    fig.tight_layout()
    fig.savefig(args.out / "imgsz.png", dpi=110)
    print(f"\n{time.perf_counter() - t0:.0f} s; wrote {args.out / 'imgsz.json'} and {args.out / 'imgsz.png'}")


if __name__ == "__main__":
    main()
