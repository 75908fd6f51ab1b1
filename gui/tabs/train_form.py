"""The Train tab's settings panel, generated from the declaration of every TrainConfig field.

One control per field (:mod:`gui.views.setting_controls`): the model picker and the strategy with its
explanation first, the training settings in view, the advanced ones in a collapsible group. Choosing a
strategy gives every setting that strategy's default unless the user changed it.
:meth:`TrainForm.config` builds the ``TrainConfig`` a run uses; :meth:`TrainForm.save` and the restore at
start-up keep every field under ``train/<name>``. ``engine.core.config`` imports no torch, so this panel
is complete as soon as the window opens; the model catalog arrives later.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from engine.core.config import BALANCE, STRATEGIES, TrainConfig, resolve_balance
from engine.core.setting import Declared, check_value
from gui.core.settings import Settings
from gui.views.model_picker import DEFAULT_MODEL, ModelPicker, RecommendedModels
from gui.views.setting_controls import ChoiceControl, SettingControl, control_for
from gui.views.widgets import hint_label

if TYPE_CHECKING:
    from engine.models.registry import ModelInfo

logger = logging.getLogger(__name__)

#: What the balance hint calls each resolved balance.
BALANCE_EFFECT = {"none": "no balancing", "weights": "a class-weighted loss", "sampler": "a balanced sampler"}


#: The narrowest a field of the Training group gets (two columns of them share the panel's width).
FIELD_MIN_WIDTH = 110
#: A choice whose text is wider than this (pixels) gets a row of its own.
HALF_FIELD_WIDTH = 120


def _longest_choice(widget: QWidget) -> int:
    """The pixel width of a combo box's longest choice (0 for other fields)."""
    if not isinstance(widget, QComboBox):
        return 0
    metrics = widget.fontMetrics()
    return max((metrics.horizontalAdvance(widget.itemText(i)) for i in range(widget.count())), default=0)


def saved_key(item: Declared) -> str:
    """Where the form keeps a setting in the settings file."""
    return item.setting.saved_key or f"train/{item.name}"


