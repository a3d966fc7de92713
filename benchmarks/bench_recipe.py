"""The training recipe, by measurement (issue 26): recipe variants against a baseline, each changing one thing,
trained on the same datasets with the same seeds (paired), at equal epochs, scored on the test split.

    python benchmarks/bench_recipe.py --data /work/data/real/raccoon,/work/data/real/bccd,task:crowd@96x300 \
        --sizes fast,accurate --seeds 0,1 --epochs 30 \
        --variant 'lr3={"lr_scale": 3}' --variant 'ema={"ema_tau_frac": 0.25}' --out runs/bench-recipe

A dataset is a folder (trained at the input size `compare` chooses for it) or ``task:NAME@IMGSZxIMAGES`` (a
built-in task generated at that size and image count, trained at IMGSZ). A variant is a name and a JSON object
of :class:`TrainConfig` fields, plus four relative ones: ``lr_scale`` (AdamW at that multiple of the automatic
rate), ``close_mosaic_frac`` (mosaic off for that fraction of the epochs), ``ema_tau_frac`` (the EMA's ramp
as a fraction of the run's optimizer steps) and ``pretrained`` (start from ``speedmap pretrain --out DIR``'s
weights for the size: DIR may hold ``{size}``, e.g. ``runs/pt/{size}``). ``--base`` gives the baseline's
fields the same way (default: the trainer's defaults); every variant is applied on top of it.

Every finished run is appended to ``ledger.jsonl`` in --out and never trained again, so the script can be
stopped and rerun (an interrupted run resumes from its last epoch), and later sessions add seeds or variants
to the same table. Prints, per size, each variant's test mAP50-95 minus the baseline's, per dataset (mean over
the seeds both have), the mean over datasets, the worst dataset, and the epochs the variant needed to reach the
baseline's best validation mAP (median over pairs, as a fraction of the epochs); with ``--per-run``, also every
run's own test mAP50-95 and mAP50 per dataset and seed. Run it alone: it trains.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from harness import machine_line

from speedmap.data import load_dataset
from speedmap.data.imgsz import choose_imgsz
from speedmap.data.tasks import make_task
from speedmap.train.config import TrainConfig
from speedmap.train.schedule import auto_adamw_lr
from speedmap.train.trainer import train
from speedmap.train.validate import evaluate_checkpoint

BATCH = 16
RELATIVE = ("lr_scale", "close_mosaic_frac", "ema_tau_frac", "pretrained")


def resolve_data(spec: str, out: Path) -> tuple[str, Path, int]:
    """(name, folder, imgsz) of a dataset spec: a folder or ``task:NAME@IMGSZxIMAGES``."""
    if spec.startswith("task:"):
        name, _, dims = spec[5:].partition("@")
        imgsz, _, images = dims.partition("x")
        folder = make_task(name, out / "data" / f"{name}-{imgsz}x{images}", images=int(images), imgsz=int(imgsz))
        return f"{name}@{imgsz}x{images}", folder, int(imgsz)
    folder = Path(spec)
    return folder.name, folder, choose_imgsz(load_dataset(folder, auto_split=True))[0]


def recipe(fields: dict[str, Any], folder: Path, epochs: int, size: str) -> dict[str, Any]:
    """TrainConfig fields for a variant's fields (the relative ones resolved for this dataset and run)."""
    out = {k: v for k, v in fields.items() if k not in RELATIVE}
    ds = load_dataset(folder, auto_split=True)
    steps = epochs * math.ceil(len(ds.split_records("train")) / out.get("batch", BATCH))
    if "lr_scale" in fields:
        out.update(optimizer="adamw", lr0=auto_adamw_lr(len(ds.classes)) * fields["lr_scale"])
    if "close_mosaic_frac" in fields:
        out["close_mosaic"] = round(fields["close_mosaic_frac"] * epochs)
    if "ema_tau_frac" in fields:
        out["ema_tau"] = max(1.0, fields["ema_tau_frac"] * steps)
    if "pretrained" in fields:  # a `speedmap pretrain --out` folder per size, e.g. "runs/pt/{size}"
        out["weights"] = str(Path(fields["pretrained"].format(size=size)) / size / "best.pt")
    return out


