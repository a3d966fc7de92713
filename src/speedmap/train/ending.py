"""How a run ends, decided on rank 0 after every epoch and agreed by every rank: the time limit fitted (the
schedule shortened to the epochs that fit), wsd's stable phase ended (a plateau of the smoothed validation curve,
the epoch cap or the time budget, then the cooldown), or, for the linear and cosine schedules, the patience
stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist

from speedmap.train.checkpoint import RunState
from speedmap.train.config import TrainConfig
from speedmap.train.convergence import ObjectStep, patience_stop, plateau_epoch
from speedmap.train.schedule import Schedule, cooldown_epochs, stable_cap


class RunEnding:
    """Part of :class:`~speedmap.train.trainer.Trainer`: the decisions that end its phases and the run."""

    cfg: TrainConfig
    log: Callable[[str], None]
    schedule: Schedule
    state: RunState
    budget: dict[str, Any]
    val: Any
    val_step: ObjectStep | None
    ddp: bool
    device: torch.device
    warmup_epochs: int
    t_built: float
    setup_s: float
    first: int

    def _decide(self, epoch: int) -> bool:
        """After an epoch, on rank 0: fit the time limit, end wsd's stable phase, or stop; True to stop now."""
        spent = time.perf_counter() - self.t_built
        per_epoch = (spent - self.setup_s) / (epoch + 1 - self.first)
        if self.cfg.time_limit and not self.ddp and self._fit_time_limit(epoch, per_epoch, spent, epoch == self.first):
            return True
        if self.schedule.kind == "wsd":
            self._end_stable_phase(epoch, per_epoch, spent)
            return False
        return self._patience_stop(epoch)

    def _plateau(self) -> int | None:
        """The 1-based epoch where the smoothed validation curve peaked, if that is ``patience`` epochs ago;
        judged from the last warm-up epoch on (a rising rate first shakes a pretrained model's scores). Never on
        a validation split too coarse to resolve a plateau (:attr:`ObjectStep.resolves_plateau`)."""
        maps = [h.get("map") for h in self.state.history]
        if self.val is None or None in maps or (self.val_step is not None and not self.val_step.resolves_plateau):
            return None
        w = max(self.warmup_epochs - 1, 0)
        b = plateau_epoch(maps[w:], self.cfg.patience, done=len(maps))
        return None if b is None else b + w + 1

    def _stable_end_reason(self, done: int, per_epoch: float, spent: float) -> tuple[str | None, int]:
        """Why wsd's stable phase ends after ``done`` epochs (None: it goes on) and the epochs the run may
        have in all: a plateau of the smoothed validation curve, the epoch cap, or the time budget."""
        cfg = self.cfg
        if self._plateau() is not None:
            return "plateau", cfg.epochs
        if done >= stable_cap(cfg.epochs):
            return "epochs", cfg.epochs
        if cfg.time_limit and not self.ddp:
            fit = done + int((float(cfg.time_limit) - spent) / max(per_epoch, 1e-9))
            if done >= stable_cap(max(fit, done + 1)):
                return "time", min(cfg.epochs, max(fit, done + 1))
        return None, cfg.epochs

    def _end_stable_phase(self, epoch: int, per_epoch: float, spent: float) -> None:
        """wsd: when the stable phase ends, begin the cooldown (its epochs set the run's end) and record why."""
        if self.schedule.cooldown_start is not None:
            return
        done = epoch + 1
        why, allowed = self._stable_end_reason(done, per_epoch, spent)
        if why is None:
            return
        cool = allowed - done if why == "epochs" else min(cooldown_epochs(done), allowed - done)
        if why == "time":
            self._fitted(per_epoch, done + max(cool, 0), "the constant phase ends here, then the cooldown")
        self.state.phases = {
            "warmup_end": self.warmup_epochs,
            "stable_end": done,
            "stable_end_reason": why,
            "smoothed_best": self._plateau() if why == "plateau" else None,
            "object_step": None if self.val_step is None else round(self.val_step.step, 4),
            "cooldown": max(cool, 0),
        }
        if cool <= 0:
            return  # the cap is here already (a run of one epoch): nothing left to cool down in
        self.schedule = replace(self.schedule, cooldown_start=done, cooldown=cool)
        self.cfg.epochs = done + cool
        what = {"plateau": "the validation curve plateaued", "epochs": "the epoch cap", "time": "the time budget"}
        self.log(f"epoch {done}: {what[why]}; the learning rate cools down over {cool} epochs, to epoch {done + cool}")

    def _patience_stop(self, epoch: int) -> bool:
        st, cfg = self.state, self.cfg
        last = epoch + 1 >= cfg.epochs
        stop = self.val is not None and not last and patience_stop(st.best_fitness, epoch - st.best_epoch, cfg.patience)
        if stop:
            self.log(f"early stop: no mAP50-95 gain for {cfg.patience} epochs (best epoch {st.best_epoch + 1})")
        return stop

    def _agree(self, stop: bool) -> bool:
        """Rank 0's decision to stop, and its schedule (the cooldown, the epochs), on every rank."""
        if self.ddp:
            sch = self.schedule
            start = -1 if sch.cooldown_start is None else sch.cooldown_start
            flag = torch.tensor([int(stop), start, sch.cooldown, self.cfg.epochs], device=self.device)
            dist.broadcast(flag, 0)
            stop, start, cool, self.cfg.epochs = (int(v) for v in flag.tolist())
            if start >= 0:
                self.schedule = replace(sch, cooldown_start=start, cooldown=cool)
        return bool(stop)

    def _fitted(self, per_epoch: float, fit: int, how: str) -> None:
        """Say and record that the time limit fits ``fit`` of the run's ``--epochs`` (``how``: what changes)."""
        limit = float(self.cfg.time_limit or 0.0)
        self.log(
            f"time budget {limit / 60:.1f} min at {per_epoch:.1f} s per epoch: {fit} epochs instead of "
            f"{self.cfg.epochs} ({how})"
        )
        self.budget = {"seconds": round(limit, 1), "epochs_requested": self.cfg.epochs, "epochs_fitted": fit}

    def _fit_time_limit(self, epoch: int, per_epoch: float, spent: float, replan: bool) -> bool:
        """After the first epoch, shorten the schedule to the epochs that fit ``time_limit`` (an epoch's cost is
        known now; two epochs at least); after any later epoch, True when the next one would not fit."""
        cfg = self.cfg
        limit = float(cfg.time_limit or 0.0)
        if replan:
            fit = max(epoch + 2, epoch + 1 + int((limit - spent) / max(per_epoch, 1e-9)))
            if fit < cfg.epochs and self.schedule.kind == "wsd":
                # the cap stays: the constant phase ends when what is left fits only its cooldown, judged on every
                # epoch's cost so far (raccoon's Fast: the first epoch's 3.7 s, set-up included, against 3.3 s over
                # the run shortened it to 97 epochs where about 109 fitted)
                self.log(f"time budget {limit / 60:.1f} min at {per_epoch:.1f} s per epoch: about {fit} epochs fit")
            elif fit < cfg.epochs:
                self._fitted(per_epoch, fit, "the schedule is shortened to fit")
                cfg.epochs = fit
                self.schedule = replace(self.schedule, epochs=fit)
            return False  # at least one more epoch: a run of one epoch says nothing
        if epoch + 1 < cfg.epochs and spent + per_epoch > limit * 1.05:
            self.log(f"time budget spent after {epoch + 1} epochs ({spent / 60:.1f} of {limit / 60:.1f} min)")
            self.budget = {**self.budget, "seconds": round(limit, 1), "stopped_at": epoch + 1}
            cfg.epochs = epoch + 1  # end_epoch writes train.json next, with this budget record
            return True
        return False
