"""Models: a registry of architectures, the Normalize/Classifier wrappers and checkpoints."""

from advscale.models import cnn, resnet  # noqa: F401  (register architectures)
from advscale.models.checkpoint import (
    CheckpointError,
    check_state_dict,
    load_model,
    load_state_dict_file,
    read_sidecar,
    save_model,
)
from advscale.models.fuse import fuse_for_eval
from advscale.models.registry import create_model, list_models, register_model
from advscale.models.wrapper import Classifier, Normalize, build_classifier

__all__ = [
    "CheckpointError",
    "Classifier",
    "Normalize",
    "build_classifier",
    "check_state_dict",
    "create_model",
    "fuse_for_eval",
    "list_models",
    "load_model",
    "load_state_dict_file",
    "read_sidecar",
    "register_model",
    "save_model",
]
