"""Which size to deploy, and why, from the study's measurements and the user's constraints. The general
rules of thumb are stated only where this study's numbers support them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speedmap.study.config import REALTIME_FPS, SATURATED_MAP50

NO_GAIN = 0.01  # mAP50-95 below one point apart: within what a small test split can tell apart


@dataclass
class Choice:
    task: str
    destination: str
    size: str
    reasons: list[str]
    numbers: dict[str, Any] = field(default_factory=dict)


def primary_destination(results: dict[str, Any]) -> str | None:
    """The destination the advice is for: the first of ``--targets`` that was measured."""
    dests = results.get("destinations") or []
    wanted = results.get("config", {}).get("targets") or []
    return next((d for d in wanted if d in dests), dests[0] if dests else None)


def _speed(entry: dict[str, Any], dest: str) -> dict[str, Any] | None:
    return entry.get("speed", {}).get(dest, {}).get("single")


def _fps(s: dict[str, Any]) -> float:
    return float(s["fps"]) if s.get("fps") else 1000.0 / float(s["p50_ms"])


def task_numbers(task: dict[str, Any], dest: str) -> dict[str, Any] | None:
    f, a = task["sizes"].get("fast"), task["sizes"].get("accurate")
    if f is None or a is None:
        return None
    sf, sa = _speed(f, dest), _speed(a, dest)
    if sf is None or sa is None or not sf.get("p50_ms") or not sa.get("p50_ms"):
        return None
    mf, ma = f["metrics"], a["metrics"]
    return {
        "fast_map": mf["map"], "accurate_map": ma["map"], "fast_map50": mf["map50"], "accurate_map50": ma["map50"],
        "gain_map": ma["map"] - mf["map"], "gain_map50": ma["map50"] - mf["map50"],
        "fast_p50_ms": sf["p50_ms"], "accurate_p50_ms": sa["p50_ms"], "fast_fps": _fps(sf), "accurate_fps": _fps(sa),
        "latency_ratio": sa["p50_ms"] / sf["p50_ms"],
        "train_ratio": a["train"]["total_seconds"] / f["train"]["total_seconds"],
        "saturated": max(mf["map50"], ma["map50"]) >= SATURATED_MAP50,
    }  # fmt: skip


def _meets_speed(fps: float, p50: float, cfg: dict[str, Any]) -> bool:
    if cfg.get("min_fps") is not None and fps < cfg["min_fps"]:
        return False
    return not (cfg.get("max_latency_ms") is not None and p50 > cfg["max_latency_ms"])


def _constraint_text(cfg: dict[str, Any]) -> str:
    parts = []
    if cfg.get("min_fps") is not None:
        parts.append(f"at least {cfg['min_fps']:g} FPS")
    if cfg.get("max_latency_ms") is not None:
        parts.append(f"at most {cfg['max_latency_ms']:g} ms per frame")
    if cfg.get("min_map") is not None:
        parts.append(f"mAP50 of at least {cfg['min_map']:.2f}")
    return " and ".join(parts)


def choose(name: str, n: dict[str, Any], dest: str, cfg: dict[str, Any]) -> Choice:
    """The size to deploy on ``dest`` for task ``name``, with reasons in words a user can act on."""
    ok_speed = {s: _meets_speed(n[f"{s}_fps"], n[f"{s}_p50_ms"], cfg) for s in ("fast", "accurate")}
    ok_map = {s: cfg.get("min_map") is None or n[f"{s}_map50"] >= cfg["min_map"] for s in ("fast", "accurate")}
    ok = [s for s in ("fast", "accurate") if ok_speed[s] and ok_map[s]]
    want = _constraint_text(cfg)
    speed = (f"Fast answers in {n['fast_p50_ms']:.1f} ms ({n['fast_fps']:.0f} FPS) on {dest}, Accurate in "
             f"{n['accurate_p50_ms']:.1f} ms ({n['accurate_fps']:.0f} FPS): "
             f"{n['latency_ratio']:.1f}x slower")  # fmt: skip
    acc = (f"mAP50-95 {n['fast_map']:.3f} vs {n['accurate_map']:.3f} ({100 * n['gain_map']:+.1f} points), "
           f"mAP50 {n['fast_map50']:.3f} vs {n['accurate_map50']:.3f}")  # fmt: skip
    if max(n["fast_map50"], n["accurate_map50"]) < 0.05:
        return Choice(name, dest, "fast", [
            f"Neither size learned this task yet ({acc}): train longer (--epochs) or check the labels before "
            f"choosing a size; until then Fast is the cheaper one to iterate with. {speed}."], n)  # fmt: skip
    if not ok:
        if not any(ok_speed.values()):
            return Choice(name, dest, "fast", [
                f"Neither size meets {want} on {dest}. {speed}. Fast is the closest; consider a smaller input "
                "size (--imgsz), a faster destination or a GPU provider."], n)  # fmt: skip
        best = max((s for s in ("fast", "accurate") if ok_speed[s]), key=lambda s: n[f"{s}_map50"])
        return Choice(name, dest, best, [
            f"No size reaches {want}: {acc}. {best.capitalize()} is the most accurate that meets the speed "
            "constraint; more training data or epochs should come before a bigger model."], n)  # fmt: skip
    if ok == ["fast"]:
        why = "the speed constraint" if not ok_speed["accurate"] else "the accuracy constraint"
        return Choice(name, dest, "fast", [f"Only Fast meets {want} (Accurate fails {why}). {speed}. {acc}."], n)
    if ok == ["accurate"]:
        return Choice(name, dest, "accurate", [f"Only Accurate meets {want}: {acc}. {speed}."], n)
    if n["gain_map"] < NO_GAIN:
        why = (f"the task is saturated (mAP50 {n['fast_map50']:.3f} vs {n['accurate_map50']:.3f}) and Accurate gains "
               f"under one mAP50-95 point ({100 * n['gain_map']:+.1f})" if n["saturated"]
               else f"Accurate gains under one mAP50-95 point here ({100 * n['gain_map']:+.1f})")  # fmt: skip
        return Choice(name, dest, "fast", [
            f"{why[0].upper()}{why[1:]}, so Accurate's cost buys nothing. {speed}; Accurate also trained "
            f"{n['train_ratio']:.1f}x longer."], n)  # fmt: skip
    if n["fast_map50"] >= SATURATED_MAP50:
        head = "Both sizes saturate mAP50, yet Accurate's boxes fit tighter"
    elif n["saturated"]:
        head = "Accurate reaches the task's ceiling where Fast does not"
    else:
        head = "Accurate uses the task's accuracy headroom"
    reasons = [f"{head}: {acc}" + (f", and still meets {want}. " if want else ". ") + f"{speed}."]
    if n["fast_map50"] >= SATURATED_MAP50 and n["gain_map50"] < 0.02:
        reasons.append(f"If finding the objects is what matters (mAP50) rather than tight boxes, Fast does the "
                       f"same job {n['latency_ratio']:.1f}x faster.")  # fmt: skip
    if not want and n["accurate_fps"] < REALTIME_FPS <= n["fast_fps"]:
        reasons.append(f"If you need real time ({REALTIME_FPS:g} FPS) on {dest}, deploy Fast instead: only Fast "
                       "reaches that frame rate here (rerun with --min-fps to decide by it).")  # fmt: skip
    return Choice(name, dest, "accurate", reasons, n)


def general_rules(numbers: dict[str, dict[str, Any]], dest: str) -> list[dict[str, Any]]:
    """The reference study's rules of thumb, each with whether this study supports it and the evidence."""
    rules = []
    ratios = [n["train_ratio"] for n in numbers.values()]
    if ratios:
        lo, hi = min(ratios), max(ratios)
        rules.append({"rule": "Prototype with Fast: it trains faster.", "supported": lo >= 1.5,
                      "evidence": f"Accurate took {lo:.1f}-{hi:.1f}x Fast's training time."})  # fmt: skip
    sat = {k: n for k, n in numbers.items() if n["fast_map50"] >= SATURATED_MAP50}
    if sat:
        gains = ", ".join(f"{k} {100 * n['gain_map50']:+.1f} (mAP50-95 {100 * n['gain_map']:+.1f})"
                          for k, n in sat.items())  # fmt: skip
        rules.append({"rule": "Saturated tasks (Fast already above 95% mAP50) gain little from Accurate.",
                      "supported": all(n["gain_map50"] < 0.02 for n in sat.values()),
                      "evidence": f"mAP50 points gained by Accurate on saturated tasks: {gains}."})  # fmt: skip
    open_ = {k: n for k, n in numbers.items() if n["fast_map50"] < SATURATED_MAP50}
    if open_:
        won = sum(n["gain_map"] >= NO_GAIN for n in open_.values())
        gains = ", ".join(f"{k} {100 * n['gain_map']:+.1f}" for k, n in open_.items())
        gains += f" (a gain on {won} of {len(open_)})"
        rules.append({"rule": "Where the task has accuracy headroom, Accurate gains mAP (worth it when the budget "
                              "allows its latency).",
                      "supported": all(n["gain_map"] >= NO_GAIN for n in open_.values()),
                      "evidence": "mAP50-95 points gained by Accurate where Fast is below 95% mAP50: "
                                  f"{gains}."})  # fmt: skip
    if numbers:
        rt = [k for k, n in numbers.items() if n["fast_fps"] >= REALTIME_FPS > n["accurate_fps"]]
        both = [k for k, n in numbers.items() if n["accurate_fps"] >= REALTIME_FPS]
        fps = ", ".join(f"{k} {n['fast_fps']:.0f} vs {n['accurate_fps']:.0f}" for k, n in numbers.items())
        rules.append({"rule": f"Real time ({REALTIME_FPS:g} FPS) at the edge needs Fast.",
                      "supported": bool(rt) and not both,
                      "evidence": f"single-stream FPS on {dest}, Fast vs Accurate: {fps}."})  # fmt: skip
    return rules


def recommend(results: dict[str, Any]) -> dict[str, Any]:
    cfg = results.get("config", {})
    dest = primary_destination(results)
    out: dict[str, Any] = {"destination": dest, "choices": [], "rules": [], "per_destination": {}}
    if dest is None:
        return out
    numbers = {}
    for name, task in results.get("tasks", {}).items():
        n = task_numbers(task, dest)
        if n is not None:
            numbers[name] = n
            out["choices"].append(choose(name, n, dest, cfg).__dict__)
    for d in results.get("destinations", []):
        out["per_destination"][d] = {
            name: choose(name, n, d, cfg).size
            for name, task in results.get("tasks", {}).items()
            if (n := task_numbers(task, d)) is not None
        }
    out["rules"] = general_rules(numbers, dest)
    return out
