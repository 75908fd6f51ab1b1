"""Runs side by side: overlaid curves per metric and a table of what differs between the runs.

Four pyqtgraph plots (train loss, val loss, train accuracy, val accuracy; the last is ``comparePlot``)
hold one PlotDataItem per run, one colour per run, each named by what differs between the runs
(``legend_labels``: "fine-tune" vs "scratch", "lr 0.001" vs "lr 0.01", or the run's name when nothing
does); one legend above the plots (``compareLegend``) serves all four. Beside them ``compareTable`` has one column per run and a row per differing setting, then
each run's best validation accuracy, best epoch and duration; with one run it lists all of that
run's settings. At most :data:`MAX_COMPARED` runs are drawn. Curves come from each run's
``metrics.jsonl`` (a few small files, read on the GUI thread); nothing here imports torch.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.core.config import TrainConfig
from engine.core.rundir import RunDir
from engine.core.runs import RunSummary
from engine.core.setting import describe_value
from gui.views.plots import make_plot
from gui.views.widgets import format_duration

logger = logging.getLogger(__name__)

MAX_COMPARED = 8
#: What names a run in the legend when it differs; other differing settings only when none of these do.
PRIMARY_KEYS = ("model", "strategy", "dataset")
#: Up to this many epochs, the x axis has a tick at every whole epoch.
MAX_EPOCH_TICKS = 20
#: One colour per compared run (matplotlib's tab10, which stays distinct on light and dark themes).
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
#: Each training setting's declaration, by name: the table's row titles and the words for values.
SETTINGS = {item.name: item for item in TrainConfig.settings()}
#: How compared settings are named, in the order legend entries and table rows list them (the
#: declarations' order, the dataset after the strategy); settings a run's config has beyond these follow
#: in alphabetical order, under their own names.
KEY_TITLES = {
    "model": "model",
    "strategy": "strategy",
    "dataset": "dataset",
    **{
        name: item.setting.label.lower()
        for name, item in SETTINGS.items()
        if name not in ("model", "strategy")
    },
}
#: (metrics.jsonl key, plot objectName, accessible name, title, y label, scale)
METRIC_PLOTS = (
    ("train_loss", "trainLossComparePlot", "Training loss of the selected runs", "Train loss", "loss", 1.0),
    ("val_loss", "valLossComparePlot", "Validation loss of the selected runs", "Val loss", "loss", 1.0),
    ("train_acc", "trainAccComparePlot", "Training accuracy of the selected runs", "Train accuracy", "%",
     100.0),
    ("val_acc", "comparePlot", "Validation accuracy of the selected runs", "Val accuracy", "%", 100.0),
)  # fmt: skip


# -- what differs (pure functions, no Qt) -------------------------------------------------------------
def setting_of(run: RunSummary, key: str) -> Any:
    """The value of one compared setting of ``run`` (None when its config does not say)."""
    if key == "model":
        return run.model
    if key == "strategy":
        return run.strategy
    if key == "dataset":
        return run.dataset
    return run.settings.get(key)


def compared_keys(runs: Sequence[RunSummary]) -> list[str]:
    """Model, strategy, dataset, then every setting any of ``runs`` records (see :data:`KEY_TITLES`)."""
    recorded = {key for run in runs for key in run.settings}
    known = [key for key in KEY_TITLES if key in recorded or key in ("model", "strategy", "dataset")]
    return known + sorted(recorded - set(KEY_TITLES))


def key_title(key: str) -> str:
    return KEY_TITLES.get(key, key.replace("_", " "))


def differing_keys(runs: Sequence[RunSummary]) -> list[str]:
    """The compared settings whose values are not the same for every run (none for fewer than two)."""
    if len(runs) < 2:
        return []
    return [key for key in compared_keys(runs) if len({repr(setting_of(r, key)) for r in runs}) > 1]


def format_setting(key: str, value: Any) -> str:
    """A setting's value for the table, in the words of its declaration: "0.001", "on", "AdamW",
    "automatic", "288 px"; a dataset by its folder's name."""
    if value is None:
        return "–"
    if key == "dataset":
        return Path(str(value)).name or str(value)
    if key in SETTINGS:
        return describe_value(SETTINGS[key], value)
    return str(value)


