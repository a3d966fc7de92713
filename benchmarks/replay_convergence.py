"""The current convergence judgement, replayed on finished runs (issue 33, section 2).

The judgement runs after training on a run's per-epoch log (``metrics.csv``) and the phases its ``train.json``
records, so replaying it on saved runs gives what the trainer writes today. Prints one markdown row per run:
where its stable phase ended, the smoothed best's rise over the stable phase's last doubling, and the verdict.

    python benchmarks/replay_convergence.py /work/runs/anneal3/*-s0 /work/runs/anneal4/*-s0 /work/runs/anneal6/*-s0

CPU-light (no training, no scoring): the 2x columns of ``BENCHMARKS.md`` come from ``bench_anneal.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_anneal import judged
from harness import md_table

HEADER = ("run", "stable phase ended by", "smoothed best's rise over the last doubling (points)", "verdict", "reason")


def main() -> None:
    rows = []
    for run in map(Path, sys.argv[1:]):
        rec = json.loads((run / "train.json").read_text())
        ok, info = judged(run, rec)
        ph = info.get("phases") or {}
        gain = info.get("doubling_gain")
        rows.append(
            [
                run.name,
                f"{ph.get('stable_end_reason')}, epoch {ph.get('stable_end')}",
                "(plateau)" if gain is None else f"{100 * gain:+.1f}",
                "converged" if ok else "not converged",
                info["reason"],
            ]
        )
    print(md_table(HEADER, rows))


if __name__ == "__main__":
    main()
