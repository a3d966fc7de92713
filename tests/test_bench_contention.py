"""Speed runs that contention cannot fool: every run records the share of the CPU that other processes
took (this process and what it started, the server and client processes, count as ours), a contended
run is tried once more, and a study whose benchmark step ran next to a CPU hog says so in results.json
and the report, and never calls its evidence strong."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from speedmap.bench.loadgen import RunResult
from speedmap.bench.recorder import Recorder
from speedmap.bench.results import BenchRun
from speedmap.bench.run import Tries
from speedmap.cpustat import CONTENDED_SHARE, CpuMeter, read_proc_stat, tree_jiffies
from speedmap.study.config import StudyConfig
from speedmap.study.recommend import recommend
from speedmap.study.report import write_report
from speedmap.study.results import Evidence, Speed, StudyResults, from_plain
from speedmap.study.run import Study
from tests.study_ui import Quiet
from tests.test_compare import study as example_study

# a spinner that ends by itself even if this process dies without killing it
BURN = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"
# starts BURN and exits at once, printing its pid: the spinner is no descendant of ours, as another
# user's job would not be (a child of this process would count as ours)
DETACH = (
    "import subprocess, sys\n"
    "out = subprocess.DEVNULL\n"
    "print(subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdin=out, stdout=out, stderr=out).pid)\n"
)
HOGS = max(2, os.cpu_count() or 2)  # one per core: over 20% of the machine whatever its size


@contextmanager
def hog(n: int = HOGS) -> Iterator[list[int]]:
    """``n`` spinners that are not our descendants; killed on exit."""
    pids = [
        int(subprocess.run([sys.executable, "-c", DETACH, BURN], capture_output=True, text=True).stdout)
        for _ in range(n)
    ]
    try:
        time.sleep(0.3)  # let them start spinning
        yield pids
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_meter_counts_our_process_tree_as_ours_and_the_rest_as_other() -> None:
    # a spinner two levels down (a child that waits on its own child, as a server's workers would be)
    child = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN!r}])"],
        start_new_session=True,  # its own process group, to stop both at the end
    )
    try:
        time.sleep(0.5)
        tree = CpuMeter(own_pids=[os.getpid()])  # ours: this process and everything it started
        alone = CpuMeter()  # ours: this process only
        nothing = CpuMeter(own_pids=[])
        time.sleep(1.0)
        t, a, n = tree.stop(), alone.stop(), nothing.stop()
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert t.other_share is not None and a.other_share is not None and n.other_share is not None
    assert t.cpu_s > 0.25 * t.wall_s  # the grandchild's spinning counted as ours (it had a core at least half the time)
    assert a.cpu_s < 0.2 * a.wall_s  # this process slept
    assert a.other_share > t.other_share + 0.4 * t.cpu_s / (t.wall_s * (os.cpu_count() or 1))
    assert n.other_share >= t.other_share and n.cpu_s == 0.0
    assert tree_jiffies([2**22 + 12345]) == 0  # no such process: nothing of ours
    # a spinner that is not our descendant is "other", however many processes we count as ours
    with hog() as pids:
        m = CpuMeter(own_pids=[os.getpid()])
        time.sleep(1.0)
        s = m.stop()
        mine = CpuMeter(own_pids=[os.getpid(), *pids])  # the same spinners, named as ours
        time.sleep(1.0)
        s2 = mine.stop()
    assert s.contended and s.other_share is not None and s.other_share > CONTENDED_SHARE, s
    assert s2.cpu_s > 0.3 * s2.wall_s and s2.other_share is not None and s2.other_share < s.other_share


def test_the_cpu_counters_are_those_of_our_cpus(tmp_path: Path) -> None:
    """``/proc/stat``'s per-CPU lines are summed over the CPUs we may run on; all of them: the summary line."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  30 0 10 50 5 0 0 5 0 0\ncpu0 10 0 5 20 0 0 0 5 0 0\ncpu1 20 0 5 30 5 0 0 0 0 0\nintr 1 2\n")
    assert read_proc_stat(str(stat), frozenset({0})) == (40, 20)
    assert read_proc_stat(str(stat), frozenset({1})) == (60, 35)
    assert read_proc_stat(str(stat), frozenset({0, 1})) == read_proc_stat(str(stat), frozenset({0, 1, 2})) == (100, 55)
    stat.write_text("intr 1 2\n")
    assert read_proc_stat(str(stat), frozenset({0})) is None  # no counters: unknown, not zero


