"""Render the app icon (``resources/transfer-studio.svg``) into every size and format the bundles need.

Writes, next to the SVG:

* ``resources/icons/hicolor/<N>x<N>/apps/transfer-studio.png`` for the Linux icon theme
  (N = 16 … 512), plus ``resources/icons/hicolor/scalable/apps/transfer-studio.svg``;
* ``resources/transfer-studio.ico`` (Windows executable icon, 16 … 256 px);
* ``resources/transfer-studio.icns`` (macOS app bundle icon, up to 1024 px).

The SVG is rendered with Qt (QtSvg, headless: ``QT_QPA_PLATFORM=offscreen``); the ICO and ICNS
containers are written with Pillow. Run ``python packaging/make_icons.py`` after changing the SVG;
``packaging/build.sh`` runs it when an output is missing or older than the SVG.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
SVG = RESOURCES / "transfer-studio.svg"
NAME = "transfer-studio"
THEME_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZE = 1024

logger = logging.getLogger("make_icons")


def outputs(resources: Path = RESOURCES) -> list[Path]:
    """Every file this script writes."""
    theme = resources / "icons" / "hicolor"
    return [
        *(theme / f"{n}x{n}" / "apps" / f"{NAME}.png" for n in THEME_SIZES),
        theme / "scalable" / "apps" / f"{NAME}.svg",
        resources / f"{NAME}.ico",
        resources / f"{NAME}.icns",
    ]


def up_to_date(resources: Path = RESOURCES) -> bool:
    """True when every output exists and is newer than the SVG."""
    svg_time = (resources / SVG.name).stat().st_mtime
    return all(p.is_file() and p.stat().st_mtime >= svg_time for p in outputs(resources))


def render(svg: Path, size: int):  # -> PIL.Image.Image
    """The SVG as a ``size`` x ``size`` RGBA Pillow image (rendered by QtSvg)."""
    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot render {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    from io import BytesIO

    return Image.open(BytesIO(bytes(buffer.data()))).convert("RGBA")


def make_icons(resources: Path = RESOURCES) -> list[Path]:
    """Write every icon file; returns their paths."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # QtSvg needs one for fonts
    svg = resources / SVG.name
    theme = resources / "icons" / "hicolor"
    written = []
    for n in THEME_SIZES:
        path = theme / f"{n}x{n}" / "apps" / f"{NAME}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        render(svg, n).save(path, optimize=True)
        written.append(path)
    scalable = theme / "scalable" / "apps" / f"{NAME}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    written.append(scalable)
    ico = resources / f"{NAME}.ico"
    largest = render(svg, max(ICO_SIZES))
    largest.save(ico, format="ICO", sizes=[(n, n) for n in ICO_SIZES])
    written.append(ico)
    icns = resources / f"{NAME}.icns"
    render(svg, ICNS_SIZE).save(icns, format="ICNS")
    written.append(icns)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-needed", action="store_true", help="do nothing when the icons are up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.if_needed and up_to_date():
        logger.info("icons are up to date")
        return 0
    for path in make_icons():
        logger.info("wrote %s", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
