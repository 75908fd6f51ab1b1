"""Tests for engine.data.images: robust opening, colour modes, EXIF orientation, formats, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_images import make_image
from PIL import Image, features

from engine.core.errors import UnreadableImageError
from engine.data import images
from engine.data.images import IMAGE_EXTENSIONS, open_image, verify_image

RED = (220, 40, 40)


def _jpeg(path: Path, size: tuple[int, int] = (64, 48), **kwargs) -> Path:
    make_image(RED, size).save(path, quality=90, **kwargs)
    return path


def _unreadable_reason(path: Path) -> str:
    with pytest.raises(UnreadableImageError) as info:
        open_image(path)
    assert str(info.value).startswith(f"{path.name}: ")
    assert "\n" not in str(info.value)
    return info.value.reason


def test_extensions() -> None:
    assert {
        ".jpg",
        ".jpeg",
        ".png",
        ".gif",
        ".webp",
        ".bmp",
        ".tif",
        ".tiff",
        ".avif",
        ".heic",
        ".heif",
        ".hif",
    } == (IMAGE_EXTENSIONS)


def test_open_jpeg_is_loaded_rgb_and_detached_from_file(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "a.jpg")
    img = open_image(str(path))
    path.unlink()
    assert img.mode == "RGB"
    assert img.size == (64, 48)
    assert img.getpixel((63, 0))[0] > 150  # red, still readable after the file is gone


@pytest.mark.parametrize(
    ("mode", "fmt", "value", "expected"),
    [
        ("L", "PNG", 100, (100, 100, 100)),
        ("1", "PNG", 1, (255, 255, 255)),
        ("P", "GIF", None, RED),
        ("CMYK", "JPEG", (0, 255, 255, 0), (255, 0, 0)),
        ("CMYK", "TIFF", (0, 255, 255, 0), (255, 0, 0)),
        ("I;16", "PNG", 65535, (255, 255, 255)),
        ("I;16", "TIFF", 32896, (128, 128, 128)),
        ("I", "TIFF", 200, (200, 200, 200)),
        ("F", "TIFF", 0.5, (128, 128, 128)),
        ("YCbCr", "JPEG", None, RED),
    ],
)
def test_colour_modes_become_rgb(tmp_path: Path, mode, fmt, value, expected) -> None:
    if mode == "P":
        img = Image.new("RGB", (16, 16), RED).quantize(colors=4)
    elif value is None:
        img = Image.new("RGB", (16, 16), RED).convert(mode)
    else:
        img = Image.new(mode, (16, 16), value)
    path = tmp_path / f"img.{fmt.lower()}"
    img.save(path, format=fmt)
    out = open_image(path)
    assert out.mode == "RGB"
    assert out.size == (16, 16)
    assert np.allclose(out.getpixel((8, 8)), expected, atol=12)


def _half_transparent() -> Image.Image:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # fully transparent black ...
    img.paste((0, 0, 0, 255), (0, 0, 5, 10))  # ... with an opaque black left half
    return img


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "alpha.png"
    _half_transparent().convert(mode).save(path)
    out = open_image(path)
    assert out.mode == "RGB"
    assert out.getpixel((8, 5)) == (255, 255, 255)
    assert out.getpixel((2, 5)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_to_rgb_16_bit_variants(mode: str) -> None:
    out = images.to_rgb(Image.new(mode, (4, 4), 65535))
    assert (out.mode, out.getpixel((1, 1))) == ("RGB", (255, 255, 255))


@pytest.mark.parametrize("mode", ["PA", "La", "RGBa"])
def test_to_rgb_in_memory_alpha_modes(mode: str) -> None:
    img = _half_transparent()
    img = img.convert("LA").convert("La") if mode == "La" else img.convert(mode)
    out = images.to_rgb(img)
    assert out.mode == "RGB"
    assert out.getpixel((8, 5)) == (255, 255, 255)
    assert out.getpixel((2, 5)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["HSV", "LAB"])
def test_to_rgb_in_memory_other_modes(mode: str) -> None:
    out = images.to_rgb(Image.new("RGB", (10, 10), RED).convert(mode))
    assert out.mode == "RGB"
    assert np.allclose(out.getpixel((5, 5)), RED, atol=30)


def test_palette_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    path = tmp_path / "t.gif"
    img.save(path, transparency=0)
    out = open_image(path)
    assert out.getpixel((8, 5)) == (255, 255, 255)
    assert out.getpixel((2, 5)) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red patch in the top-left corner of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    out = open_image(path)
    assert out.size == (40, 60)
    r, g, b = out.getpixel((35, 4))  # the patch is now top-right
    assert r > 200 and b < 60


def test_broken_exif_does_not_make_image_unreadable(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "x.jpg", exif=b"Exif\x00\x00garbage")
    assert open_image(path).size == (64, 48)


@pytest.mark.parametrize(
    ("fmt", "suffix", "feature"),
    [
        ("GIF", ".gif", None),
        ("WEBP", ".webp", "webp"),
        ("BMP", ".bmp", None),
        ("TIFF", ".tif", None),
        ("TIFF", ".tiff", None),
        ("PNG", ".png", None),
        ("JPEG", ".jpeg", None),
    ],
)
def test_formats_open(tmp_path: Path, fmt: str, suffix: str, feature: str | None) -> None:
    if feature and not features.check(feature):
        pytest.skip(f"Pillow built without {feature}")
    path = tmp_path / f"img{suffix}"
    make_image(RED, (32, 24)).save(path, format=fmt)
    verify_image(path)
    out = open_image(path)
    assert (out.mode, out.size) == ("RGB", (32, 24))


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = open_image(path)
    assert out.getpixel((5, 5)) == (255, 0, 0)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert "empty" in _unreadable_reason(path)
    with pytest.raises(UnreadableImageError):
        verify_image(path)


def test_text_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    assert "not an image" in _unreadable_reason(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    good = _jpeg(tmp_path / "good.jpg", size=(200, 150))
    data = good.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert "corrupt" in _unreadable_reason(path)
    with pytest.raises(UnreadableImageError, match="truncated.jpg: corrupt"):
        verify_image(path)


def test_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    make_image(RED, (100, 100)).save(good)
    path = tmp_path / "truncated.png"
    path.write_bytes(good.read_bytes()[:300])
    with pytest.raises(UnreadableImageError):
        verify_image(path)
    with pytest.raises(UnreadableImageError):
        open_image(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert "not found" in _unreadable_reason(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableImageError):
        open_image(tmp_path)


def test_unsupported_format_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "really_a_ppm.jpg"
    make_image(RED, (8, 8)).save(path, format="PPM")
    assert "unsupported format (PPM)" in _unreadable_reason(path)


def test_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _jpeg(tmp_path / "big.jpg", size=(100, 100))
    monkeypatch.setattr(images, "MAX_PIXELS", 5_000)
    assert "too large" in _unreadable_reason(path)
    with pytest.raises(UnreadableImageError, match="too large"):
        verify_image(path)


def test_decompression_bomb_error_is_unreadable(tmp_path: Path, monkeypatch) -> None:
    path = _jpeg(tmp_path / "bomb.jpg", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # PIL raises above twice this
    assert "too large" in _unreadable_reason(path)


def test_corrupted_bytes_only_raise_unreadable(tmp_path: Path) -> None:
    data = bytearray(_jpeg(tmp_path / "src.jpg", size=(80, 60)).read_bytes())
    rng = np.random.default_rng(0)
    failures = 0
    for i in range(30):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(damaged), size=20):
            damaged[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"d{i}.jpg"
        path.write_bytes(bytes(damaged))
        for fn in (open_image, verify_image):
            try:
                fn(path)
            except UnreadableImageError:
                failures += 1  # any other exception type fails the test
    assert failures > 0
