"""The training loop: one for every recipe, one process or many (``torchrun``), resumable exactly.

A run directory holds::

    config.json        the resolved config (a resume must match it)
    metrics.jsonl      one JSON line per logged step, epoch, guard check and event
    tb/                TensorBoard event files (when the tensorboard package is installed)
    checkpoints/last/  weights + full training state; checkpoints/best/ the best weights so far
    model.safetensors  final weights (+ model.json), loadable with advscale.load_model
    summary.json       the roll-up: clean, FGSM, PGD accuracy, time per epoch, images/s, events
    results.json       advscale.results file, kind "train": per-epoch and final-eval records
"""

from __future__ import annotations

import functools
import gc
import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from advscale.attacks import ONE_STEP
from advscale.data import BatchLoader, ImageDataset, ShardLoader
from advscale.errors import UserError
from advscale.models import build_classifier
from advscale.results import Results
from advscale.train import checkpoint as ckpt
from advscale.train.config import TrainConfig, config_to_dict
from advscale.train.data import TrainData, build_data
from advscale.train.distributed import (
    all_reduce_sum,
    barrier,
    broadcast,
    init_distributed,
    shutdown,
)
from advscale.train.evaluation import clean_accuracy, robust_records
from advscale.train.guards import CatastrophicOverfitGuard, check_finite
from advscale.train.recipes import Recipe, build_recipe
from advscale.utils import atomic_write_json, environment_info, seed_everything

RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "tb",
    "checkpoints",
    "model.safetensors",
    "model.json",
    "summary.json",
    "results.json",
)
# Keys that may change between a run and its resume without changing what is computed.
RESUME_FREE = {"progress", "log_every", "tensorboard", "checkpoint_every", "device"}

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
        force: delete an existing run in ``out_dir`` first.
        model: train this module instead of building ``config.model``; only parameters with
            ``requires_grad=True`` are optimized (linear probing, LoRA, bias-only...).
        on_epoch: called with each epoch's record (a dict); a truthy return stops training.

    Returns:
        The summary (also in ``out_dir/summary.json``): ``clean_accuracy``, ``fgsm_accuracy``,
        ``pgd_accuracy`` (and ``apgd_accuracy`` when evaluated) at ``eval_eps``, all records
        in ``robust_accuracy``, ``time_per_epoch_s``, ``images_per_s``, ``events``...

    Raises:
        UserError: bad config values, an existing run directory, a resume from another config,
            a non-finite loss (NonFiniteLossError, naming the step and batch).

    Example:
        >>> from advscale.train import load_config, train
        >>> summary = train(load_config("configs/rs_fgsm.yaml", ["epochs=1"]), "runs/rs")  # doctest: +SKIP
    """
    return Trainer(
        config, out_dir, resume=resume, force=force, model=model, on_epoch=on_epoch
    ).run()


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps (a pure function of the step)."""
    s = cfg.schedule
    warm = s.warmup * steps_per_epoch
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if s.name == "constant":
        return 1.0
    if s.name == "cosine":
        span = max(total_steps - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))
    if s.name == "cyclic":
        t = (step + 1) / max(total_steps, 1)
        return t / s.peak if t <= s.peak else max(0.0, (1 - t) / (1 - s.peak))
    epoch = step / max(steps_per_epoch, 1)
    return s.gamma ** sum(1 for m in s.milestones if epoch >= m)


