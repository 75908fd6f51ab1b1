"""Training configuration: one frozen dataclass, with defaults that suit each strategy on small datasets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.core.errors import TransferStudioError

STRATEGIES: dict[str, str] = {
    "feature-extract": "Freeze the pretrained backbone and train only a new head: fastest, best for small datasets.",
    "fine-tune": "Fit a new head on the frozen pretrained backbone, then train every layer "
    "(at learning rates that shrink toward the input).",
    "scratch": "Random initial weights, every layer trained: needs much more data and many more epochs.",
}
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps", "xpu")
#: What becomes of the pretrained 1000-way classifier (engine.models.heads): ``replace`` it by a new
#: ``num_classes``-way layer; ``append`` a new ``1000 -> num_classes`` layer after it (kept, and frozen
#: with the backbone); or replace it by an ``mlp`` (``head_hidden`` units, ReLU, ``head_dropout``).
HEADS = ("replace", "append", "mlp")
#: What early stopping watches on the validation split: its mean ``loss`` (lower is better) or its
#: ``accuracy`` (higher is better).
EARLY_STOPPING_METRICS = ("loss", "accuracy")
#: Test-time augmentation: the views of a photo whose logits are averaged when it is validated,
#: evaluated or predicted (engine.models.tta): the photo alone (``none``), or also its mirror image
#: (``flip``). A bundle records it with its preprocessing.
TTA_MODES = ("none", "flip")
#: The smallest and largest ``input_size`` a run may ask for (0: the model's own).
INPUT_SIZE_RANGE = (32, 1024)
#: ``input_size`` chosen from the training photos (engine.training.data_path.auto_input_size): the
#: model's own, or larger when the photos have the pixels for it.
INPUT_SIZE_AUTO = -1
#: Class-imbalance handling: ``auto`` uses class weights when the largest training class has more than
#: :data:`BALANCE_AUTO_RATIO` times the images of the smallest, and nothing otherwise.
BALANCE: dict[str, str] = {
    "auto": "Class-weighted loss when the classes are imbalanced (largest/smallest over 3), else none.",
    "none": "Every photo counts the same: large classes dominate.",
    "weights": "Class-weighted loss: each class counts as much as any other, whatever its size.",
    "sampler": "Each epoch draws photos (with replacement) so that every class is seen equally often.",
}
BALANCE_AUTO_RATIO = 3.0

# Per-strategy defaults for the hyper-parameters a user is most likely to leave alone. The dataclass's
# own defaults are the settings runs had before a field existed (so an old run's config.json reads
# back as the run it was, and resumes exactly); the better recipes live here, measured on
# hymenoptera and a harder copy of it (BENCHMARKS.md, "Issue 15: recipes").
_STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "feature-extract": {
        "epochs": 10,
        "lr": 1e-3,
        "optimizer": "adamw",
        "weight_decay": 1e-4,
        "input_size": INPUT_SIZE_AUTO,
        "tta": "flip",
    },
    "fine-tune": {
        "epochs": 5,
        "lr": 1e-3,
        "optimizer": "adamw",
        "weight_decay": 1e-4,
        "head_first": True,
        "freeze_bn": True,
        "lr_decay_per_stage": 0.7,
        "warmup_epochs": 1,
    },
    "scratch": {"epochs": 30, "lr": 1e-3, "optimizer": "adamw", "weight_decay": 5e-4},
}


class ConfigError(TransferStudioError):
    """A configuration value is out of range or unknown."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (and nothing about where its output goes)."""

    model: str = "efficientnet_lite0"
    strategy: str = "feature-extract"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # image-decoding threads; 0 picks a number from the CPU count
    val_fraction: float = 0.2
    backbone_lr_scale: float = 0.1
    label_smoothing: float = 0.0
    # 0: off; N: stop after N epochs in a row without a better validation `early_stopping_metric`.
    early_stopping_patience: int = 0
    early_stopping_metric: str = "loss"
    head: str = "replace"  # one of HEADS
    head_hidden: int = 256  # the mlp head's hidden units
    head_dropout: float = 0.2  # the mlp head's dropout, before its last layer
    # Fine-tuning only: first fit the new head on the frozen backbone's features (an L-BFGS logistic
    # regression; a few head-only epochs for an MLP head), then train every layer ("linear probing
    # then fine-tuning").
    head_first: bool = False
    # Fine-tuning only: the backbone is cut into stages (engine.training.strategies.BACKBONE_STAGES);
    # the stage next to the head learns at lr * backbone_lr_scale and each stage nearer the input at
    # this factor of the next. 1.0: the whole backbone at one rate.
    lr_decay_per_stage: float = 1.0
    # Fine-tuning only: batch-norm layers keep their pretrained running statistics (eval mode) while
    # every weight, theirs included, trains.
    freeze_bn: bool = False
    # Epochs of linear learning-rate warm-up before the schedule (at most epochs - 1 are used).
    warmup_epochs: int = 0
    # The square crop the model sees (resize = size / 0.875); 0: the model's own; INPUT_SIZE_AUTO (-1):
    # chosen from the training photos.
    input_size: int = 0
    tta: str = "none"  # one of TTA_MODES, for validation, and recorded in the bundle for predict/evaluate
    image_cache_mb: int = 2048
    feature_views: int = 0
    cache_features: bool = True
    balance: str = "auto"
    # Several processes (torchrun): convert BatchNorm layers to SyncBatchNorm, for small per-GPU batches.
    sync_batchnorm: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def for_strategy(cls, strategy: str = "feature-extract", **overrides: Any) -> TrainConfig:
        """A config with the defaults of ``strategy``; ``overrides`` that are None are ignored."""
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        values = {**_STRATEGY_DEFAULTS[strategy], "strategy": strategy}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def pretrained(self) -> bool:
        """Whether the run starts from pretrained weights."""
        return self.strategy != "scratch"

    def validate(self) -> None:
        """Raise ConfigError for any value a run cannot use."""
        checks = [
            (
                self.strategy in STRATEGIES,
                f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}",
            ),
            (
                self.optimizer in OPTIMIZERS,
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}",
            ),
            (
                self.schedule in SCHEDULES,
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}",
            ),
            (self.device in DEVICES, f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}"),
            (
                self.balance in BALANCE,
                f"unknown balance {self.balance!r}; choose one of {', '.join(BALANCE)}",
            ),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (self.lr > 0, "learning rate must be positive"),
            (self.weight_decay >= 0, "weight decay cannot be negative"),
            (0 < self.val_fraction < 1, "validation fraction must be between 0 and 1"),
            (self.workers >= 0, "workers cannot be negative"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (self.head in HEADS, f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}"),
            (self.head_hidden >= 1, "the MLP head needs at least one hidden unit"),
            (0 <= self.head_dropout < 1, "head dropout must be in [0, 1)"),
            (self.early_stopping_patience >= 0, "early stopping patience cannot be negative"),
            (
                self.early_stopping_metric in EARLY_STOPPING_METRICS,
                f"unknown early stopping metric {self.early_stopping_metric!r}; "
                f"choose one of {', '.join(EARLY_STOPPING_METRICS)}",
            ),
            (self.image_cache_mb >= 0, "image cache size cannot be negative"),
            (self.feature_views >= 0, "feature views cannot be negative"),
            (0 < self.lr_decay_per_stage <= 1, "learning-rate decay per stage must be in (0, 1]"),
            (self.warmup_epochs >= 0, "warm-up epochs cannot be negative"),
            (
                self.input_size in (0, INPUT_SIZE_AUTO)
                or INPUT_SIZE_RANGE[0] <= self.input_size <= INPUT_SIZE_RANGE[1],
                f"input size must be 0 (the model's own), {INPUT_SIZE_AUTO} (automatic) or from "
                f"{INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]} pixels",
            ),
            (
                self.tta in TTA_MODES,
                f"unknown test-time augmentation {self.tta!r}; choose one of {', '.join(TTA_MODES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def resolved_balance(self, imbalance: float) -> str:
        """``none``, ``weights`` or ``sampler``: what ``balance`` means for a dataset whose largest
        training class has ``imbalance`` times the images of its smallest."""
        if self.balance != "auto":
            return self.balance
        return "weights" if imbalance > BALANCE_AUTO_RATIO else "none"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from ``to_dict()`` output, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)
