"""The study's model steps: the training-speed probe, training, export and the test split's score (with the
paired bootstrap), each a cached step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speedmap.study.config import Plan, StudyConfig
from speedmap.study.records import train_result
from speedmap.study.results import TrainProbe, TrainResult, from_plain
from speedmap.study.steps import UI, Steps

INT8_SUFFIX = "-int8"  # the int8 export of size S is the model NAME/S-int8


class ModelSteps:
    """Part of :class:`~speedmap.study.run.Study`: what makes and scores its models."""

    cfg: StudyConfig
    out: Path
    ui: UI
    steps: Steps
    models_dir: Path

    def probe(self, name: str, data: Path, fingerprint: str, imgsz: int, step: str = "") -> TrainProbe:
        c = self.cfg
        step = step or f"probe/{name}"
        inputs = (fingerprint, imgsz, c.batch, c.probe_steps, c.seed)
        k, cached, why = self.steps.lookup(step, "probe", *inputs)
        if cached is None:
            from speedmap.train.probe import probe_train_speed

            self.ui.stage(
                f"{name}: timing Fast and Accurate side by side ({c.probe_steps} optimizer steps each, "
                f"Fast, Accurate, Accurate, Fast){why}"
            )
            res = probe_train_speed(data, imgsz=imgsz, batch=c.batch, steps=c.probe_steps, seed=c.seed)
            cached = self.steps.put(step, k, res.to_json(), *inputs)
            self.ui.note(f"Accurate takes {res.ratio:.2f}x Fast's time per optimizer step")
        return from_plain(TrainProbe, cached)

    def train(
        self, name: str, data: Path, fingerprint: str, size: str, sched: Plan, time_limit: float | None
    ) -> tuple[str, TrainResult]:
        """Train ``size`` to a plateau within ``sched.epochs`` and, with a budget, within ``time_limit`` s."""
        step, k, cached, why, inputs, tc = self._train_step(name, data, fingerprint, size, sched, time_limit)
        if cached is None:
            from speedmap.train.config import TrainConfig
            from speedmap.train.trainer import train

            within = f", within {time_limit / 60:.1f} min of the budget" if time_limit else ""
            self.ui.stage(
                f"{name}: {'resuming' if tc['resume'] else 'training'} {size} (at most {sched.epochs} epochs, "
                f"patience {self.cfg.patience}, at {sched.imgsz} px{within}){why}"
            )
            record = train(TrainConfig(**tc), progress=self.ui.training, log=self.ui.note)
            cached = self.steps.put(step, k, train_result(record, Path(tc["out"])), *inputs)
        return k, from_plain(TrainResult, cached)

    def _train_step(
        self, name: str, data: Path, fingerprint: str, size: str, sched: Plan, time_limit: float | None
    ) -> tuple[str, str, Any, str, tuple[Any, ...], dict[str, Any]]:
        """A training step's name, key, cached result (None: to run), why it runs, inputs, and the trainer's
        config (TrainConfig fields)."""
        c = self.cfg
        step = f"train/{name}/{size}"
        inputs = (fingerprint, size, sched.epochs, c.patience, sched.imgsz, c.batch, c.seed, c.budget_minutes)
        inputs += (c.weights,) if c.weights != "scratch" else ()  # (a scratch study keeps its earlier keys)
        inputs += ("wsd",)  # runs end annealed (warm-up, stable, cooldown): no earlier run is reused
        k, cached, why = self.steps.lookup(step, "train", *inputs)
        run = self.out / "runs" / f"{name}-{size}-{k}"
        tc = dict(
            data=str(data),
            size=size,
            epochs=sched.epochs,
            imgsz=sched.imgsz,
            batch=c.batch,
            out=str(run),
            seed=c.seed,
            patience=c.patience,
            resume=(run / "last.pt").is_file(),
            time_limit=time_limit,
            device=c.device,
            weights=c.weights,
        )
        return step, k, cached, why, inputs, tc

    def export(self, name: str, size: str, train_key: str, run: str, int8_data: Path | None = None) -> str:
        """The fp32 ONNX model ``name/size``; with ``int8_data``, the int8 one ``name/size-int8`` calibrated on
        that dataset's training images."""
        variant = f"{size}{INT8_SUFFIX}" if int8_data is not None else size
        step = f"export/{name}/{variant}"
        k, cached, why = self.steps.lookup(step, "export", train_key, int8_data is not None)
        if cached is None or not (self.models_dir / name / variant / "model.onnx").is_file():
            from speedmap.export import export_model

            self.ui.stage(f"{name}: exporting {size} to ONNX{' int8' if int8_data is not None else ''}{why}")
            export_model(run, self.models_dir / name / variant, int8=int8_data, evaluate=False, log=self.ui.note)
            self.steps.put(step, k, {"model_id": f"{name}/{variant}"}, train_key, int8_data is not None)
        return k

    def score(self, name: str, data: Path, export_keys: dict[str, str]) -> dict[str, Any]:
        """Both sizes on the test split through the engine, and the paired bootstrap of the two."""
        c = self.cfg
        step = f"score/{name}"
        inputs = (export_keys, c.bootstrap_resamples, c.seed)
        k, cached, why = self.steps.lookup(step, "score", *inputs)
        if cached is not None:
            return dict(cached)
        from speedmap.data.io import load_dataset
        from speedmap.engine import Model
        from speedmap.eval.bootstrap import paired_bootstrap
        from speedmap.eval.model import evaluate_model

        ds = load_dataset(data, auto_split=True, decode=("train", "valid", "test"))  # checked in setup_task
        split = "test" if ds.split_records("test") else "valid"
        self.ui.stage(
            f"{name}: scoring the {split} split through the engine, {c.bootstrap_resamples} paired "
            f"bootstrap resamples{why}"
        )
        ev = {
            s: evaluate_model(Model.load(f"{name}/{s}", models_dir=self.models_dir), ds.split(split))
            for s in export_keys
        }
        out: dict[str, Any] = {"split": split, "images": len(ds.split_records(split)), "sizes": {}, "int8": {}}
        for s, e in ev.items():
            if not s.endswith(INT8_SUFFIX):
                out["sizes"][s] = {"map": e.metrics.map, "map50": e.metrics.map50}
        if "fast" in ev and "accurate" in ev:
            f, a = ev["fast"], ev["accurate"]
            bs = paired_bootstrap(f.gt, f.predictions, a.predictions, resamples=c.bootstrap_resamples, seed=c.seed)
            out["sizes"]["fast"].update(map_ci95=bs.a_map.to_json(), map50_ci95=bs.a_map50.to_json())
            out["sizes"]["accurate"].update(map_ci95=bs.b_map.to_json(), map50_ci95=bs.b_map50.to_json())
            out["delta"] = {
                "map": a.metrics.map - f.metrics.map,
                "map50": a.metrics.map50 - f.metrics.map50,
                "map_ci95": bs.delta_map.to_json(),
                "map50_ci95": bs.delta_map50.to_json(),
                "images": bs.images,
                "resamples": bs.resamples,
                "images_needed": bs.images_needed("map"),
            }
        for s in [v for v in ev if v.endswith(INT8_SUFFIX)]:
            fp, q = ev[s.removesuffix(INT8_SUFFIX)], ev[s]  # int8 against its own fp32 model, paired
            bs = paired_bootstrap(fp.gt, fp.predictions, q.predictions, resamples=c.bootstrap_resamples, seed=c.seed)
            out["int8"][s.removesuffix(INT8_SUFFIX)] = {
                "map": q.metrics.map,
                "map50": q.metrics.map50,
                "map_ci95": bs.b_map.to_json(),
                "map50_ci95": bs.b_map50.to_json(),
                "delta_map": q.metrics.map - fp.metrics.map,
                "delta_map_ci95": bs.delta_map.to_json(),
            }
        return dict(self.steps.put(step, k, out, *inputs))
