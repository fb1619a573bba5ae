"""One attack over the data, batch by batch, with verdicts the evaluation checks itself.

An example counts as robust only when the attack did not fool it on any iterate *and* one
more forward pass of the model at the returned example classifies it correctly with finite
outputs: a model that answers NaN or inf on a perturbed input has no correct prediction there.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from advscale.attacks import ATTACKS, model_mode
from advscale.errors import UserError
from advscale.evaluate import masking
from advscale.evaluate.distributed import Shard, batch_seed
from advscale.evaluate.inputs import index_batches, to_device
from advscale.evaluate.model_checks import Head, build_attack_for


@dataclass
class AttackRun:
    """One attack's verdicts and cost over the examples it ran on."""

    correct: Tensor  # (N,) returned example classified correctly and no iterate fooled it
    attacked: Tensor  # (N,) examples the attack ran on
    seconds: float
    forward: int
    backward: int
    nonfinite: int = 0  # returned examples on which the model's outputs were not finite


def build(
    name: str,
    model: nn.Module,
    eps: float,
    kwargs: dict[str, Any],
    *,
    head: Head = "logits",
    eot: int = 1,
    **extra: Any,
):
    """Attack ``name`` (:func:`~advscale.evaluate.model_checks.build_attack_for`), errors as
    UserError."""
    try:
        return build_attack_for(name, model, eps, {**kwargs, **extra}, head=head, eot=eot)
    except ValueError as e:  # UserError included: the message is already the user's to read
        raise UserError(str(e)) from None


def _takes_progress(name: str) -> bool:
    """Whether attack ``name`` reports its own progress (Square's queries): a callback."""
    return "progress" in inspect.signature(ATTACKS[name].__init__).parameters


def run_attack(
    model: nn.Module,
    name: str,
    eps: float,
    eps_text: str,
    kwargs: dict[str, Any],
    images: Tensor,
    labels: Tensor,
    which: Tensor,
    batch_size: int,
    dev: torch.device,
    seed: int,
    bar: tqdm,
    shard: Shard,
    *,
    head: Head = "logits",
    eot: int = 1,
) -> AttackRun:
    """Run attack ``name`` (ε in [0, 1] units, ``eps_text`` as the user gave it) on the examples
    ``which`` selects, batch by batch; this process attacks the batches ``shard`` owns, and the
    verdicts are summed over processes.

    ``head`` is the model's output head (a saturating one is attacked through its inverse and
    losses that do not saturate); with ``eot`` > 1 the attack follows the mean of that many
    forward passes (:class:`~advscale.evaluate.model_checks.Expectation`) and its passes count
    ``eot`` times. The verdict at the returned example is one pass of the model itself."""
    n = len(labels)
    correct = torch.zeros(n, dtype=torch.bool)
    extra: dict[str, Any] = {}
    if _takes_progress(name) and not bar.disable:
        extra["progress"] = lambda done, total, left: bar.set_postfix_str(
            f"queries {done}/{total}, {left} left", refresh=True
        )
    seconds, forward, backward, mine, nonfinite = 0.0, 0, 0, 0, 0
    for k, idx in enumerate(index_batches(which.nonzero().squeeze(1), batch_size)):
        if not shard.owns(k):
            continue
        # One attack per batch, seeded by the batch alone: the random draws do not depend on
        # which process attacks the batch.
        attack = build(
            name, model, eps, kwargs, head=head, eot=eot, seed=batch_seed(seed, k), **extra
        )
        x, y = to_device(images[idx], labels[idx], dev)
        sync(dev)
        t0 = time.perf_counter()
        try:
            res = attack.run(x, y)
        except ValueError as e:
            raise UserError(f"attack {name!r} at ε={eps_text}: {e}") from None
        except RuntimeError as e:
            # torch's two ways of saying the input is not in the autograd graph
            if "used in the graph" not in str(e) and "does not require grad" not in str(e):
                raise
            raise UserError(
                f"attack {name!r} cannot take input gradients of the model ({str(e).splitlines()[0]}): "
                "its output does not depend differentiably on its input (a detach or no_grad in "
                "the forward), which hides it from every gradient attack; evaluate it with "
                f"gradient-free attacks ({', '.join(a for a in masking.GRADIENT_FREE if a in ATTACKS)}) "
                "or remove the detach"
            ) from None
        sync(dev)
        seconds += time.perf_counter() - t0
        forward += int(res.forward) * eot
        backward += int(res.backward) * eot
        # Check the returned examples ourselves: a verdict must not rest on the attack's
        # bookkeeping alone (outside the timed region, not counted as attack cost).
        with torch.no_grad(), model_mode(model, "eval"):
            logits = model(res.x_adv)
        finite = torch.isfinite(logits).all(1)
        nonfinite += int((~finite).sum())
        correct[idx] = ((logits.argmax(1) == y) & finite & ~res.fooled.to(y.device)).cpu()
        mine += len(idx)
        bar.update(len(idx))
    bar.update(n - mine)  # examples not attacked here: by other processes, or not at all
    if shard.enabled:
        correct = shard.sum(correct)
        passes = shard.sum(torch.tensor([forward, backward, nonfinite], dtype=torch.int64))
        forward, backward, nonfinite = (int(v) for v in passes)
        seconds = shard.max(seconds)
    return AttackRun(correct, which.clone(), seconds, forward, backward, nonfinite)


def sync(dev: torch.device) -> None:
    """Wait for the device's queued work (timings on CUDA)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


__all__ = ["AttackRun", "build", "run_attack", "sync"]
