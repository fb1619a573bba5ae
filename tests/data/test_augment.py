"""Augmentation: crops and flips as the recipes define them, drawn from (seed, epoch, index)
only, identical on the per-example (worker) path and the on-device batch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from advscale.data import BatchLoader, ImageDataset, Transform
from advscale.data.augment import (
    augment_batch,
    crop_params,
    eval_image,
    rrc_box,
    train_image,
    uniforms,
)


def _images(n=6, c=3, h=8, w=10, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_draws_depend_only_on_seed_epoch_and_index():
    a = uniforms(0, 1, [5, 7, 9])
    # The same example gets the same draws in any batch, order or process.
    assert np.array_equal(uniforms(0, 1, [9, 5])[[1, 0]], a[[0, 2]])
    assert not np.array_equal(uniforms(1, 1, [5, 7, 9]), a)  # another seed
    assert not np.array_equal(uniforms(0, 2, [5, 7, 9]), a)  # another epoch
    u = uniforms(3, 0, np.arange(20000), k=4)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    # Flips: half of the examples, independently of the crop offsets.
    flips = u[:, 0] < 0.5
    assert abs(flips.mean() - 0.5) < 0.02
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03


def test_crop_flip_is_pad_then_crop_then_flip_by_hand():
    x = _images(1, h=6, w=7)[0]
    t = Transform(augment="crop_flip", padding=2, seed=4)
    for index in range(30):
        dy, dx, flip = crop_params(uniforms(4, 3, [index]), 2)
        padded = np.zeros((3, 10, 11), np.uint8)
        padded[:, 2:8, 2:9] = x.numpy()
        want = padded[:, dy[0] : dy[0] + 6, dx[0] : dx[0] + 7]
        want = want[:, :, ::-1] if flip[0] else want
        im = Image.fromarray(x.permute(1, 2, 0).numpy())
        assert np.array_equal(train_image(im, t, epoch=3, index=index), want)
        assert 0 <= dy[0] <= 4 and 0 <= dx[0] <= 4


def test_device_batch_path_gives_the_worker_path_pixels():
    x = _images(16)
    idx = torch.arange(100, 116)
    t = Transform(augment="crop_flip", padding=3, seed=9)
    batch = augment_batch(x, idx, 2, t)
    assert batch.dtype == torch.uint8 and batch.shape == x.shape
    for k in range(16):
        im = Image.fromarray(x[k].permute(1, 2, 0).numpy())
        assert np.array_equal(batch[k].numpy(), train_image(im, t, 2, int(idx[k])))
    # Some examples are flipped, some shifted: the batch is not the input.
    assert not torch.equal(batch, x)


def test_random_resized_crop_respects_scale_and_ratio():
    scale, ratio = (0.2, 0.6), (0.5, 2.0)
    u = uniforms(0, 0, np.arange(500))
    areas, ratios = [], []
    for row in u:
        top, left, h, w = rrc_box(90, 120, row, scale, ratio)
        assert top >= 0 and top + h <= 90 and left >= 0 and left + w <= 120
        areas.append(h * w / (90 * 120))
        ratios.append(w / h)
    # Rounding to whole pixels moves the bounds by a pixel's worth.
    assert min(areas) >= 0.2 - 0.02 and max(areas) <= 0.6 + 0.02
    assert min(ratios) >= 0.5 - 0.05 and max(ratios) <= 2.0 + 0.05
    assert max(areas) - min(areas) > 0.3  # the range is used, not one crop
    # A 1x100 strip fits no crop of ratio <= 2: the largest central crop of ratio 2.
    assert rrc_box(1, 100, u[0], (0.5, 1.0), (0.5, 2.0)) == (0, 49, 1, 2)


def test_eval_transform_resizes_the_short_side_then_centre_crops():
    # 400x300 with eval_resize 256: 341x256 (the short side), then 224x224 from (58, 16).
    arr = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    out = eval_image(im, Transform(size=(224, 224), eval_resize=256))
    want = im.resize((341, 256), Image.Resampling.BILINEAR).crop((58, 16, 282, 240))
    assert out.size == (224, 224) and np.array_equal(np.asarray(out), np.asarray(want))
    # Without eval_resize the image is resized to the size (today's behaviour).
    assert eval_image(im, Transform(size=(32, 48))).size == (48, 32)
    with pytest.raises(ValueError, match="eval_resize 200 is smaller than image_size 224"):
        Transform(size=(224, 224), eval_resize=200)


def test_in_memory_loader_augments_on_the_device_and_resumes_mid_epoch():
    ds = ImageDataset(_images(40), torch.arange(40) % 4, list("abcd"))
    t = Transform(augment="crop_flip", padding=2, seed=1)

    def run(skip=0, transform=t):
        loader = BatchLoader(ds, 8, seed=1, drop_last=True, transform=transform)
        loader.set_epoch(3, skip_batches=skip)
        return list(loader)

    full, again, plain = run(), run(), run(transform=None)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, again, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(full, plain, strict=True))
    # Same order and labels as without augmentation; a resumed epoch gives the rest exactly.
    assert all(torch.equal(a[1], b[1]) for a, b in zip(full, plain, strict=True))
    tail = run(skip=3)
    assert len(tail) == 2 and all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(tail, full[3:], strict=True)
    )
    rrc = BatchLoader(ds, 8, transform=Transform(augment="rrc_flip", seed=1))
    x, _ = next(iter(rrc))
    assert x.dtype == torch.float32 and x.shape == (8, 3, 8, 10) and 0 <= x.min() <= x.max() <= 1


def test_device_random_resized_crop_samples_the_worker_paths_crop():
    # A smooth image: bilinear sampling on the device and Pillow's resize of the same box and
    # flip agree to a fraction of a level; another box or flip would differ by tens of levels.
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1).clip(0, 255).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(8, 1, 1, 1).contiguous()
    t = Transform(size=(32, 32), augment="rrc_flip", scale=(0.3, 1.0), seed=1)
    dev = augment_batch(x, torch.arange(8), 0, t)
    for k in range(8):
        cpu = torch.tensor(train_image(Image.fromarray(img), t, 0, k)).float() / 255
        assert (dev[k] - cpu).abs().mean() < 0.005
        assert (dev[k] - x[k].float() / 255).abs().mean() > 0.02  # it is not the input
