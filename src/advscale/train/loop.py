"""The training loop: one for every recipe, one process or many (``torchrun``), resumable exactly.

Read top to bottom: :func:`train`, then :class:`Trainer` — set-up, checkpoint state, one
optimizer step, the guard check, one epoch, the run and its end. The run directory and its lock
are :mod:`advscale.train.rundir`; optimizer and schedule :mod:`~advscale.train.optim`; the
metric stream :mod:`~advscale.train.metrics`; evaluation :mod:`~advscale.train.evaluation`;
``summary.json`` / ``results.json`` :mod:`~advscale.train.summary`; processes
:mod:`~advscale.train.distributed`.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from advscale.attacks import ONE_STEP
from advscale.data import BatchLoader
from advscale.errors import UserError
from advscale.models import build_classifier
from advscale.train import checkpoint as ckpt
from advscale.train.config import TrainConfig, config_to_dict
from advscale.train.data import TrainData, build_data
from advscale.train.distributed import (
    all_reduce_sum,
    barrier,
    broadcast,
    gather_objects,
    init_distributed,
    main_says,
    shutdown,
    wrap_ddp,
)
from advscale.train.evaluation import clean_accuracy, final_records, label_leak_rows
from advscale.train.guards import CatastrophicOverfitGuard, check_finite
from advscale.train.metrics import MetricsLog
from advscale.train.optim import build_optimizer, build_scheduler
from advscale.train.recipes import Recipe, build_recipe
from advscale.train.rundir import (
    CHECKPOINTS,
    MODEL,
    RESULTS,
    SUMMARY,
    RunDir,
    RunLockedError,
)
from advscale.train.step import NonFiniteStep, Optimization
from advscale.train.summary import build_summary, write_results
from advscale.train.webdataset import ShardLoader
from advscale.utils import atomic_write_json, seed_everything

EpochCallback = Callable[[dict[str, Any]], Any]
# The trainer's progress: saved in every checkpoint, restored on resume.
PROGRESS = (
    "step",
    "epoch",
    "batch_in_epoch",
    "records",
    "events",
    "train_time",
    "images_seen",
    "best_metric",
    "stop_reason",
    "finished",
)


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
    :meth:`extra_summary` (what is added to the summary); the loop itself stays shared.
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

    # -- set-up ------------------------------------------------------------------------------
    def _validate(self) -> None:
        cfg = self.cfg
        if not any(a not in ONE_STEP for a in cfg.eval.attacks):
            raise UserError(
                f"eval.attacks {cfg.eval.attacks} holds only one-step attacks, which overstate "
                "robustness; add an iterative one (pgd, apgd, iter_basic, iter_ll)"
            )
        bad = [e for e in cfg.eval_eps() if not 0 <= e <= 255]
        if bad:
            raise UserError(f"eval.eps values must be in [0, 255] pixel levels, got {bad}")
        if cfg.amp == "fp16" and self.dist.device.type != "cuda":
            raise UserError(
                "amp: fp16 needs a CUDA device (it uses a GradScaler); use amp: bf16 or none on CPU"
            )
        per = self.dist.world_size * cfg.grad_accum
        if cfg.batch_size % per:
            raise UserError(
                f"batch_size={cfg.batch_size} must be divisible by processes x grad_accum = "
                f"{self.dist.world_size} x {cfg.grad_accum}"
            )

    def _prepare_dir(self) -> None:
        """Lock the run directory (process 0), refuse to overwrite without ``force``, check that
        a resume uses the same config, and start a new run's ``config.json``."""
        d, rd, cfg_now = self.dist, self.run_dir, config_to_dict(self.cfg)
        locked_out: RunLockedError | None = None
        if d.is_main:
            try:
                rd.lock()
            except RunLockedError as e:
                locked_out = e
        if not main_says(locked_out is None, d):
            raise locked_out or RunLockedError(f"{self.out} is being written by another process")
        if self.resume:
            rd.check_resume(cfg_now)
            return
        replace = rd.check_new(self.force)
        barrier(d)  # every process has looked before the first one writes
        if d.is_main:
            rd.start(cfg_now, replace)

    def build_model(self, data: TrainData) -> nn.Module:
        """The model ``config.model`` names, with num_classes/in_channels from the data."""
        kwargs = dict(self.cfg.model.kwargs)
        kwargs.setdefault("num_classes", data.num_classes)
        kwargs.setdefault("in_channels", data.channels)
        try:
            return build_classifier(self.cfg.model.arch, kwargs, data.mean, data.std)
        except ValueError as e:
            raise UserError(f"model: {e}") from None

    def setup(self) -> None:
        """Join the process group, lock and prepare the run directory, build data, model,
        optimizer, schedule, recipe and guard. :meth:`run` calls it; benchmarks call it and
        then :meth:`train_step` directly."""
        cfg = self.cfg
        self.dist = d = init_distributed(cfg.device)
        self._validate()
        self._prepare_dir()
        self.metrics = MetricsLog(self.out, enabled=d.is_main)
        barrier(d)
        seed_everything(cfg.seed, cfg.deterministic)
        self.data = build_data(cfg.data, cfg.seed)
        self.micro = cfg.batch_size // (d.world_size * cfg.grad_accum)
        self.loader, n_train = self._loader()
        self.steps_per_epoch = len(self.loader) // cfg.grad_accum
        if self.steps_per_epoch < 1:
            raise UserError(
                f"batch_size={cfg.batch_size} leaves no whole step per epoch for {n_train} examples"
            )
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)

        model = self.given_model if self.given_model is not None else self.build_model(self.data)
        model = model.to(d.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and d.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model  # the plain module: checkpoints, evaluation
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise UserError("the model has no parameter with requires_grad=True: nothing to train")
        # Compile before wrapping in DDP; adversarial examples come from the same weights,
        # without DDP hooks.
        self.gen_model = torch.compile(model) if cfg.compile else model
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
            wrap_ddp(self.gen_model, d),
            self.optimizer,
            self.scheduler,
            self.scaler,
        )

        self.guard: CatastrophicOverfitGuard | None = None
        if cfg.guard_enabled():
            if cfg.recipe.eps == 0:
                self.notes.append("guard off: recipe.eps is 0")
            else:
                x, y = self.data.val.take(cfg.guard.n, seed=cfg.seed + 2).tensors(d.device)
                self.guard = CatastrophicOverfitGuard(
                    cfg.guard, cfg.recipe.eps / 255, x, y, seed=cfg.seed + 3
                )

    def _loader(self) -> tuple[Any, int]:
        """This process's micro-batches (streamed from shards, or drawn from the dataset) and
        the number of training examples."""
        cfg, d = self.cfg, self.dist
        common = dict(seed=cfg.seed, device=d.device, rank=d.rank, world_size=d.world_size)
        if self.data.streamed:
            loader: Any = ShardLoader(
                self.data.train,
                self.micro,
                shuffle_buffer=cfg.data.shuffle_buffer,
                image_size=cfg.data.image_size,
                **common,
            )
            n_train = loader.num_samples
        else:
            n_train = len(self.data.train)
        if cfg.batch_size > n_train:
            raise UserError(
                f"batch_size={cfg.batch_size} is larger than the {n_train} training examples "
                f"(data.n_train={cfg.data.n_train}); lower batch_size or raise data.n_train"
            )
        if not self.data.streamed:
            loader = BatchLoader(
                self.data.train, self.micro, shuffle=True, drop_last=True, **common
            )
        return loader, n_train

    # -- checkpoint state --------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        mine = {
            "rng": ckpt.rng_state(),
            "recipe": self.recipe.state_dict(),
            "epoch_sums": list(self.epoch_sums),
        }
        return {
            **{k: getattr(self, k) for k in PROGRESS},
            "world_size": self.dist.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ranks": gather_objects(mine, self.dist),
            "guard": self.guard.state_dict() if self.guard is not None else None,
        }

    def save(self, tag: str = "last") -> None:
        """Checkpoint ``tag`` (every process takes part; process 0 writes)."""
        state = self._state()
        if self.dist.is_main:
            ckpt.save_checkpoint(
                self.out / CHECKPOINTS, tag, self.model, state, recipe=self.cfg.recipe.name
            )
        barrier(self.dist)

    def _save_best_weights(self) -> None:
        if self.dist.is_main:
            path = self.out / CHECKPOINTS / "best"
            ckpt.save_weights(self.model, path, step=self.step, metric=self.best_metric)

    def _restore(self) -> bool:
        path = ckpt.find_checkpoint(self.out / CHECKPOINTS, "last")
        if path is None:
            self.notes.append("resume found no checkpoint: started from the beginning")
            self.metrics.reset()
            return False
        state = ckpt.load_checkpoint(path, self.model)
        if state["world_size"] != self.dist.world_size:
            raise UserError(
                f"--resume: {path} was written by {state['world_size']} process(es), now "
                f"{self.dist.world_size}; resume with the same number of processes"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        mine = state["ranks"][self.dist.rank]
        ckpt.set_rng_state(mine["rng"])
        self.recipe.load_state_dict(mine["recipe"])
        self.epoch_sums = [float(v) for v in mine["epoch_sums"]]
        if self.guard is not None and state.get("guard"):
            self.guard.load_state_dict(state["guard"])
        for key in PROGRESS:
            setattr(self, key, state[key])
        self.metrics.truncate(self.step)
        return True

    def _log(self, rec: dict[str, Any]) -> None:
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
        self._log(event)
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
    def _guard_check(self) -> None:
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
        self._log(v.record)
        if v.improved:
            self.best_metric = m["pgd_acc"]
            self._save_best_weights()
        if v.event is not None:
            if v.event["action"] == "stop":
                self.stop_reason = "catastrophic_overfit"
            self.events.append(v.event)
            self._log(v.event)

    # -- the loop ----------------------------------------------------------------------------
    def _epoch(self) -> None:
        cfg, d = self.cfg, self.dist
        self.loader.set_epoch(self.epoch)
        it = iter(self.loader)
        for _ in range(self.batch_in_epoch * cfg.grad_accum):  # resuming mid-epoch: skip those
            next(it)
        from tqdm import tqdm

        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and d.is_main),
            dynamic_ncols=True,
            leave=False,
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
                    self._log(rec)
                if self.guard is not None and cfg.guard.every and self.step % cfg.guard.every == 0:
                    self._guard_check()
                if self.stop_reason:
                    break
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save("last")
        finally:
            bar.close()
        elapsed = self.epoch_sums[4]  # training steps only: no guard, checkpoint or validation time
        sums = all_reduce_sum(
            torch.tensor(self.epoch_sums[:4], dtype=torch.float64, device=d.device), d
        ).cpu()
        complete = self.batch_in_epoch >= self.steps_per_epoch
        if self.guard is not None and not cfg.guard.every and not self.stop_reason:
            self._guard_check()
        val = clean_accuracy(self.gen_model, self.data.val, d)
        rec = {
            "type": "epoch",
            "epoch": self.epoch,
            "step": self.step,
            "complete": complete,
            "train_loss": float(sums[0] / sums[1].clamp_min(1e-12)),
            "train_acc": float(sums[2] / sums[3].clamp_min(1)),
            "val_acc": val,
            "lr": self.optimizer.param_groups[0]["lr"],
            "time_s": elapsed,
            "images_per_s": self.batch_in_epoch * cfg.batch_size / elapsed if elapsed > 0 else None,
        }
        if self.guard is not None and self.guard.history:
            last = self.guard.history[-1]
            rec.update(
                guard_clean_acc=last["clean_acc"],
                guard_fgsm_acc=last["fgsm_acc"],
                guard_pgd_acc=last["pgd_acc"],
            )
        if self.guard is None and val > self.best_metric:
            self.best_metric = val
            self._save_best_weights()
        self.records.append(rec)
        self._log(rec)
        if complete:
            self.epoch += 1
            self.batch_in_epoch = 0
            self.epoch_sums = [0.0] * 5
        if self.on_epoch is not None and self.on_epoch(dict(rec)):
            self.stop_reason = self.stop_reason or "on_epoch"
        self.save("last")
        if d.is_main:
            write_results(self.out / RESULTS, self.results_kind, cfg, self.records, d.device)

    def run(self) -> dict[str, Any]:
        """Set up, resume if asked, train epoch by epoch, evaluate; returns the summary."""
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        try:
            self.setup()  # inside: a process that fails here still leaves the group cleanly
            if self.resume and self._restore() and self.finished:
                return json.loads((self.out / SUMMARY).read_text())
            note = self.metrics.open_tensorboard() if self.cfg.tensorboard else None
            if note:
                self.notes.append(note)
            while (
                self.epoch < self.cfg.epochs
                and self.step < self.total_steps
                and not self.stop_reason
            ):
                self._epoch()
            self.finished = True
            self.save("last")
            summary = self._finish()
            barrier(self.dist)  # no process tears the group down while another still uses it
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
    def _finish(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.dist
        if d.is_main:
            ckpt.save_weights(
                self.model,
                self.out / MODEL,
                recipe=cfg.recipe.name,
                eps=cfg.recipe.eps,
                step=self.step,
                classes=self.data.classes,
            )
        eval_set = self.data.val.take(cfg.eval.n, seed=cfg.seed + 4)
        eval_records = final_records(self.model, eval_set, cfg, d)
        leak = None
        if cfg.label_leak_enabled() and d.is_main:
            leak, events, note = label_leak_rows(self.model, eval_set, cfg, self.step)
            self.events += events
            self.notes += [note] if note else []
        barrier(d)
        summary = build_summary(
            cfg,
            eval_records,
            self.records,
            epochs=self.epoch,
            steps=self.step,
            world_size=d.world_size,
            train_time=self.train_time,
            images_seen=self.images_seen,
            events=self.events,
            stop_reason=self.stop_reason,
            label_leak=leak,
            guard=self.guard.history if self.guard is not None else None,
            model_path=self.out / "model.safetensors",
            notes=self.notes,
        )
        summary.update(self.extra_summary())
        if d.is_main:
            atomic_write_json(self.out / SUMMARY, summary)
            write_results(
                self.out / RESULTS,
                self.results_kind,
                cfg,
                self.records,
                d.device,
                eval_records=eval_records,
                summary=summary,
            )
            numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
            self._log({"type": "final", "step": self.step, **numbers})
        return summary

    def extra_summary(self) -> dict[str, Any]:
        """Extra summary entries (for subclasses)."""
        return {}