def run_setting_text(run: RunSummary, key: str) -> str:
    """A setting of ``run`` in words, with what an automatic value came to when the run recorded it:
    "automatic (288 px)", "the dataset's val folder", "automatic (CPU: 2 cores)"."""
    value = setting_of(run, key)
    text = format_setting(key, value)
    resolved = run.resolved
    if key == "input_size" and isinstance(resolved.get("input_size"), int) and value in (0, -1):
        return f"{text} ({resolved['input_size']} px)"
    if key == "val_fraction":
        source = resolved.get("validation")
        if source is None:  # a run of an earlier version: the dataset's folders say it
            source = "folder" if (Path(run.dataset) / "val").is_dir() else "split"
        if source == "folder":
            return "the dataset's val folder"
        share = f"{value:.0%}" if isinstance(value, float) else text
        return f"{share} of each class (automatic split)"
    if key == "device" and value == "auto" and resolved.get("device"):
        return f"{text} ({resolved['device']})"
    return text


def legend_part(key: str, value: Any) -> str:
    """How a legend entry names one differing setting: "fine-tune", "lr 0.001", "batch 16"."""
    if key in ("model", "strategy", "optimizer", "device", "dataset"):
        return format_setting(key, value)
    if value is None:
        return f"no {key_title(key)}"
    if key == "lr":
        return f"lr {format_setting(key, value)}"
    if key == "batch_size":
        return f"batch {value}"
    if key == "epochs":
        return f"{value} epochs"
    if key == "schedule":
        return f"{value} schedule"
    if key == "augment":
        return "augmented" if value else "not augmented"
    return f"{key_title(key)} {format_setting(key, value)}"


def legend_labels(runs: Sequence[RunSummary]) -> list[str]:
    """One legend entry per run naming what differs ("efficientnet_lite0 · fine-tune"), else its name.

    Runs whose entries would still be equal (same settings) get their name added, so no two entries
    read the same.
    """
    keys = differing_keys(runs)
    # When the model, strategy or dataset differ, they name the runs; settings that follow from them
    # (a strategy's own default weight decay, say) stay in the table beside the plots.
    primary = [key for key in keys if key in PRIMARY_KEYS]
    keys = primary or keys
    if not keys:
        labels = [run.name for run in runs]
    else:
        labels = [" · ".join(legend_part(key, setting_of(run, key)) for key in keys) for run in runs]
    counts = {label: labels.count(label) for label in labels}
    return [
        f"{label} ({run.name})" if counts[label] > 1 and label != run.name else label
        for label, run in zip(labels, runs)
    ]


