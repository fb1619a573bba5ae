"""The training loop: one for every recipe, one process or many (``torchrun``), resumable exactly.

Read top to bottom: :func:`train`, then :class:`Trainer` — set-up, checkpoint state, one
optimizer step, the guard check, one epoch, the run and its end. Around it: the run directory
and its lock (:mod:`advscale.train.rundir`), the parts a config builds (:mod:`~.build`), one
optimizer step (:mod:`~.step`), optimizer and schedule (:mod:`~.optim`), the metric stream
(:mod:`~.metrics`), evaluation (:mod:`~.evaluation`), the weights' moving average
(:mod:`~.ema`), the best checkpoint (:mod:`~.selection`), which weights become the model and the
end of a run (:mod:`~.ending`, :mod:`~.summary`), processes (:mod:`~.distributed`).
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from advscale.errors import UserError
from advscale.models import build_classifier
from advscale.train import checkpoint as ckpt
from advscale.train.build import build_batches, build_guard, check_settings, place_model
from advscale.train.config import TrainConfig, config_to_dict
from advscale.train.data import TrainData, build_data
from advscale.train.distributed import (
    all_reduce_sum,
    barrier,
    broadcast,
    init_distributed,
    is_comm_error,
    main_says,
    peer_lost,
    restarted_by_torchrun,
    shutdown,
    wrap_ddp,
)
from advscale.train.ema import ModelEMA
from advscale.train.ending import final_model, finish_run
from advscale.train.evaluation import clean_accuracy
from advscale.train.guards import check_finite
from advscale.train.interrupt import StopSignals
from advscale.train.metrics import MetricsLog, epoch_record, progress_bar
from advscale.train.optim import build_optimizer, build_scheduler
from advscale.train.recipes import Recipe, build_recipe
from advscale.train.rundir import (
    CHECKPOINTS,
    CONFIG,
    RESULTS,
    SUMMARY,
    RunDir,
    RunLockedError,
)
from advscale.train.selection import ModelSelector, save_best
from advscale.train.step import NonFiniteStep, Optimization
from advscale.train.summary import PROGRESS, write_results
from advscale.utils import atomic_write_json, read_json, seed_everything

EpochCallback = Callable[[dict[str, Any]], Any]


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    model: nn.Module | None = None,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train as ``config`` says, write the run directory ``out_dir`` and return the summary.

    Args:
        config: a TrainConfig (or subclass).
        out_dir: the run directory; an existing one needs ``resume`` or ``force``.
        resume: continue the run in ``out_dir`` exactly where its last checkpoint left it.
        force: delete an existing run in ``out_dir`` first (not one another process writes).
        model: train this module instead of building ``config.model``; only parameters with
            ``requires_grad=True`` are optimized (linear probing, LoRA, bias-only...).
        on_epoch: called with each epoch's record (a dict); a truthy return stops training.

    Returns:
        The summary (also in ``out_dir/summary.json``): ``clean_accuracy``, ``fgsm_accuracy``,
        ``pgd_accuracy`` (and ``apgd_accuracy`` when evaluated) at ``eval_eps``, all records
        in ``robust_accuracy``, ``time_per_epoch_s``, ``images_per_s``, ``events``...

    Raises:
        UserError: bad config values, an existing run directory, a resume from another config,
            a directory another live process writes (RunLockedError), a non-finite loss
            (NonFiniteLossError, naming the step and batch).

    Example:
        >>> from advscale.train import load_config, train
        >>> summary = train(load_config("configs/rs_fgsm.yaml", ["epochs=1"]), "runs/rs")  # doctest: +SKIP
    """
    return Trainer(
        config, out_dir, resume=resume, force=force, model=model, on_epoch=on_epoch
    ).run()


