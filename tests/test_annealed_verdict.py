"""Training that ends annealed, the same way for both sizes, and a verdict that a longer run would not
overturn (issue 33): the wsd schedule's phases, the stopping rule on a noisy validation curve, and the
verdict when a size stopped mid-schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speedmap.cli.compare import study_config
from speedmap.study.config import QUICK as QUICK_STUDY
from speedmap.study.config import StudyConfig, plan
from speedmap.study.evidence import evidence
from speedmap.train.convergence import (
    ANNEALED_SHARE,
    annealed_best,
    convergence,
    first_stop,
    object_step,
    plateau_clock,
    plateau_epoch,
    plateau_wait,
    smooth,
)
from speedmap.train.schedule import COOLDOWN_SHARE, Schedule, cooldown_epochs, stable_cap
from tests.test_compare import study


def rising(epochs: int, sigma: float, rng: np.random.Generator, tau: float = 15.0) -> list[float]:
    """A validation curve still rising at the end (toward 0.78 mAP50-95), with per-epoch noise ``sigma``."""
    e = np.arange(1, epochs + 1)
    return list(0.78 * (1 - np.exp(-e / tau)) + rng.normal(0, sigma, epochs))


def raw_patience_stop(maps: list[float], patience: int) -> int | None:
    """The rule before issue 33: stop after ``patience`` epochs without beating the best raw epoch."""
    return first_stop(maps, patience, smoothed=False)


def smoothed_stop(maps: list[float], patience: int) -> int | None:
    return first_stop(maps, patience)


def test_wsd_schedule_phases() -> None:
    """Constant rate until the cooldown begins, then a linear fall to lrf over the cooldown's epochs."""
    s = Schedule(60, 0.01, "wsd", 10, 0)
    assert s.factor(0) == s.factor(47.9) == s.factor(500) == 1.0  # no cooldown set: the stable phase
    c = Schedule(60, 0.01, "wsd", 10, 0, cooldown_start=30, cooldown=8)
    assert c.factor(29.9) == 1.0 and c.factor(30) == 1.0
    assert c.factor(34) == pytest.approx(1 - 0.5 * 0.99) and c.factor(38) == pytest.approx(0.01)
    assert c.factor(37.9) < ANNEALED_SHARE  # the last batch of the run is annealed
    lin = Schedule(60, 0.01, "linear", 10, 0)
    assert lin.factor(30) == pytest.approx(0.505) and lin.factor(60) == pytest.approx(0.01)
    assert Schedule(60, 0.01, "cosine", 10, 0).factor(30) == pytest.approx(0.505)
    for epochs in range(3, 200):
        s_ = stable_cap(epochs)
        assert s_ + cooldown_epochs(s_) <= epochs < s_ + 1 + cooldown_epochs(s_ + 1)  # the cap leaves a full cooldown
    for stable in (8, 24, 48, 100):  # the cooldown is a fixed share of the run
        assert cooldown_epochs(stable) / (stable + cooldown_epochs(stable)) == pytest.approx(COOLDOWN_SHARE, abs=0.03)


def test_the_smoothed_rule_stops_falsely_far_less_often_on_a_noisy_curve() -> None:
    """Curves still rising (as the cards' Fast run was) with 3-4.5 points of validation noise: "no gain over
    the best raw epoch for 8 epochs" fires on a lucky epoch; the smoothed curve's rule far less often, and on
    a flat curve it stops as soon."""
    rng = np.random.default_rng(0)
    for sigma in (0.03, 0.045):
        curves = [rising(48, sigma, rng) for _ in range(200)]
        raw = sum(raw_patience_stop(c, 8) is not None for c in curves)
        smoothed = sum(smoothed_stop(c, 8) is not None for c in curves)
        print(f"sigma {sigma}: false stops raw {raw}/200, smoothed {smoothed}/200")
        assert raw >= 60 and smoothed <= raw / 2.5
        flat = [list(0.6 + rng.normal(0, sigma, 48)) for _ in range(100)]
        raw_at = np.median([raw_patience_stop(c, 8) or 48 for c in flat])
        smooth_at = np.median([smoothed_stop(c, 8) or 48 for c in flat])
        assert smooth_at <= raw_at + 1 and smooth_at <= 16  # a real plateau is still found early


