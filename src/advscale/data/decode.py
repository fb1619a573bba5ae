"""Opening one image file, bounded and strict: the one decoder of ImageFolders and shards.

Every image is opened with an explicit pixel limit, checked from the header before any pixel
is decoded, so a 30000x30000 PNG is refused in one line instead of allocating gigabytes.
Images of more than 8 bits per channel are converted by their real range (16-bit: the value
divided by 257, so 65535 is 255) rather than clipped; a floating-point image is taken when its
values lie in [0, 1] and refused otherwise.

JPEGs are decoded by ``simplejpeg`` (a libjpeg-turbo binding, ``pip install advscale[fast-jpeg]``)
when it is installed, and by Pillow otherwise. Both run libjpeg-turbo's exact integer IDCT and
upsampling, so the pixels are the same (the suite checks it); simplejpeg skips Pillow's header
parsing in Python, a third of the time a small image takes (96x96: 106 against 165 µs an image in
``benchmarks/results/data_scale.md``; at ImageNet's 500x375 decoding dominates and they are
even). Only what libjpeg converts exactly as Pillow does goes that way
(colour or grey to RGB, grey to grey); CMYK, colour to grey, 12-bit and anything simplejpeg
refuses or warns about (a truncated file) take Pillow's path, whose messages name the file.
``ADVSCALE_JPEG=pillow`` forces Pillow (``auto``, the default, takes simplejpeg when installed).
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from advscale.data.base import DataError

try:
    import simplejpeg
except ImportError:  # the optional fast JPEG decoder
    simplejpeg = None

#: The most pixels (width x height) one image may have: Pillow's own warning threshold, about
#: 9459x9459. ImageNet's largest image has under 20M pixels.
MAX_PIXELS = 89_478_485
#: The largest JPEG file read whole for simplejpeg (an 89-megapixel JPEG at quality 95 is about
#: 40 MB); a larger one takes Pillow's path.
MAX_JPEG_BYTES = 128 * 2**20
#: Pillow modes holding 16-bit integers.
MODES_16 = ("I;16", "I;16B", "I;16L", "I;16N")
#: Pillow modes that are grey; the rest are taken as colour.
GREY_MODES = ("1", "L", "LA", "I", "F", *MODES_16)

Source = str | os.PathLike | bytes


def _open(source: Source, where: str) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError:
        raise DataError(f"{where}: cannot read image (not a format Pillow reads)") from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, above ours
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise DataError(_too_large(where, found.group(1) if found else "too many")) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{where}: cannot read image ({e})") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise DataError(_too_large(where, f"{w}x{h}"))
    return im


def _too_large(where: str, pixels: str) -> str:
    return (
        f"{where}: image of {pixels} pixels is over the limit of {MAX_PIXELS} pixels "
        "(advscale.data.decode.MAX_PIXELS); shrink it or remove it from the data"
    )


def probe(source: Source, where: str | None = None) -> tuple[str, int, int]:
    """(Pillow mode, height, width) of an image, read from its header only."""
    where = where or str(source)
    with _open(source, where) as im:
        return im.mode, im.size[1], im.size[0]


def open_image(source: Source, channels: int, where: str | None = None) -> Image.Image:
    """The image at ``source`` (a path or the file's bytes), decoded to mode "L" (``channels``
    1) or "RGB" (3), 8 bits per channel.

    Raises:
        DataError: unreadable or truncated file, over :data:`MAX_PIXELS`, a floating-point
            image outside [0, 1] or any other range that has no 8-bit reading; the message
            names ``where`` (default: the path).
    """
    where = where or (str(source) if not isinstance(source, bytes) else "image")
    mode = "L" if channels == 1 else "RGB"
    if _fast_jpeg():
        source, im = _jpeg(source, mode, where)
        if im is not None:
            return im
    with _open(source, where) as im:
        try:
            im.load()
            if im.mode in MODES_16 or im.mode in ("I", "F"):
                return _from_wide(im, mode, where)
            if im.mode == mode:
                return im  # decoded above; closing the file keeps the pixels
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            return im.convert(mode)
        except DataError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{where}: cannot decode image ({e})") from None


#: (colour space in the JPEG header, Pillow mode wanted) -> what simplejpeg is asked for: the
#: conversions libjpeg makes exactly as Pillow does. Colour to grey is not one (libjpeg keeps the
#: Y channel; Pillow converts the RGB pixels), nor is CMYK.
_JPEG_SPACES = {("YCbCr", "RGB"): "RGB", ("RGB", "RGB"): "RGB", ("Gray", "RGB"): "RGB",
                ("Gray", "L"): "GRAY"}  # fmt: skip


def _fast_jpeg() -> bool:
    """Whether JPEGs go to simplejpeg: installed, and ``ADVSCALE_JPEG`` is not ``pillow``."""
    choice = os.environ.get("ADVSCALE_JPEG", "auto") or "auto"
    if choice not in ("auto", "pillow"):
        raise DataError(f"ADVSCALE_JPEG={choice!r} is not a JPEG decoder; use auto or pillow")
    return simplejpeg is not None and choice == "auto"


def _jpeg(source: Source, mode: str, where: str) -> tuple[Source, Image.Image | None]:
    """A JPEG decoded by simplejpeg, or None where Pillow should decode it; also the source to
    give Pillow (the file's bytes once they were read)."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as f:
                # Read whole only when it is a JPEG of a plausible size; Pillow reads the rest
                # lazily, its header checked first.
                if f.read(2) != b"\xff\xd8" or os.fstat(f.fileno()).st_size > MAX_JPEG_BYTES:
                    return source, None
                f.seek(0)
                data = f.read()
        except OSError:
            return source, None  # Pillow's open reports it
    if data[:2] != b"\xff\xd8":
        return data, None
    try:
        h, w, space, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return data, None
    if w * h > MAX_PIXELS:
        raise DataError(_too_large(where, f"{w}x{h}"))
    target = _JPEG_SPACES.get((space, mode))
    if target is None:
        return data, None
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace=target, strict=True)
    except ValueError:  # corrupt or truncated: Pillow's path names the file and the fault
        return data, None
    return data, Image.fromarray(arr[..., 0] if target == "GRAY" else arr, mode)


def _from_wide(im: Image.Image, mode: str, where: str) -> Image.Image:
    """A grey image of 16-bit or 32-bit integers, or of floats, as 8 bits by its real range."""
    arr = np.asarray(im)
    if im.mode == "F":
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise DataError(
                f"{where}: floating-point image with values in [{lo:g}, {hi:g}]; only [0, 1] "
                "has an 8-bit reading (store 8-bit or 16-bit images)"
            )
        out = np.rint(arr.astype(np.float64) * 255)
    else:
        # Mode "I" is how Pillow holds 16-bit PNGs of some encoders: their range is 16 bits.
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise DataError(
                f"{where}: {im.mode} image with values in [{lo}, {hi}], outside 16 bits; "
                "store 8-bit or 16-bit images"
            )
        out = np.rint(arr.astype(np.float64) / 257.0)
    grey = Image.fromarray(out.astype(np.uint8), "L")
    return grey if mode == "L" else grey.convert(mode)


def to_chw(im: Image.Image) -> np.ndarray:
    """A decoded "L" or "RGB" image as a uint8 ``(C, H, W)`` array."""
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def is_grey(mode: str) -> bool:
    return mode in GREY_MODES