class Trainer:
    """The state of one training run; :func:`train` is the way to use it.

    Subclasses may override :meth:`build_model` (how the model is made) and
    :meth:`extra_summary` (what is added to the summary); the loop itself stays shared. The
    phases :meth:`setup`, :meth:`run_epoch`, :meth:`guard_check`, :meth:`save` and
    :meth:`finish` may be wrapped (``benchmarks/gpu_e2e.py`` times each).
    """

    #: ``kind`` of the results.json it writes (fine-tuning writes "finetune").
    results_kind = "train"

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        resume: bool = False,
        force: bool = False,
        model: nn.Module | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.cfg = config
        self.out = Path(out_dir)
        self.run_dir = RunDir(self.out)
        self.resume, self.force = resume, force
        self.given_model = model
        self.on_epoch = on_epoch
        self.step = self.epoch = self.batch_in_epoch = 0
        self.records: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.train_time = 0.0
        self.images_seen = 0
        self.best_metric = -1.0
        # This process's Σ w·CE, Σ w, correct, n and seconds of training steps so far in the epoch.
        self.epoch_sums = [0.0] * 5
        self.stop_reason: str | None = None
        self.finished = False
        self.stop = StopSignals()
        self.eval_changed = False  # a resume with other eval: settings (evaluate again)

    # -- set-up ------------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        """Lock the run directory (process 0), refuse to overwrite without ``force``, check that
        a resume uses the same config, and start a new run's ``config.json``."""
        d, rd, cfg_now = self.dist, self.run_dir, config_to_dict(self.cfg)
        refused = rd.try_lock() if d.is_main else None  # one writer: process 0
        if not main_says(refused is None, d):
            raise refused or RunLockedError(f"{self.out} is being written by another process")
        if restarted_by_torchrun() and not self.resume:  # continue what the failed attempt began
            self.resume = main_says(d.is_main and (self.out / CONFIG).exists(), d)
            self.notes += ["restarted by torchrun: resumed from the last checkpoint"]
        if self.resume:
            eval_diffs = rd.check_resume(cfg_now)
            if eval_diffs and d.is_main:  # the run now records the settings it evaluates with
                atomic_write_json(self.out / CONFIG, cfg_now)
            self.eval_changed = bool(eval_diffs)
            if eval_diffs:
                self.notes.append(f"evaluation settings changed on resume: {'; '.join(eval_diffs)}")
            return
        replace = rd.check_new(self.force)
        barrier(d)  # every process has looked before the first one writes
        if d.is_main:
            rd.start(cfg_now, replace)

    def build_model(self, data: TrainData) -> nn.Module:
        """The model ``config.model`` names, with num_classes/in_channels from the data."""
        kwargs = dict(self.cfg.model.kwargs)
        kwargs.setdefault("num_classes", data.num_classes)
        if self.cfg.model.arch != "torchvision":  # timm's name for it: in_chans
            kwargs.setdefault(
                "in_chans" if self.cfg.model.arch == "timm" else "in_channels", data.channels
            )
        try:
            return build_classifier(self.cfg.model.arch, kwargs, data.mean, data.std)
        except ValueError as e:
            raise UserError(f"model: {e}") from None

    def setup(self) -> None:
        """Join the process group, lock and prepare the run directory, build data, model,
        optimizer, schedule, recipe and guard. :meth:`run` calls it; benchmarks call it and
        then :meth:`train_step` directly."""
        cfg = self.cfg
        self.dist = d = init_distributed(cfg.device, cfg.distributed.timeout_s)
        check_settings(cfg, d)
        self._prepare_dir()
        self.metrics = MetricsLog(self.out, enabled=d.is_main)
        barrier(d)
        seed_everything(cfg.seed, cfg.deterministic)
        self.data = build_data(cfg.data, cfg.seed)
        self.loader, self.steps_per_epoch, self.total_steps = build_batches(cfg, self.data, d)
        model = self.given_model if self.given_model is not None else self.build_model(self.data)
        self.model = place_model(model, cfg, d)  # the plain module: checkpoints, evaluation
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # Compile before wrapping in DDP; adversarial examples come from the same weights,
        # without DDP hooks.
        self.gen_model = torch.compile(self.model) if cfg.compile else self.model
        train_model = wrap_ddp(self.gen_model, d)
        self.optimizer = build_optimizer(cfg, self.params)
        self.scheduler = build_scheduler(
            cfg, self.optimizer, self.steps_per_epoch, self.total_steps
        )
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.recipe: Recipe = build_recipe(cfg, seed=cfg.seed * 1000 + 17 + 7919 * d.rank)
        self.opt = Optimization(
            cfg,
            d,
            self.recipe,
            self.gen_model,
            train_model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            ModelEMA(self.model, cfg.ema) if cfg.ema.enabled else None,
        )
        self.selector = ModelSelector(cfg, self.data, d) if cfg.select.metric != "last" else None
        self.guard, note = build_guard(cfg, self.data, d)
        self.notes += [note] if note else []

    # -- checkpoint state --------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PROGRESS}

    def save(self, tag: str = "last") -> None:
        """Checkpoint ``tag`` (every process takes part; process 0 writes); refused, keeping
        the previous one, when a weight is not finite."""
        self._require_finite()
        state = ckpt.training_state(
            self.opt, self.guard, self.progress(), self.epoch_sums, self.selector
        )
        if self.dist.is_main:
            meta = {"recipe": self.cfg.recipe.name, **self.data.model_meta(self.cfg.data)}
            ckpt.save_checkpoint(self.out / CHECKPOINTS, tag, self.model, state, **meta)
        barrier(self.dist)

    def _require_finite(self) -> None:
        last = ckpt.find_checkpoint(self.out / CHECKPOINTS, "last")
        ckpt.require_finite(self.model, step=self.step, last=last)

    def eval_model(self) -> nn.Module:
        """The weights the run evaluates and saves: the moving average when ``ema`` is on."""
        return self.opt.ema.average if self.opt.ema is not None else self.gen_model

    def _save_best_weights(self, model: nn.Module | None = None) -> None:
        self._require_finite()
        save_best(self, model or self.model)

    def _restore(self) -> bool:
        path = ckpt.find_checkpoint(self.out / CHECKPOINTS, "last")
        if path is None:
            self.notes.append("resume found no checkpoint: started from the beginning")
            self.metrics.reset()
            return False
        state = ckpt.load_training_state(path, self.model, self.opt, self.guard, self.selector)
        self.epoch_sums = [float(v) for v in state["ranks"][self.dist.rank]["epoch_sums"]]
        for key in PROGRESS:
            setattr(self, key, state[key])
        self.metrics.truncate(self.step)
        return True

    def log(self, rec: dict[str, Any]) -> None:
        self.metrics.log(rec, self.step)

    # -- one optimizer step ------------------------------------------------------------------
    def train_step(
        self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[float, float, float, int]:
        """One optimizer step over ``grad_accum`` micro-batches ``(x, y)`` of this process.

        The recipe turns each clean micro-batch into (inputs, labels, weights); the loss is
        Σ w·CE / Σ w over the global batch. Returns this process's (Σ w·CE, Σ w, correct, n).
        """
        try:
            totals = self.opt.step(micro_batches, self.step)
        except NonFiniteStep as e:
            self._nonfinite(e.value, e.micro)
        self.step += 1
        self.batch_in_epoch += 1
        self.images_seen += self.cfg.batch_size
        return totals

    def _nonfinite(self, value: float, micro: int) -> NoReturn:
        batch = self.batch_in_epoch * self.cfg.grad_accum + micro
        event = {
            "type": "event",
            "event": "nonfinite_loss",
            "step": self.step,
            "epoch": self.epoch,
            "batch": batch,
            "loss": str(value),
        }
        self.events.append(event)
        self.log(event)
        last = ckpt.find_checkpoint(self.out / CHECKPOINTS, "last")
        self.metrics.close()
        check_finite(
            value if not math.isfinite(value) else float("nan"),
            step=self.step,
            epoch=self.epoch,
            batch=batch,
            checkpoint=str(last) if last else None,
        )

    # -- guard -------------------------------------------------------------------------------
    def guard_check(self) -> None:
        """Measure the catastrophic-overfitting guard now; log it, keep the best weights."""
        g = self.guard
        assert g is not None
        m = g.measure(self.gen_model)
        keys = ("clean_acc", "fgsm_acc", "pgd_acc")
        vals = torch.tensor([m[k] for k in keys], device=self.dist.device)
        m = dict(zip(keys, broadcast(vals, self.dist).tolist(), strict=True))
        v = g.check(
            m,
            step=self.step,
            epoch=self.epoch,
            action=self.cfg.guard.action,
            model=self.model,
            optimizer=self.optimizer,
            recipe=self.recipe,
        )
        self.log(v.record)
        if v.improved and self.selector is None:
            self.best_metric = m["pgd_acc"]
            self._save_best_weights()
        if v.event is not None:
            if v.event["action"] == "stop":
                self.stop_reason = "catastrophic_overfit"
            self.events.append(v.event)
            self.log(v.event)

    # -- the loop ----------------------------------------------------------------------------
    def run_epoch(self) -> None:
        """Train to the end of the epoch (or a stop), then validate, checkpoint and log it."""
        cfg, d = self.cfg, self.dist
        # Resuming mid-epoch: the loader starts after the batches done, without making them.
        self.loader.set_epoch(self.epoch, skip_batches=self.batch_in_epoch * cfg.grad_accum)
        it = iter(self.loader)
        desc = f"epoch {self.epoch + 1}/{cfg.epochs}"
        bar = progress_bar(
            desc, self.steps_per_epoch, self.batch_in_epoch, cfg.progress and d.is_main
        )
        try:
            while self.batch_in_epoch < self.steps_per_epoch and self.step < self.total_steps:
                micro = [next(it) for _ in range(cfg.grad_accum)]
                t0 = time.perf_counter()
                # train_step's float() results wait for the device: the time is the step's.
                num, wsum, correct, n = self.train_step(micro)
                seconds = time.perf_counter() - t0
                self.train_time += seconds
                for i, v in enumerate((num, wsum, correct, n, seconds)):
                    self.epoch_sums[i] += v
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == 1:
                    rec = {
                        "type": "step",
                        "step": self.step,
                        "epoch": self.epoch,
                        "loss": num / max(wsum, 1e-12),
                        "acc": correct / max(n, 1),
                        "lr": self.optimizer.param_groups[0]["lr"],
                    }
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.3f}")
                    self.log(rec)
                if self.guard is not None and cfg.guard.every and self.step % cfg.guard.every == 0:
                    self.guard_check()
                if self.stop_reason:
                    break
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save("last")
                self._stop_if_signalled()
        finally:
            bar.close()
        elapsed = self.epoch_sums[4]  # training steps only: no guard, checkpoint or validation time
        sums = all_reduce_sum(
            torch.tensor(self.epoch_sums[:4], dtype=torch.float64, device=d.device), d
        ).cpu()
        if self.guard is not None and not cfg.guard.every and not self.stop_reason:
            self.guard_check()
        val = clean_accuracy(self.eval_model(), self.data.val, d)
        rec = epoch_record(
            self.progress(),
            sums.tolist(),
            complete=self.batch_in_epoch >= self.steps_per_epoch,
            val=val,
            lr=self.optimizer.param_groups[0]["lr"],
            images=self.batch_in_epoch * cfg.batch_size,
            elapsed=elapsed,
            guard=self.guard.history if self.guard is not None else None,
        )
        if self.selector is not None:
            rec[self.cfg.select.metric] = value = self.selector.measure(self.eval_model())
            if self.selector.update(value, self.step):
                self.best_metric = value
                self._save_best_weights(self.eval_model())
        elif self.guard is None and val > self.best_metric:
            self.best_metric = val
            self._save_best_weights()
        self.records.append(rec)
        self.log(rec)
        if rec["complete"]:
            self.epoch += 1
            self.batch_in_epoch = 0
            self.epoch_sums = [0.0] * 5
        if self.on_epoch is not None and self.on_epoch(dict(rec)):
            self.stop_reason = self.stop_reason or "on_epoch"
        self.save("last")
        if d.is_main:
            write_results(self.out / RESULTS, self.results_kind, cfg, self.records, d.device)
        self._stop_if_signalled()

    def _stop_if_signalled(self) -> None:
        """At a step boundary: after SIGTERM/SIGINT (in any process), checkpoint and stop."""
        signum = self.stop.agreed(self.dist)
        if signum:
            self.save("last")
            raise self.stop.interrupted(signum, self.step, self.out / CHECKPOINTS, self.log)

    def run(self) -> dict[str, Any]:
        """Set up, resume if asked, train epoch by epoch, evaluate; returns the summary."""
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        try:
            self.setup()  # inside: a process that fails here still leaves the group cleanly
            if self.resume and self._restore() and self.finished:
                # Trained: the final evaluation alone remains, unless it completed with these
                # settings.
                done = self.dist.is_main and self.run_dir.finished() is not None
                if main_says(done and not self.eval_changed, self.dist):
                    return read_json(self.out / SUMMARY, "run summary")
            if self.cfg.tensorboard:
                self.notes += self.metrics.open_tensorboard()
            with self.stop:
                while (
                    self.epoch < self.cfg.epochs
                    and self.step < self.total_steps
                    and not self.stop_reason
                    and not self.finished
                ):
                    self.run_epoch()
            self.finished = True
            self.save("last")  # the final evaluation may be killed: a resume starts it again
            summary = self.finish()
            barrier(self.dist)  # no process tears the group down while another still uses it
        except Exception as e:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1 and is_comm_error(e):
                last = ckpt.find_checkpoint(self.out / CHECKPOINTS, "last")
                raise peer_lost(e, getattr(self, "dist", None), last) from None
            raise
        finally:
            if getattr(self, "metrics", None) is not None:
                self.metrics.close()
            self.run_dir.unlock()
            self._release_distributed()
            torch.use_deterministic_algorithms(deterministic_before)
        return summary

    def _release_distributed(self) -> None:
        """Drop DDP (its reducer holds the process group) and destroy the group now, not at
        interpreter exit, when gloo's worker threads abort the process."""
        if getattr(self, "dist", None) is None:
            return
        if self.dist.enabled and getattr(self, "opt", None) is not None:
            self.opt.train_model = self.gen_model
            gc.collect()
        shutdown(self.dist)

    # -- the end -----------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Write the model, evaluate it, write summary.json and results.json; the summary."""
        return finish_run(self)

    def final_model(self) -> tuple[nn.Module, dict[str, Any]]:
        """The model saved as ``model.safetensors`` and evaluated, and where its weights come
        from (see :func:`advscale.train.ending.final_model`)."""
        return final_model(self)

    def extra_summary(self) -> dict[str, Any]:
        """Extra summary entries (for subclasses)."""
        return {}
