"""Robust transfer learning: pretrained backbones, fine-tuning modes, FGSM vs PGD fine-tuning.

``advscale finetune`` adapts a (robust) pretrained backbone to a new task with the one training
loop of ``advscale.train``; ``advscale compare`` runs it over methods, modes and ε and sets robust
accuracy against training time (paper B: is fast FGSM fine-tuning as good and as stable as PGD?).
"""

from advscale.transfer.backbones import (
    Backbone,
    BackboneConfig,
    BackboneError,
    TransferClassifier,
    build_backbone,
)
from advscale.transfer.compare import (
    CompareConfig,
    compare,
    load_compare_config,
)
from advscale.transfer.finetune import (
    FinetuneConfig,
    FinetuneTrainer,
    finetune,
    load_finetune_config,
    reinitialize,
)
from advscale.transfer.lora import (
    LoRAError,
    LoRALayer,
    add_lora,
    load_lora,
    lora_layers,
    merge_lora,
    save_lora,
    strip_lora,
    unmerge_lora,
)
from advscale.transfer.modes import (
    MODES,
    FinetuneModeConfig,
    LoRAConfig,
    ModeError,
    apply_mode,
    backbone_blocks,
    count_parameters,
)

__all__ = [
    "CompareConfig",
    "compare",
    "load_compare_config",
    "FinetuneConfig",
    "FinetuneTrainer",
    "finetune",
    "load_finetune_config",
    "reinitialize",
    "MODES",
    "Backbone",
    "BackboneConfig",
    "BackboneError",
    "FinetuneModeConfig",
    "LoRAConfig",
    "LoRAError",
    "LoRALayer",
    "ModeError",
    "TransferClassifier",
    "add_lora",
    "apply_mode",
    "backbone_blocks",
    "build_backbone",
    "count_parameters",
    "load_lora",
    "lora_layers",
    "merge_lora",
    "save_lora",
    "strip_lora",
    "unmerge_lora",
]
