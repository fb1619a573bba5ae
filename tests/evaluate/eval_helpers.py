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


class Headed(nn.Module):
    """The model's logits through a final activation (sigmoid, tanh): a saturating head."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.model(x), self.head)()


class NanOffGrid(nn.Module):
    """NaN logits for any image not on the 8-bit pixel grid: it breaks down on perturbed inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        off = ((x * 255 - (x * 255).round()).abs() > 1e-3).flatten(1).any(1)
        out = self.model(x)
        return torch.where(off[:, None], torch.full_like(out, float("nan")), out)


class NoisyInput(nn.Module):
    """Gaussian noise added to every input (a randomized defence): two passes differ."""

    def __init__(self, model: nn.Module, sigma: float = 0.1) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x + self.sigma * torch.randn_like(x)).clamp(0, 1))
