"""Generated image folders for tests: ``root/{split}/CLASS/i.png``, one colour per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def image_folder(root: Path, per_class: dict[str, int], size: int = 36) -> Path:
    """``root/{split}/class{c}/{i}.png`` for each split's count per class: one colour per class
    (3 classes), with noise."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for c, colour in enumerate(COLOURS):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                px = np.clip(rng.normal(colour, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(d / f"{i}.png")
    return root