def read_curves(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Per metric, (epochs, values) from a run's metrics.jsonl; unreadable rows and values are skipped."""
    try:
        rows = RunDir(path).read_metrics()
    except (OSError, ValueError) as exc:
        logger.warning("cannot read the metrics of %s: %s", path, exc)
        rows = []
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for key, *_rest, scale in METRIC_PLOTS:
        xs: list[float] = []
        ys: list[float] = []
        for row in rows:
            try:
                x, y = float(row["epoch"]), float(row[key]) * scale
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(x) and math.isfinite(y):
                xs.append(x)
                ys.append(y)
        curves[key] = (xs, ys)
    return curves


def _swatch(colour: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(colour))
    return QIcon(pixmap)


# -- the widget ---------------------------------------------------------------------------------------
class CompareView(QWidget):
    """The plots and the table for the runs passed to :meth:`show_runs` (one run, or up to eight)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareView")
        self.setAccessibleName("Curves and settings of the selected runs")
        pg.setConfigOptions(antialias=True)
        self.plots: dict[str, pg.PlotWidget] = {}
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        for index, (key, name, accessible, title, y_label, _scale) in enumerate(METRIC_PLOTS):
            plot = make_plot(name, accessible, title, y_label)
            plot.setMinimumHeight(100)
            self.plots[key] = plot
            grid.addWidget(plot, index // 2, index % 2)
        # One legend for the four plots, above them: inside a plot it would hide some curve.
        self.legend = QLabel()
        self.legend.setObjectName("compareLegend")
        self.legend.setAccessibleName("Legend: the colour of each run")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        plots = QWidget()
        plots_layout = QVBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        plots_layout.addWidget(self.legend)
        plots_layout.addLayout(grid, 1)

        self.heading = QLabel()
        self.heading.setObjectName("compareHeading")
        self.heading.setAccessibleName("What the curves show")
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("compareTable")
        self.table.setAccessibleName("Settings that differ and the best results of the selected runs")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.heading)
        side_layout.addWidget(self.table, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("compareSplitter")
        splitter.addWidget(plots)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([900, 400])
        splitter.setChildrenCollapsible(False)
        side.setMinimumWidth(260)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.runs: list[RunSummary] = []
        self.labels: list[str] = []
        self.show_runs([])

    @property
    def compare_plot(self) -> pg.PlotWidget:
        return self.plots["val_acc"]

    def show_runs(self, runs: Sequence[RunSummary], selected: int | None = None) -> None:
        """Draw ``runs`` (the first :data:`MAX_COMPARED`); ``selected`` is how many the user selected."""
        selected = len(runs) if selected is None else selected
        self.runs = list(runs[:MAX_COMPARED])
        self.labels = legend_labels(self.runs)
        for plot in self.plots.values():
            plot.getPlotItem().clear()
        for index, (run, label) in enumerate(zip(self.runs, self.labels)):
            colour = RUN_COLOURS[index % len(RUN_COLOURS)]
            curves = read_curves(run.path)
            for key, plot in self.plots.items():
                xs, ys = curves[key]
                plot.plot(
                    xs, ys, name=label, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                    symbolBrush=colour, symbolPen=None,
                )  # fmt: skip
        longest = max((run.epochs_done for run in self.runs), default=0)
        for plot in self.plots.values():
            plot.getPlotItem().enableAutoRange()
            # Whole epochs on the x axis for short runs (pyqtgraph would label 1.0, 1.2, ...).
            spacing = (1, 1) if 0 < longest <= MAX_EPOCH_TICKS else (None, None)
            plot.getAxis("bottom").setTickSpacing(*spacing)
        self.legend.setText(
            "&nbsp;&nbsp;&nbsp;".join(
                f"<span style='color:{RUN_COLOURS[i % len(RUN_COLOURS)]}'>&#9632;&#9632;</span>&nbsp;"
                f"{html.escape(label)}"
                for i, label in enumerate(self.labels)
            )
        )
        self.legend.setVisible(bool(self.labels))
        self._fill_table()
        self._set_heading(selected)

    def _set_heading(self, selected: int) -> None:
        if not self.runs:
            text = (
                "Select a run to see its curves and settings; select several (Ctrl+click or "
                "Shift+click) to compare them."
            )
        elif len(self.runs) == 1:
            run = self.runs[0]
            text = f"<b>{html.escape(run.name)}</b> · {html.escape(run.model)} · {html.escape(run.strategy)}"
            if run.note:
                text += f"<br><i>{html.escape(run.note)}</i>"
            if run.message:
                text += f"<br>Failed: {html.escape(run.message)}"
        else:
            keys = differing_keys(self.runs)
            what = ", ".join(key_title(k) for k in keys) if keys else "nothing: the settings are the same"
            text = f"<b>Comparing {len(self.runs)} runs</b> · they differ in {what}"
        if selected > len(self.runs):
            text += f"<br><b>Showing the first {len(self.runs)} of {selected} selected runs.</b>"
        self.heading.setText(text)

    def _fill_table(self) -> None:
        runs = self.runs
        keys = compared_keys(runs) if len(runs) == 1 else differing_keys(runs)
        rows = [key_title(k) for k in keys] + [
            "best val accuracy",
            "best epoch",
            "epochs done",
            "duration",
        ]
        self.table.clear()
        self.table.setRowCount(len(rows) if runs else 0)
        self.table.setColumnCount(len(runs))
        self.table.setVerticalHeaderLabels(rows)
        best_acc = max((r.best_val_acc for r in runs if r.best_val_acc is not None), default=None)
        for column, (run, label) in enumerate(zip(runs, self.labels)):
            header = QTableWidgetItem(_swatch(RUN_COLOURS[column % len(RUN_COLOURS)]), label)
            header.setToolTip(f"{run.name}\n{run.path}")
            self.table.setHorizontalHeaderItem(column, header)
            values = [run_setting_text(run, k) for k in keys] + [
                "–" if run.best_val_acc is None else f"{run.best_val_acc:.1%}",
                str(run.best_epoch) if run.best_epoch else "–",
                f"{run.epochs_done}/{run.epochs_planned}",
                format_duration(run.seconds),
            ]
            for row, value in enumerate(values):
                item = QTableWidgetItem(value)
                if row < len(keys) and keys[row] == "dataset":
                    item.setToolTip(str(run.dataset))
                is_best = best_acc is not None and run.best_val_acc == best_acc
                if row == len(keys) and len(runs) > 1 and is_best:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)
