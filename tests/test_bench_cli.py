"""`speedmap bench` on the in-process engine and on a real server (v1 and legacy routes)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from speedmap.bench.results import BenchReport
from speedmap.cli import app
from tests.test_serve import start_server

runner = CliRunner()
KEYS = {
    "scenario",
    "concurrency",
    "target_rate",
    "requests",
    "errors",
    "duration_s",
    "throughput_rps",
    "latency_ms",
    "valid",
}


def _images(run: Path) -> Path:
    return Path(json.loads((run / "train.json").read_text())["dataset"]["abspath"]) / "test"


def _check(doc: dict, target: str, scenarios: list[str]) -> None:
    assert doc["target"] == target and doc["model"] == "shapes/1"
    assert doc["warmup"]["cold_first_request_ms"] > 0
    prov = doc["provenance"]
    for key in ("speedmap", "onnxruntime", "cpu", "cpus", "image_set_sha256", "config", "started", "finished"):
        assert key in prov, key
    assert [r["scenario"] for r in doc["runs"]] == scenarios
    for r in doc["runs"]:
        assert r.keys() >= KEYS and r["errors"] == {} and r["requests"] >= 20
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_bench_local_default_sweep(model_store: Path, tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "local.json"
    r = runner.invoke(
        app,
        [
            "bench",
            "local",
            "--model",
            "shapes/1",
            "--models",
            str(model_store),
            "--images",
            str(_images(tiny_run)),
            "--concurrency",
            "1,4",
            "--duration",
            "1",
            "--requests",
            "20",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    _check(doc, "local", ["single", "concurrency"])
    assert (tmp_path / "local.csv").read_text().count("\n") == 3  # header + 2 runs
    assert (tmp_path / "latency_cdf.png").stat().st_size > 10_000
    assert (tmp_path / "throughput_vs_concurrency.png").is_file()
    assert doc["provenance"]["model"]["intra_op_threads"] >= 1
    report = BenchReport.from_json(doc)
    assert report.single() is report.runs[0] and report.loaded() is report.runs[1] and report.loaded().concurrency == 4
    for r in report.runs:  # every try at least as long as asked; the last one reported
        assert r.attempts[-1]["duration_s"] == r.duration_s and r.attempts[0]["min_duration_s"] == 1
    for run in doc["runs"]:  # the share of the CPU other processes took, per run and per try
        assert 0 <= run["other_cpu_share"] <= 1 and run["other_cpu_share"] == run["attempts"][-1]["other_cpu_share"]


def test_bench_http_v1_legacy_and_rate(model_store: Path, tiny_run: Path, tmp_path: Path) -> None:
    proc, url = start_server(model_store)
    try:
        for extra, scen in (([], ["single"]), (["--legacy"], ["single"])):
            out = tmp_path / "http.json"
            r = runner.invoke(
                app,
                [
                    "bench",
                    url,
                    "--model",
                    "shapes/1",
                    "--images",
                    str(_images(tiny_run)),
                    "--scenario",
                    "single",
                    "--duration",
                    "1",
                    "--requests",
                    "20",
                    "--json",
                    str(out),
                    "--max-error-rate",
                    "0",
                    *extra,
                ],
            )
            assert r.exit_code == 0, r.output
            _check(json.loads(out.read_text()), url, scen)
        out = tmp_path / "rate.json"
        r = runner.invoke(
            app,
            [
                "bench",
                url,
                "--model",
                "shapes/1",
                "--images",
                str(_images(tiny_run)),
                "--scenario",
                "rate",
                "--rate",
                "20",
                "--arrivals",
                "constant",
                "--duration",
                "1.5",
                "--requests",
                "20",
                "--json",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        run = json.loads(out.read_text())["runs"][0]
        assert run["scenario"] == "rate" and run["target_rate"] == 20 and run["errors"] == {}
        bad = runner.invoke(
            app,
            [
                "bench",
                url,
                "--model",
                "shapes/404",
                "--images",
                str(_images(tiny_run)),
                "--scenario",
                "single",
                "--duration",
                "0.5",
                "--requests",
                "5",
                "--warmup",
                "1",
                "--max-error-rate",
                "0",
            ],
        )
        assert bad.exit_code == 2 and "http 404" in bad.output and "not found" in bad.output
        assert "Traceback" not in bad.output
    finally:
        proc.terminate()
        proc.wait(10)
