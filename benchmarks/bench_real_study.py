"""Time to a verdict on real data (issue 25, section 5): the default study, exactly as a user runs it, on each
real dataset, with the duration it states up front against the time it takes.

    python benchmarks/bench_real_study.py /work/data/real/bccd /work/data/real/raccoon /work/data/real/roadsign \
        --out runs/real-study [-- EXTRA compare ARGS]

Runs ``speedmap compare DATA --out OUT/NAME`` once per dataset (nothing else on the machine: the speed runs
and the stated-vs-actual comparison are only meaningful alone), then prints one markdown row per dataset and
size: input size and why, the split, epochs run, converged or not, test mAP50-95 / mAP50 with 95% intervals,
int8, wall time against the stated estimate, and the recommendation. Goal: at most 30 minutes per dataset of up
to 500 training images, and the stated estimate within 30% of the actual time.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path


def run_study(data: Path, out: Path, extra: list[str]) -> tuple[float, float | None, str]:
    """Wall seconds, the stated expected minutes, and the study's stderr."""
    cmd = [sys.executable, "-m", "speedmap", "compare", str(data), "--out", str(out), *extra]
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / "stderr.txt").write_text(proc.stderr)
    if proc.returncode:
        print(proc.stderr[-3000:])
        raise SystemExit(f"the study on {data} failed ({proc.returncode})")
    said = " ".join(proc.stderr.split())
    m = re.search(r"expected duration: about (\d+) minutes", said)
    return wall, float(m.group(1)) if m else None, said


def _ci(v: list[float] | None) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else ""


def rows(name: str, doc: dict, wall: float, stated: float | None) -> list[str]:
    t = doc["tasks"][next(iter(doc["tasks"]))]
    rec = next(iter(doc["recommendation"]["choices"]), None)
    verdict = "-"
    if rec:
        verdict = f"{rec['size']}{' int8' if rec.get('variant') == 'int8' else ''}"
        verdict += f" ({rec['evidence']['strength']}{', provisional' if rec['provisional'] else ''})"
    off = f"{100 * (stated * 60 - wall) / wall:+.0f}%" if stated else "-"
    out = []
    for size, s in t["sizes"].items():
        tr, m, q = s["train"], s["metrics"], s.get("int8")
        int8 = f"{q['metrics']['map']:.3f} ({100 * q['delta_map']:+.1f})" if q else "-"
        cut = tr.get("budget") or t.get("plan", {}).get("limited")  # the trainer's time limit or the plan's epochs
        out.append(
            f"| {name} | {size} | {t['imgsz']} | {t['split'].get('source')} "
            f"| {tr['train_images']} / {s['test_images']} "
            f"| {tr['epochs_run']}{' (budget)' if cut else ''} | {'yes' if tr['converged'] else 'no'} "
            f"| {m['map']:.3f} {_ci(m.get('map_ci95'))} | {m['map50']:.3f} {_ci(m.get('map50_ci95'))} | {int8} "
            f"| {wall / 60:.1f} | {stated or '-'} | {off} | {verdict} |"
        )
    return out


def time_split(name: str, out: Path) -> str:
    """Where the study's time went, from steps.json and each run's train.json: probe, per size the training
    pass and the rest of an epoch (validation, checkpoints, data set-up), exports, scoring, benchmarks."""
    steps = json.loads((out / "steps.json").read_text())
    parts: dict[str, float] = {}
    for step, e in steps.items():
        kind = step.split("/")[0]
        secs = float(e.get("seconds", 0.0))
        if kind == "train":
            size = step.split("/")[2]
            rec = json.loads((Path(e["result"]["run"]) / "train.json").read_text())
            loop = float(sum(rec["epoch_seconds"]))
            parts[f"{size} training pass"] = loop
            parts[f"{size} validation + set-up"] = secs - loop
        elif kind == "export" and step.endswith("-int8"):
            parts["int8 exports (calibration)"] = parts.get("int8 exports (calibration)", 0.0) + secs
        else:
            label = "benchmarks" if kind == "bench" else "fp32 exports" if kind == "export" else kind
            parts[label] = parts.get(label, 0.0) + secs
    total = sum(parts.values())
    cells = ", ".join(f"{k} {v / 60:.1f} min ({100 * v / total:.0f}%)" for k, v in parts.items())
    return f"{name}: {total / 60:.1f} min of steps: {cells}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/real-study"))
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    table = [
        "| dataset | size | imgsz | split | train / test | epochs | converged | test mAP50-95 [95% CI] "
        "| mAP50 [95% CI] | int8 mAP50-95 (points vs fp32) | actual min | stated min | stated vs actual | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    splits: list[str] = []
    for data in args.data:
        out = args.out / data.name
        out.mkdir(parents=True, exist_ok=True)
        wall, stated, _ = run_study(data, out, extra)
        doc = json.loads((out / "results.json").read_text())
        new = rows(data.name, doc, wall, stated)
        table += new
        print("\n".join(new), flush=True)
        t = doc["tasks"][next(iter(doc["tasks"]))]
        print(f"  {data.name}: {t['imgsz']} px because {t['imgsz_reason']}", flush=True)
        splits.append(time_split(data.name, out))
        print("  " + splits[-1], flush=True)
    print("\n".join(table))
    print("\n".join(splits))
    (args.out / "table.md").write_text("\n".join(table) + "\n\n" + "\n".join(f"- {x}" for x in splits) + "\n")


if __name__ == "__main__":
    main()
