"""`speedmap compare`: the whole loop on a tiny task (real training, export, server, benchmarks), step
reuse and resumption after an interruption, the recommendation's logic and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.study.config import StudyConfig, estimate_seconds, preset
from speedmap.study.recommend import choose, general_rules, recommend
from speedmap.study.report import to_html, write_report
from speedmap.study.run import Study

runner = CliRunner()
TINY = ["--tasks", "shapes", "--epochs", "2", "--images", "30", "--imgsz", "64", "--bench-seconds", "0.3",
        "--targets", "http,local"]  # fmt: skip


def test_compare_end_to_end_then_reuses_finished_steps(tmp_path: Path) -> None:
    out = tmp_path / "study"
    r = runner.invoke(app, ["compare", *TINY, "--out", str(out), "--min-fps", "5"])
    assert r.exit_code == 0, r.output
    assert (
        "expected duration" in r.output and "training fast" in r.output and "benchmarking accurate on http" in r.output
    )
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["destinations"] == ["http", "local"]
    sizes = res["tasks"]["shapes"]["sizes"]
    for size in ("fast", "accurate"):
        e = sizes[size]
        assert e["model_id"] == f"shapes/{size}" and (out / "models" / "shapes" / size / "model.onnx").is_file()
        assert 0 <= e["metrics"]["map50"] <= 1 and e["test_images"] >= 1
        assert e["train"]["total_seconds"] > 0 and len(e["train"]["history"]) == 2
        for dest in ("http", "local"):
            s = e["speed"][dest]
            assert s["single"]["p50_ms"] > 0 and s["single"]["errors"] == 0
            assert s["loaded"]["throughput_rps"] > 0 and (out / s["doc"]).is_file()
    assert sizes["accurate"]["train"]["params"] > sizes["fast"]["train"]["params"]
    rec = res["recommendation"]
    assert rec["destination"] == "http" and rec["choices"][0]["size"] in ("fast", "accurate")
    md = (out / "report.md").read_text()
    for heading in ("## Recommendation", "## 1. Accuracy", "## 2. Inference speed", "## 3. Training time",
                    "## 4. Accuracy against latency", "## 5. Provenance"):  # fmt: skip
        assert heading in md, heading
    assert "| shapes | fast |" in md and "min fps 5" in md and "speedmap compare" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and not re.search(r"src=\"(?!data:)", page)
    for png in ("pareto.png", "training_curves.png", "accuracy.png"):
        assert (out / png).stat().st_size > 5000, png
    # the same command again: every step reused
    again = runner.invoke(app, ["compare", *TINY, "--out", str(out), "--min-fps", "5"])
    assert again.exit_code == 0, again.output
    assert "training fast" not in again.output and "benchmarking" not in again.output
    assert json.loads((out / "results.json").read_text())["tasks"]["shapes"]["sizes"]["fast"]["metrics"] == sizes[
        "fast"]["metrics"]  # fmt: skip


class Interrupting:
    """A UI that presses Ctrl-C in the middle of the accurate model's first epoch."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.armed = True

    def stage(self, text: str) -> None:
        self.stages.append(text)

    def note(self, text: str) -> None:
        pass

    def training(self, event: dict[str, Any]) -> None:
        if self.armed and "epoch_done" in event and any("training accurate" in s for s in self.stages):
            self.armed = False
            raise KeyboardInterrupt

    def step_done(self) -> None:
        pass


def test_an_interrupted_study_continues_where_it_stopped(tmp_path: Path) -> None:
    cfg = StudyConfig(tasks=["shapes"], epochs=2, imgsz=64, images=30, targets=["local"], bench_seconds=0.2,
                      bench_requests=5)  # fmt: skip
    ui = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        Study(cfg, tmp_path, ui).run()
    partial = json.loads((tmp_path / "results.json").read_text())
    assert not partial["complete"] and "fast" in partial["tasks"]["shapes"]["sizes"]
    assert list((tmp_path / "runs").glob("shapes-accurate-*/last.pt"))
    ui2 = Interrupting()
    ui2.armed = False
    res = Study(cfg, tmp_path, ui2).run()
    assert res["complete"]
    assert not any("training fast" in s for s in ui2.stages)  # fast: reused
    assert any("resuming accurate" in s for s in ui2.stages)  # accurate: continued from its checkpoint
    assert res["tasks"]["shapes"]["sizes"]["accurate"]["train"]["epochs"] == 2
    # a changed config makes a new step, the old run stays
    cfg.epochs = 3
    ui3 = Interrupting()
    ui3.armed = False
    Study(cfg, tmp_path, ui3).run()
    assert any("training fast (3 epochs" in s for s in ui3.stages)
    assert len(list((tmp_path / "runs").glob("shapes-fast-*"))) == 2


def numbers(**kw: Any) -> dict[str, Any]:
    n = {"fast_map": 0.50, "accurate_map": 0.58, "fast_map50": 0.70, "accurate_map50": 0.80, "fast_p50_ms": 15.0,
         "accurate_p50_ms": 40.0, "fast_fps": 66.0, "accurate_fps": 25.0, "train_ratio": 2.6,
         "saturated": False}  # fmt: skip
    n.update(kw)
    n["gain_map"], n["gain_map50"] = n["accurate_map"] - n["fast_map"], n["accurate_map50"] - n["fast_map50"]
    n["latency_ratio"] = n["accurate_p50_ms"] / n["fast_p50_ms"]
    return n


