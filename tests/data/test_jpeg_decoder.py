"""JPEGs decoded by simplejpeg give Pillow's pixels exactly, and whatever it cannot decode as
Pillow would (CMYK, colour to grey, a truncated file) goes Pillow's way, named as before."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advscale.data import DataError, decode
from advscale.data.decode import open_image, to_chw

simplejpeg = pytest.importorskip("simplejpeg")


def _photo(h=48, w=64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg(path, mode="RGB", **save) -> Path:
    im = Image.fromarray(_photo())
    im.convert(mode).save(path, "JPEG", **save)
    return path


@pytest.fixture
def count_fast(monkeypatch):
    """How many times simplejpeg decoded an image."""
    calls = []
    real = simplejpeg.decode_jpeg

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(decode.simplejpeg, "decode_jpeg", counted)
    return calls


def _pillow(source, channels, monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("ADVSCALE_JPEG", "pillow")
        return to_chw(open_image(source, channels))


@pytest.mark.parametrize(
    ("mode", "save", "channels"),
    [
        ("RGB", {"quality": 90}, 3),  # 4:2:0
        ("RGB", {"quality": 95, "subsampling": 0}, 3),  # 4:4:4
        ("RGB", {"quality": 75, "progressive": True}, 3),
        ("L", {"quality": 90}, 3),  # grey to RGB
        ("L", {"quality": 90}, 1),
    ],
)
def test_the_fast_decoder_gives_pillows_pixels(tmp_path, monkeypatch, count_fast, mode, save,
                                               channels):  # fmt: skip
    path = _jpeg(tmp_path / "a.jpg", mode, **save)
    ref = _pillow(path, channels, monkeypatch)
    assert not count_fast
    for source in (str(path), path.read_bytes()):  # a folder's file, a shard's bytes
        got = to_chw(open_image(source, channels))
        assert got.shape == ref.shape == (channels, 48, 64)
        assert np.array_equal(got, ref)
    assert len(count_fast) == 2


@pytest.mark.parametrize(("mode", "channels"), [("CMYK", 3), ("RGB", 1)])
def test_what_libjpeg_would_convert_otherwise_is_left_to_pillow(tmp_path, monkeypatch,
                                                                count_fast, mode, channels):  # fmt: skip
    path = _jpeg(tmp_path / "a.jpg", mode, quality=90)
    got = to_chw(open_image(path, channels))
    assert not count_fast
    assert np.array_equal(got, _pillow(path, channels, monkeypatch))


def test_a_truncated_jpeg_is_named_and_not_half_decoded(tmp_path):
    path = tmp_path / "cut.jpg"
    data = _jpeg(tmp_path / "a.jpg", quality=90).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.jpg: cannot decode image"):
        open_image(path, 3)


def test_the_pixel_limit_is_read_from_the_jpeg_header(tmp_path):
    data = bytearray(_jpeg(tmp_path / "a.jpg", quality=90).read_bytes())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    assert simplejpeg.decode_jpeg_header(bytes(data))[:2] == (30000, 30000)
    with pytest.raises(DataError, match=r"huge.jpg: image of 30000x30000 pixels is over"):
        open_image(bytes(data), 3, "huge.jpg")


def test_other_formats_are_untouched(tmp_path, count_fast):
    path = tmp_path / "a.png"
    Image.fromarray(_photo()).save(path)
    assert np.array_equal(to_chw(open_image(path, 3)), _photo().transpose(2, 0, 1))
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "PNG")
    assert np.array_equal(to_chw(open_image(buf.getvalue(), 3)), _photo().transpose(2, 0, 1))
    assert not count_fast


def test_an_unknown_decoder_choice_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVSCALE_JPEG", "pil")
    with pytest.raises(DataError, match="ADVSCALE_JPEG='pil' is not a JPEG decoder; use auto"):
        open_image(_jpeg(tmp_path / "a.jpg"), 3)


def test_a_huge_file_is_not_read_whole_before_its_header_is_checked(tmp_path, monkeypatch,
                                                                   count_fast):  # fmt: skip
    """A file that starts like a JPEG but is over MAX_JPEG_BYTES goes to Pillow, which reads
    its header first: garbage is refused without the file being loaded."""
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff\xd8" + b"\0" * 4096)
    monkeypatch.setattr(decode, "MAX_JPEG_BYTES", 1024)
    with pytest.raises(DataError, match="big.jpg"):
        open_image(path, 3)
    assert not count_fast
    good = _jpeg(tmp_path / "a.jpg", quality=95, subsampling=0)
    assert good.stat().st_size > 1024
    assert np.array_equal(to_chw(open_image(good, 3)), _pillow(good, 3, monkeypatch))
    assert not count_fast  # over the limit: Pillow's path, the same pixels
