"""A hostile dataset built at run time: every kind of bad or awkward file a user's folder may hold.

``make_hostile_dataset(root)`` writes ``root/train/<class>/…`` and ``root/val/<class>/…`` with good
images plus the problem files, and returns a dict naming each case -> its path, and the set of
paths expected to be skipped, so engine, CLI and GUI tests assert the same outcomes.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from helpers_images import class_colour, make_image
from PIL import Image

#: A real 40000 x 40000 PNG (1-bit, 194 KB): 1.6 gigapixels, far over the decoding limit.
HUGE_PNG = Path(__file__).parent / "data" / "huge_40000x40000.png"


def _png_with_huge_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def make_hostile_dataset(root: Path, good_per_class: int = 6) -> tuple[dict[str, Path], set[Path]]:
    """Write the corpus; returns ({case: path}, {paths that must be reported as skipped})."""
    cases: dict[str, Path] = {}
    skipped: set[Path] = set()
    for split in ("train", "val"):
        for index, name in enumerate(("ants", "bees")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(good_per_class):
                make_image(class_colour(index), (64, 48), seed=i + 10 * index).save(folder / f"good_{i}.jpg")
    ants = root / "train" / "ants"
    bees = root / "train" / "bees"

    def add(case: str, path: Path, data: bytes | None = None, *, bad: bool = False) -> Path:
        if data is not None:
            path.write_bytes(data)
        cases[case] = path
        if bad:
            skipped.add(path)
        return path

    good = _jpeg_bytes(make_image(class_colour(0), (64, 48), seed=99))
    add("zero-byte", ants / "empty.jpg", b"", bad=True)
    add("truncated-jpeg", ants / "truncated.jpg", good[: len(good) // 3], bad=True)
    add("text-as-jpeg", ants / "notes.jpg", b"this is a text file, not a photo\n" * 20, bad=True)
    add("bomb", ants / "bomb.png", _png_with_huge_header(60_000, 60_000), bad=True)
    add("text-as-png", ants / "letter.png", b"Dear Sir or Madam,\n" * 10, bad=True)
    add("huge-png", bees / "huge.png", HUGE_PNG.read_bytes(), bad=True)  # a real 40000x40000 PNG
    add("unsupported-extension", ants / "readme.txt", b"hello", bad=True)

    sixteen = Image.new("I;16", (40, 30))
    sixteen.putdata([i * 50 % 65535 for i in range(40 * 30)])
    add("16-bit", ants / "sixteen.png")
    sixteen.save(cases["16-bit"])
    add("cmyk", ants / "cmyk.jpg", _jpeg_bytes(make_image(class_colour(0), (40, 30)).convert("CMYK")))
    add("palette", ants / "palette.png")
    make_image(class_colour(0), (40, 30)).convert("P").save(cases["palette"])
    add("rgba", ants / "alpha.png")
    make_image(class_colour(0), (40, 30)).convert("RGBA").save(cases["rgba"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    add("exif-rotated", ants / "rotated.jpg", _jpeg_bytes(make_image(class_colour(0), (64, 32)), exif=exif))
    add("space-and-unicode", ants / "fourmi rouge é 蚂蚁.jpg", good)
    add("gif", bees / "anim.gif")
    make_image(class_colour(1), (40, 30)).save(cases["gif"])

    # Hidden files and OS junk: ignored silently, never trained on.
    (ants / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (ants / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (ants / "._good_0.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    cases["junk"] = ants / ".DS_Store"

    nested = ants / "more" / "deeper"
    nested.mkdir(parents=True)
    add("nested", nested / "nested.jpg", good)
    os.symlink(ants / "good_0.jpg", bees / "linked.jpg")  # a file link: followed
    cases["file-link"] = bees / "linked.jpg"
    os.symlink(bees, bees / "loop")  # a folder link to itself: a loop, reported, not followed forever
    add("link-loop", bees / "loop", bad=True)
    os.symlink(bees / "ping.jpg", bees / "pong.jpg")  # two file links pointing at each other
    os.symlink(bees / "pong.jpg", bees / "ping.jpg")
    add("file-link-loop", bees / "ping.jpg", bad=True)
    skipped.add(bees / "pong.jpg")
    if hasattr(os, "mkfifo"):  # a named pipe: reading it would block forever
        os.mkfifo(bees / "pipe.jpg")
        add("fifo", bees / "pipe.jpg", bad=True)
    os.symlink(root / "missing.jpg", bees / "dangling.jpg")
    add("broken-link", bees / "dangling.jpg", bad=True)
    (root / "train" / "empty_class").mkdir()
    cases["empty-class"] = root / "train" / "empty_class"
    return cases, skipped