def test_only_the_cpus_we_may_run_on_count() -> None:
    """A job pinned to some cores (taskset, a container's cpuset, one test worker per core) is not slowed by
    work on the others: a spinner pinned to a core outside our mask is not contention, one on ours is. (Under
    ``-n auto`` each worker holds one core and must not spin on another's: skipped there.)"""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        pytest.skip("needs two CPUs of its own to pin apart")
    ours, theirs = cpus[0], cpus[1]
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {ours})
    try:
        shares = {}
        for core in (theirs, ours):
            spinner = subprocess.Popen(
                [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\n{BURN}"]
            )
            try:
                time.sleep(0.3)
                m = CpuMeter(own_pids=[])  # nothing ours: the spinner (our child) counts as other
                time.sleep(1.0)
                shares[core] = m.stop().other_share
            finally:
                spinner.kill()
                spinner.wait()
    finally:
        os.sched_setaffinity(0, before)
    assert shares[theirs] is not None and shares[theirs] < CONTENDED_SHARE, shares
    assert shares[ours] is not None and shares[ours] > 0.5, shares


def run_result(share: float | None, valid: bool = True) -> RunResult:
    rec = Recorder()
    for _ in range(20):
        rec.record(0.01)
    rates = [10.0] * 5 if valid else [1.0, 10.0, 1.0, 10.0, 1.0]
    return RunResult("single", 1, None, rec, 1.0, rates, other_cpu_share=share)


def test_a_contended_run_is_tried_once_more_at_the_same_duration() -> None:
    t = Tries()
    assert t.factor == 1 and t.again(run_result(0.5), 1.0) == "other processes took 50% of the CPU"
    assert t.factor == 1 and t.again(run_result(0.45), 1.0) is None  # still contended: it is the result
    assert [a["other_cpu_share"] for a in t.attempts] == [0.5, 0.45]
    t = Tries()  # contended and UNSTABLE: once more as it is, then longer as any UNSTABLE run
    assert t.again(run_result(0.5, valid=False), 1.0) and t.factor == 1
    assert (t.again(run_result(0.5, valid=False), 1.0) or "").startswith("UNSTABLE") and t.factor == 2
    t = Tries()
    assert t.again(run_result(0.1), 1.0) is None and t.again is not None  # quiet and VALID: one try
    assert Tries(retry=False).again(run_result(0.9), 1.0) is None  # --no-retry: one try
    assert Tries().again(run_result(None), 1.0) is None  # unknown share (no /proc): not retried
    doc = run_result(0.37).summary().to_json()
    assert doc["other_cpu_share"] == 0.37 and BenchRun.from_json(doc).contended
    old = {k: v for k, v in doc.items() if k != "other_cpu_share"}  # a document from before the field
    assert BenchRun.from_json(old).other_cpu_share is None and not BenchRun.from_json(old).contended


def test_a_hog_during_the_benchmark_step_marks_the_speed_contended_and_the_evidence_not_strong(
    model_store: Path, images: list[Path], tmp_path: Path
) -> None:
    """The study's benchmark step over HTTP (its own server process, spawned by the study) on the tiny
    run's model as both sizes, with a CPU hog started for that step only; then that step's speed in a
    study where nothing else is in doubt."""
    cfg = StudyConfig(
        tasks=["shapes"], targets=["http"], bench_seconds=0.3, bench_requests=5, bench_repeats=1, http_concurrency=4
    )
    study = Study(cfg, tmp_path, Quiet())
    for size in ("fast", "accurate"):
        shutil.copytree(model_store / "shapes" / "1", study.models_dir / "shapes" / size)
    try:
        with hog():
            got = study.bench("shapes", {"fast": "f", "accurate": "a"}, "http", images)
    finally:
        study.close()
    bench = json.loads((tmp_path / "bench" / "http-shapes.json").read_text())
    for run in bench["runs"]:  # a contended run was tried once more at the same duration, and stayed so
        tries = run["attempts"]
        assert len(tries) >= 2 and tries[0]["min_duration_s"] == tries[1]["min_duration_s"] == 0.3, run
        assert tries[0]["other_cpu_share"] > CONTENDED_SHARE and run["other_cpu_share"] > CONTENDED_SHARE
        assert any("over 20%" in w for w in run["warnings"])
    res = example_study()
    assert choice_evidence(res).strength == "strong"  # converged, VALID, certain, quiet: strong ...
    for size, sp in got["sizes"].items():  # ... until its speed comes from the hogged step
        res.tasks["t"].sizes[size].speed["http"] = from_plain(Speed, sp)
    ev = choice_evidence(res)
    assert ev.strength != "strong" and set(ev.speed_contended) == {"fast", "accurate"}
    assert any(x.startswith("Speed on http: **contended**") for x in ev.lines)
    for e in res.tasks["t"].sizes.values():  # the contention alone keeps it from strong
        e.speed["http"].single.valid = True
        if e.speed["http"].loaded is not None:
            e.speed["http"].loaded.valid = True
    assert choice_evidence(res).strength == "moderate"
    doc = res.to_json()  # the contract: speed.D.contended and speed.D.other_cpu_share
    sp = doc["tasks"]["t"]["sizes"]["accurate"]["speed"]["http"]
    assert sp["contended"] is True and sp["other_cpu_share"] > CONTENDED_SHARE
    assert StudyResults.from_json(json.loads(json.dumps(doc))).tasks["t"].sizes["fast"].speed["http"].contended
    md = write_report(res, tmp_path)["markdown"].read_text()
    assert "VALID, contended (others" in md and "; fast contended (" in md and "Speed on http: **contended**" in md


def choice_evidence(res: StudyResults) -> Evidence:
    res.recommendation = recommend(res)
    ev = res.recommendation.choices[0].evidence
    assert ev is not None
    return ev
