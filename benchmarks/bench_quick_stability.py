"""Does `speedmap compare --quick` give a stable answer? Runs it with two seeds (or reads finished
study folders) and prints, side by side, the recommendation per task and the rules' verdicts, and,
given a full study's folder, whether the quick recommendations agree with it on the same tasks (its rules
are printed for reference: they span all of its tasks).

    python benchmarks/bench_quick_stability.py --seeds 1,2 --out runs/quick-stability [--full runs/study-full]

Exit 1 when the two quick runs disagree (or disagree with the full study)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from speedmap.study.results import StudyResults


def verdicts(folder: Path) -> tuple[dict[str, str], dict[str, bool | None], StudyResults]:
    res = StudyResults.from_json(__import__("json").loads((folder / "results.json").read_text()))
    rec = res.recommendation
    assert rec is not None, f"{folder}: the study did not finish"
    choices = {c.task: c.size + (" (provisional)" if c.provisional else "") for c in rec.choices}
    rules = {r.rule.split(":")[0].split(" (")[0]: r.supported for r in rec.rules}
    return choices, rules, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--out", type=Path, default=Path("runs/quick-stability"))
    ap.add_argument("--full", type=Path, help="a finished full study folder to compare with")
    ap.add_argument("--extra", default="", help="extra options for speedmap compare, e.g. '--targets http,local'")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {}
    for seed in seeds:
        folder = args.out / f"seed-{seed}"
        t = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "speedmap",
            "compare",
            "--quick",
            "--seed",
            str(seed),
            "--out",
            str(folder),
            *args.extra.split(),
        ]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s wall (0 s when every step was reused)", flush=True)
        runs[seed] = verdicts(folder)
    full = verdicts(args.full) if args.full else None
    tasks = list(runs[seeds[0]][0])
    print("\n| task | " + " | ".join(f"quick seed {s}" for s in seeds) + (" | full study |" if full else " |"))
    print("|---|" + "---|" * (len(seeds) + bool(full)))
    ok = True
    for t in tasks:
        row = [runs[s][0].get(t, "-") for s in seeds] + ([full[0].get(t, "-")] if full else [])
        ok &= len(set(row)) == 1
        print(f"| {t} | " + " | ".join(row) + " |")
    name = {True: "supported", False: "not supported", None: "undecided"}
    rules = list(runs[seeds[0]][1])
    print("\n| rule | " + " | ".join(f"quick seed {s}" for s in seeds) + (" | full study |" if full else " |"))
    print("|---|" + "---|" * (len(seeds) + bool(full)))
    for r in rules:
        row = [runs[s][1].get(r, "absent") for s in seeds] + ([full[1].get(r, "absent")] if full else [])
        ok &= len({str(x) for x in row[: len(seeds)]}) == 1  # the full study's rules span all its tasks
        print(f"| {r} | " + " | ".join(name.get(x, str(x)) for x in row) + " |")  # type: ignore[arg-type]
    print("\n| seed | task | size | epochs run | converged | test mAP50-95 [95% CI] | Δ mAP50-95 [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    for s in seeds:
        for t, task in runs[s][2].tasks.items():
            d = task.accuracy_delta
            for size, e in task.sizes.items():
                ci = e.metrics.map_ci95
                delta = (
                    f"{100 * d.map:+.1f} [{100 * d.map_ci95[0]:+.1f}, {100 * d.map_ci95[1]:+.1f}]"
                    if (d and d.map_ci95 and size == "accurate")
                    else ""
                )
                print(
                    f"| {s} | {t} | {size} | {e.train.epochs_run} | {'yes' if e.train.converged else 'no'} | "
                    f"{e.metrics.map:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {delta} |"
                    if ci
                    else ""
                )
    print("\nverdicts agree" if ok else "\nverdicts DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
