"""The Fast-vs-Accurate study: for each dataset, an interleaved training-speed probe, then for each size
train (to the end of its annealed schedule within ``--epochs``), export and score the test split with bootstrap
intervals, then benchmark every destination with Fast and Accurate interleaved; then the recommendation, once.

This room holds the loop and the per-dataset plan (split, input size, schedule within the budget); the steps
it runs live in :mod:`~speedmap.study.training_steps` and :mod:`~speedmap.study.bench_steps`, their cache in
:mod:`~speedmap.study.steps` (an interrupted study continues where it stopped; training itself resumes from
``last.pt``), the records they keep in :mod:`~speedmap.study.records`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from speedmap.data.imgsz import choose_imgsz, images_cap, largest_that_fits, speed_at
from speedmap.data.io import load_dataset
from speedmap.errors import SpeedmapError
from speedmap.jsonfile import write_json_atomic
from speedmap.study.bench_steps import BenchSteps
from speedmap.study.config import Plan, StudyConfig, epoch_seconds, measured_ips, plan
from speedmap.study.recommend import recommend
from speedmap.study.records import accuracy, pair, train_result, train_threads
from speedmap.study.results import (
    AccuracyDelta,
    Int8Result,
    SizeResult,
    Speed,
    SpeedRatio,
    StudyResults,
    TaskResult,
    from_plain,
)
from speedmap.study.steps import STEPS_FILE, UI, Steps, provenance, task_names
from speedmap.study.training_steps import INT8_SUFFIX, ModelSteps

__all__ = ["UI", "Study", "train_threads"]

RESULTS_FILE = "results.json"
INT8_DESTINATIONS = ("local", "http")  # the CPU destinations int8 is measured on (not the browser's WebAssembly)


class Study(ModelSteps, BenchSteps):
    """The whole loop over the datasets; its steps live in :class:`ModelSteps` and :class:`BenchSteps`."""

    def __init__(self, cfg: StudyConfig, out: Path, ui: UI, command: list[str] | None = None) -> None:
        cfg.check()
        self.cfg, self.out, self.ui = cfg, out, ui
        out.mkdir(parents=True, exist_ok=True)
        self.steps = Steps(out / STEPS_FILE)
        self.models_dir = out / "models"
        self.command = command or sys.argv
        self.servers: dict[str, Any] = {}  # destination (http, http-cuda) -> its server process
        self._prepared: dict[str, tuple[TaskResult, list[Path], Plan]] = {}
        self._dests: list[str] | None = None

    # ---- datasets
    def datasets(self) -> list[tuple[str, Path]]:
        if self.cfg.data:
            folders = [Path(d) for d in self.cfg.data]
            return list(zip(task_names(folders), folders, strict=True))
        from speedmap.data.tasks.make import make_task

        out = []
        imgsz = self.cfg.imgsz or self.cfg.task_imgsz  # --imgsz, else the built-in tasks' own size
        for t in self.cfg.tasks:
            self.ui.stage(f"{t}: generating {self.cfg.images} images at {imgsz} px")
            folder = make_task(t, self.out / "data" / t, seed=self.cfg.seed, images=self.cfg.images, imgsz=imgsz)
            out.append((t, folder))
        return out

    def train_on_ray(self, datasets: list[tuple[str, Path]], dests: list[str]) -> None:
        """Every dataset's unfinished training steps at once, as Ray tasks; the study's loop then finds them
        done. Each dataset is set up here first (split, input size, probe, schedule)."""
        from speedmap.study.on_ray import connect, leave

        cluster = connect(self.cfg.ray or "auto")
        try:  # left when training is done: export, scoring and benchmarks run here, without Ray
            self._train_jobs_on_ray(datasets, dests, cluster)
        finally:
            leave()

    def _train_jobs_on_ray(self, datasets: list[tuple[str, Path]], dests: list[str], cluster: dict[str, Any]) -> None:
        from speedmap.study.on_ray import TrainJob, check_bench_node, task_resources, train_on_ray

        here = check_bench_node(self.cfg.bench_node)
        self.ui.note(
            f"Ray cluster: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs; benchmarks on {here}"
        )
        jobs: list[TrainJob] = []
        for name, path in datasets:
            task, _, sched = self.setup_task(name, path, dests)
            for size in self.cfg.sizes:
                limit = self._time_limit(name, sched, size)
                step, k, cached, _, inputs, tc = self._train_step(name, path, task.fingerprint, size, sched, limit)
                if cached is None:  # absolute paths: a worker's working directory is not this one
                    tc |= {"data": str(Path(tc["data"]).resolve()), "out": str(Path(tc["out"]).resolve())}
                    jobs.append(TrainJob(step, k, inputs, tc, self.out / "runs" / Path(tc["out"]).name))
        if not jobs:
            return
        self.ui.stage(f"training {len(jobs)} runs on the Ray cluster, in parallel as its resources allow")
        done = train_on_ray(jobs, task_resources(cluster, self.cfg.device), self.ui.note)
        for job, (record, worker) in zip(jobs, done, strict=True):
            result = train_result(record, job.run) | {"worker": worker}
            self.steps.put(job.step, job.key, result, *job.inputs, seconds=worker["finished"] - worker["started"])

    # ---- the whole loop
    def run(self) -> StudyResults:
        started = time.time()
        results = StudyResults(self.cfg)
        try:
            dests = self.destinations()
            results.destinations = dests
            datasets = self.datasets()
            if self.cfg.ray:
                self.train_on_ray(datasets, dests)
            for name, path in datasets:
                self.task(name, path, dests, results, started)
        finally:
            self.close()
        return self._save(results, started, finished=True)

    def setup_task(self, name: str, path: Path, dests: list[str]) -> tuple[TaskResult, list[Path], Plan]:
        """The dataset as training sees it (its split), its input size, the training-speed probe (both sizes)
        and the schedule within the budget, planned on the probe's measured speeds. The CLI calls it before
        stating the study's duration; the study's own call reuses the result."""
        if name in self._prepared:
            return self._prepared[name]
        ds = load_dataset(path, auto_split=True, decode=("train", "valid", "test"))  # images that decode
        for line in ds.problems.report_lines(path):
            self.ui.note(line)
        test = [r.path for r in ds.split_records("test")] or [r.path for r in ds.split_records("valid")]
        if not test:
            raise SpeedmapError(f"{path}: no test or valid split to score and benchmark on")
        if self.cfg.imgsz:
            imgsz, reason = self.cfg.imgsz, "given with --imgsz"
        elif not self.cfg.data:
            imgsz, reason = self.cfg.task_imgsz, "the built-in task's own image size"
        else:
            imgsz, reason = choose_imgsz(ds)
        by_rule = not self.cfg.imgsz and bool(self.cfg.data) and bool(self.cfg.budget_minutes)
        floor = imgsz
        task = TaskResult(str(path), list(ds.classes), ds.fingerprint())
        task.imgsz, task.imgsz_reason, task.split = imgsz, reason, ds.split_info.to_json()
        task.corrupt_images = ds.problems.corrupt_images()
        n_train = len(ds.split_records("train"))
        if ds.split_info.source == "automatic":
            self.ui.note(f"{name}: split {ds.split_info.describe()}")
        self.ui.note(f"{name}: {n_train} training images at {imgsz} px, {reason}")
        ips, spent = None, 0.0
        if set(self.cfg.sizes) == {"fast", "accurate"}:
            grown = self._grown_imgsz(name, path, task, ds, imgsz, dests) if by_rule else imgsz
            rule_reason = reason
            if grown != imgsz:
                imgsz, task.imgsz = grown, grown
                task.imgsz_reason = reason = (
                    f"{reason}; the budget fits both sizes' full {self.cfg.epochs}-epoch schedule at {grown} px,"
                    " and more pixels localise better, so the study trains there"
                )
                self.ui.note(f"{name}: {grown} px instead: the budget fits the full schedule there")
            ips, spent = self._probe_ips(name, path, task, imgsz, f"probe/{name}@{imgsz}" if grown != floor else "")
            spent += float(self.steps.done.get(f"probe/{name}", {}).get("seconds", 0.0)) if grown != floor else 0.0
            if grown != floor and plan(self.cfg, n_train, grown, dests, ips=ips, spent_seconds=spent).limited:
                # measured slower than the pixels predicted (raccoon: 192 px fitted 110 of 120 epochs): the whole
                # schedule comes first, so back to the size whose probe fits it
                ips = self._probe_ips(name, path, task, floor)[0]
                imgsz = task.imgsz = floor
                task.imgsz_reason = f"{rule_reason}; {grown} px was probed and its full schedule does not fit"
                self.ui.note(f"{name}: back to {floor} px: {grown} px measured too slow for the full schedule")
        sched = plan(self.cfg, n_train, imgsz, dests, ips=ips, spent_seconds=spent)
        task.plan = sched.to_json()
        self._prepared[name] = (task, test, sched)
        return task, test, sched

    def _probe_ips(self, name: str, path: Path, task: TaskResult, imgsz: int, step: str = "") -> tuple[Any, float]:
        """Both sizes' training images/s at ``imgsz`` (the probe) and the seconds the probe took."""
        probe = task.train_speed_probe = self.probe(name, path, task.fingerprint, imgsz, step)
        ips = measured_ips(probe.fast_step_s, probe.accurate_step_s, self.cfg.batch, train_threads())
        return ips, float(self.steps.done[step or f"probe/{name}"].get("seconds", 0.0))

    def _grown_imgsz(self, name: str, path: Path, task: TaskResult, ds: Any, imgsz: int, dests: list[str]) -> int:
        """The largest input size up to twice the box rule's ``imgsz`` at which both sizes' whole schedule
        (--epochs, cooldown included) still fits the budget, on the probe's speeds at ``imgsz`` scaled by size;
        ``imgsz`` if none. Kept as a step, so a resumed study trains at the size it chose."""
        step, n_train = f"imgsz/{name}", len(ds.split_records("train"))
        inputs = (task.fingerprint, imgsz, self.cfg.to_json(), dests)
        k, cached, _ = self.steps.lookup(step, "probe", *inputs)
        if cached is None:
            ips, spent = self._probe_ips(name, path, task, imgsz)

            def fits(s: int) -> bool:  # a second probe, at s, costs about the first's time scaled by the pixels
                extra = spent * (s / imgsz) ** 2
                return not plan(
                    self.cfg, n_train, s, dests, ips=speed_at(ips, imgsz, s), spent_seconds=spent + extra
                ).limited

            cached = self.steps.put(step, k, {"imgsz": largest_that_fits(imgsz, images_cap(ds), fits)}, *inputs)
        return int(cached["imgsz"])

    def task(self, name: str, path: Path, dests: list[str], results: StudyResults, started: float) -> None:
        task, test, sched = self.setup_task(name, path, dests)
        results.tasks[name] = task
        if task.train_speed_probe is not None:
            self.ui.step_done()
        trained, keys, q_keys = {}, {}, {}
        for size in self.cfg.sizes:
            tk, trained[size] = self.train(
                name, path, task.fingerprint, size, sched, self._time_limit(name, sched, size)
            )
            self.ui.step_done()
            keys[size] = self.export(name, size, tk, trained[size].run)
            if self.cfg.int8:
                q_keys[size] = self.export(name, size, tk, trained[size].run, int8_data=path)
            self._save(results, started)
        scores = self.score(name, path, {**keys, **{f"{s}{INT8_SUFFIX}": k for s, k in q_keys.items()}})
        self.ui.step_done()
        for size in self.cfg.sizes:
            task.sizes[size] = SizeResult(
                f"{name}/{size}", trained[size], accuracy(scores["sizes"][size]), scores["images"]
            )
            q = scores.get("int8", {}).get(size)
            if q is not None:
                task.sizes[size].int8 = Int8Result(
                    f"{name}/{size}{INT8_SUFFIX}", accuracy(q), q["delta_map"], pair(q.get("delta_map_ci95"))
                )
        if "delta" in scores:
            task.accuracy_delta = from_plain(AccuracyDelta, scores["delta"])
        self._save(results, started)
        for dest in dests:
            self._bench_task(name, task, keys, dest, test[:50], "")
            if q_keys and dest in INT8_DESTINATIONS:
                self._bench_task(name, task, q_keys, dest, test[:50], INT8_SUFFIX)
            self.ui.step_done()
            self._save(results, started)

    def _bench_task(
        self, name: str, task: TaskResult, keys: dict[str, str], dest: str, images: list[Path], suffix: str
    ) -> None:
        got = self.bench(name, keys, dest, images, suffix)
        for size, sp in got["sizes"].items():
            holder = task.sizes[size].int8 if suffix else task.sizes[size]
            if holder is not None:
                holder.speed[dest] = from_plain(Speed, sp)
        if "ratio" in got and not suffix:
            task.speed_ratio[dest] = from_plain(SpeedRatio, got["ratio"])

    def _time_limit(self, name: str, sched: Plan, size: str) -> float | None:
        """A size's share of the budget's training time: Fast its share by epoch cost, Accurate what Fast left."""
        if sched.train_seconds is None or not sched.limited:
            return None
        cost = {s: epoch_seconds(s, sched.imgsz, sched.train_images, sched.ips) for s in self.cfg.sizes}
        spent = sum(
            float(self.steps.done.get(f"train/{name}/{s}", {}).get("seconds", 0.0)) for s in self.cfg.sizes if s != size
        )
        if size == self.cfg.sizes[-1] and len(self.cfg.sizes) == 2:
            return max(sched.train_seconds - spent, cost[size] * 2)
        return sched.train_seconds * cost[size] / sum(cost.values())

    def _save(self, results: StudyResults, started: float, finished: bool = False) -> StudyResults:
        results.provenance = provenance(self.command)
        results.provenance["wall_seconds"] = round(time.time() - started, 1)  # this invocation
        results.provenance["steps_seconds"] = round(self.steps.seconds(), 1)  # all finished steps
        results.complete = finished
        if finished:
            results.recommendation = recommend(results)
        write_json_atomic(self.out / RESULTS_FILE, results.to_json())
        return results
