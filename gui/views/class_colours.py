"""The colour of each class wherever photos are sorted (the sort grid's tint, the photo map's points)."""

from __future__ import annotations

import colorsys

from PySide6.QtGui import QColor

#: Unsorted photos on the photo map.
UNSORTED = QColor(150, 150, 150)

_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79",
)  # fmt: skip


def class_colour(index: int) -> QColor:
    """A distinct colour for class (or group) number ``index``: ten fixed ones, then golden-ratio hues."""
    if 0 <= index < len(_PALETTE):
        return QColor(_PALETTE[index])
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.75, 0.85)
    return QColor(int(r * 255), int(g * 255), int(b * 255))
