"""The HTML pieces of a report: the page, line charts as inline SVG, tables, and JPEG thumbnails.

Everything here returns text that goes straight into one self-contained page: no file outside it, no
network reference (inline SVG needs no namespace URL in HTML), images as ``data:`` URIs. Every string
that comes from the user (class names, paths, settings, run names) goes through :func:`esc`.
:mod:`engine.reports.report` gathers the facts and puts these pieces together.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.errors import UnreadableImageError
from engine.data.images import open_image

#: Colours of the series of a chart, in order (colour-blind friendly, after Okabe and Ito).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#8a6d00", "#555555")
THUMB_SIZE = 96
THUMB_QUALITY = 80

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       background: #f4f5f7; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.subtitle { color: #5b6475; margin: 0 0 18px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 16px 20px;
          margin: 0 0 18px; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 0 0 18px; }
.fact { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 8px 14px; }
.fact b { display: block; font-size: 18px; }
.fact span { color: #5b6475; font-size: 12px; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e6e9ee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.winner td { font-weight: 600; background: #eef7ee; }
table.confusion td { text-align: center; min-width: 56px; border: 1px solid #fff; }
table.confusion th.corner { color: #5b6475; font-weight: normal; font-size: 12px; }
.settings { display: grid; grid-template-columns: 1fr 1fr; gap: 32px; align-items: start; }
.settings table { width: 100%; }
.columns { display: flex; flex-wrap: wrap; gap: 48px; align-items: flex-start; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg.chart { background: #fff; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #3b4252; }
svg.chart .grid { stroke: #e6e9ee; }
svg.chart .axis { stroke: #8a93a3; }
.note { background: #fff7e0; border: 1px solid #f0d68a; border-radius: 6px; padding: 8px 12px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 12px; }
figure.thumb { margin: 0; width: 150px; font-size: 12px; }
figure.thumb img { display: block; border-radius: 4px; border: 1px solid #dde1e7; }
.muted { color: #5b6475; }
code { font-size: 12px; }
"""


def esc(value: object) -> str:
    """``value`` as text, safe inside HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """The whole HTML document: one inline style sheet, no script, no external reference."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n</main>\n</body>\n</html>\n"
    )


def section(title: str, body: str, section_id: str = "") -> str:
    ident = f' id="{esc(section_id)}"' if section_id else ""
    return f"<section{ident}>\n<h2>{esc(title)}</h2>\n{body}\n</section>\n"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A row of headline numbers: ``(label, value)`` pairs."""
    cells = "".join(
        f'<div class="fact"><b>{esc(value)}</b><span>{esc(label)}</span></div>' for label, value in items
    )
    return f'<div class="facts">{cells}</div>'


def fmt(value: Any) -> str:
    """A setting or number as a short string (floats in ``g`` form, None as a dash)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def percent(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 90:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    table_id: str = "",
    css_class: str = "",
    numeric: Sequence[int] = (),
    row_classes: Sequence[str] | None = None,
) -> str:
    """A plain table; every cell is escaped; columns listed in ``numeric`` are right-aligned."""
    attrs = (f' id="{esc(table_id)}"' if table_id else "") + (
        f' class="{esc(css_class)}"' if css_class else ""
    )

    def cell(tag: str, index: int, value: Any) -> str:
        align = ' class="num"' if index in numeric else ""
        return f"<{tag}{align}>{esc(value)}</{tag}>"

    lines = [
        f"<table{attrs}>",
        "<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr></thead>",
    ]
    lines.append("<tbody>")
    for n, row in enumerate(rows):
        klass = row_classes[n] if row_classes is not None and n < len(row_classes) else ""
        attr = f' class="{esc(klass)}"' if klass else ""
        lines.append(f"<tr{attr}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def key_values(
    pairs: Iterable[tuple[str, Any]],
    *,
    table_id: str = "",
    header: tuple[str, str] = ("setting", "value"),
    split_over: int = 10,
) -> str:
    """A table of settings; more than ``split_over`` rows go into two tables side by side."""
    rows = [(key, fmt(value)) for key, value in pairs]
    if len(rows) <= split_over:
        return table(header, rows, table_id=table_id)
    half = (len(rows) + 1) // 2
    first = table(header, rows[:half], table_id=table_id)
    second = table(header, rows[half:], table_id=f"{table_id}-2" if table_id else "")
    return f'<div class="settings"><div>{first}</div><div>{second}</div></div>'


