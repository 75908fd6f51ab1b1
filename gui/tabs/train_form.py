"""The Train tab's settings panel: model, strategy with its explanation, and hyper-parameters.

Choosing a strategy applies that strategy's defaults (``engine.core.config.TrainConfig.for_strategy``);
:meth:`TrainForm.config` builds the ``TrainConfig`` a run uses. ``engine.core.config`` imports no torch, so
this panel is complete as soon as the window opens; the model catalog arrives later.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.core.config import (
    BALANCE,
    HEADS,
    INPUT_SIZE_AUTO,
    OPTIMIZERS,
    SCHEDULES,
    STRATEGIES,
    TrainConfig,
)
from gui.model_picker import DEFAULT_MODEL, ModelPicker
from gui.settings import Settings
from gui.widgets import hint_label

if TYPE_CHECKING:
    from engine.models.registry import ModelInfo

logger = logging.getLogger(__name__)

OPTIMIZER_TEXT = {"sgd": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"}
SCHEDULE_TEXT = {"none": "constant", "step": "step decay", "cosine": "cosine decay"}
HEAD_TEXT = {
    "replace": ("new layer (replace)", "Replace the pretrained classifier by a new layer for your classes."),
    "append": (
        "layer after the 1000 classes (append)",
        "Keep the pretrained 1000-way output and add a new layer after it (the AlexNet tutorial's variant).",
    ),
    "mlp": ("small network (MLP)", "Replace the classifier by two layers with dropout: 256 hidden units."),
}
#: The input sizes offered besides "automatic" and "the model's own" (engine.core.config.INPUT_SIZE_RANGE).
INPUT_SIZES = (160, 192, 224, 256, 288, 320, 384, 448)
BALANCE_TEXT = {
    "auto": "automatic",
    "none": "none",
    "weights": "class-weighted loss",
    "sampler": "balanced sampler",
}


W = TypeVar("W", bound=QWidget)


def _named(widget: W, name: str, accessible: str) -> W:
    widget.setObjectName(name)
    widget.setAccessibleName(accessible)
    return widget


class TrainForm(QWidget):
    """Every choice a run needs; ``changed`` whenever one of them changes."""

    changed = Signal()

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._weight_decay = TrainConfig.for_strategy("feature-extract").weight_decay

        self.model_picker = ModelPicker()
        self.model_details = hint_label("Loading the model catalog…")
        self.model_details.setObjectName("modelDetails")
        self.strategy_picker = _named(QComboBox(), "strategyPicker", "Training strategy")
        for name, explanation in STRATEGIES.items():
            self.strategy_picker.addItem(name, name)
            self.strategy_picker.setItemData(
                self.strategy_picker.count() - 1, explanation, Qt.ItemDataRole.ToolTipRole
            )
        self.strategy_help = hint_label("")
        self.strategy_help.setObjectName("strategyHelp")

        self.epochs = _named(QSpinBox(), "epochsSpin", "Epochs")
        self.epochs.setRange(1, 1000)
        self.batch_size = _named(QSpinBox(), "batchSizeSpin", "Batch size")
        self.batch_size.setRange(1, 1024)
        self.learning_rate = _named(QDoubleSpinBox(), "learningRateSpin", "Learning rate")
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(0.000001, 1.0)
        self.learning_rate.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.optimizer = _named(QComboBox(), "optimizerPicker", "Optimizer")
        for name in OPTIMIZERS:
            self.optimizer.addItem(f"{OPTIMIZER_TEXT.get(name, name)}", name)
        self.schedule = _named(QComboBox(), "schedulePicker", "Learning-rate schedule")
        for name in SCHEDULES:
            self.schedule.addItem(SCHEDULE_TEXT.get(name, name), name)
        self.head = _named(QComboBox(), "headPicker", "Classifier head")
        for name in HEADS:
            self.head.addItem(HEAD_TEXT[name][0], name)
            self.head.setItemData(self.head.count() - 1, HEAD_TEXT[name][1], Qt.ItemDataRole.ToolTipRole)
        self.early_stopping = _named(QSpinBox(), "earlyStoppingSpin", "Early stopping patience")
        self.early_stopping.setRange(0, 100)
        self.early_stopping.setSpecialValueText("off")
        self.early_stopping.setSuffix(" epochs without progress")
        self.early_stopping.setToolTip(
            "Stop when the validation loss has not improved for this many epochs; the best epoch is kept."
        )
        self.processes = _named(QComboBox(), "processesPicker", "GPUs to train on")
        self.processes.setToolTip(
            "Several GPUs train one model together (PyTorch DistributedDataParallel, one process per GPU)."
        )
        self.processes.addItem("1 GPU", 1)
        self.balance = _named(QComboBox(), "balancePicker", "Class balance")
        for name, explanation in BALANCE.items():
            self.balance.addItem(BALANCE_TEXT.get(name, name), name)
            self.balance.setItemData(self.balance.count() - 1, explanation, Qt.ItemDataRole.ToolTipRole)
        self.balance_help = hint_label("")
        self.balance_help.setObjectName("balanceHelp")
        self._imbalance: float | None = None
        self.input_size = _named(QComboBox(), "inputSizePicker", "Input size")
        self.input_size.addItem("automatic", INPUT_SIZE_AUTO)
        self.input_size.addItem("the model's own", 0)
        for size in INPUT_SIZES:
            self.input_size.addItem(f"{size} px", size)
        self.input_size.setToolTip(
            "Automatic: larger than the model's own when the photos have the pixels for it "
            "(feature extraction's default); larger inputs cost more time."
        )
        self.tta = _named(
            QCheckBox("Average each photo with its mirror image"), "ttaCheck", "Test-time flip averaging"
        )
        self.tta.setToolTip(
            "Validation, evaluation and prediction average each photo's prediction with its mirror "
            "image's (test-time augmentation): often a point more accurate, twice the time."
        )
        self.head_first = _named(
            QCheckBox("Fit the new head first, then every layer"), "headFirstCheck", "Head first"
        )
        self.head_first.setToolTip(
            "Fine-tuning: the new head is fitted on the frozen backbone's features (seconds), then every "
            "layer trains with smaller learning rates for earlier layers."
        )
        self.augment = _named(QCheckBox("Augment training images"), "augmentCheck", "Augmentation")
        self.augment.setToolTip("Random crops and horizontal flips: helps small datasets generalise.")

        self.runs_label = QLabel()
        self.runs_label.setObjectName("runsFolder")
        self.runs_label.setWordWrap(True)
        self.runs_button = _named(QPushButton("Change…"), "runsFolderButton", "Change runs folder")
        self.runs_button.clicked.connect(self.choose_runs_folder)

        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        model_layout.addWidget(self.model_picker)
        model_layout.addWidget(self.model_details)
        strategy_box = QGroupBox("Strategy")
        strategy_layout = QVBoxLayout(strategy_box)
        strategy_layout.addWidget(self.strategy_picker)
        strategy_layout.addWidget(self.strategy_help)
        params_box = QGroupBox("Hyper-parameters")
        form = QFormLayout(params_box)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Schedule", self.schedule)
        form.addRow("GPUs", self.processes)
        self._form = form
        form.setRowVisible(self.processes, False)  # shown when the machine has more than one GPU
        form.addRow("Head", self.head)
        form.addRow("Early stopping", self.early_stopping)
        form.addRow("Class balance", self.balance)
        form.addRow("", self.balance_help)
        form.addRow("Input size", self.input_size)
        form.addRow("", self.tta)
        form.addRow("", self.head_first)
        form.addRow("", self.augment)
        output_box = QGroupBox("Saved runs")
        output_layout = QHBoxLayout(output_box)
        output_layout.addWidget(self.runs_label, 1)
        output_layout.addWidget(self.runs_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box in (model_box, strategy_box, params_box, output_box):
            layout.addWidget(box)
        layout.addStretch(1)

        self._restore()
        self.strategy_picker.currentIndexChanged.connect(self._on_strategy_changed)
        self.model_picker.modelChanged.connect(self._on_model_changed)
        for signal in (self.epochs.valueChanged, self.batch_size.valueChanged,
                       self.learning_rate.valueChanged, self.optimizer.currentIndexChanged,
                       self.schedule.currentIndexChanged, self.augment.toggled,
                       self.balance.currentIndexChanged, self.head.currentIndexChanged,
                       self.early_stopping.valueChanged, self.input_size.currentIndexChanged,
                       self.tta.toggled, self.head_first.toggled):  # fmt: skip
            signal.connect(self._emit_changed)
        self.balance.currentIndexChanged.connect(self._show_balance)

    # -- values ----------------------------------------------------------------------------------
    def strategy(self) -> str:
        return str(self.strategy_picker.currentData())

    def config(self) -> TrainConfig:
        """The TrainConfig for the current choices (ConfigError if a value is unusable)."""
        return TrainConfig.for_strategy(
            self.strategy(),
            model=self.model_picker.current_model(),
            epochs=self.epochs.value(),
            batch_size=self.batch_size.value(),
            lr=self.learning_rate.value(),
            optimizer=self.optimizer.currentData(),
            schedule=self.schedule.currentData(),
            augment=self.augment.isChecked(),
            weight_decay=self._weight_decay,
            balance=self.balance.currentData(),
            head=self.head.currentData(),
            early_stopping_patience=self.early_stopping.value(),
            input_size=self.input_size.currentData(),
            tta="flip" if self.tta.isChecked() else "none",
            head_first=self.head_first.isChecked(),
        )

    def apply_config(self, config: TrainConfig) -> None:
        """Show the values of ``config`` (strategy included) without applying strategy defaults."""
        self.strategy_picker.blockSignals(True)
        self.strategy_picker.setCurrentIndex(max(0, self.strategy_picker.findData(config.strategy)))
        self.strategy_picker.blockSignals(False)
        self.strategy_help.setText(STRATEGIES.get(config.strategy, ""))
        self.epochs.setValue(config.epochs)
        self.batch_size.setValue(config.batch_size)
        self.learning_rate.setValue(config.lr)
        self.optimizer.setCurrentIndex(max(0, self.optimizer.findData(config.optimizer)))
        self.schedule.setCurrentIndex(max(0, self.schedule.findData(config.schedule)))
        self.augment.setChecked(config.augment)
        self.balance.setCurrentIndex(max(0, self.balance.findData(config.balance)))
        self.head.setCurrentIndex(max(0, self.head.findData(config.head)))
        self.early_stopping.setValue(config.early_stopping_patience)
        index = self.input_size.findData(config.input_size)
        if index < 0:  # a size from the CLI or an older run: offered as it is
            self.input_size.addItem(f"{config.input_size} px", config.input_size)
            index = self.input_size.count() - 1
        self.input_size.setCurrentIndex(index)
        self.tta.setChecked(config.tta == "flip")
        self.head_first.setChecked(config.head_first)
        self.head_first.setEnabled(config.strategy == "fine-tune")
        self._weight_decay = config.weight_decay
        self._show_balance()

    @Slot(int)
    def _on_strategy_changed(self, _index: int) -> None:
        defaults = TrainConfig.for_strategy(
            self.strategy(),
            batch_size=self.batch_size.value(),
            balance=self.balance.currentData(),
            head=self.head.currentData(),
            early_stopping_patience=self.early_stopping.value(),
        )
        self.apply_config(defaults)
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
        self._form.setRowVisible(self.processes, count > 1)

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
        choice = str(self.balance.currentData())
        ratio = self._imbalance
        if ratio is None:
            self.balance_help.setText(BALANCE.get(choice, ""))
            return
        shown = (
            "one class has no training photos"
            if ratio == float("inf")
            else f"largest/smallest class {ratio:.1f}"
        )
        used = TrainConfig(balance=choice).resolved_balance(ratio)
        effect = {
            "none": "no balancing",
            "weights": "a class-weighted loss",
            "sampler": "a balanced sampler",
        }[used]
        self.balance_help.setText(f"This dataset: {shown} → {effect}.")

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
    def _restore(self) -> None:
        s = self.settings
        strategy = s.get_str("train/strategy", "feature-extract")
        if strategy not in STRATEGIES:
            strategy = "feature-extract"
        defaults = TrainConfig.for_strategy(strategy)
        try:
            config = TrainConfig.for_strategy(
                strategy,
                epochs=s.get_int("train/epochs", defaults.epochs, 1, 1000),
                batch_size=s.get_int("train/batch_size", defaults.batch_size, 1, 1024),
                lr=s.get_float("train/lr", defaults.lr),
                optimizer=s.get_str("train/optimizer", defaults.optimizer),
                schedule=s.get_str("train/schedule", defaults.schedule),
                augment=s.get_bool("train/augment", defaults.augment),
                balance=s.get_str("train/balance", defaults.balance),
                head=s.get_str("train/head", defaults.head),
                early_stopping_patience=s.get_int(
                    "train/early_stopping", defaults.early_stopping_patience, 0, 100
                ),
                input_size=s.get_int("train/input_size", defaults.input_size, INPUT_SIZE_AUTO, 1024),
                tta=s.get_str("train/tta", defaults.tta),
                head_first=s.get_bool("train/head_first", defaults.head_first),
            )
            config.validate()
        except Exception:  # noqa: BLE001 - bad saved values fall back to the defaults
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
        for key, value in (("model", config.model), ("strategy", config.strategy),
                           ("epochs", config.epochs), ("batch_size", config.batch_size),
                           ("lr", config.lr), ("optimizer", config.optimizer),
                           ("schedule", config.schedule), ("augment", config.augment),
                           ("balance", config.balance), ("head", config.head),
                           ("early_stopping", config.early_stopping_patience),
                           ("input_size", config.input_size), ("tta", config.tta),
                           ("head_first", config.head_first)):  # fmt: skip
            self.settings.set(f"train/{key}", value)
