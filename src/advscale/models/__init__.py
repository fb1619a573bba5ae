"""Models: every way to get one, in one place.

- architectures by name (:func:`create_model`; small CNN, PreAct ResNet, WideResNet, and timm /
  torchvision through :mod:`advscale.models.builders`), wrapped with their normalization
  (:class:`Classifier`);
- weights files read under one trust policy (:func:`read_weights`) and loaded strictly
  (:func:`load_state`);
- advscale checkpoints (:func:`save_model`, :func:`load_model`);
- any model spec a command takes, checkpoint, TorchScript, ``timm:NAME@WEIGHTS``,
  ``package.module:factory@WEIGHTS`` or a YAML spec file (:func:`load_any_model`);
- the frozen, batch-norm-folded copy evaluation attacks (:func:`fuse_for_eval`).
"""

from advscale.models import builders, cnn, resnet  # noqa: F401  (register architectures)
from advscale.models.builders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelBuildError,
    build_timm,
    build_torchvision,
)
from advscale.models.checkpoint import (
    load_model,
    load_weights,
    read_sidecar,
    save_model,
    save_weights,
)
from advscale.models.fuse import fuse_for_eval
from advscale.models.loader import ExternalModelError, load_any_model, model_classes
from advscale.models.registry import create_model, list_models, register_model
from advscale.models.weights import (
    CheckpointError,
    check_state_dict,
    load_state,
    read_weights,
    strip_prefixes,
)
from advscale.models.wrapper import Classifier, Normalize, build_classifier

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointError",
    "Classifier",
    "ExternalModelError",
    "ModelBuildError",
    "Normalize",
    "build_classifier",
    "build_timm",
    "build_torchvision",
    "check_state_dict",
    "create_model",
    "fuse_for_eval",
    "list_models",
    "load_any_model",
    "load_model",
    "load_state",
    "load_weights",
    "model_classes",
    "read_sidecar",
    "read_weights",
    "register_model",
    "save_model",
    "save_weights",
    "strip_prefixes",
]
