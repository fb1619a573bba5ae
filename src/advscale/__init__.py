"""advscale: adversarial machine learning at scale.

Data flows one way: data -> model -> attack -> train/evaluate -> results -> report.

Example:
    >>> import advscale
    >>> model = advscale.load_model("runs/demo/models/baseline")  # doctest: +SKIP
    >>> x_adv = advscale.attacks.PGD(model, eps=8 / 255)(x, y)   # doctest: +SKIP
"""

__version__ = "0.1.0"

from advscale.models import load_model, save_model  # noqa: E402

__all__ = ["__version__", "load_model", "save_model"]