def test_recommendation_follows_the_numbers_and_the_constraints() -> None:
    headroom = choose("t", numbers(), "http", {})
    assert headroom.size == "accurate" and "(+8.0 points)" in headroom.reasons[0]
    assert any("real time" in r for r in headroom.reasons)  # Accurate is below 30 FPS, Fast above
    sat = choose("t", numbers(fast_map=0.80, accurate_map=0.803, fast_map50=0.98, accurate_map50=0.985,
                              saturated=True), "http", {})  # fmt: skip
    assert sat.size == "fast" and "saturated" in sat.reasons[0]
    # saturated by Accurate only: Fast has not reached the ceiling, the gain decides
    ceiling = choose("t", numbers(fast_map50=0.70, accurate_map50=0.96, saturated=True), "http", {})
    assert ceiling.size == "accurate"
    tie = choose("t", numbers(accurate_map=0.505), "http", {})
    assert tie.size == "fast" and "under one mAP50-95 point" in tie.reasons[0]
    fps = choose("t", numbers(), "http", {"min_fps": 30})
    assert fps.size == "fast" and "Only Fast meets at least 30 FPS" in fps.reasons[0]
    slow = choose("t", numbers(), "http", {"max_latency_ms": 10})
    assert slow.size == "fast" and "Neither size meets" in slow.reasons[0]
    low = choose("t", numbers(), "http", {"min_map": 0.9})
    assert low.size == "accurate" and "No size reaches" in low.reasons[0]
    only_acc = choose("t", numbers(), "http", {"min_map": 0.75})
    assert only_acc.size == "accurate" and "Only Accurate" in only_acc.reasons[0]
    untrained = choose("t", numbers(fast_map50=0.0, accurate_map50=0.01), "http", {})
    assert untrained.size == "fast" and "Neither size learned" in untrained.reasons[0]


def test_general_rules_are_stated_only_where_supported() -> None:
    easy = numbers(fast_map50=0.97, accurate_map50=0.975, saturated=True)
    rules = {r["rule"]: r for r in general_rules({"easy": easy, "hard": numbers()}, "http")}
    assert all(r["supported"] for r in rules.values()), rules
    rules = general_rules({"hard": numbers(accurate_map=0.49, train_ratio=1.2, accurate_fps=40)}, "http")
    assert not any(r["supported"] for r in rules), rules


def test_report_from_results_is_self_contained_and_escaped(tmp_path: Path) -> None:
    def entry(size: str, m: float, p50: float, secs: float) -> dict[str, Any]:
        return {"metrics": {"map": m, "map50": m + 0.2}, "test_images": 9,
                "train": {"total_seconds": secs, "train_images_per_second": 10.0, "epochs": 3,
                          "history": [{"epoch": 1.0, "seconds": 5.0, "map": m / 2}, {"epoch": 2.0, "seconds": 5.0,
                                                                                     "map": m}]},
                "speed": {"http": {"single": {"p50_ms": p50, "p90_ms": p50 * 1.2, "fps": 1000 / p50, "valid": True,
                                              "errors": 0},
                                   "loaded": {"concurrency": 100, "throughput_rps": 2000 / p50, "p50_ms": p50 * 9,
                                              "p90_ms": p50 * 10, "valid": True, "errors": 0}}}}  # fmt: skip

    results = {"tasks": {"<b>odd</b>": {"sizes": {"fast": entry("fast", 0.4, 10, 60),
                                                  "accurate": entry("accurate", 0.5, 25, 150)}}},
               "destinations": ["http"], "config": {"min_fps": None}, "complete": True,
               "provenance": {"cpu": "test cpu", "command": "speedmap compare x"}}  # fmt: skip
    paths = write_report(results, tmp_path)
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "deploy Accurate" in md and "2.50x" in md and "| <b>odd</b> |" in md
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page.replace("<b><b>", "")
    assert "2.50x (2.50-2.50)" in page
    assert recommend(results)["choices"][0]["size"] == "accurate"
    assert "<table>" not in to_html([])


def test_quick_preset_and_estimate() -> None:
    quick = preset(True)
    assert quick.quick and quick.imgsz == 128 and quick.tasks == ["shapes", "crowd"] and quick.batch == 8
    assert preset(True, epochs=3).epochs == 3
    full = preset(False)
    assert len(full.tasks) == 5 and full.epochs == 30
    assert estimate_seconds(quick, [140, 140]) < 600 < estimate_seconds(full, [420] * 5)
    bad = runner.invoke(app, ["compare", "--tasks", "nope", "--out", "/tmp/unused-study"])
    assert bad.exit_code == 2 and "unknown task 'nope'" in bad.output
    bad = runner.invoke(app, ["compare", "--min-fps", "5", "--max-latency-ms", "9"])
    assert bad.exit_code == 2 and "one of --min-fps and --max-latency-ms" in bad.output