class TrainForm(QWidget):
    """Every choice a run needs; ``changed`` whenever one of them changes."""

    changed = Signal()

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.items = {item.name: item for item in TrainConfig.settings()}
        self.model_picker = ModelPicker()
        self.model_picker.setToolTip(self.items["model"].setting.help)
        self.model_details = hint_label("Loading the model catalog…")
        self.model_details.setObjectName("modelDetails")
        self.recommended = RecommendedModels()
        self.recommended.chosen.connect(self.model_picker.select_model)
        strategy = ChoiceControl(self.items["strategy"])
        self.strategy_picker: QComboBox = strategy.box
        self.strategy_help = hint_label("")
        self.strategy_help.setObjectName("strategyHelp")
        #: Every field's control but the model's (the model picker) and the strategy's (above).
        self.controls: dict[str, SettingControl] = {
            name: control_for(item)
            for name, item in self.items.items()
            if item.setting.group not in ("model", "strategy")
        }
        self.processes = QComboBox()
        self.processes.setObjectName("processesPicker")
        self.processes.setAccessibleName("GPUs to train on")
        self.processes.setToolTip(
            "Several GPUs train one model together (PyTorch DistributedDataParallel, one process per GPU)."
        )
        self.processes.addItem("1 GPU", 1)
        self.balance_help = hint_label("")
        self.balance_help.setObjectName("balanceHelp")
        self._imbalance: float | None = None
        self._strategy = "feature-extract"

        self.runs_label = QLabel()
        self.runs_label.setObjectName("runsFolder")
        self.runs_label.setWordWrap(True)
        self.runs_button = QPushButton("Change…")
        self.runs_button.setObjectName("runsFolderButton")
        self.runs_button.setAccessibleName("Change runs folder")
        self.runs_button.clicked.connect(self.choose_runs_folder)
        self._build()

        self._restore()
        self.strategy_picker.currentIndexChanged.connect(self._on_strategy_changed)
        self.model_picker.modelChanged.connect(self._on_model_changed)
        for control in self.controls.values():
            control.changed.connect(self._emit_changed)
        self.controls["balance"].changed.connect(self._show_balance)

    def _build(self) -> None:
        model_box = QGroupBox("Model and strategy")
        model_layout = QVBoxLayout(model_box)
        pickers = QHBoxLayout()  # one row for both, so the form still fits a 1280x800 screen
        pickers.addWidget(self.model_picker, 2)
        pickers.addWidget(self.strategy_picker, 1)
        model_layout.addLayout(pickers)
        model_layout.addWidget(self.model_details)
        model_layout.addWidget(self.recommended)
        model_layout.addWidget(self.strategy_help)
        params_box = QGroupBox("Training")
        # Two columns of label + field (the form fits a 1280x800 screen without scrolling); check
        # boxes, whose own text is their label, span the whole width below them.
        grid = QGridLayout(params_box)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        grid.setHorizontalSpacing(8)
        advanced_widget = QWidget()
        advanced = QFormLayout(advanced_widget)
        advanced.setContentsMargins(0, 0, 0, 0)
        pairs: list[tuple[str, QWidget]] = []
        wide: list[QWidget] = []
        for name, control in self.controls.items():
            if self.items[name].setting.group == "advanced":
                advanced.addRow(control.label, control.widget)
                continue
            if control.label:
                pairs.append((control.label, control.widget))
            else:
                wide.append(control.widget)
        pairs.append(("GPUs", self.processes))  # last: a hidden pair leaves no hole
        self._processes_label = QLabel()
        # A choice too long for half the panel gets a row of its own (its text never cut).
        long_pairs = [(t, w) for t, w in pairs if _longest_choice(w) > HALF_FIELD_WIDTH]
        pairs = [p for p in pairs if p not in long_pairs]
        for index, (text, widget) in enumerate(pairs + long_pairs):
            label = QLabel(text)
            label.setBuddy(widget)
            widget.setMinimumWidth(FIELD_MIN_WIDTH)  # not the width of the longest choice or number
            if isinstance(widget, QComboBox):
                widget.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                widget.setMinimumContentsLength(8)
            if index < len(pairs):
                row, column = divmod(index, 2)
                grid.addWidget(label, row, 2 * column)
                grid.addWidget(widget, row, 2 * column + 1)
            else:
                row = (len(pairs) + 1) // 2 + index - len(pairs)
                grid.addWidget(label, row, 0)
                grid.addWidget(widget, row, 1, 1, 3)
            if widget is self.processes:
                self._processes_label = label
        row = (len(pairs) + 1) // 2 + len(long_pairs)
        grid.addWidget(self.balance_help, row, 0, 1, 4)  # what automatic balance does for this dataset
        for offset, widget in enumerate(wide, start=row + 1):
            grid.addWidget(widget, offset, 0, 1, 4)
        in_view_order = [w for _t, w in pairs + long_pairs] + wide  # Tab moves as the eye reads
        for before, after in zip(in_view_order, in_view_order[1:]):
            QWidget.setTabOrder(before, after)
        self._show_processes(False)  # shown when the machine has more than one GPU
        self.advanced = QCollapsible("Advanced", collapsedIcon="▸", expandedIcon="▾")
        self.advanced.setObjectName("advancedSettings")
        self.advanced.setDuration(120)
        self.advanced.addWidget(advanced_widget)
        output_row = QHBoxLayout()  # where runs are saved: one line, no group of its own
        output_row.setContentsMargins(4, 0, 0, 0)
        saved_in = QLabel("Runs saved in")
        saved_in.setBuddy(self.runs_button)
        output_row.addWidget(saved_in)
        output_row.addWidget(self.runs_label, 1)
        output_row.addWidget(self.runs_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box in (model_box, params_box, self.advanced):
            layout.addWidget(box)
        layout.addLayout(output_row)
        layout.addStretch(1)

    # -- values ----------------------------------------------------------------------------------
    def strategy(self) -> str:
        return str(self.strategy_picker.currentData())

    def control(self, name: str) -> SettingControl:
        """The control of the TrainConfig field ``name``."""
        return self.controls[name]

    def values(self) -> dict[str, Any]:
        """Every field's value as shown (ValueError from a control that holds no number)."""
        values = {name: control.value() for name, control in self.controls.items()}
        return values | {"model": self.model_picker.current_model(), "strategy": self.strategy()}

    def config(self) -> TrainConfig:
        """The TrainConfig for the current choices (ConfigError if a value is unusable)."""
        from engine.core.config import ConfigError

        try:
            values = self.values()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return TrainConfig(**values)

    def apply_config(self, config: TrainConfig) -> None:
        """Show the values of ``config`` (strategy included) without applying strategy defaults."""
        self.strategy_picker.blockSignals(True)
        self.strategy_picker.setCurrentIndex(max(0, self.strategy_picker.findData(config.strategy)))
        self.strategy_picker.blockSignals(False)
        self._strategy = config.strategy
        self.strategy_help.setText(STRATEGIES.get(config.strategy, ""))
        for name, control in self.controls.items():
            control.set_value(getattr(config, name))
            control.set_applicable(config.strategy)
        self._show_balance()

    @Slot(int)
    def _on_strategy_changed(self, _index: int) -> None:
        """The new strategy's default for every setting still at the old strategy's default."""
        old, new = self._strategy, self.strategy()
        try:
            values = self.values()
        except ValueError:
            values = {}
        for name, item in self.items.items():
            if name in values and values[name] == item.default_for(old):
                values[name] = item.default_for(new)
        values["strategy"] = new
        try:
            config = TrainConfig(**values)
        except Exception:  # noqa: BLE001 - a value the user has not finished typing: the defaults
            config = TrainConfig.for_strategy(new, model=self.model_picker.current_model())
        self.apply_config(config)
        self._emit_changed()

    @Slot(str)
    def _on_model_changed(self, name: str) -> None:
        self.model_details.setText(self.model_picker.details(name) or name)
        self._emit_changed()

    @Slot()
    def _emit_changed(self) -> None:
        self.changed.emit()

    def set_catalog(self, entries: list[tuple[ModelInfo, str]]) -> None:
        """Fill the model picker, then re-select the model chosen last time if it exists."""
        self.model_picker.set_catalog(entries)
        self.model_picker.select_model(self.saved_model())
        name = self.model_picker.current_model()
        self.model_details.setText(self.model_picker.details(name) or name)

    # -- several GPUs ----------------------------------------------------------------------------
    def set_gpus(self, count: int) -> None:
        """The machine's usable CUDA GPUs (from the start-up probe): two or more offer training on several."""
        self.processes.clear()
        for n in range(1, max(count, 1) + 1):
            self.processes.addItem("1 GPU" if n == 1 else f"{n} GPUs (one process each)", n)
        self.processes.setCurrentIndex(self.processes.count() - 1)  # all of them, by default
        self._show_processes(count > 1)

    def _show_processes(self, shown: bool) -> None:
        self.processes.setVisible(shown)
        self._processes_label.setVisible(shown)

    def process_count(self) -> int:
        """How many processes (GPUs) the next run uses."""
        return int(self.processes.currentData() or 1)

    # -- class balance ----------------------------------------------------------------------------
    def set_imbalance(self, ratio: float | None) -> None:
        """The open dataset's largest / smallest training class (None: no dataset), for the hint."""
        self._imbalance = ratio
        self._show_balance()

    @Slot()
    def _show_balance(self) -> None:
        choice = str(self.controls["balance"].value())
        ratio = self._imbalance
        if ratio is None:
            self.balance_help.setText(BALANCE.get(choice, ""))
            return
        shown = (
            "one class has no training photos"
            if ratio == float("inf")
            else f"largest/smallest class {ratio:.1f}"
        )
        used = resolve_balance(choice, ratio)
        self.balance_help.setText(f"This dataset: {shown} → {BALANCE_EFFECT[used]}.")

    # -- runs folder ----------------------------------------------------------------------------
    def runs_root(self) -> Path:
        return self.settings.runs_root()

    def _show_runs_root(self) -> None:
        root = self.runs_root()
        home = Path.home()
        shown = f"~/{root.relative_to(home)}" if root.is_relative_to(home) else str(root)
        self.runs_label.setText(shown)
        self.runs_label.setToolTip(str(root))

    @Slot()
    def choose_runs_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for training runs", str(self.runs_root()))
        if folder:
            self.settings.set("train/runs_root", folder)
            self._show_runs_root()

    # -- persistence ------------------------------------------------------------------------------
    def _saved_value(self, item: Declared, default: Any) -> Any:
        """A field's saved value, or ``default`` when it is missing, of the wrong type or out of range."""
        s, key = self.settings, saved_key(item)
        if item.kind is bool:
            value: Any = s.get_bool(key, default)
        elif item.kind is int:
            value = s.get_int(key, default)
        elif item.kind is float:
            value = s.get_float(key, default)
        else:
            value = s.get_str(key, default)
        return value if check_value(item, value) is None else default

    def _restore(self) -> None:
        strategy = self.settings.get_str("train/strategy", "feature-extract")
        if strategy not in STRATEGIES:
            strategy = "feature-extract"
        defaults = TrainConfig.for_strategy(strategy)
        values = {
            name: self._saved_value(self.items[name], getattr(defaults, name)) for name in self.controls
        }
        try:
            config = TrainConfig.for_strategy(strategy, **values)
        except Exception:  # noqa: BLE001 - saved values that do not fit together: the defaults
            logger.info("saved training settings were unusable; using defaults")
            config = defaults
        self.apply_config(config)
        self._show_runs_root()

    def saved_model(self) -> str:
        return self.settings.get_str("train/model", DEFAULT_MODEL)

    def save(self) -> None:
        try:
            config = self.config()
        except Exception:  # noqa: BLE001 - nothing valid to save
            return
        self.settings.set("train/model", config.model)
        self.settings.set("train/strategy", config.strategy)
        for name in self.controls:
            self.settings.set(saved_key(self.items[name]), getattr(config, name))
