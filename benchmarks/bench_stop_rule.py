"""False stops on a noisy validation curve: the raw patience rule against the smoothed one (issue 33, section 1).

Simulated curves with the noise measured on small real validation splits (the cards set's Fast run swung
0.664, 0.598, 0.621, 0.584 over four epochs: 3-4.5 points of standard deviation): curves still rising toward
0.78 mAP50-95 (time constants 15 to 40 epochs), where any stop is false, and flat
curves, where a stop should come soon; 48 epochs of stable phase (the 60-epoch cap) and 96 (the 120-epoch
cap, with slower rises: tau 25 and 40). Patience 8, as the study uses, alone and with half the run (PLATEAU_SHARE).

    python benchmarks/bench_stop_rule.py

Prints a markdown table: for each noise level and curve, how many of 200 runs each rule stops (rising: false
stops), and the median epoch of the stop. Takes a minute.
"""

from __future__ import annotations

import numpy as np

from speedmap.train.convergence import first_stop

PATIENCE, RUNS = 8, 200
RULES = (  # the stop of each rule on a curve
    ("raw patience", lambda c: first_stop(c, PATIENCE, smoothed=False)),
    ("smoothed, 8 epochs", lambda c: first_stop(c, PATIENCE, aged=False)),
    ("smoothed, 8 epochs and half the run", lambda c: first_stop(c, PATIENCE)),
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
                cells = " | ".join(summary([rule(c) for c in curves]) for _, rule in RULES)
                print(f"| {epochs} | {100 * sigma:.1f} | rising (tau {tau}): false stops | {cells} |")
            flat = [list(0.6 + rng.normal(0, sigma, epochs)) for _ in range(RUNS)]
            cells = " | ".join(summary([rule(c) for c in flat]) for _, rule in RULES)
            print(f"| {epochs} | {100 * sigma:.1f} | flat: stops | {cells} |")


if __name__ == "__main__":
    main()