def test_best_pt_is_picked_among_the_annealed_epochs() -> None:
    """Once a wsd run's cooldown has begun, best.pt is the best validation epoch of the cooldown, not a high-rate
    epoch that scored by luck on a small split (raccoon from scratch, twice the epochs: epoch 78 of 240 picked,
    test mAP50-95 0.440 against 0.504 at the annealed end); before the cooldown, and without one, the run's best."""
    maps = [0.3, 0.5, 0.62, 0.45, 0.5, 0.55, 0.56, 0.58, 0.57]  # a lucky 0.62 at high rate; cooldown from index 5
    assert annealed_best(maps, 5) == 7
    assert annealed_best(maps, None) == 2 and annealed_best(maps[:5], 5) == 2  # no cooldown (yet): the run's best
    assert annealed_best([0.5, 0.5, 0.4, 0.4], 2) == 2  # the first of equals, as best.pt keeps it
    _, info = convergence(
        [{"map": m, "lr": 0.01 if i < 5 else 0.0001} for i, m in enumerate(maps)],
        8,
        9,
        {"stable_end": 5, "stable_end_reason": "epochs", "cooldown": 4},
    )
    assert info["best_epoch"] == 8


def test_smooth_is_a_causal_average() -> None:
    assert smooth([0.0, 1.0, 1.0]) == pytest.approx([0.0, 1 / 3, 5 / 9])
    assert plateau_epoch([0.0] * 20, 5) is None  # nothing detected: not started, not a plateau
    # cards, Fast, the study's defaults: a new 6-class head, averaged in by the EMA, scored next to nothing from
    # the end of warm-up (epoch 7) to epoch 15 and then rose; that flat start is not a plateau
    cards = [6.6e-05, 2.3e-05, 1.1e-06, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0022, 0.0043, 0.0107, 0.0287]
    assert all(plateau_epoch(cards[:n], 8) is None for n in range(1, 10))
    assert plateau_epoch([*cards, 0.05, 0.07, *[0.08] * 60], 8) is not None  # a plateau once it has risen
    assert plateau_epoch([0.5] * 9, 8) == 0 and plateau_epoch([0.5] * 8, 8) is None


# raccoon, Fast, 120 epochs at 128 px from scratch (issue 33): validation mAP50-95 of epochs 1-96, the stable phase; its
# smoothed curve stalled around epochs 45-53 and then rose 6 points to 0.52 by epoch 88
RACCOON_FAST = [
    *[0.117, 0.115, 0.002, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.002, 0.004, 0.006, 0.138, 0.142, 0.154],
    *[0.149, 0.142, 0.139, 0.17, 0.197, 0.219, 0.243, 0.253, 0.252, 0.206, 0.192, 0.214, 0.251, 0.257, 0.301],
    *[0.334, 0.353, 0.363, 0.373, 0.379, 0.346, 0.349, 0.396, 0.414, 0.42, 0.398, 0.475, 0.491, 0.484, 0.476],
    *[0.452, 0.41, 0.395, 0.396, 0.388, 0.416, 0.446, 0.459, 0.451, 0.45, 0.456, 0.461, 0.462, 0.482, 0.48],
    *[0.48, 0.478, 0.456, 0.448, 0.439, 0.438, 0.464, 0.473, 0.477, 0.485, 0.489, 0.49, 0.497, 0.48, 0.484],
    *[0.467, 0.471, 0.496, 0.529, 0.523, 0.525, 0.519, 0.516, 0.502, 0.518, 0.522, 0.517, 0.522, 0.513, 0.5],
    *[0.472, 0.473, 0.489, 0.48, 0.462, 0.469],
]


