"""Guards that stop a run going wrong: catastrophic overfitting and non-finite losses.

Catastrophic overfitting (Wong et al. 2020): during one-step adversarial training, robustness
to PGD suddenly collapses while accuracy under FGSM climbs, because the model learns to defeat
the one-step attack only. The guard measures both on a fixed held-out batch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advscale.attacks import build_attack
from advscale.errors import UserError
from advscale.train.config import GuardConfig
from advscale.utils import eval_mode


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite; the message names the step and batch."""


def check_finite(loss: float, *, step: int, epoch: int, batch: int, checkpoint: str | None) -> None:
    """Raise NonFiniteLossError when ``loss`` is NaN or ±inf."""
    if math.isfinite(loss):
        return
    kept = (
        f"the last good checkpoint ({checkpoint}) is intact"
        if checkpoint
        else "no checkpoint had been written yet"
    )
    raise NonFiniteLossError(
        f"training stopped: non-finite loss ({loss}) at step {step} (epoch {epoch}, batch {batch} of the "
        f"epoch); {kept}. Lower optimizer.lr, add schedule.warmup, or use amp: none/bf16 instead of fp16."
    )


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


@dataclass
class GuardVerdict:
    """One guard check: its ``record`` for the metric stream, the ``catastrophic_overfit``
    ``event`` (None without a collapse), and whether PGD accuracy was the best so far."""

    record: dict[str, Any]
    event: dict[str, Any] | None
    improved: bool


class CatastrophicOverfitGuard:
    """PGD and FGSM accuracy on a fixed batch; flags a collapse (see :class:`GuardConfig`).

    Args:
        cfg: the ``guard:`` section.
        eps: the training ε in [0, 1] units.
        x, y: the held-out batch (never trained on).
        seed: seed of PGD's random start, so every check sees the same start.
    """

    def __init__(self, cfg: GuardConfig, eps: float, x: Tensor, y: Tensor, seed: int = 0) -> None:
        self.cfg, self.eps, self.x, self.y, self.seed = cfg, eps, x, y, seed
        self.best_pgd = -1.0
        self.best_step = -1
        self.history: list[dict[str, Any]] = []
        self.best_snapshot: dict[str, Any] | None = None

    def measure(self, model: nn.Module) -> dict[str, float]:
        """Clean, FGSM and PGD accuracy on the held-out batch (model left in its mode)."""
        with eval_mode(model):
            pgd = build_attack(
                "pgd", model, self.eps, steps=self.cfg.pgd_steps, seed=self.seed, early_stop=False
            )
            fgsm = build_attack("fgsm", model, self.eps, early_stop=False)
            out = {
                "clean_acc": _accuracy(model, self.x, self.y),
                "fgsm_acc": _accuracy(model, fgsm(self.x, self.y), self.y),
                "pgd_acc": _accuracy(model, pgd(self.x, self.y), self.y),
            }
        return out

    def collapsed(self, m: dict[str, float]) -> str | None:
        """Why the measurement ``m`` is a collapse, or None."""
        if self.best_pgd >= 0 and m["pgd_acc"] < self.best_pgd - self.cfg.threshold:
            return f"PGD accuracy {m['pgd_acc']:.3f} fell more than {self.cfg.threshold} below its best {self.best_pgd:.3f}"
        if m["fgsm_acc"] - m["pgd_acc"] > self.cfg.fgsm_margin:
            return (
                f"FGSM accuracy {m['fgsm_acc']:.3f} exceeds PGD accuracy {m['pgd_acc']:.3f} by more than "
                f"{self.cfg.fgsm_margin}"
            )
        return None

    def record(self, m: dict[str, float], step: int, collapsed: bool) -> None:
        """Add a measurement to the history (every check, collapsed or not)."""
        self.history.append({"step": step, **m, "collapsed": collapsed})

    def update_best(self, m: dict[str, float], step: int, snapshot: dict[str, Any]) -> bool:
        """Keep ``snapshot`` (copied) when ``m``'s PGD accuracy is the best so far; True if it is."""
        if m["pgd_acc"] > self.best_pgd:
            self.best_pgd, self.best_step = m["pgd_acc"], step
            self.best_snapshot = copy.deepcopy(snapshot)
            return True
        return False

    def check(
        self,
        m: dict[str, float],
        *,
        step: int,
        epoch: int,
        action: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        recipe: Any,
    ) -> GuardVerdict:
        """Judge the measurement ``m`` (the same in every process) taken at ``step``.

        No collapse: keep a snapshot of ``model`` and ``optimizer`` when PGD accuracy is the best
        so far. A collapse under ``action`` ``stop`` or ``reduce_step``: restore the best snapshot;
        ``reduce_step`` also shrinks the ``recipe``'s step (``warn`` changes nothing).
        """
        reason = self.collapsed(m)
        self.record(m, step, reason is not None)
        rec = {"type": "guard", "step": step, "epoch": epoch, **m}
        rec["best_pgd_acc"] = max(self.best_pgd, 0)
        if reason is None:
            snap = {
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
            }
            return GuardVerdict(rec, None, self.update_best(m, step, snap))
        event = {
            "type": "event",
            "event": "catastrophic_overfit",
            "step": step,
            "epoch": epoch,
            "reason": reason,
            **m,
            "best_pgd_acc": self.best_pgd,
            "best_step": self.best_step,
            "action": action,
        }
        if action in ("stop", "reduce_step") and self.best_snapshot is not None:
            model.load_state_dict(self.best_snapshot["model"])
            optimizer.load_state_dict(self.best_snapshot["optimizer"])
            event["restored_step"] = self.best_step
        if action == "reduce_step":
            recipe.reduce_step(self.cfg.reduce_factor)
            event["step_scale"] = recipe.step_scale
        return GuardVerdict(rec, event, False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_pgd": self.best_pgd,
            "best_step": self.best_step,
            "history": self.history,
            "best_snapshot": self.best_snapshot,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_pgd = float(state["best_pgd"])
        self.best_step = int(state["best_step"])
        self.history = list(state["history"])
        self.best_snapshot = state.get("best_snapshot")
