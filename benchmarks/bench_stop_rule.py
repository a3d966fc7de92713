"""False stops on a noisy validation curve: the raw patience rule against the smoothed one (issue 33, section 1).

Simulated curves with the noise measured on small real validation splits (the cards set's Fast run swung
0.664, 0.598, 0.621, 0.584 over four epochs: 3-4.5 points of standard deviation): curves still rising toward
0.78 mAP50-95 (time constants 15 to 40 epochs), where any stop is false, and flat
curves, where a stop should come soon; 48 epochs of stable phase (the 60-epoch cap) and 96 (the 120-epoch
cap, with slower rises: tau 25 and 40). Patience 8, as the study uses, alone and with half the run (PLATEAU_SHARE).
A third family starts from the shipped weights: warm-up (12 epochs, counted in the run's age) ends at 0.33, the
peak rate knocks it down 9 points for three epochs and it climbs back within six, then rises toward 0.58 (the
raccoon Fast run at 192 px); any stop is false. The last two columns: the plateau's clock from the smoothed best,
and from the bottom of a dip the curve has climbed out of (``plateau_clock``, the rule).

    python benchmarks/bench_stop_rule.py

Prints a markdown table: for each noise level and curve, how many of 200 runs each rule stops (rising: false
stops), and the median epoch of the stop. Takes a minute.
"""

from __future__ import annotations

import numpy as np

from speedmap.train.convergence import first_stop

PATIENCE, RUNS = 8, 200
WARMUP = 11  # epochs before the judged curve of the dip family (the trainer judges from the last warm-up epoch)
DIP = np.array([0.0, 0.0, 0.09, 0.09, 0.07, 0.05, 0.02])  # below the trend, epochs 12-18 (raccoon, Fast, 192 px)
RULES = (  # the stop of each rule on a curve, with the epochs before it
    ("raw patience", lambda c, b: first_stop(c, PATIENCE, smoothed=False, before=b)),
    ("smoothed, 8 epochs", lambda c, b: first_stop(c, PATIENCE, aged=False, dips=False, before=b)),
    (
        "smoothed, 8 epochs and half the run, clock from the best",
        lambda c, b: first_stop(c, PATIENCE, dips=False, before=b),
    ),
    ("the same, clock from a dip climbed out of", lambda c, b: first_stop(c, PATIENCE, before=b)),
)


def summary(stops: list[int | None]) -> str:
    hit = [s for s in stops if s is not None]
    return f"{len(hit)}/{len(stops)}" + (f" (median epoch {int(np.median(hit))})" if hit else "")


def main() -> None:
    rng = np.random.default_rng(0)
    print("| stable phase (epochs) | noise (points) | curve | " + " | ".join(f"{n}: stops" for n, _ in RULES) + " |")
    print("|---" * (3 + len(RULES)) + "|")
    for epochs, taus in ((48, (15, 25)), (96, (25, 40))):  # the 60- and the 120-epoch cap's constant phase
        e = np.arange(1, epochs + 1)
        for sigma in (0.02, 0.03, 0.045):
            for tau in taus:
                curves = [list(0.78 * (1 - np.exp(-e / tau)) + rng.normal(0, sigma, epochs)) for _ in range(RUNS)]
                row(epochs, sigma, f"rising (tau {tau}): false stops", curves, 0)
            trend = 0.33 + 0.25 * (1 - np.exp(-(e - 1) / taus[1])) - np.pad(DIP, (0, epochs - len(DIP)))
            dips = [list(trend + rng.normal(0, sigma, epochs)) for _ in range(RUNS)]
            row(epochs, sigma, f"dip after warm-up, then rising (tau {taus[1]}): false stops", dips, WARMUP)
            row(epochs, sigma, "flat: stops", [list(0.6 + rng.normal(0, sigma, epochs)) for _ in range(RUNS)], 0)


def row(epochs: int, sigma: float, what: str, curves: list[list[float]], before: int) -> None:
    """One table row: each rule's stops on ``curves`` (``before``: the epochs the run had before them)."""
    cells = " | ".join(summary([rule(c, before) for c in curves]) for _, rule in RULES)
    print(f"| {epochs} | {100 * sigma:.1f} | {what} | {cells} |")


if __name__ == "__main__":
    main()