# raccoon's Fast run from the shipped weights (issue 33): validation mAP50-95 over the 96-epoch stable phase of a
# 120-epoch run. With "a quarter of the run" its plateau fired at epoch 32 (smoothed best at 24), and the run
# stopped at 40 with test mAP50-95 0.468; twice as long scored 0.544, to the cap 0.575.
RACCOON_FAST_SHIPPED = [
    *[0.115, 0.022, 0.025, 0.08, 0.144, 0.194, 0.271, 0.324, 0.286, 0.34, 0.385, 0.357, 0.386, 0.369, 0.361],
    *[0.343, 0.359, 0.415, 0.429, 0.413, 0.431, 0.439, 0.427, 0.434, 0.42, 0.378, 0.355, 0.328, 0.387, 0.406],
    *[0.429, 0.437, 0.448, 0.425, 0.42, 0.437, 0.461, 0.448, 0.435, 0.418, 0.4, 0.411, 0.425, 0.425, 0.41],
    *[0.414, 0.425, 0.49, 0.483, 0.477, 0.496, 0.485, 0.482, 0.489, 0.495, 0.481, 0.5, 0.471, 0.469, 0.453],
    *[0.46, 0.468, 0.469, 0.455, 0.428, 0.434, 0.442, 0.442, 0.455, 0.468, 0.471, 0.459, 0.462, 0.451, 0.427],
    *[0.435, 0.437, 0.435, 0.441, 0.444, 0.458, 0.457, 0.457, 0.468, 0.475, 0.453, 0.454, 0.456, 0.473, 0.454],
    *[0.469, 0.459, 0.438, 0.429, 0.457, 0.472],
]


# raccoon's Fast run from the shipped weights at 192 px (the input size raccoon's default study chose): validation
# mAP50-95 over the 96-epoch stable phase of a 120-epoch run. Warm-up ended at epoch 12 (0.334); the peak rate
# knocked it down to 0.236 at 15; it was back at 0.335 at 24, when "no smoothed gain over epoch 12 for half the
# run" fired in the study (Fast stopped at 30, test mAP50-95 0.422); at the same rate it rose to 0.50 by epoch 37,
# and the 60-epoch run scored 0.506.
RACCOON_FAST_192 = [
    *[0.063, 0.015, 0.039, 0.141, 0.18, 0.185, 0.218, 0.228, 0.254, 0.294, 0.326, 0.334, 0.333, 0.248, 0.236],
    *[0.261, 0.26, 0.309, 0.338, 0.302, 0.294, 0.331, 0.293, 0.335, 0.341, 0.361, 0.353, 0.388, 0.408, 0.36],
    *[0.299, 0.304, 0.326, 0.365, 0.405, 0.46, 0.495, 0.488, 0.469, 0.458, 0.479, 0.502, 0.488, 0.465, 0.428],
    *[0.428, 0.443, 0.48, 0.509, 0.53, 0.542, 0.51, 0.499, 0.499, 0.483, 0.489, 0.51, 0.513, 0.523, 0.482],
    *[0.426, 0.378, 0.375, 0.387, 0.377, 0.365, 0.382, 0.39, 0.398, 0.419, 0.443, 0.458, 0.48, 0.499, 0.51],
    *[0.526, 0.501, 0.492, 0.483, 0.489, 0.477, 0.471, 0.497, 0.5, 0.491, 0.503, 0.519, 0.519, 0.513, 0.516],
    *[0.47, 0.436, 0.438, 0.433, 0.456, 0.468],
]


def test_a_curve_climbing_out_of_a_dip_is_not_on_a_plateau() -> None:
    """A plateau's clock restarts at the bottom of a dip the curve has climbed more than half out of: the
    study's false stop at epoch 24 (raccoon, Fast, 192 px) no longer fires anywhere in the stable phase, while
    a curve that falls and stays down, or climbs back and then stays flat, still stops."""
    w, curve = 11, RACCOON_FAST_192  # judged as the trainer does: from the last warm-up epoch (12)
    assert first_stop(curve[w:], 8, dips=False, before=w) == 24  # the study's stop
    assert first_stop(curve[w:], 8, before=w) is None
    sm = smooth(curve[w:24])
    assert plateau_clock(sm, 0) == 5  # the bottom of the smoothed dip (epoch 17)
    assert plateau_clock(smooth(curve[w:16]), 0) == 0  # still at the bottom: nothing climbed
    fallen = [*curve[:16], *[0.24] * 40]  # overfits after the warm-up peak: a plateau, from the best
    assert first_stop(fallen[w:], 8, before=w) == first_stop(fallen[w:], 8, dips=False, before=w) == 24
    back = [*curve[:24], *[0.33] * 40]  # climbs back and stays: a plateau once flat for half the run
    stop = first_stop(back[w:], 8, before=w)
    assert stop is not None and 30 < stop < 64


