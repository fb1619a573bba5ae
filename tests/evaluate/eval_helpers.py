"""Model wrappers that show the failure modes the evaluation must catch."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Softmaxed(nn.Module):
    """A model that returns probabilities instead of logits (a common evaluation mistake)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).softmax(1)


class Quantized(nn.Module):
    """Inputs rounded to 8 levels before the model: the input gradient is zero everywhere."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * 7) / 7)


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        return -grad


class ReversedGradient(nn.Module):
    """The model's own predictions, with the input gradient negated: a true-label FGSM step then
    moves toward the true class, as the learned label decoding of a leaking model does."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_Reverse.apply(x))


class Detached(nn.Module):
    """A forward that detaches its input: no input gradient exists at all."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.detach())
