"""Did a run converge? Judged on validation mAP50-95 per epoch (``history`` rows of the trainer).

A run that early stopping ended (no gain for ``patience`` epochs) has converged by definition. A run that
reached its maximum epochs is still improving only if the least-squares slope of its mAP50-95 over the last
``CONVERGENCE_WINDOW`` epochs is both real and material: above ``MIN_T`` standard errors (validation on a
small split swings several points from epoch to epoch; measured on the quick study's 45 validation images,
a 5-epoch slope called flat curves "still improving" on one seed and not on another), and, carried on for
one more window, worth at least ``PLATEAU_GAIN`` of the best mAP. Otherwise it has plateaued. A slope
rather than "best epoch long ago" because it uses every epoch of the window, so one lucky or unlucky
validation score does not decide; relative to the best mAP so that the test means the same on easy and
hard data.

Patience only counts once the model detects something (best mAP50-95 above 0): a run still at zero has
not started, it has not plateaued. The slope test further waits for ``MIN_JUDGE_MAP``.
"""

from __future__ import annotations

from typing import Any

CONVERGENCE_WINDOW = 8  # epochs the final slope is fitted over (fewer if the run is shorter)
MIN_T = 2.0  # "still improving" needs the slope above this many standard errors (about 95% one-sided)
MIN_JUDGE_EPOCHS = 3  # a slope over fewer epochs says nothing
PLATEAU_GAIN = 0.05  # plateau: another window at the current slope would add < 5% of the best mAP50-95
MIN_JUDGE_MAP = 0.01  # below 1 point of mAP50-95 a slope is noise (one detection more or less)
TIME_TO_FRACTION = 0.95  # time_to_95: first epoch at 95% of the run's best mAP50-95


def slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against 0, 1, 2, ... (per step); 0 for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return 0.0
    xm, ym = (n - 1) / 2, sum(values) / n
    return sum((i - xm) * (v - ym) for i, v in enumerate(values)) / sum((i - xm) ** 2 for i in range(n))


def slope_t(values: list[float]) -> float:
    """The least-squares slope of ``values`` over its standard error (inf for a noiseless rising line)."""
    n = len(values)
    if n < 3:
        return 0.0
    b = slope(values)
    xm, ym = (n - 1) / 2, sum(values) / n
    sxx = sum((i - xm) ** 2 for i in range(n))
    resid = sum((v - (ym + b * (i - xm))) ** 2 for i, v in enumerate(values))
    se = (resid / (n - 2) / sxx) ** 0.5
    if se == 0:
        return float("inf") if b > 0 else 0.0
    return b / se


def _maps(history: list[dict[str, Any]]) -> list[float] | None:
    maps = [h.get("map") for h in history]
    return None if not maps or any(m is None for m in maps) else [max(float(m), 0.0) for m in maps]


def patience_stop(best_map: float, epochs_since_best: int, patience: int) -> bool:
    """Early stopping's rule: ``patience`` epochs without a gain, once anything was detected."""
    return patience > 0 and best_map > 0 and epochs_since_best >= patience


def convergence(history: list[dict[str, Any]], patience: int, epochs_planned: int) -> tuple[bool, dict[str, Any]]:
    """``(converged, details)``: details has stopped_early, best_epoch (1-based), patience, slope (mAP50-95
    per epoch over the last ``window`` epochs), window and a one-sentence reason."""
    run = len(history)
    maps = _maps(history)
    info: dict[str, Any] = {
        "stopped_early": False,
        "best_epoch": run,
        "patience": patience,
        "slope": 0.0,
        "window": 0,
        "reason": "",
    }
    if maps is None:
        info["reason"] = "no validation mAP: convergence cannot be judged"
        return False, info
    best = max(maps)
    best_i = maps.index(best)  # first epoch reaching the best, as best.pt
    window = min(CONVERGENCE_WINDOW, max(MIN_JUDGE_EPOCHS, run // 2), run)  # the second half of a short run
    s = slope(maps[-window:])
    since = run - 1 - best_i
    hit = patience_stop(best, since, patience)
    info.update(stopped_early=hit and run < epochs_planned, best_epoch=best_i + 1, slope=round(s, 6), window=window)
    if hit:
        info["reason"] = f"plateau: no gain for {since} epoch{'s' * (since != 1)} after epoch {best_i + 1}"
        return True, info
    if best < MIN_JUDGE_MAP:
        info["reason"] = f"not started: best mAP50-95 {best:.4f} is too low to judge a plateau"
        return False, info
    if run < MIN_JUDGE_EPOCHS:  # e.g. 2 epochs from pretrained weights: no slope, so no plateau either
        info["reason"] = f"too few epochs ({run}) to judge a plateau"
        return False, info
    t = slope_t(maps[-window:])
    info["t"] = round(t, 2) if t != float("inf") else None
    if s * window < PLATEAU_GAIN * best or t < MIN_T:
        why = "within validation noise" if s * window >= PLATEAU_GAIN * best else f"best {best:.3f}"
        info["reason"] = f"plateau: {s:+.2g} mAP50-95 per epoch over the last {window} epochs ({why})"
        return True, info
    info["reason"] = f"still improving: {s:+.2g} mAP50-95 per epoch over the last {window} epochs"
    return False, info


def time_to_fraction(history: list[dict[str, Any]], fraction: float = TIME_TO_FRACTION) -> tuple[float, int] | None:
    """Cumulative training seconds and 1-based epoch when mAP50-95 first reached ``fraction`` of the run's
    best; None without validation or while the best is 0."""
    maps = _maps(history)
    if maps is None or max(maps) <= 0:
        return None
    target, total = fraction * max(maps), 0.0
    for h, m in zip(history, maps, strict=True):
        total += float(h["seconds"])
        if m >= target:
            return total, int(h["epoch"])
    return None  # unreachable: the best itself reaches the target
