"""Robust image loading: every photo the engine reads goes through :func:`open_image`.

This module owns the list of accepted file extensions, the conversion of any PIL colour mode to
RGB (alpha composited on white, 16-bit and float images rescaled), EXIF orientation, the size
limit against decompression bombs, and the cheap integrity check used when scanning a dataset
(:func:`verify_image`). Every failure is reported as :class:`UnreadableImageError` whose
``reason`` attribute holds the short reason without the file name.
"""

from __future__ import annotations

import logging
import struct
import warnings
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.core.errors import UnreadableImageError

logger = logging.getLogger(__name__)

#: HEIC/HEIF (iPhone photos): read through pi-heif, the ``heic`` extra, when it is installed.
HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif", ".hif"})

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif", *HEIF_EXTENSIONS}
)

#: Image formats (as PIL names them) that are accepted, whatever the file's extension says.
SUPPORTED_FORMATS: frozenset[str] = frozenset(
    {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF"}
)

#: What README and error messages call the accepted formats.
FORMATS_TEXT = "JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF or HEIC"
HEIC_EXTRA_HINT = "HEIC photo: install the heic extra to read it (pip install 'transfer-studio[heic]')"

#: Images with more pixels than this are refused as "too large" (decompression-bomb guard).
MAX_PIXELS = 100_000_000

_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_WHITE = (255, 255, 255)


def _error(path: Path, reason: str) -> UnreadableImageError:
    return UnreadableImageError(f"{path.name}: {reason}", reason)


def _reason_for(exc: BaseException) -> str:
    """Turn an exception raised while reading an image into a short, user-facing reason."""
    if isinstance(exc, Image.DecompressionBombError):
        return "too large (decompression bomb guard)"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unknown or unsupported file format)"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "unreadable (permission denied)"
    if isinstance(exc, MemoryError):
        return "too large (out of memory while decoding)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)):
        return f"corrupt ({text})"
    return f"unreadable ({text})"


@cache
def heif_available() -> bool:
    """Whether HEIC/HEIF photos can be read: registers pi-heif's Pillow plug-in on first call."""
    try:
        from pi_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


@cache
def avif_available() -> bool:
    """Whether Pillow was built with AVIF support (its wheels are, from 11.3)."""
    from PIL import features

    return bool(features.check("avif"))


def _open_header(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only) and check its format and size; the caller closes it."""
    suffix = path.suffix.lower()
    if suffix in HEIF_EXTENSIONS and not heif_available():
        raise _error(path, HEIC_EXTRA_HINT)
    if suffix == ".avif" and not avif_available():
        raise _error(path, "AVIF photo: this Pillow cannot read AVIF (upgrade Pillow to 11.3 or newer)")
    try:
        if path.stat().st_size == 0:
            raise _error(path, "empty file (0 bytes)")
    except OSError as exc:
        raise _error(path, _reason_for(exc)) from exc
    with warnings.catch_warnings():
        # Our own MAX_PIXELS check below replaces PIL's warning; PIL's hard error still applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)
    try:
        if im.format not in SUPPORTED_FORMATS:
            raise _error(path, f"unsupported format ({im.format})")
        width, height = im.size
        if width <= 0 or height <= 0:
            raise _error(path, f"corrupt (invalid size {width}x{height})")
        if width * height > MAX_PIXELS:
            raise _error(path, f"too large ({width}x{height} pixels, limit {MAX_PIXELS:,})")
    except BaseException:
        im.close()
        raise
    return im


def verify_image(path: str | Path) -> None:
    """Check cheaply that ``path`` is a readable image; raise :class:`UnreadableImageError` if not.

    JPEGs are decoded at 1/8 scale (DCT draft mode, which still reads all compressed data, so a
    truncated file is caught); PNGs have their chunk checksums verified; other formats are decoded.
    """
    path = Path(path)
    try:
        im = _open_header(path)
        with im:
            if im.format in ("JPEG", "MPO"):
                w, h = im.size
                im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))
                im.load()
            elif im.format == "PNG":
                im.verify()
            else:
                im.load()
    except UnreadableImageError:
        raise
    except Exception as exc:  # anything PIL raises means the file cannot be used
        raise _error(path, _reason_for(exc)) from exc


def _rescale_to_l(im: Image.Image) -> Image.Image:
    """Map a 16-bit, 32-bit integer or float single-channel image to 8-bit grey."""
    if im.mode.startswith("I;16"):
        arr = np.asarray(im.convert("I"), dtype=np.float64) / 257.0
    else:
        arr = np.asarray(im, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            pass
        elif lo >= 0.0 and hi <= 65535.0:
            arr = arr / 257.0
        elif hi > lo:
            arr = (arr - lo) * (255.0 / (hi - lo))
        else:
            arr = np.zeros_like(arr)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL image to RGB; transparent areas become white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P" and "transparency" in im.info:
        mode = "PA"
    if mode in _ALPHA_MODES:
        rgba = (im.convert("LA") if mode == "La" else im).convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _rescale_to_l(im).convert("RGB")
    return im.convert("RGB")


def open_image(path: str | Path, *, min_size: int | None = None) -> Image.Image:
    """Open an image as a fully loaded RGB PIL image with its EXIF orientation applied.

    With ``min_size``, a JPEG is decoded in PIL's draft mode straight to the smallest of its 1/1,
    1/2, 1/4 or 1/8 scales whose sides are all at least ``min_size`` (the size the pipeline resizes
    to next): a 12-megapixel phone photo then decodes at an eighth of the cost. Every path that feeds
    a model (training, evaluation, prediction, export parity) passes the same ``min_size``, so they
    all see the same pixels. Only the first frame of animated images is used. Raises
    :class:`UnreadableImageError` (and nothing else) when the file cannot be used.
    """
    path = Path(path)
    try:
        im = _open_header(path)
        with im:
            if min_size is not None and im.format == "JPEG":
                im.draft("RGB", (min_size, min_size))
            im.load()
            try:
                ImageOps.exif_transpose(im, in_place=True)
            except Exception as exc:  # broken EXIF must not make a good image unusable
                logger.debug("Ignoring unreadable EXIF in %s: %s", path, exc)
            rgb = to_rgb(im)
            if rgb is im:
                rgb = im.copy()  # closing the file below would invalidate ``im``
        rgb.load()
        return rgb
    except UnreadableImageError:
        raise
    except Exception as exc:  # never let another exception type escape
        raise _error(path, _reason_for(exc)) from exc


def is_image_file(path: str | Path) -> bool:
    """True when the file's extension is one of :data:`IMAGE_EXTENSIONS` (no content check)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


__all__ = [
    "FORMATS_TEXT",
    "HEIF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "avif_available",
    "heif_available",
    "is_image_file",
    "open_image",
    "to_rgb",
    "verify_image",
]