def test_a_plateau_must_be_half_the_run_old() -> None:
    """Learning curves rise about linearly in log(epochs): 8 epochs without a gain end a plateau early in a run,
    not at epoch 50. A plateau is half the run old: the run has doubled since its best without a gain, what "a
    run twice as long would not change it" asks. Judged as the trainer does (from the last warm-up epoch)."""
    assert [plateau_wait(8, n) for n in (10, 16, 17, 32, 60, 120)] == [8, 8, 9, 16, 30, 60]
    assert plateau_wait(0, 100) == 0

    def fires(curve: list[float], w: int, n: int, done: int, dips: bool = True) -> bool:
        return plateau_epoch(curve[w:n], 8, done=done, dips=dips) is not None

    # from scratch (raccoon Fast): "no gain for 8 epochs" fired at epoch 53; the run then gained 6 points of
    # validation (and 13 of test mAP50-95 by epoch 120)
    w, curve = 11, RACCOON_FAST
    first_old = next(n for n in range(w + 1, 97) if fires(curve, w, n, 0))  # done=0: the wait is patience alone
    assert first_old == 53 and max(smooth(curve)[53:]) - smooth(curve)[52] > 0.05
    assert not any(fires(curve, w, n, n) for n in range(w + 1, 97))  # still rising: no plateau
    flat = [*curve[:60], *[0.5] * 100]
    assert plateau_epoch(flat[w:], 8, done=160) is not None  # a flat stretch as long as the run before it
    # from the shipped weights (raccoon Fast): a quarter of the run (done // 2 here), its clock from the best,
    # fired at epoch 32; half the run never fires in the 96-epoch stable phase
    w, curve = 12, RACCOON_FAST_SHIPPED
    assert next(n for n in range(w + 1, 97) if fires(curve, w, n, n // 2, dips=False)) == 32
    assert not any(fires(curve, w, n, n) for n in range(w + 1, 97))


def test_dataset_studies_train_up_to_120_epochs_and_plan_for_the_cap(tmp_path: Path) -> None:
    """On a dataset folder the study trains up to 120 epochs in a 30-minute budget (60 left Fast further from
    its end than Accurate), and its stated time expects runs to reach the cap; the built-in tasks keep 60."""
    data = [tmp_path]
    cfg = study_config(False, data)
    assert (cfg.epochs, cfg.budget_minutes, cfg.bench_seconds) == (120, 30.0, 5.0)
    assert (
        study_config(False, None).epochs == StudyConfig().epochs == 60
        and study_config(False, None).budget_minutes is None
    )
    assert (
        study_config(False, data, epochs=30).epochs == 30
        and study_config(False, data, budget_minutes=0).budget_minutes is None
    )
    q = study_config(True, data)
    assert q.epochs == QUICK_STUDY["epochs"] and q.budget_minutes == 30.0
    small = plan(cfg, 140, 128, ["http", "local"])
    assert not small.limited and small.epochs == 120 and small.expected_seconds == small.at_most_seconds
    builtin = plan(StudyConfig(), 480, 256, ["http", "local"])
    assert builtin.expected_seconds < 0.75 * builtin.at_most_seconds  # built-in tasks plateau near 40 of 60


def hist(maps: list[float], lrs: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": i + 1, "map": m, "lr": lr, "seconds": 1.0} for i, (m, lr) in enumerate(zip(maps, lrs, strict=True))
    ]


def cards_fast_history() -> list[dict[str, float]]:
    """The issue's failure, rebuilt: Fast stopped by patience at epoch 33 of a 60-epoch linear decay (the
    learning rate still at 46% of its peak), its validation curve swinging 5-15 points."""
    rng = np.random.default_rng(33)
    maps = rising(33, 0.03, rng)
    maps[24] = max(maps) + 0.02  # the lucky epoch 25 that patience counted from
    lrs = [0.002 * (1 - e / 60 * 0.99) for e in range(1, 34)]
    return hist(maps, lrs)


def test_a_size_stopped_mid_schedule_is_not_converged_and_the_verdict_not_strong() -> None:
    h = cards_fast_history()
    ok, info = convergence(h, patience=8, epochs_planned=60)
    assert not ok and not info["annealed"] and info["lr_share"] > 0.4
    assert "not annealed" in info["reason"]
    # the study's evidence: a record from before this rule said "converged"; its per-epoch log says otherwise
    res = study(fast={"converged": True, "epochs": 33})
    fast = res.tasks["t"].sizes["fast"].train
    assert evidence(res.tasks["t"], "http").strength == "strong"  # both annealed: strong (the helper's runs)
    fast.history = h
    ev = evidence(res.tasks["t"], "http")
    assert ev.strength == "weak" and ev.under_trained == ["fast"]
    assert any("not annealed" in line for line in ev.lines)
    # annealed to the end of the same schedule it is converged again
    done = hist([0.5] * 60, [0.002 * (1 - e / 60 * 0.99) for e in range(1, 61)])
    fast.history = done
    assert evidence(res.tasks["t"], "http").strength == "strong"


def test_wsd_phases_judged() -> None:
    """A wsd run: a plateau of the stable phase converges; the epoch cap with a rising curve does not."""
    lrs = [1.0] * 40 + [1 - 0.99 * k / 10 for k in range(1, 11)]
    flat = hist([0.3 + 0.01 * min(e, 20) for e in range(50)], lrs)
    ok, info = convergence(flat, 8, 60, {"stable_end": 40, "stable_end_reason": "plateau", "smoothed_best": 21})
    assert ok and info["stopped_early"] and info["reason"].startswith("plateau: the smoothed")
    up = hist([0.01 * e for e in range(50)], lrs)
    ok, info = convergence(up, 8, 50, {"stable_end": 40, "stable_end_reason": "epochs", "cooldown": 10})
    assert not ok and "still improving" in info["reason"] and "the epoch cap began the cooldown" in info["reason"]
    ok, info = convergence(up[:30], 8, 50, {})
    assert not ok and "not annealed" in info["reason"]  # stopped in its stable phase (e.g. killed by a time limit)


# cards' Fast run (issue 33, the study's own run from the shipped weights): validation mAP50-95 over its stable
# phase, epochs 1-96, which the 120-epoch cap ended; the run twice as long scored +1.7 test points (+3.1 for
# Accurate, whose curve gained as much)
CARDS_FAST_STABLE = [
    *[0.041, 0.085, 0.097, 0.13, 0.207, 0.254, 0.271, 0.317, 0.322, 0.383, 0.368, 0.406, 0.433, 0.479, 0.475],
    *[0.49, 0.515, 0.53, 0.541, 0.57, 0.591, 0.605, 0.623, 0.626, 0.637, 0.647, 0.649, 0.662, 0.67, 0.68],
    *[0.699, 0.718, 0.717, 0.714, 0.731, 0.725, 0.726, 0.724, 0.718, 0.724, 0.723, 0.724, 0.712, 0.724, 0.72],
    *[0.721, 0.707, 0.712, 0.726, 0.729, 0.744, 0.747, 0.746, 0.744, 0.753, 0.75, 0.756, 0.75, 0.752, 0.759],
    *[0.76, 0.766, 0.764, 0.768, 0.776, 0.77, 0.774, 0.766, 0.754, 0.748, 0.753, 0.761, 0.76, 0.766, 0.768],
    *[0.77, 0.773, 0.781, 0.783, 0.782, 0.778, 0.782, 0.796, 0.797, 0.802, 0.793, 0.784, 0.783, 0.779, 0.776],
    *[0.777, 0.777, 0.778, 0.785, 0.793, 0.791],
]


# medicine's Fast run (issue 33, the default study's own run from the shipped weights): validation mAP50-95 over its
# stable phase, epochs 1-96, which the 120-epoch cap ended. Flat over its last quarter (another quarter at that
# slope: +0.1 points), so the rule before called it converged; the run twice as long ended 1.8 test points higher
# (2.6 by best.pt): a creep that only the last doubling shows (the smoothed best rose 3.7 points over epochs 49-96)
MEDICINE_FAST_STABLE = [
    *[0.037, 0.168, 0.222, 0.319, 0.454, 0.511, 0.588, 0.649, 0.599, 0.659, 0.675, 0.651, 0.629, 0.656, 0.664],
    *[0.701, 0.732, 0.752, 0.751, 0.724, 0.737, 0.724, 0.698, 0.736, 0.735, 0.714, 0.709, 0.709, 0.758, 0.792],
    *[0.823, 0.824, 0.83, 0.824, 0.824, 0.797, 0.791, 0.805, 0.823, 0.825, 0.843, 0.845, 0.848, 0.856, 0.856],
    *[0.855, 0.844, 0.861, 0.855, 0.875, 0.873, 0.876, 0.875, 0.883, 0.885, 0.868, 0.865, 0.859, 0.86, 0.863],
    *[0.858, 0.86, 0.85, 0.857, 0.864, 0.866, 0.869, 0.888, 0.884, 0.884, 0.879, 0.878, 0.895, 0.887, 0.882],
    *[0.883, 0.881, 0.871, 0.88, 0.881, 0.868, 0.861, 0.852, 0.856, 0.842, 0.824, 0.871, 0.895, 0.892, 0.889],
    *[0.887, 0.885, 0.898, 0.892, 0.886, 0.883],
]


def test_a_cap_ended_run_whose_last_doubling_gained_1_5_points_is_not_converged() -> None:
    """ "Converged" means within 1.5 points of a run twice as long. Cards' Fast curve rose 7 smoothed points over
    the stable phase's second half, medicine's 3.7 (flat over its last quarter, so the quarter's slope called
    it converged): neither is, and the reason gives the gain. A curve flat since the middle of the phase is,
    and so is one that fell (overfitting: more epochs would not help)."""
    lrs = [1.0] * 96 + [1 - 0.99 * k / 24 for k in range(1, 25)]
    phases = {"warmup_end": 12, "stable_end": 96, "stable_end_reason": "epochs", "cooldown": 24}
    tail = [0.8] * 24  # the cooldown's epochs: not judged
    for curve, rose in ((CARDS_FAST_STABLE, "+7.1"), (MEDICINE_FAST_STABLE, "+3.7")):
        ok, info = convergence(hist([*curve, *tail], lrs), 8, 120, phases)
        assert not ok and info["window"] == 48 and info["reason"].startswith("still improving"), info
        assert f"rose {rose} points over epochs 49-96 (the stable phase's last doubling)" in info["reason"]
        assert "the epoch cap began the cooldown at epoch 96" in info["reason"]
    # flat from the middle of the phase on, within a point of its first half's best: converged
    half = CARDS_FAST_STABLE[:48]
    flat = [*half, *[max(smooth(half)) + 0.01 * k / 48 + 0.01 * (-1) ** k for k in range(48)]]
    ok, info = convergence(hist([*flat, *tail], lrs), 8, 120, phases)
    assert ok and 0.0 < info["doubling_gain"] < 0.015 and info["reason"].startswith("plateau"), info
    falling = [*half, *[max(smooth(half)) - 0.02 - 0.003 * k for k in range(48)]]
    ok, info = convergence(hist([*falling, *tail], lrs), 8, 120, phases)
    assert ok and info["doubling_gain"] < 0 and "mAP50-95 fell -" in info["reason"], info
    # a low best keeps the relative test: 1 point on a best of 0.1 is 10%, material
    low = [0.1 + 0.0002 * e for e in range(96)]
    ok, info = convergence(hist([*low, *[0.12] * 24], lrs), 8, 120, phases)
    assert not ok and info["reason"].startswith("still improving") and info["doubling_gain"] < 0.015
    # a warm-up longer than half the phase: only the epochs after it are judged
    ok, info = convergence(hist([*CARDS_FAST_STABLE, *tail], lrs), 8, 120, {**phases, "warmup_end": 60})
    assert info["window"] == 36 and "over epochs 61-96" in info["reason"]


def test_a_plateau_needs_a_validation_split_that_can_resolve_it() -> None:
    """One validation object moves mAP50-95 by up to 1 / (classes * objects of the rarest class). Microcontroller's
    15 validation images (issue 33) hold 2, 7, 3 and 4 objects of its four classes: one Arduino is worth 12.5
    points, so a flat stretch there cannot mean "no gain of 1.5 points" (its Accurate run plateaued for 36 epochs,
    then gained 11 validation and 4 test points). Cards' 100 objects of six classes, 12 of the rarest, can. A
    run judged at its cap on a coarse split says why it did not stop at a plateau."""
    names = ["Arduino", "ESP8266", "Heltec", "Raspberry"]
    micro = object_step([[0, 1, 1], [0, 1, 2], *([[1, 2, 3]] * 2), [1, 3], [1, 3]], names)
    assert micro is not None and (micro.name, micro.n, micro.classes) == ("Arduino", 2, 4)
    assert micro.step == pytest.approx(0.125) and not micro.resolves_plateau
    assert "up to 12.5 points ('Arduino' has 2 objects in validation)" in micro.sentence()
    cards = object_step([[c] for c in range(6) for _ in range(12 if c == 3 else 20)], list("abcdef"))
    assert cards is not None and cards.name == "d" and cards.step == pytest.approx(1 / 72) and cards.resolves_plateau
    assert object_step([[], []], names) is None  # no objects: nothing to resolve, the trainer's rule as before
    lrs = [1.0] * 96 + [1 - 0.99 * k / 24 for k in range(1, 25)]
    phases = {"warmup_end": 12, "stable_end": 96, "stable_end_reason": "epochs", "cooldown": 24}
    ok, info = convergence(hist([*CARDS_FAST_STABLE, *[0.8] * 24], lrs), 8, 120, {**phases, "object_step": 0.125})
    assert (
        not ok and "(no plateau stop: one validation object can move mAP50-95 by up to 12.5 points)" in info["reason"]
    )
    ok, info = convergence(hist([*CARDS_FAST_STABLE, *[0.8] * 24], lrs), 8, 120, {**phases, "object_step": 1 / 72})
    assert "no plateau stop" not in info["reason"]


torch = pytest.importorskip("torch")

from speedmap.data.tasks import make_task  # noqa: E402
from speedmap.train.config import TrainConfig  # noqa: E402
from speedmap.train.trainer import train  # noqa: E402

QUICK = {"imgsz": 64, "batch": 2, "workers": 0, "warmup_epochs": 0.0, "close_mosaic": 16, "seed": 0}


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_task("shapes", tmp_path_factory.mktemp("wsd") / "shapes", images=48, imgsz=64, seed=3)


def test_training_ends_annealed_and_resumes_in_its_cooldown(shapes: Path, tmp_path: Path) -> None:
    """The trainer: wsd ends its stable phase (plateau or cap), cools down and stops annealed, with the
    phases recorded; a run interrupted in its cooldown resumes with the same cooldown. (On this 48-image task one
    validation object moves mAP50-95 by several points, so the cap ends the stable phase: batch 8, 12 epochs.)"""
    run = tmp_path / "wsd"
    quick = {**QUICK, "batch": 8}
    cfg = TrainConfig(data=str(shapes), epochs=12, patience=2, out=str(run), **quick)
    rec = train(cfg, log=lambda m: None)
    c, ph = rec["convergence"], rec["convergence"]["phases"]
    print(c)
    assert ph["stable_end_reason"] in ("plateau", "epochs") and ph["cooldown"] >= 2
    assert rec["epochs_run"] == ph["stable_end"] + ph["cooldown"] <= 12
    assert c["annealed"] and c["lr_share"] <= ANNEALED_SHARE
    lrs = [h["lr"] for h in _rows(run)]
    stable = lrs[: ph["stable_end"]]
    assert max(stable) == pytest.approx(min(stable))  # a constant rate (no warm-up here) ...
    assert lrs[ph["stable_end"] :] == sorted(lrs[ph["stable_end"] :], reverse=True)  # ... then falling
    # interrupted after the cooldown's first epoch, then resumed: the same phases and the same end
    cut = tmp_path / "cut"

    def stop_in_cooldown(event: dict) -> None:
        if "epoch_done" in event and event["epoch_done"].epoch == ph["stable_end"] + 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(TrainConfig(data=str(shapes), epochs=12, patience=2, out=str(cut), **quick), stop_in_cooldown, print)
    again = train(TrainConfig(data=str(shapes), imgsz=64, out=str(cut), resume=True), log=lambda m: None)
    assert again["convergence"]["phases"] == ph and again["epochs_run"] == rec["epochs_run"]
    assert [h["lr"] for h in _rows(cut)] == pytest.approx(lrs)


def _rows(run: Path) -> list[dict[str, float]]:
    import csv

    with open(run / "metrics.csv", encoding="utf-8") as f:
        return [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f)]


def test_the_linear_schedule_stopped_by_patience_is_not_converged(shapes: Path, tmp_path: Path) -> None:
    """The issue's failure on generated data: a fixed linear decay stopped by patience mid-schedule."""
    cfg = TrainConfig(data=str(shapes), epochs=40, patience=2, schedule="linear", out=str(tmp_path / "lin"), **QUICK)
    cfg.batch = 4  # half the steps of an epoch: patience still ends it mid-schedule
    rec = train(cfg, log=lambda m: None)
    print(rec["convergence"])
    assert rec["epochs_run"] < 40  # stopped by patience, its rate still high
    assert not rec["converged"] and "not annealed" in rec["convergence"]["reason"]


def test_the_input_size_grows_to_the_largest_that_the_budget_fits() -> None:
    from speedmap.data.imgsz import GROWTH, largest_that_fits, speed_at

    assert largest_that_fits(128, 640, lambda s: s <= 224) == 224
    assert largest_that_fits(128, 640, lambda s: True) == int(GROWTH * 128)  # at most twice the box rule's size
    assert largest_that_fits(128, 160, lambda s: True) == 160  # never above the images' own size
    assert largest_that_fits(192, 640, lambda s: False) == 192  # nothing larger fits: the box rule's size
    slower = speed_at({"fast": 100.0, "accurate": 40.0}, 128, 256)
    assert slower["fast"] == pytest.approx(100 / 2**1.7) and slower["accurate"] < 40 / 3


def test_the_ema_averages_over_epochs_not_a_fixed_count_of_updates() -> None:
    """9 steps an epoch (a few hundred images): about 45 updates, not 10,000; COCO-sized epochs: the classic 0.9999."""
    from speedmap.train.ema import epoch_ema

    decay, tau = epoch_ema(9)
    assert decay == pytest.approx(1 - 1 / 45) and tau == 4.5
    assert epoch_ema(7330)[0] == 0.9999 and epoch_ema(1, 0.1) == (0.0, 1.0)
    # the ramp reaches 95% of the decay within 1.5 epochs, where the old 2000-update ramp stayed near 0.1
    assert 1 - np.exp(-13.5 / tau) > 0.95 and 0.9999 * (1 - np.exp(-360 / 2000)) < 0.2


def test_the_ema_horizon_is_at_most_a_tenth_of_a_short_run() -> None:
    from speedmap.train.ema import EMA_EPOCHS, ema_horizon

    assert ema_horizon(EMA_EPOCHS, 60) == 5.0 and ema_horizon(EMA_EPOCHS, 16) == pytest.approx(1.6)