def run(
    name: str, folder: Path, imgsz: int, size: str, seed: int, variant: str, fields: dict, epochs: int, out: Path
) -> dict[str, Any]:
    """Train one (dataset, size, seed, variant) and score its best checkpoint on the test split."""
    folder_run = out / "runs" / f"{name}-{size}-{key(fields)}-s{seed}-e{epochs}".replace("@", "_").replace("/", "_")
    cfg = TrainConfig(
        data=str(folder),
        size=size,
        epochs=epochs,
        imgsz=imgsz,
        batch=BATCH,
        out=str(folder_run),
        seed=seed,
        patience=0,
        **recipe(fields, folder, epochs, size),
    )
    cfg.resume = (folder_run / "last.pt").is_file()
    t0 = time.perf_counter()
    rec = train(cfg, log=lambda m: None)
    if not rec:  # resumed a run that had finished: read its record
        rec = json.loads((folder_run / "train.json").read_text())
    m = evaluate_checkpoint(folder_run / "best.pt", folder, split="test")
    history = _valid_curve(folder_run)
    return {
        "dataset": name,
        "size": size,
        "seed": seed,
        "variant": variant,
        "fields": fields,
        "epochs": epochs,
        "imgsz": imgsz,
        "test_map": m.map,
        "test_map50": m.map50,
        "valid_curve": history,
        "train_seconds": rec.get("total_seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "other_cpu_share": rec.get("other_cpu_share"),
    }


def _valid_curve(folder_run: Path) -> list[float | None]:
    import csv

    with open(folder_run / "metrics.csv", encoding="utf-8") as f:
        return [float(r["map"]) if r["map"] not in ("", None) else None for r in csv.DictReader(f)]


def key(fields: dict[str, Any]) -> str:
    """A recipe's identity in the ledger and in run folder names: its fields, sorted."""
    return json.dumps(fields, sort_keys=True).translate(str.maketrans("", "", ' {}"')).replace(":", "=") or "default"


# Student's t at 97.5% for 1..30 degrees of freedom (a 95% interval of a mean of a few paired differences)
T975 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13)
T975 += (2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04)


def half_interval(diffs: list[float]) -> float | None:
    """Half the width of the 95% interval of the mean of paired differences (None under two pairs)."""
    if len(diffs) < 2:
        return None
    t = T975[len(diffs) - 2] if len(diffs) - 1 <= len(T975) else 1.96
    return t * statistics.stdev(diffs) / math.sqrt(len(diffs))


def epochs_to_reach(curve: list[float | None], target: float) -> int | None:
    """The first epoch (1-based) whose validation mAP reaches ``target``; None if none does."""
    return next((i + 1 for i, v in enumerate(curve) if v is not None and v >= target - 1e-9), None)


def table(rows: list[dict[str, Any]], recipes: dict[str, str], names: list[str], size: str) -> list[str]:
    """Markdown rows: each variant's paired test mAP50-95 difference to the baseline (the first of ``recipes``,
    name -> recipe key), in points."""
    base, *variants = recipes
    by = {(r["dataset"], r["seed"], recipes_name(recipes, key(r["fields"]))): r for r in rows if r["size"] == size}
    lines = [
        f"| `{size}` variant | "
        + " | ".join(names)
        + " | mean | 95% interval | worst | epochs to baseline's best (median) | pairs |",
        "|---|" + "---|" * (len(names) + 5),
    ]
    base_cells = []
    for n in names:
        vals = [r["test_map"] for (d, _, v), r in by.items() if d == n and v == base]
        base_cells.append(f"{statistics.mean(vals):.3f}" if vals else "-")
    known = [float(c) for c in base_cells if c != "-"]
    mean_base = f"{statistics.mean(known):.3f}" if known else "-"
    lines.append(f"| {base} (test mAP50-95) | " + " | ".join(base_cells) + f" | {mean_base} | | | | |")
    for v in variants:
        cells, diffs, reach, pairs, every = [], [], [], 0, []
        for n in names:
            d = []
            for (dn, seed, vn), r in by.items():
                b = by.get((dn, seed, base))
                if dn != n or vn != v or b is None:
                    continue
                d.append(r["test_map"] - b["test_map"])
                target = max((x for x in b["valid_curve"] if x is not None), default=None)
                if target is not None:
                    e = epochs_to_reach(r["valid_curve"], target)
                    reach.append((e if e is not None else math.inf) / max(len(b["valid_curve"]), 1))
            pairs += len(d)
            every += [100 * x for x in d]
            cells.append(f"{100 * statistics.mean(d):+.1f}" if d else "-")
            if d:
                diffs.append(100 * statistics.mean(d))
        mean = f"{statistics.mean(diffs):+.1f}" if diffs else "-"
        worst = f"{min(diffs):+.1f}" if diffs else "-"
        med = statistics.median(reach) if reach else None
        med_s = "-" if med is None else ("not reached" if math.isinf(med) else f"{med:.2f}")
        half = half_interval(every)
        interval = "-" if half is None else f"±{half:.1f}"
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {mean} | {interval} | {worst} | {med_s} | {pairs} |")
    return lines


