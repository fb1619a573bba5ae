"""Data augmentation as configuration, with randomness that depends only on (seed, epoch, index).

Every random choice about example ``index`` in ``epoch`` is read from a counter-based generator
(:func:`uniforms`, SplitMix64 over the three numbers): no generator state travels between
batches, processes or worker processes, so the same run gives the same augmented images with
0, 1 or 4 workers, after a resume in the middle of an epoch, and in any order of decoding.

``crop_flip`` (CIFAR style): pad by ``padding`` zeros on each side, crop back at a random
offset, flip horizontally with probability 1/2. ``rrc_flip`` (ImageNet style): a random-resized
crop (area a fraction ``scale`` of the image, aspect ratio in ``ratio``, log-uniform; after 10
misses the centre crop) resized to ``size``, then the flip. Evaluation resizes the short side
to ``eval_resize`` and centre-crops ``size`` (e.g. 256 -> 224), or, without ``eval_resize``,
resizes to ``size``.

Two paths share these draws: per example on a decoded Pillow image (workers of a streamed
dataset, :func:`train_image`), and per batch on a uint8 batch on the model's device for data
held in memory (:func:`augment_batch`); ``crop_flip`` gives identical pixels on both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from advscale.data.base import DataError, resize_images

AUGMENTS = ("none", "crop_flip", "rrc_flip")
RRC_ATTEMPTS = 10
# Columns of the draws of one example: the flip, the crop offsets, then 4 per RRC attempt.
_FLIP, _DY, _DX, _RRC = 0, 1, 2, 3
N_DRAWS = _RRC + 4 * RRC_ATTEMPTS

_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose outputs look independent."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, epoch: int, index: np.ndarray | list[int], k: int = N_DRAWS) -> np.ndarray:
    """``k`` uniform draws in [0, 1) for each example of ``index``: shape ``(len(index), k)``.

    A pure function of (seed, epoch, index, column): the same numbers in any process.
    """
    idx = np.asarray(index, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _mix(np.full(idx.shape, seed & _M64, dtype=np.uint64) + _GOLDEN)
        key = _mix(key ^ np.uint64(epoch & _M64))
        key = _mix(key ^ idx)
        counters = key[:, None] + _GOLDEN * np.arange(1, k + 1, dtype=np.uint64)
        bits = _mix(counters) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def draws(seed: int, epoch: int, index: int, k: int) -> list[float]:
    """The first ``k`` of :func:`uniforms` for one example, in plain Python (a worker's
    per-example call; no NumPy overhead)."""
    key = _mix_int((seed + 0x9E3779B97F4A7C15) & _M64)
    key = _mix_int(key ^ (epoch & _M64))
    key = _mix_int(key ^ (index & _M64))
    return [
        (_mix_int((key + 0x9E3779B97F4A7C15 * j) & _M64) >> 11) * 2.0**-53 for j in range(1, k + 1)
    ]


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@dataclass(frozen=True)
class Transform:
    """What becomes of each image: the evaluation transform, and in training an augmentation.

    ``size`` is (H, W) or None (images keep their size); ``seed`` is the run's.
    """

    size: tuple[int, int] | None = None
    eval_resize: int | None = None
    augment: str = "none"
    padding: int = 4
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise DataError(f"augment {self.augment!r} unknown; allowed: {', '.join(AUGMENTS)}")
        if (
            self.eval_resize is not None
            and self.size is not None
            and self.eval_resize < min(self.size)
        ):
            raise DataError(
                f"eval_resize {self.eval_resize} is smaller than image_size {min(self.size)}: "
                "the centre crop would not fit (e.g. eval_resize 256 for image_size 224)"
            )

    @property
    def random(self) -> bool:
        return self.augment != "none"

    def for_eval(self) -> Transform:
        """The same sizes without augmentation."""
        return Transform(self.size, self.eval_resize, seed=self.seed)


def crop_params(u: np.ndarray, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row offset, column offset, flip) of ``crop_flip`` from draws ``u`` of shape (N, k)."""
    span = 2 * padding + 1
    dy = np.minimum((u[:, _DY] * span).astype(np.int64), span - 1)
    dx = np.minimum((u[:, _DX] * span).astype(np.int64), span - 1)
    return dy, dx, u[:, _FLIP] < 0.5


