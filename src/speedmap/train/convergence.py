"""Did a run converge? Judged on validation mAP50-95 per epoch (``history`` rows of the trainer).

"Converged" means more training would not change the answer, so three things are checked.

- **Annealed.** A run that stopped with its learning rate still high (above :data:`ANNEALED_SHARE` of its
  peak) is not converged, whatever its curve did: the low-rate end of a schedule is where a run gains its
  last points (a Fast run stopped at epoch 33 of 60 scored 0.613, the same run to 60 scored 0.749). The
  ``wsd`` schedule always ends annealed; older runs stopped by patience did not.
- **Where the stable phase ended** (``wsd``, ``phases`` from the trainer). At a plateau of the *smoothed* validation
  curve (:func:`plateau_epoch`: no gain of the smoothed curve for ``patience`` epochs and for half the run: the run
  has doubled since its best without a gain, nor climbed out of a dip below it) the run has converged. The trainer
  only stops at a plateau where one validation object moves mAP50-95 by at most ``PLATEAU_POINTS``
  (:class:`ObjectStep`): on a coarser split a flat stretch says nothing at that precision, and the run goes on to the
  cap or the budget. At the epoch cap or the time budget it has converged only if the stable phase's last doubling
  (its second half, after warm-up) raised the smoothed curve's best by an immaterial gain (:func:`immaterial`: under
  ``PLATEAU_GAIN`` of the best mAP and under ``PLATEAU_POINTS``): learning curves rise about linearly in log(epochs),
  so what the last doubling gained is what a run twice as long can expect to gain again.
- **The slope test**, for runs that reached their cap: the least-squares slope of the mAP over the last
  ``CONVERGENCE_WINDOW`` epochs is "still improving" only if it is both real and material: above ``MIN_T``
  standard errors (validation on a small split swings several points from epoch to epoch) and, carried on
  for one more window, material (:func:`immaterial`). A slope rather than "best epoch
  long ago" because it uses every epoch of the window, so one lucky or unlucky validation score does not
  decide; relative to the best mAP so that the test means the same on easy and hard data, and at most
  ``PLATEAU_POINTS`` so that "converged" means what the report promises (within 1.5 points of a longer run).

Decisions use the smoothed curve (an exponential average over :data:`SMOOTH_SPAN` epochs), not the raw
one: on 54 validation images the raw mAP swings 5-15 points from epoch to epoch, and "no gain over the
best raw epoch" fired on one lucky epoch. Patience only counts once the model detects something (best
mAP50-95 above 0): a run still at zero has not started, it has not plateaued. The slope test further waits
for ``MIN_JUDGE_MAP``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from math import ceil
from typing import Any

CONVERGENCE_WINDOW = 8  # epochs the final slope is fitted over (fewer if the run is shorter)
MIN_T = 2.0  # "still improving" needs the slope above this many standard errors (about 95% one-sided)
MIN_JUDGE_EPOCHS = 3  # a slope over fewer epochs says nothing
# immaterial: a gain under 5% of the best mAP50-95 (another window at the slope; the last doubling) ...
PLATEAU_GAIN = 0.05
# ... and under 1.5 points: the issue-33 goal ("converged" = within 1.5 points of a run twice as long). On cards
# (issue 33) both sizes gained 2.3-2.7 smoothed validation points over the last quarter, under 5% of a best of 0.8,
# so were called converged; the runs twice as long gained +1.7 and +3.1 test points.
PLATEAU_POINTS = 0.015
MIN_JUDGE_MAP = 0.01  # below 1 point of mAP50-95 a slope is noise (one detection more or less)
TIME_TO_FRACTION = 0.95  # time_to_95: first epoch at 95% of the run's best mAP50-95
SMOOTH_SPAN = 5  # decisions use an exponential average of the validation curve over about this many epochs
PLATEAU_TOLERANCE = 0.001  # a smoothed gain under 0.1 point of mAP50-95 is no gain
# A plateau must also be half the run old: the run has doubled since its smoothed best without a gain, which is
# what "a run twice as long would not change the answer" asks. Learning curves rise about linearly in log(epochs),
# so a stall of 8 epochs means little at epoch 60. From scratch on raccoon and kangaroo (issue 33, 120 epochs) "no
# gain for 8" fired at epochs 53-66 on all four runs, each of which then gained 4-16 points of validation mAP50-95;
# from the shipped weights on raccoon, "a quarter of the run" fired at epochs 26 and 32, and the runs twice as
# long gained +4.1 and +7.7 test points (Fast to the 120-epoch cap: +10.7). Half the run fires on neither.
PLATEAU_SHARE = 0.5
ANNEALED_SHARE = 0.1  # a run is annealed when its last learning rate is at most this share of its peak
STABLE_END = {"plateau": "a plateau", "epochs": "the epoch cap", "time": "the time budget"}


@dataclass(frozen=True)
class ObjectStep:
    """About the most one validation object can move mAP50-95: its class's recall, and so about its AP, by ``1 / n``
    (found at every IoU threshold, or missed), the mean over ``classes`` by ``1 / (classes * n)``; largest for the
    class with the fewest objects (``name``, ``n`` of them)."""

    step: float
    name: str
    n: int
    classes: int

    @property
    def resolves_plateau(self) -> bool:
        """Can a flat stretch on this split mean "no gain of :data:`PLATEAU_POINTS`"? Not where one object is
        worth more: microcontroller (issue 33; 15 validation images, 2 objects of its rarest class, 12.5 points
        each) plateaued flat for 36 epochs, and the same run went on to gain 11 validation and 4 test points."""
        return self.step <= PLATEAU_POINTS

    def sentence(self) -> str:
        return (
            f"one validation object can move mAP50-95 by up to {100 * self.step:.1f} points ({self.name!r} has "
            f"{self.n} object{'s' * (self.n != 1)} in validation)"
        )


def object_step(class_ids: Iterable[Iterable[int]], names: list[str]) -> ObjectStep | None:
    """:class:`ObjectStep` of a validation split given each image's class ids (crowd regions left out, as
    COCO ignores them); None without objects."""
    counts = Counter(int(c) for ids in class_ids for c in ids)
    if not counts:
        return None
    cls, n = min(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return ObjectStep(1 / (len(counts) * n), names[cls] if 0 <= cls < len(names) else str(cls), n, len(counts))


def immaterial(gain: float, best: float) -> bool:
    """Is a gain of ``gain`` mAP50-95 immaterial for a run whose best is ``best``: under
    :data:`PLATEAU_GAIN` of the best and under :data:`PLATEAU_POINTS`."""
    return gain < min(PLATEAU_GAIN * best, PLATEAU_POINTS)


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


def smooth(values: list[float], span: int = SMOOTH_SPAN) -> list[float]:
    """A causal exponential average of ``values`` (weight ``2 / (span + 1)`` on the newest)."""
    alpha, out = 2 / (span + 1), []
    for v in values:
        out.append(v if not out else out[-1] + alpha * (v - out[-1]))
    return out


def plateau_wait(patience: int, done: int) -> int:
    """Epochs without a smoothed gain that make a plateau after ``done`` epochs: ``patience``, and at least
    :data:`PLATEAU_SHARE` of the run (0: never)."""
    return 0 if patience <= 0 else max(patience, ceil(PLATEAU_SHARE * done))


def plateau_clock(sm: list[float], best_i: int) -> int:
    """Where a plateau's clock starts on the smoothed curve ``sm`` whose best is at ``best_i``: at the best, or
    at the bottom of a dip below it that the curve has since climbed more than half of (and more than
    :data:`PLATEAU_POINTS`) out of. A curve climbing out of a dip is rising, not flat: raising the rate to its
    peak after warm-up knocked a pretrained run down 9 points (raccoon, Fast, 192 px: 0.33 at epoch 12, 0.24 at
    15), it was back to 0.33 at epoch 24 when "no gain over epoch 12 for half the run" fired, and at the same
    rate it went on to 0.50 by epoch 37."""
    low = min(range(best_i, len(sm)), key=sm.__getitem__)
    climbed = sm[-1] - sm[low]
    return low if climbed > max(PLATEAU_POINTS, 0.5 * (sm[best_i] - sm[low])) else best_i


def plateau_epoch(maps: list[float], patience: int, done: int | None = None, dips: bool = True) -> int | None:
    """The 0-based epoch of the smoothed curve's best if the plateau is :func:`plateau_wait` epochs old (a gain
    must beat the best by :data:`PLATEAU_TOLERANCE`; its age counts from :func:`plateau_clock`, or from the best
    with ``dips=False``; ``done``: the run's epochs in all, when ``maps`` is its tail; 0: ``patience`` alone),
    else None. None too while patience is 0 or nothing is detected yet: a smoothed curve that never rose above
    the tolerance has not begun (a new head, still averaged in by the EMA, scored 0.00001-0.00007 for 15 epochs
    on a 6-class set before it rose), and a flat zero is no plateau."""
    if patience <= 0 or not maps:
        return None
    sm, best_i = smooth(maps), 0
    if max(sm) <= PLATEAU_TOLERANCE:
        return None
    for i, v in enumerate(sm):
        if v > sm[best_i] + PLATEAU_TOLERANCE:
            best_i = i
    start = plateau_clock(sm, best_i) if dips else best_i
    wait = plateau_wait(patience, len(maps) if done is None else done)
    return best_i if len(maps) - 1 - start >= wait else None


def first_stop(
    maps: list[float], patience: int, smoothed: bool = True, aged: bool = True, dips: bool = True, before: int = 0
) -> int | None:
    """The 1-based epoch at which a run with validation curve ``maps`` would stop: by the smoothed curve's
    plateau (wsd's rule; ``aged=False``: after ``patience`` epochs, the rule before :data:`PLATEAU_SHARE`;
    ``dips=False``: the clock from the best, the rule before :func:`plateau_clock`) or, ``smoothed=False``, after
    ``patience`` epochs without beating the best raw epoch (the linear and cosine schedules' early stopping);
    None if it never would. ``before``: epochs the run had before ``maps`` began (its warm-up, as the trainer
    judges), counted in the run's age and in the epoch returned."""
    best, best_i = -1.0, 0
    for n in range(1, len(maps) + 1):
        if smoothed:
            if plateau_epoch(maps[:n], patience, done=n + before if aged else 0, dips=dips) is not None:
                return n + before
            continue
        if maps[n - 1] > best:
            best, best_i = maps[n - 1], n - 1
        if patience_stop(best, n - 1 - best_i, patience):
            return n + before
    return None


def annealed_best(maps: list[float], cooldown_start: int | None) -> int:
    """The 0-based epoch ``best.pt`` holds: the first best validation mAP50-95 among the cooldown's epochs once a
    wsd run has reached them (``cooldown_start``: its first cooldown epoch, 0-based), else over the run. A best
    picked over the whole run on a small validation split is often a high-rate epoch that scored by luck: from
    scratch on raccoon, twice the epochs picked epoch 78 of 240 (test mAP50-95 0.440) where the annealed end
    scored 0.504, as the run half as long did (0.505)."""
    start = cooldown_start if cooldown_start is not None and cooldown_start < len(maps) else 0
    tail = maps[start:]
    return start + tail.index(max(tail))


def lr_share(history: list[dict[str, Any]]) -> float | None:
    """The last epoch's learning rate over the run's peak; None when the rows have no rates."""
    lrs = [h.get("lr") for h in history]
    if not lrs or any(v is None for v in lrs) or max(lrs) <= 0:
        return None
    return float(lrs[-1]) / float(max(lrs))


def convergence(
    history: list[dict[str, Any]], patience: int, epochs_planned: int, phases: dict[str, Any] | None = None
) -> tuple[bool, dict[str, Any]]:
    """``(converged, details)``: details has stopped_early, best_epoch (1-based), patience, slope (mAP50-95
    per epoch over the last ``window`` epochs judged), window, annealed, lr_share, phases and a one-sentence
    reason. ``phases``: the ``wsd`` trainer's record of where its stable phase ended and why."""
    run = len(history)
    maps = _maps(history)
    share = lr_share(history)
    info: dict[str, Any] = {
        "stopped_early": False,
        "best_epoch": run,
        "patience": patience,
        "slope": 0.0,
        "window": 0,
        "annealed": share is None or share <= ANNEALED_SHARE,
        "lr_share": None if share is None else round(share, 4),
        "phases": phases or None,
        "reason": "",
    }
    if maps is None:
        info["reason"] = "no validation mAP: convergence cannot be judged"
        return False, info
    best = max(maps)
    best_i = annealed_best(maps, (phases or {}).get("stable_end"))  # the epoch best.pt holds
    info["best_epoch"] = best_i + 1
    if not info["annealed"]:
        info["reason"] = (
            f"stopped at epoch {run} with the learning rate at {share:.0%} of its peak: not annealed, so a longer "
            "schedule would likely change the result"
        )
        return False, info
    if phases is not None:
        return _judge_phases(maps, patience, phases, info)
    since = run - 1 - best_i
    if patience_stop(best, since, patience):
        info["stopped_early"] = run < epochs_planned
        info["reason"] = f"plateau: no gain for {since} epoch{'s' * (since != 1)} after epoch {best_i + 1}"
        return True, info
    return _judge_slope(maps, info, "")


def _judge_phases(
    maps: list[float], patience: int, phases: dict[str, Any], info: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """A ``wsd`` run: converged at a plateau of its stable phase, else by the slope of the stable phase's end."""
    end, why = phases.get("stable_end"), phases.get("stable_end_reason")
    cool = f"; then cooled down over {phases.get('cooldown', 0)} epochs"
    if end is None or why not in STABLE_END:
        info["reason"] = "the stable phase never ended: the run stopped before its cooldown"
        return False, info
    stable = maps[:end]
    if why == "plateau":
        b = int(phases.get("smoothed_best") or end - patience)
        info["stopped_early"] = True
        info["reason"] = (
            f"plateau: the smoothed validation mAP50-95 gained nothing for {end - b} epochs after epoch {b}" + cool
        )
        return True, info
    when = f" when {STABLE_END[why]} began the cooldown at epoch {end}"
    step = phases.get("object_step")
    if step is not None and step > PLATEAU_POINTS:
        when += f" (no plateau stop: one validation object can move mAP50-95 by up to {100 * step:.1f} points)"
    return _judge_smoothed(stable, info, when, cool, int(phases.get("warmup_end") or 0))


def _judge_smoothed(
    maps: list[float], info: dict[str, Any], when: str, tail: str, warmup_end: int = 0
) -> tuple[bool, dict[str, Any]]:
    """A wsd stable phase that the cap or the budget ended, not a plateau: its smoothed curve was still making
    gains within the last :func:`plateau_wait` epochs. Converged only if the phase's last doubling (epochs
    ``run // 2 + 1`` to ``run``, after warm-up) raised the smoothed best by an :func:`immaterial` gain, the
    same window the plateau rule waits for, judged in points rather than at zero. The reason gives the gain.

    Why the last doubling and not the slope of the last quarter (the rule before): on medicine and raccoon
    (issue 33) the smoothed curves were flat over their last quarter (another quarter projected +0.1, +0.7 and
    -1.1 points) and the runs twice as long still gained 1.8-3.3 test points at their annealed ends: a slow
    creep, linear in log(epochs), that a linear slope over a short window cannot see. On nine cap-ended runs of
    five datasets the test gain at 2x was -0.1 to 0.85 times the last doubling's smoothed validation gain."""
    run, best = len(maps), max(maps)
    lo = max(run // 2, warmup_end)
    window = run - lo
    if best < MIN_JUDGE_MAP or run < MIN_JUDGE_EPOCHS or window < MIN_JUDGE_EPOCHS or lo < 1:
        return _judge_slope(maps, info, when, tail)  # says why it cannot be judged, or judges a short run
    sm = smooth(maps)
    gain = max(sm[lo:]) - max(sm[:lo])
    info.update(slope=round(slope(sm[lo:]), 6), window=window, doubling_gain=round(gain, 4))
    rose = (
        f"the smoothed validation mAP50-95 {'rose' if gain >= 0 else 'fell'} {100 * gain:+.1f} points over epochs "
        f"{lo + 1}-{run} (the "
        f"stable phase's last doubling){when}"
    )
    if immaterial(gain, best):
        info["reason"] = f"plateau: {rose}{tail}"
        return True, info
    info["reason"] = f"still improving: {rose}; a run twice as long may gain about as much{tail}"
    return False, info


def _judge_slope(maps: list[float], info: dict[str, Any], when: str, tail: str = "") -> tuple[bool, dict[str, Any]]:
    """The slope test on the last window of ``maps`` (the whole run, or a wsd run's stable phase)."""
    run, best = len(maps), max(maps)
    window = min(CONVERGENCE_WINDOW, max(MIN_JUDGE_EPOCHS, run // 2), run)  # the second half of a short run
    s = slope(maps[-window:])
    info.update(slope=round(s, 6), window=window)
    if best < MIN_JUDGE_MAP:
        info["reason"] = f"not started: best mAP50-95 {best:.4f} is too low to judge a plateau"
        return False, info
    if run < MIN_JUDGE_EPOCHS:  # e.g. 2 epochs from pretrained weights: no slope, so no plateau either
        info["reason"] = f"too few epochs ({run}) to judge a plateau"
        return False, info
    t = slope_t(maps[-window:])
    info["t"] = round(t, 2) if t != float("inf") else None
    small = immaterial(s * window, best)
    if small or t < MIN_T:
        why = f"best {best:.3f}" if small else "within validation noise"
        info["reason"] = f"plateau: {s:+.2g} mAP50-95 per epoch over the last {window} epochs{when} ({why}){tail}"
        return True, info
    info["reason"] = f"still improving: {s:+.2g} mAP50-95 per epoch over the last {window} epochs{when}{tail}"
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