def confusion_table(class_names: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """The confusion matrix (rows = true class), each cell shaded by its share of the row."""
    head = '<th class="corner">true ↓ / predicted →</th>' + "".join(f"<th>{esc(n)}</th>" for n in class_names)
    lines = ['<table id="confusion-matrix" class="confusion">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i, (name, row) in enumerate(zip(class_names, matrix)):
        total = sum(row) or 1
        cells = []
        for j, value in enumerate(row):
            share = value / total
            rgb = "0,158,115" if i == j else "213,94,0"
            colour = "#fff" if share > 0.55 else "#1d2330"
            style = f"background:rgba({rgb},{0.08 + 0.85 * share:.2f});color:{colour}"
            cells.append(f'<td style="{style}" title="{esc(name)} → {esc(class_names[j])}">{value}</td>')
        lines.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


# --- charts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``(epoch, value)`` points."""

    label: str
    points: tuple[tuple[float, float], ...]
    dashed: bool = False


def series_from_history(
    history: Sequence[dict[str, Any]], key: str, label: str, dashed: bool = False
) -> Series:
    """The finite values of ``key`` per epoch of a run's metrics rows."""
    points = []
    for row in history:
        epoch, value = row.get("epoch"), row.get(key)
        if isinstance(epoch, (int, float)) and isinstance(value, (int, float)) and math.isfinite(value):
            points.append((float(epoch), float(value)))
    return Series(label, tuple(points), dashed)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start, stop = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(int(round((stop - start) / step)) + 1)]


def line_chart(
    series: Sequence[Series],
    *,
    chart_id: str,
    title: str,
    y_label: str,
    unit_interval: bool = False,
    width: int = 520,
    height: int = 290,
) -> str:
    """An SVG line chart of ``series`` over epochs: one ``<g class="series">`` per series, a legend.

    ``unit_interval`` keeps the y axis within [0, 1] (accuracies). A series of one point is a dot.
    """
    left, right, top, bottom = 56, 16, 30, 44 + 18 * ((len(series) + 1) // 2)
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for _, v in s.points]
    epochs = [e for s in series for e, _ in s.points]
    y_ticks = nice_ticks(min(values, default=0.0), max(values, default=1.0))
    if unit_interval:
        y_ticks = [t for t in y_ticks if -1e-9 <= t <= 1 + 1e-9] or [0.0, 0.5, 1.0]
        if len(y_ticks) < 2:
            y_ticks = [0.0, 1.0]
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    x_hi = max(2.0, max(epochs, default=2.0))
    x_step = max(1, math.ceil((x_hi - 1) / 10))
    x_ticks = list(range(1, int(x_hi) + 1, x_step))

    def x(epoch: float) -> float:
        return left + (epoch - 1) / (x_hi - 1) * plot_w

    def y(value: float) -> float:
        clamped = min(max(value, y_lo), y_hi)
        return top + (1 - (clamped - y_lo) / (y_hi - y_lo)) * plot_h

    parts = [
        f'<svg id="{esc(chart_id)}" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="18" style="font-weight:600;font-size:13px">{esc(title)}</text>',
    ]
    for t in y_ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in x_ticks:
        parts.append(f'<text x="{x(t):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{t}</text>')
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32}" text-anchor="middle">epoch</text>'
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{esc(y_label)}</text>"
    )
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        coords = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in s.points)
        parts.append(f'<g class="series" data-series="{esc(s.label)}">')
        if len(s.points) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{coords}"/>'
            )
        for e, v in s.points:
            parts.append(
                f'<circle cx="{x(e):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                f"<title>{esc(s.label)}, epoch {e:g}: {v:.4f}</title></circle>"
            )
        parts.append("</g>")
        lx = left + (n % 2) * (plot_w / 2)
        ly = top + plot_h + 48 + 18 * (n // 2)
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx + 22:.1f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{lx + 28:.1f}" y="{ly}">{esc(s.label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


# --- thumbnails --------------------------------------------------------------------------------------


def thumbnail_data_uri(path: Path, size: int = THUMB_SIZE) -> str | None:
    """A small JPEG of the image at ``path`` as a ``data:`` URI, or None when it cannot be read."""
    try:
        image = open_image(path)
    except UnreadableImageError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_figure(uri: str, caption: str, tooltip: str) -> str:
    return (
        f'<figure class="thumb"><img src="{uri}" alt="{esc(caption)}" title="{esc(tooltip)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def reliability_chart(
    before: Sequence[dict[str, float]],
    after: Sequence[dict[str, float]] | None,
    *,
    chart_id: str = "reliability",
    size: int = 300,
    before_label: str = "before calibration",
) -> str:
    """An SVG reliability diagram: accuracy against confidence per bin (bins without photos left out),
    the ideal diagonal dashed; ``before`` grey (named ``before_label``), ``after`` (the calibrated
    probabilities) in colour."""
    left, top, plot = 48, 28, size - 48 - 16
    height = top + plot + 64

    def x(v: float) -> float:
        return left + v * plot

    def y(v: float) -> float:
        return top + (1 - v) * plot

    parts = [
        f'<svg id="{esc(chart_id)}" class="chart" width="{size}" height="{height}" viewBox="0 0 {size} {height}" '
        'role="img" aria-label="Reliability diagram: accuracy against confidence">',
        f'<text x="{left}" y="18" style="font-weight:600;font-size:13px">Reliability: accuracy against confidence</text>',
    ]
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + plot + 16}" text-anchor="middle">{t:g}</text>')
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left + plot}" y1="{top + plot}" y2="{top + plot}"/>'
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot}"/>'
        f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="#8a93a3" stroke-dasharray="5 4"/>'
        f'<text x="{left + plot / 2:.1f}" y="{top + plot + 32}" text-anchor="middle">confidence</text>'
    )
    series = [(before_label, "#b0b0b0", before)] + ([("calibrated", PALETTE[0], after)] if after else [])
    for n, (label, colour, bins) in enumerate(series):
        points = [(b["confidence"], b["accuracy"], int(b["photos"])) for b in bins if b["photos"]]
        coords = " ".join(f"{x(c):.1f},{y(a):.1f}" for c, a, _ in points)
        parts.append(f'<g class="series" data-series="{esc(label)}">')
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        for c, a, photos in points:
            parts.append(
                f'<circle cx="{x(c):.1f}" cy="{y(a):.1f}" r="3.5" fill="{colour}"><title>{esc(label)}: '
                f"confidence {c:.3f}, right {a:.1%} of {photos} photos</title></circle>"
            )
        parts.append("</g>")
        ly = top + plot + 50
        lx = left + n * (plot / 2)
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx + 20:.1f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{lx + 26:.1f}" y="{ly}">{esc(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