def rrc_box(
    h: int, w: int, u: np.ndarray, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random-resized crop of an ``h`` x ``w`` image, from the
    draws ``u`` of one example (Szegedy et al.'s sampling, as torchvision does it)."""
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for a in range(RRC_ATTEMPTS):
        u0, u1, u2, u3 = u[_RRC + 4 * a : _RRC + 4 * a + 4]
        target = area * (scale[0] + u0 * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + u1 * (log_hi - log_lo))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(u2 * (h - ch + 1)), int(u3 * (w - cw + 1)), ch, cw
    # Ten misses (a very elongated image): the largest centre crop of an allowed ratio.
    if w / h < ratio[0]:
        cw, ch = w, min(h, round(w / ratio[0]))
    elif w / h > ratio[1]:
        ch, cw = h, min(w, round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


# -- per example, on a decoded image (worker processes) -----------------------------------------
def eval_image(im: Image.Image, t: Transform) -> Image.Image:
    """The evaluation transform of one Pillow image (deterministic)."""
    w, h = im.size
    if t.eval_resize is not None:
        s = t.eval_resize / min(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        th, tw = t.size or (min(nh, t.eval_resize), min(nw, t.eval_resize))
        top, left = (nh - th) // 2, (nw - tw) // 2
        return im.crop((left, top, left + tw, top + th))
    if t.size is not None and (h, w) != t.size:
        return im.resize((t.size[1], t.size[0]), Image.Resampling.BILINEAR)
    return im


def train_image(im: Image.Image, t: Transform, epoch: int, index: int) -> np.ndarray:
    """One training example: uint8 ``(C, H, W)`` after the transform and augmentation of
    example ``index`` in ``epoch``."""
    from advscale.data.decode import to_chw

    if t.augment == "none":
        return to_chw(eval_image(im, t))
    if t.augment == "rrc_flip":
        u = np.asarray(draws(t.seed, epoch, index, N_DRAWS))
        top, left, ch, cw = rrc_box(im.size[1], im.size[0], u, t.scale, t.ratio)
        size = t.size or (im.size[1], im.size[0])
        box = (left, top, left + cw, top + ch)
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    else:
        u = draws(t.seed, epoch, index, _RRC)
        (dy,), (dx,), (flip,) = crop_params(np.asarray([u]), t.padding)
        im = eval_image(im, t)
        # Pillow fills the part of a crop box outside the image with zeros: the padding.
        p, (w, h) = t.padding, im.size
        im = im.crop((int(dx) - p, int(dy) - p, int(dx) - p + w, int(dy) - p + h))
    if u[_FLIP] < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_chw(im)


# -- per batch, on the model's device (data in memory) -----------------------------------------
def augment_batch(x: Tensor, index: Tensor, epoch: int, t: Transform) -> Tensor:
    """Augment a uint8 batch ``(N, C, H, W)`` of examples ``index`` where it lies (its device).

    ``crop_flip`` returns uint8, the same pixels as :func:`train_image`; ``rrc_flip`` returns
    float in [0, 1] (bilinear sampling of each crop, at the batch's size).
    """
    if t.augment == "none":
        return x
    u = uniforms(t.seed, epoch, index.cpu().numpy())
    if t.augment == "crop_flip":
        dy, dx, flip = (torch.from_numpy(a).to(x.device) for a in crop_params(u, t.padding))
        return _crop_flip(x, dy, dx, flip, t.padding)
    return _resized_crops(x, u, t)


def _crop_flip(x: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, p: int) -> Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (p, p, p, p))
    rows = dy[:, None] + torch.arange(h, device=x.device)
    ar = torch.arange(w, device=x.device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ar, ar)
    # One gather does crop and flip: (N, H, W, C) from the padded batch.
    out = padded[
        torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
    ]
    return out.permute(0, 3, 1, 2).contiguous()


def _resized_crops(x: Tensor, u: np.ndarray, t: Transform) -> Tensor:
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    for k in range(n):
        top, left, ch, cw = rrc_box(h, w, u[k], t.scale, t.ratio)
        sign = -1.0 if u[k, _FLIP] < 0.5 else 1.0
        # affine_grid maps output [-1, 1] to input coordinates: the crop's span and centre.
        theta[k, 0, 0] = sign * cw / w
        theta[k, 0, 2] = (2 * left + cw) / w - 1
        theta[k, 1, 1] = ch / h
        theta[k, 1, 2] = (2 * top + ch) / h - 1
    theta = theta.to(x.device)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    xf = x.float().div_(255.0)
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_short_crop(images: Tensor, eval_resize: int, size: tuple[int, int] | None) -> Tensor:
    """uint8 images with the short side resized to ``eval_resize``, centre-cropped to ``size``."""
    h, w = images.shape[-2:]
    s = eval_resize / min(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = resize_images(images, (nh, nw))
    th, tw = size or (min(nh, eval_resize), min(nw, eval_resize))
    top, left = (nh - th) // 2, (nw - tw) // 2
    return out[:, :, top : top + th, left : left + tw].contiguous()
