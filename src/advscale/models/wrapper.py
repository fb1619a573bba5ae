"""Models that take [0, 1] images: normalization (and resizing) live inside the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, so that attacks work in [0, 1] pixel space."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Classifier(nn.Module):
    """An image classifier on [0, 1] inputs: optional resize, normalize, then ``net``.

    Args:
        net: the architecture, taking normalized inputs and returning logits.
        mean, std: per-channel normalization the net was trained with.
        arch, arch_kwargs: registry name and arguments, recorded in checkpoints.
        input_size: if given, inputs of another spatial size are resized (bilinear) to it.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        arch: str | None = None,
        arch_kwargs: dict[str, Any] | None = None,
        input_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs or {})
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = tuple(input_size) if input_size is not None else None

    def forward(self, x: Tensor) -> Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.net(self.normalize(x))

    @property
    def mean(self) -> list[float]:
        return self.normalize.mean.flatten().tolist()

    @property
    def std(self) -> list[float]:
        return self.normalize.std.flatten().tolist()


def build_classifier(
    arch: str,
    arch_kwargs: dict[str, Any] | None = None,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    input_size: int | tuple[int, int] | None = None,
) -> Classifier:
    """Registry model ``arch`` wrapped with normalization.

    Example:
        >>> model = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1},
        ...                          mean=(0.286,), std=(0.353,))
    """
    from advscale.models.registry import create_model

    net = create_model(arch, **(arch_kwargs or {}))
    return Classifier(net, mean, std, arch=arch, arch_kwargs=arch_kwargs, input_size=input_size)
