"""advscale: adversarial machine learning at scale.

Data flows one way: data -> model -> attack -> train/evaluate -> results -> report.

Example:
    >>> import torch
    >>> from advscale.attacks import PGD
    >>> from advscale.models import build_classifier
    >>> model = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1}).eval()
    >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    >>> x_adv = PGD(model, eps=8 / 255, steps=3, seed=0)(x, y)
    >>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
    True

    A model ``make demo`` trained loads from its checkpoint:

    >>> import advscale
    >>> model = advscale.load_model("runs/demo/models/baseline")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from advscale.models import load_model, save_model  # noqa: E402

__all__ = ["__version__", "load_model", "save_model"]