def _config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if not prefix and key in RESUME_FREE:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_diff(a, b, name + ".")
        elif a != b:
            diffs.append(f"{name}: {a!r} in the run, {b!r} now")
    return diffs


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
        self.resume, self.force = resume, force
        self.given_model = model
        self.on_epoch = on_epoch
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
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
        self._tb: Any = None
        self._metrics_file: Any = None

    # -- set-up ------------------------------------------------------------------------------
    def _validate(self) -> None:
        cfg = self.cfg
        if not any(a not in ONE_STEP for a in cfg.eval.attacks):
            raise UserError(
                f"eval.attacks {cfg.eval.attacks} holds only one-step attacks, which overstate robustness; "
                "add an iterative one (pgd, apgd, iter_basic, iter_ll)"
            )
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
        """Refuse to overwrite without ``force``; check that a resume uses the same config."""
        out, cfg_now = self.out, config_to_dict(self.cfg)
        existing = [n for n in RUN_FILES if (out / n).exists()]
        if self.resume:
            saved = out / "config.json"
            if not saved.exists():
                raise UserError(
                    f"--resume: {out} holds no run (no config.json); start it without --resume"
                )
            diffs = _config_diff(json.loads(saved.read_text()), cfg_now)
            if diffs:
                raise UserError(
                    f"--resume: {saved} was written by a different config:\n  "
                    + "\n  ".join(diffs)
                    + "\nResume with the same config, or start a new run (--force overwrites)."
                )
            return
        if existing and not self.force:
            raise UserError(
                f"{out} already holds a run ({', '.join(existing)}); use --resume to continue it or "
                "--force to overwrite it"
            )
        barrier(self.dist)  # every process has looked before the first one writes
        if self.dist.is_main:
            for name in existing:
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "config.json", cfg_now)

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
        """Join the process group, prepare the run directory, build data, model, optimizer,
        schedule, recipe and guard. :meth:`run` calls it; benchmarks call it and then
        :meth:`train_step` directly."""
        cfg = self.cfg
        self.dist = init_distributed(cfg.device)
        d = self.dist
        self._validate()
        self._prepare_dir()
        barrier(d)
        seed_everything(cfg.seed, cfg.deterministic)
        self.data = build_data(cfg.data, cfg.seed)
        self.micro = cfg.batch_size // (d.world_size * cfg.grad_accum)
        if self.data.streamed:
            self.loader: Any = ShardLoader(
                self.data.train,
                self.micro,
                seed=cfg.seed,
                device=d.device,
                rank=d.rank,
                world_size=d.world_size,
                shuffle_buffer=cfg.data.shuffle_buffer,
                image_size=cfg.data.image_size,
                num_classes=self.data.num_classes,
            )
            n_train = self.loader.num_samples
        else:
            n_train = len(self.data.train)
        if cfg.batch_size > n_train:
            raise UserError(
                f"batch_size={cfg.batch_size} is larger than the {n_train} training examples "
                f"(data.n_train={cfg.data.n_train}); lower batch_size or raise data.n_train"
            )
        if not self.data.streamed:
            self.loader = BatchLoader(
                self.data.train,
                self.micro,
                shuffle=True,
                drop_last=True,
                seed=cfg.seed,
                device=d.device,
                rank=d.rank,
                world_size=d.world_size,
            )
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
        gen_model = torch.compile(model) if cfg.compile else model  # compile before wrapping in DDP
        self.gen_model = (
            gen_model  # adversarial examples come from the same weights, without DDP hooks
        )
        if d.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [d.device.index] if d.device.type == "cuda" else None
            self.train_model: nn.Module = DDP(gen_model, device_ids=ids)
        else:
            self.train_model = gen_model

        o = cfg.optimizer
        if o.name == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                self.params,
                lr=o.lr,
                momentum=o.momentum,
                weight_decay=o.weight_decay,
                nesterov=o.nesterov,
            )
        else:
            self.optimizer = torch.optim.AdamW(
                self.params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay
            )
        # functools.partial, not a lambda over self: no reference cycle keeps the trainer (and
        # DDP's process group) alive past run().
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            functools.partial(
                lr_factor, cfg, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps
            ),
        )
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.recipe: Recipe = build_recipe(cfg, seed=cfg.seed * 1000 + 17 + 7919 * d.rank)

        self.guard: CatastrophicOverfitGuard | None = None
        if cfg.guard_enabled():
            if cfg.recipe.eps == 0:
                self.notes.append("guard off: recipe.eps is 0")
            else:
                held = self.data.val.take(cfg.guard.n, seed=cfg.seed + 2)
                x, y = held.tensors(d.device)
                self.guard = CatastrophicOverfitGuard(
                    cfg.guard, cfg.recipe.eps / 255, x, y, seed=cfg.seed + 3
                )

    # -- logging -----------------------------------------------------------------------------
    def _log(self, rec: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        if self._metrics_file is None:
            self._metrics_file = open(self.out / "metrics.jsonl", "a")  # noqa: SIM115 (kept open for the run)
        self._metrics_file.write(json.dumps(rec) + "\n")
        self._metrics_file.flush()
        if self._tb is not None:
            kind = rec.get("type", "step")
            for k, v in rec.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k not in ("step", "epoch")
                ):
                    self._tb.add_scalar(f"{kind}/{k}", v, rec.get("step", self.step))

    def _open_tensorboard(self) -> None:
        if not (self.cfg.tensorboard and self.dist.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.notes.append("tensorboard not installed: no event files (pip install tensorboard)")
            return
        self._tb = SummaryWriter(str(self.out / "tb"))

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines after ``step``: a resumed run rewrites them exactly."""
        path = self.out / "metrics.jsonl"
        if not (self.dist.is_main and path.exists()):
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if rec.get("step", 0) <= step:
                keep.append(line)
        path.write_text("".join(line + "\n" for line in keep))

    # -- checkpoints -------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        return {
            "rng": ckpt.rng_state(),
            "recipe": self.recipe.state_dict(),
            "epoch_sums": list(self.epoch_sums),
        }

    def _state(self) -> dict[str, Any]:
        ranks = [self._rank_state()]
        if self.dist.enabled:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, ranks[0])
            ranks = gathered
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.dist.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ranks": ranks,
            "guard": self.guard.state_dict() if self.guard is not None else None,
            "records": self.records,
            "events": self.events,
            "train_time": self.train_time,
            "images_seen": self.images_seen,
            "best_metric": self.best_metric,
            "stop_reason": self.stop_reason,
            "finished": self.finished,
        }

    def save(self, tag: str = "last") -> None:
        """Checkpoint ``tag`` (every process takes part; process 0 writes)."""
        state = self._state()
        if self.dist.is_main:
            ckpt.save_checkpoint(
                self.out / "checkpoints", tag, self.model, state, recipe=self.cfg.recipe.name
            )
        barrier(self.dist)

    def _save_best_weights(self) -> None:
        if self.dist.is_main:
            ckpt.save_weights(
                self.model,
                self.out / "checkpoints" / "best",
                step=self.step,
                metric=self.best_metric,
            )

    def _restore(self) -> bool:
        path = ckpt.find_checkpoint(self.out / "checkpoints", "last")
        if path is None:
            self.notes.append("resume found no checkpoint: started from the beginning")
            if self.dist.is_main:
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
            return False
        state = ckpt.load_checkpoint(path, self.model)
        if state["world_size"] != self.dist.world_size:
            raise UserError(
                f"--resume: {path} was written by {state['world_size']} process(es), now {self.dist.world_size}; "
                "resume with the same number of processes"
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
        for key in (
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
        ):
            setattr(self, key, state[key])
        self._truncate_metrics(self.step)
        return True

    # -- one optimizer step ------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.cfg.amp == "none":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.type, dtype=dtype)

    def train_step(
        self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[float, float, float, int]:
        """One optimizer step over ``grad_accum`` micro-batches ``(x, y)`` of this process.

        The recipe turns each clean micro-batch into (inputs, labels, weights); the loss is
        Σ w·CE / Σ w over the global batch. Returns this process's (Σ w·CE, Σ w, correct, n).
        """
        cfg, d = self.cfg, self.dist
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals = [0.0, 0.0, 0.0, 0]
        for j, (x, y) in enumerate(micro_batches):
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                batch = self.recipe(self.gen_model, x, y, self.step)
            inputs = (
                batch.inputs.contiguous(memory_format=torch.channels_last)
                if cfg.channels_last
                else batch.inputs
            )
            last = j == len(micro_batches) - 1
            sync = self.train_model.no_sync() if (d.enabled and not last) else nullcontext()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    logits = self.train_model(inputs)
                ce = F.cross_entropy(
                    logits.float(),
                    batch.labels,
                    reduction="none",
                    label_smoothing=cfg.label_smoothing,
                )
                w = batch.weights.to(ce.dtype)
                num = (w * ce).sum()
                # Normalize by the weights of all processes, so DDP's gradient average equals the
                # single-process Σ w·CE / Σ w over the global batch.
                stats = torch.stack(
                    [w.sum().detach(), (~torch.isfinite(num.detach())).to(ce.dtype)]
                )
                all_reduce_sum(stats, d)
                if float(stats[1]) > 0:
                    self._nonfinite(float(num.detach()), j)
                loss = num * (d.world_size / cfg.grad_accum) / stats[0].clamp_min(1e-12)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            totals[0] += float(num.detach())
            totals[1] += float(w.sum())
            totals[2] += float((logits.detach().argmax(1) == batch.labels).sum())
            totals[3] += len(y)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.batch_in_epoch += 1
        self.images_seen += cfg.batch_size
        return totals[0], totals[1], totals[2], int(totals[3])

    def _nonfinite(self, value: float, micro: int) -> None:
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
        last = ckpt.find_checkpoint(self.out / "checkpoints", "last")
        self._close()
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
        vals = broadcast(
            torch.tensor([m["clean_acc"], m["fgsm_acc"], m["pgd_acc"]], device=self.dist.device),
            self.dist,
        ).tolist()
        m = dict(zip(("clean_acc", "fgsm_acc", "pgd_acc"), vals, strict=True))
        reason = g.collapsed(m)
        g.record(m, self.step, reason is not None)
        self._log(
            {
                "type": "guard",
                "step": self.step,
                "epoch": self.epoch,
                **m,
                "best_pgd_acc": max(g.best_pgd, 0),
            }
        )
        if reason is None:
            snap = {
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
            }
            if g.update_best(m, self.step, snap):
                self.best_metric = m["pgd_acc"]
                self._save_best_weights()
            return
        action = self.cfg.guard.action
        event = {
            "type": "event",
            "event": "catastrophic_overfit",
            "step": self.step,
            "epoch": self.epoch,
            "reason": reason,
            **m,
            "best_pgd_acc": g.best_pgd,
            "best_step": g.best_step,
            "action": action,
        }
        if action in ("stop", "reduce_step") and g.best_snapshot is not None:
            self.model.load_state_dict(g.best_snapshot["model"])
            self.optimizer.load_state_dict(g.best_snapshot["optimizer"])
            event["restored_step"] = g.best_step
        if action == "stop":
            self.stop_reason = "catastrophic_overfit"
        elif action == "reduce_step":
            self.recipe.reduce_step(self.cfg.guard.reduce_factor)
            event["step_scale"] = self.recipe.step_scale
        self.events.append(event)
        self._log(event)

    # -- the loop ----------------------------------------------------------------------------
    def _epoch(self) -> None:
        cfg, d = self.cfg, self.dist
        self.loader.set_epoch(self.epoch)
        it = iter(self.loader)
        for _ in range(
            self.batch_in_epoch * cfg.grad_accum
        ):  # resuming mid-epoch: skip what was done
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
                num, wsum, correct, n = self.train_step(
                    micro
                )  # its float() results wait for the device
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
            self._write_results(complete=False)

    def run(self) -> dict[str, Any]:
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        try:
            self.setup()  # inside: a process that fails here still leaves the group cleanly
            if self.resume and self._restore() and self.finished:
                return json.loads((self.out / "summary.json").read_text())
            self._open_tensorboard()
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
            self._close()
            self._release_distributed()
            torch.use_deterministic_algorithms(deterministic_before)
        return summary

    def _release_distributed(self) -> None:
        """Drop DDP (its reducer holds the process group) and destroy the group now, not at
        interpreter exit, when gloo's worker threads abort the process."""
        if getattr(self, "dist", None) is None:
            return
        if self.dist.enabled and getattr(self, "train_model", None) is not None:
            self.train_model = self.gen_model
            gc.collect()
        shutdown(self.dist)

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.dist
        if d.is_main:
            ckpt.save_weights(
                self.model,
                self.out / "model",
                recipe=cfg.recipe.name,
                eps=cfg.recipe.eps,
                step=self.step,
                classes=self.data.classes,
            )
        eval_set = self.data.val.take(cfg.eval.n, seed=cfg.seed + 4)
        self.eval_records = robust_records(
            self.model,
            eval_set,
            d,
            attacks=list(cfg.eval.attacks),
            eps=cfg.eval_eps(),
            batch_size=cfg.eval.batch_size,
            attack_kwargs=cfg.eval.attack_kwargs,
            seed=cfg.seed,
            progress=cfg.progress,
        )
        leak = None
        if cfg.label_leak_enabled() and d.is_main:
            leak = self._label_leak(eval_set)
        barrier(d)
        summary = self._summary(leak)
        if d.is_main:
            atomic_write_json(self.out / "summary.json", summary)
            self._write_results(complete=True, summary=summary)
            self._log(
                {
                    "type": "final",
                    "step": self.step,
                    **{
                        k: v
                        for k, v in summary.items()
                        if isinstance(v, (int, float)) and v is not None
                    },
                }
            )
        return summary

    def _label_leak(self, data: ImageDataset) -> list[dict[str, Any]] | None:
        try:
            from advscale.evaluate.label_leak import label_leak
        except ImportError:
            self.notes.append(
                "label leaking not measured: advscale.evaluate.label_leak is not available"
            )
            return None
        self.model.eval()
        rows = label_leak(
            self.model, data.take(min(len(data), 1000), seed=self.cfg.seed), self.cfg.eval_eps()
        )
        rows = [dict(r) for r in rows]
        for r in rows:
            if r.get("leak"):
                ev = {
                    "type": "event",
                    "event": "label_leak",
                    "step": self.step,
                    **{k: v for k, v in r.items() if isinstance(v, (int, float, str, bool))},
                }
                self.events.append(ev)
        return rows

    def _summary(self, leak: list[dict[str, Any]] | None) -> dict[str, Any]:
        cfg = self.cfg
        eps_list = cfg.eval_eps()
        headline = cfg.recipe.eps if cfg.recipe.eps in eps_list else eps_list[0]
        robust: dict[str, dict[str, float]] = {}
        for r in self.eval_records:
            robust.setdefault(r["attack"], {})[f"{r['eps']:g}"] = r["accuracy"]
        clean = self.eval_records[0]["clean_accuracy"] if self.eval_records else None
        full = [r for r in self.records if r.get("complete") and r.get("time_s")]
        summary: dict[str, Any] = {
            "recipe": cfg.recipe.name,
            "eps": cfg.recipe.eps,
            "eval_eps": headline,
            "epochs": self.epoch,
            "steps": self.step,
            "world_size": self.dist.world_size,
            "clean_accuracy": clean,
        }
        for a in ("fgsm", "pgd", "apgd", "apgd_ce", "apgd_t", "iter_basic", "iter_ll", "step_ll"):
            if a in robust and f"{headline:g}" in robust[a]:
                summary[f"{a}_accuracy"] = robust[a][f"{headline:g}"]
        summary.update(
            {
                "robust_accuracy": robust,
                "eps_unit": "1/255",
                "time_per_epoch_s": sum(r["time_s"] for r in full) / len(full) if full else None,
                "train_time_s": self.train_time,
                "images_per_s": self.images_seen / self.train_time if self.train_time > 0 else None,
                "events": self.events,
                "stopped_early": self.stop_reason is not None,
                "stop_reason": self.stop_reason,
                "label_leak": leak,
                "guard": self.guard.history if self.guard is not None else None,
                "model": str(self.out / "model.safetensors"),
                "notes": self.notes,
            }
        )
        summary.update(self.extra_summary())
        return summary

    def extra_summary(self) -> dict[str, Any]:
        """Extra summary entries (for subclasses)."""
        return {}

    def _write_results(self, complete: bool, summary: dict[str, Any] | None = None) -> None:
        records = [dict(r) for r in self.records]
        if complete:
            records += [{"type": "eval", **r} for r in self.eval_records]
        Results(
            kind=self.results_kind,
            records=records,
            config=config_to_dict(self.cfg),
            summary=summary or {},
            environment=environment_info(self.dist.device),
            complete=complete,
        ).save(self.out / "results.json")

    def _close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
