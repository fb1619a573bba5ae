"""Low-rank adapters (LoRA, Hu et al. 2021) for ``nn.Linear`` and ``nn.Conv2d`` layers.

An adapted layer computes its base layer with weight ``W + (alpha / rank) * B @ A`` where ``W``
is frozen and only ``A`` (rank x fan-in) and ``B`` (fan-out x rank) train. ``B`` starts at zero,
so an adapted model computes exactly what the pretrained one did until training moves it. For a
convolution, ``A`` spans the whole kernel (``in/groups * kh * kw``), the same low-rank update of
the weight viewed as a matrix. ``merge`` folds the update into ``W`` (a plain model again, as fast
as the original); ``unmerge`` takes it back out.

Example:
    >>> layers = add_lora(model.net, targets=["qkv", "fc*"], rank=8, alpha=16)  # doctest: +SKIP
    >>> save_lora(model, "adapters.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.errors import UserError
from advscale.utils import atomic_write, set_submodule

ADAPTABLE = (nn.Linear, nn.Conv2d)


class LoRAError(UserError):
    """A LoRA request that cannot be met: unmatched target, unsupported layer, bad adapter file."""


class LoRALayer(nn.Module):
    """A frozen ``nn.Linear`` or ``nn.Conv2d`` (``base``) plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear | nn.Conv2d, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise LoRAError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        out_features, fan_in = base.weight.shape[0], base.weight[0].numel()
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, fan_in, **kw))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, **kw))
        # A random and B zero (as in the LoRA paper): the update starts at exactly zero while
        # gradients reach B at once.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.rank, self.alpha = rank, float(alpha)
        self.scaling = self.alpha / rank
        self.merged = False

    @property
    def weight(self) -> Tensor:
        """The effective weight ``W + update``, for models that read ``layer.weight`` directly."""
        return self.base.weight if self.merged else self.base.weight + self.delta_weight()

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def __getattr__(self, name: str) -> object:
        # in_features, kernel_size, stride...: what code around the layer reads stays the base's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base":
                raise
            return getattr(self.base, name)

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / rank) * B @ A`` in the shape of the base weight."""
        return ((self.lora_B @ self.lora_A) * self.scaling).view_as(self.base.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        weight = self.weight
        if isinstance(self.base, nn.Linear):
            return F.linear(x, weight, self.base.bias)
        return self.base._conv_forward(x, weight, self.base.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (no-op when already merged)."""
        if not self.merged:
            self.base.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of the base weight (no-op when not merged)."""
        if self.merged:
            self.base.weight.sub_(self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}"


def _matches(name: str, pattern: str) -> bool:
    """``pattern`` is a glob over the full module name or over its trailing part (``qkv``, ``fc*``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def lora_candidates(net: nn.Module, exclude: Sequence[str] = ()) -> list[str]:
    """Names of the layers of ``net`` LoRA can adapt (Linear, Conv2d), minus ``exclude``."""
    return [
        n
        for n, m in net.named_modules()
        if isinstance(m, ADAPTABLE)
        and n
        and not any(n == e or n.startswith(e + ".") for e in exclude)
    ]


def add_lora(
    net: nn.Module,
    targets: Sequence[str] | None = None,
    rank: int = 4,
    alpha: float = 8.0,
    exclude: Sequence[str] = (),
) -> list[str]:
    """Replace the targeted layers of ``net`` by :class:`LoRALayer` in place; returns their names.

    Args:
        net: the network to adapt.
        targets: glob patterns over module names (``"blocks.*.attn.qkv"``, ``"qkv"``, ``"conv*"``);
            ``None`` adapts every Linear and Conv2d outside ``exclude``.
        rank, alpha: LoRA rank and scale (the update is multiplied by ``alpha / rank``).
        exclude: modules left alone (the new classification head, which trains in full).

    Raises:
        LoRAError: a pattern that matches no adaptable layer (the message lists close names),
            or that matches only layers of another type.
    """
    candidates = lora_candidates(net, exclude)
    if targets is None:
        chosen = candidates
    else:
        if not targets:
            raise LoRAError(
                "finetune.lora.targets is empty; leave it out to adapt every Linear/Conv2d layer"
            )
        chosen_set: set[str] = set()
        all_names = [n for n, _ in net.named_modules() if n]
        for pattern in targets:
            hits = [n for n in candidates if _matches(n, pattern)]
            if not hits:
                others = [n for n in all_names if _matches(n, pattern)]
                if others:
                    kinds = sorted({type(net.get_submodule(n)).__name__ for n in others})
                    raise LoRAError(
                        f"finetune.lora.targets: {pattern!r} matches only {', '.join(kinds)} layers "
                        f"({', '.join(others[:5])}); LoRA adapts nn.Linear and nn.Conv2d"
                    )
                close = difflib.get_close_matches(pattern, candidates, n=5, cutoff=0.3)
                shown = close or candidates[:10]
                raise LoRAError(
                    f"finetune.lora.targets: {pattern!r} matches no Linear or Conv2d layer; "
                    f"{'close' if close else 'some'} layer names: {', '.join(shown)}"
                )
            chosen_set.update(hits)
        chosen = [n for n in candidates if n in chosen_set]
    if not chosen:
        raise LoRAError("no Linear or Conv2d layer to adapt outside the classification head")
    for name in chosen:
        set_submodule(net, name, LoRALayer(net.get_submodule(name), rank, alpha))
    return chosen


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """Every LoRA layer in ``model`` by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALayer)}


def merge_lora(model: nn.Module) -> int:
    """Merge every adapter into its base weight; returns how many layers were merged."""
    layers = lora_layers(model)
    for layer in layers.values():
        layer.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo :func:`merge_lora`; returns how many layers were unmerged."""
    layers = lora_layers(model)
    for layer in layers.values():
        layer.unmerge()
    return len(layers)


def strip_lora(model: nn.Module) -> nn.Module:
    """Merge every adapter and put the plain base layer back in its place (in place).

    The result has the architecture and state-dict keys of the original network, so it saves
    and loads as an ordinary checkpoint.
    """
    for name, layer in list(lora_layers(model).items()):
        layer.merge()
        set_submodule(model, name, layer.base)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter tensors only (``...lora_A``, ``...lora_B``)."""
    return {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if k.endswith(".lora_A") or k.endswith(".lora_B")
    }


def save_lora(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the adapters of ``model`` to a ``.safetensors`` file (atomically), with rank/alpha."""
    layers = lora_layers(model)
    if not layers:
        raise LoRAError("the model has no LoRA layers to save")
    first = next(iter(layers.values()))
    meta = {"format": "advscale.lora", "rank": str(first.rank), "alpha": str(first.alpha)}
    state = lora_state_dict(model)
    return atomic_write(Path(path), lambda p: save_file(state, str(p), metadata=meta))


def load_lora(model: nn.Module, path: str | os.PathLike) -> None:
    """Load adapters saved by :func:`save_lora` into a model adapted the same way.

    Raises:
        LoRAError: the file's adapters do not match the model's LoRA layers.
    """
    state = load_file(str(path))
    own = lora_state_dict(model)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or bad:
        raise LoRAError(
            f"{path}: adapters do not match the model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, mis-shaped {bad[:5]})"
        )
    was_merged = [n for n, m in lora_layers(model).items() if m.merged]
    unmerge_lora(model)
    model.load_state_dict(state, strict=False)
    for n in was_merged:
        model.get_submodule(n).merge()