def absolute_table(rows: list[dict[str, Any]], recipes: dict[str, str], names: list[str], size: str) -> list[str]:
    """Markdown rows: every run's own test mAP50-95 (and mAP50), per dataset and seed, one column per recipe."""
    by = {(r["dataset"], r["seed"], recipes_name(recipes, key(r["fields"]))): r for r in rows if r["size"] == size}
    seeds = sorted({s for _, s, _ in by})
    lines = [
        f"| `{size}` dataset | seed | " + " | ".join(f"{v} mAP50-95 (mAP50)" for v in recipes) + " |",
        "|---|---|" + "---|" * len(recipes),
    ]
    for n in names:
        for seed in seeds:
            runs = [by.get((n, seed, v)) for v in recipes]
            if any(runs):
                cells = [f"{r['test_map']:.3f} ({r['test_map50']:.3f})" if r else "-" for r in runs]
                lines.append(f"| {n} | {seed} | " + " | ".join(cells) + " |")
    return lines


def recipes_name(recipes: dict[str, str], k: str) -> str | None:
    return next((n for n, rk in recipes.items() if rk == k), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="comma-separated folders or task:NAME@IMGSZxIMAGES")
    ap.add_argument("--sizes", default="fast,accurate")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--base", default="{}", help="JSON fields of the baseline recipe")
    ap.add_argument("--base-name", default="today")
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON fields changed from the baseline")
    ap.add_argument("--per-run", action="store_true", help="also a table of every run's own test mAP")
    ap.add_argument("--report-only", action="store_true", help="print the table from the ledger, train nothing")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-recipe"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ledger = args.out / "ledger.jsonl"
    rows = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.is_file() else []
    base = json.loads(args.base)
    variants = {args.base_name: {}} | {n: json.loads(j) for n, _, j in (v.partition("=") for v in args.variant)}
    datasets = [resolve_data(s, args.out) for s in args.data.split(",")]
    sizes, seeds = args.sizes.split(","), [int(s) for s in args.seeds.split(",")]
    threads = torch.get_num_threads()
    print(machine_line(f"{threads} threads"))
    done = {(r["dataset"], r["size"], r["seed"], key(r["fields"]), r["epochs"]) for r in rows}
    if not args.report_only:
        for size in sizes:
            for seed in seeds:
                for name, folder, imgsz in datasets:
                    for vname, vfields in variants.items():
                        if (name, size, seed, key(base | vfields), args.epochs) in done:
                            continue
                        r = run(name, folder, imgsz, size, seed, vname, base | vfields, args.epochs, args.out)
                        rows.append(r)
                        with open(ledger, "a", encoding="utf-8") as f:
                            f.write(json.dumps(r) + "\n")
                        print(
                            f"{name} {size} seed {seed} {vname}: test mAP50-95 {r['test_map']:.3f} "
                            f"({r['wall_seconds']:.0f} s)",
                            flush=True,
                        )
    names = [n for n, _, _ in datasets]
    rows = [r for r in rows if r["epochs"] == args.epochs]
    lines = [f"{args.epochs} epochs, batch {BATCH}, seeds {args.seeds}; baseline fields {json.dumps(base)}", ""]
    for size in sizes:
        recipes = {v: key(base | f) for v, f in variants.items()}
        lines += [*table(rows, recipes, names, size), ""]
        if args.per_run:
            lines += [*absolute_table(rows, recipes, names, size), ""]
    for v, f in variants.items():
        lines.append(f"- {v}: {json.dumps(base | f)}")
    text = "\n".join(lines)
    print(text)
    (args.out / "recipe.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
