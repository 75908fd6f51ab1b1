"""Training configuration: one frozen dataclass whose fields declare themselves once.

Each field of :class:`TrainConfig` is declared with :func:`engine.core.setting.setting`: its label, help,
range, choices, the strategies it applies to and each strategy's default. The command line, the Train
form, its saved state, the checks of :meth:`TrainConfig.validate` and the words tables use are all
generated from those declarations (:func:`engine.core.setting.declared`).

The dataclass's own defaults are the settings runs had before a field existed, so an old run's
``config.json`` reads back as the run it was and resumes exactly; the better recipes are each strategy's
defaults (``defaults=``), measured on hymenoptera and a harder copy of it (BENCHMARKS.md, "Issue 15:
recipes").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from engine.core.errors import TransferStudioError
from engine.core.setting import Declared, check_value, declared, setting

Strategy = Literal["feature-extract", "fine-tune", "scratch"]
Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["none", "step", "cosine"]
Device = Literal["auto", "cpu", "cuda", "mps", "xpu"]
#: What becomes of the pretrained 1000-way classifier (engine.models.heads): ``replace`` it by a new
#: ``num_classes``-way layer; ``append`` a new ``1000 -> num_classes`` layer after it (kept, and frozen
#: with the backbone); or replace it by an ``mlp`` (``head_hidden`` units, ReLU, ``head_dropout``).
Head = Literal["replace", "append", "mlp"]
#: What early stopping watches on the validation split: its mean ``loss`` (lower is better) or its
#: ``accuracy`` (higher is better).
EarlyStoppingMetric = Literal["loss", "accuracy"]
#: Test-time augmentation: the views of a photo whose logits are averaged when it is validated,
#: evaluated or predicted (engine.models.tta): the photo alone (``none``), or also its mirror image
#: (``flip``). A bundle records it with its preprocessing.
TtaMode = Literal["none", "flip"]
#: What the network computes in (engine.core.precision): ``auto`` (bfloat16 where the device does it
#: natively and faster), ``fp32`` or ``bf16``.
PrecisionSetting = Literal["auto", "fp32", "bf16"]
#: Class-imbalance handling (:meth:`TrainConfig.resolved_balance`).
Balance = Literal["auto", "none", "weights", "sampler"]

STRATEGIES: dict[str, str] = {
    "feature-extract": "Freeze the pretrained backbone and train only a new head: fastest, best for small datasets.",
    "fine-tune": "Fit a new head on the frozen pretrained backbone, then train every layer "
    "(at learning rates that shrink toward the input).",
    "scratch": "Random initial weights, every layer trained: needs much more data and many more epochs.",
}
STRATEGY_NAMES: tuple[str, ...] = get_args(Strategy)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
DEVICES: tuple[str, ...] = get_args(Device)
HEADS: tuple[str, ...] = get_args(Head)
EARLY_STOPPING_METRICS: tuple[str, ...] = get_args(EarlyStoppingMetric)
TTA_MODES: tuple[str, ...] = get_args(TtaMode)
PRECISION_SETTINGS: tuple[str, ...] = get_args(PrecisionSetting)
#: The smallest and largest ``input_size`` a run may ask for (0: the model's own).
INPUT_SIZE_RANGE = (32, 1024)
#: ``image_cache_mb`` sized from the memory free when the run starts (engine.core.memory.image_cache_bytes).
IMAGE_CACHE_AUTO = -1
#: ``input_size`` chosen from the training photos (engine.training.data_path.auto_input_size): the
#: model's own, or larger when the photos have the pixels for it.
INPUT_SIZE_AUTO = -1
#: ``auto`` uses class weights when the largest training class has more than this many times the
#: images of the smallest, and nothing otherwise.
BALANCE_AUTO_RATIO = 3.0
BALANCE: dict[str, str] = {
    "auto": "Class-weighted loss when the classes are imbalanced (largest/smallest over 3), else none.",
    "none": "Every photo counts the same: large classes dominate.",
    "weights": "Class-weighted loss: each class counts as much as any other, whatever its size.",
    "sampler": "Each epoch draws photos (with replacement) so that every class is seen equally often.",
}
#: The largest seed: what a 64-bit signed integer holds.
MAX_SEED = 2**63 - 1
FINE_TUNE: tuple[str, ...] = ("fine-tune",)


def resolve_balance(balance: str, imbalance: float) -> str:
    """``none``, ``weights`` or ``sampler``: what the setting ``balance`` means for a dataset whose
    largest training class has ``imbalance`` times the images of its smallest."""
    if balance != "auto":
        return balance
    return "weights" if imbalance > BALANCE_AUTO_RATIO else "none"


class ConfigError(TransferStudioError):
    """A configuration value is out of range or unknown."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (and nothing about where its output goes)."""

    model: str = setting(
        "efficientnet_lite0",
        label="Model",
        help="The pretrained network to start from (`transfer-studio models` lists them).",
        group="model",
    )
    strategy: Strategy = setting(
        "feature-extract",
        label="Strategy",
        help="What trains: the new head alone on the frozen pretrained backbone (feature-extract), "
        "every layer after the head (fine-tune), or every layer from random weights (scratch).",
        group="strategy",
        choices={name: name for name in STRATEGIES},
        explanations=STRATEGIES,
    )
    epochs: int = setting(
        10,
        label="Epochs",
        help="Passes over the training photos.",
        minimum=1,
        maximum=10_000,
        defaults={"feature-extract": 10, "fine-tune": 5, "scratch": 30},
    )
    batch_size: int = setting(
        32, label="Batch size", help="Photos per training step.", minimum=1, maximum=4096
    )
    lr: float = setting(
        1e-3,
        label="Learning rate",
        help="How far each step moves the weights (fine-tuning: the new head's rate; earlier layers "
        "learn more slowly).",
        minimum=0.0,
        above_minimum=True,
        maximum=10.0,
        decimals=6,
        log_scale=True,
        object_name="learningRateSpin",
    )
    optimizer: Optimizer = setting(
        "adamw",
        label="Optimizer",
        help="How the gradients become steps.",
        choices={"sgd": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"},
    )
    schedule: Schedule = setting(
        "cosine",
        label="Schedule",
        help="How the learning rate changes over the epochs.",
        choices={"none": "constant", "step": "step decay", "cosine": "cosine decay"},
    )
    head: Head = setting(
        "replace",
        label="Head",
        help="The new classifier: a layer that replaces the pretrained one, a layer after the pretrained "
        "1000-way output, or a small network (MLP).",
        choices={
            "replace": "new layer (replace)",
            "append": "layer after the 1000 classes (append)",
            "mlp": "small network (MLP)",
        },
        explanations={
            "replace": "Replace the pretrained classifier by a new layer for your classes.",
            "append": "Keep the pretrained 1000-way output and add a new layer after it "
            "(the AlexNet tutorial's variant).",
            "mlp": "Replace the classifier by two layers with dropout.",
        },
    )
    early_stopping_patience: int = setting(
        0,
        label="Early stopping",
        help="Stop after this many epochs without a better validation metric; the best epoch is kept "
        "(0: off).",
        minimum=1,
        maximum=1000,
        unit="epochs without progress",
        special={0: "off"},
        words={"off": 0},
        aliases=("--early-stopping",),
        object_name="earlyStoppingSpin",
        saved_key="train/early_stopping",
    )
    balance: Balance = setting(
        "auto",
        label="Balance",
        help="How imbalanced classes are handled: automatic (a class-weighted loss when the largest "
        "class has over 3 times the photos of the smallest), none, a class-weighted loss, or a "
        "balanced sampler.",
        choices={
            "auto": "automatic",
            "none": "none",
            "weights": "class-weighted loss",
            "sampler": "balanced sampler",
        },
        explanations=BALANCE,
    )
    input_size: int = setting(
        0,
        label="Input size",
        help="The square the model sees, in pixels: automatic (larger than the model's own when the "
        "photos have the pixels for it), the model's own, or a size. Larger costs more time.",
        minimum=INPUT_SIZE_RANGE[0],
        maximum=INPUT_SIZE_RANGE[1],
        unit="px",
        special={INPUT_SIZE_AUTO: "automatic", 0: "the model's own"},
        words={"auto": INPUT_SIZE_AUTO, "model": 0},
        presets=(160, 192, 224, 256, 288, 320, 384, 448),
        defaults={"feature-extract": INPUT_SIZE_AUTO},
    )
    tta: TtaMode = setting(
        "none",
        label="Test-time augmentation",
        check_text="Average each photo with its mirror image",
        help="Validation, evaluation and prediction average each photo's prediction with its mirror "
        "image's (test-time augmentation): often a point more accurate, twice the time.",
        choices={"none": "off", "flip": "mirror averaging"},
        toggle=("none", "flip"),
        defaults={"feature-extract": "flip"},
    )
    head_first: bool = setting(
        False,
        label="Head first",
        check_text="Fit the new head first, then every layer",
        help="Fine-tuning: the new head is fitted on the frozen backbone's features first (seconds), "
        "then every layer trains (linear probing, then fine-tuning).",
        strategies=FINE_TUNE,
        defaults={"fine-tune": True},
    )
    augment: bool = setting(
        True,
        label="Augmentation",
        check_text="Augment training images",
        help="Random crops and horizontal flips of the training photos: helps small datasets generalise.",
    )
    # -- advanced ----------------------------------------------------------------------------------
    weight_decay: float = setting(
        1e-4,
        label="Weight decay",
        help="Pulls every weight toward zero a little at each step (regularisation).",
        group="advanced",
        minimum=0.0,
        maximum=1.0,
        decimals=6,
        log_scale=True,
        defaults={"scratch": 5e-4},
    )
    label_smoothing: float = setting(
        0.0,
        label="Label smoothing",
        help="Trains toward slightly softened targets (0: off); can make probabilities less over-confident.",
        group="advanced",
        minimum=0.0,
        maximum=0.9,
        decimals=2,
    )
    backbone_lr_scale: float = setting(
        0.1,
        label="Backbone learning-rate scale",
        help="Fine-tuning: the backbone's layer next to the head learns at the learning rate times this.",
        group="advanced",
        minimum=0.0,
        above_minimum=True,
        maximum=10.0,
        decimals=4,
        strategies=FINE_TUNE,
    )
    lr_decay_per_stage: float = setting(
        1.0,
        label="Learning-rate decay per stage",
        help="Fine-tuning: the backbone is cut into stages, and each stage nearer the input learns at "
        "this times the rate of the next (1: the whole backbone at one rate). A vision transformer's "
        "stages are its blocks, at 0.75 each while this is at its default.",
        group="advanced",
        minimum=0.0,
        above_minimum=True,
        maximum=1.0,
        decimals=2,
        strategies=FINE_TUNE,
        defaults={"fine-tune": 0.7},
    )
    warmup_epochs: int = setting(
        0,
        label="Warm-up epochs",
        help="Epochs of linear learning-rate warm-up before the schedule (at most epochs - 1 are used).",
        group="advanced",
        minimum=0,
        maximum=100,
        defaults={"fine-tune": 1},
    )
    freeze_bn: bool = setting(
        False,
        label="Frozen batch norm",
        check_text="Keep batch-norm statistics frozen",
        help="Fine-tuning: batch-norm layers keep their pretrained running statistics while every "
        "weight, theirs included, trains.",
        group="advanced",
        strategies=FINE_TUNE,
        defaults={"fine-tune": True},
    )
    early_stopping_metric: EarlyStoppingMetric = setting(
        "loss",
        label="Early stopping watches",
        help="What early stopping watches on the validation photos: their loss or their accuracy.",
        group="advanced",
        choices={"loss": "validation loss", "accuracy": "validation accuracy"},
    )
    head_hidden: int = setting(
        256,
        label="MLP hidden units",
        help="The MLP head's hidden units.",
        group="advanced",
        minimum=1,
        maximum=8192,
    )
    head_dropout: float = setting(
        0.2,
        label="MLP dropout",
        help="The MLP head's dropout, before its last layer.",
        group="advanced",
        minimum=0.0,
        maximum=0.95,
        decimals=2,
    )
    feature_views: int = setting(
        0,
        label="Feature views",
        help="Feature extraction: cached augmented views of each training photo (0: automatic).",
        group="advanced",
        minimum=1,
        maximum=32,
        special={0: "automatic"},
        words={"auto": 0},
        strategies=("feature-extract",),
    )
    cache_features: bool = setting(
        True,
        label="Feature cache",
        check_text="Cache backbone features",
        help="Feature extraction: keep the frozen backbone's features on disk, so later runs and the "
        "dataset doctor reuse them.",
        group="advanced",
        strategies=("feature-extract",),
    )
    val_fraction: float = setting(
        0.2,
        label="Validation fraction",
        help="The share of each class set aside for validation when the dataset has no val/ folder.",
        group="advanced",
        minimum=0.0,
        above_minimum=True,
        maximum=0.9,
        decimals=2,
    )
    seed: int = setting(
        0,
        label="Seed",
        help="Seeds the split, the new head's weights and the order of the photos: the same seed "
        "repeats a run.",
        group="advanced",
        minimum=0,
        maximum=MAX_SEED,
    )
    device: Device = setting(
        "auto",
        label="Device",
        help="Where to train: automatic (a GPU when there is one, else the CPU), or a device by name.",
        group="advanced",
        choices={
            "auto": "automatic",
            "cpu": "CPU",
            "cuda": "CUDA GPU",
            "mps": "Apple GPU",
            "xpu": "Intel GPU",
        },
    )
    precision: PrecisionSetting = setting(
        "auto",
        label="Precision",
        help="What the network computes in: automatic (bfloat16 where this device does it natively and "
        "faster, else float32), float32, or bfloat16. Weights stay float32; the model records its precision.",
        group="advanced",
        choices={"auto": "automatic", "fp32": "float32", "bf16": "bfloat16"},
    )
    workers: int = setting(
        0,
        label="Decoding threads",
        help="Threads that decode photos (0: chosen from the number of CPU cores).",
        group="advanced",
        minimum=1,
        maximum=256,
        special={0: "automatic"},
        words={"auto": 0},
    )
    image_cache_mb: int = setting(
        IMAGE_CACHE_AUTO,
        label="Decoded-image cache",
        help="Memory for decoded photos kept between epochs when whole images train (0: none; automatic: "
        "a share of the memory free when the run starts). Feature extraction keeps none: it decodes each "
        "photo once.",
        group="advanced",
        minimum=0,
        maximum=1_048_576,
        unit="MB",
        special={IMAGE_CACHE_AUTO: "automatic"},
        words={"auto": IMAGE_CACHE_AUTO},
    )
    sync_batchnorm: bool = setting(
        False,
        label="Synchronised batch norm",
        check_text="Synchronise batch norm across GPUs",
        help="Several GPUs: batch-norm layers use the statistics of every GPU's batch (for small "
        "per-GPU batches).",
        group="advanced",
        aliases=("--sync-bn",),
    )

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def for_strategy(cls, strategy: str = "feature-extract", **overrides: Any) -> TrainConfig:
        """A config with the defaults of ``strategy``; ``overrides`` that are None are ignored."""
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        values = {item.name: item.default_for(strategy) for item in declared(cls)}
        values["strategy"] = strategy
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def settings(cls) -> list[Declared]:
        """Every field's declaration, in the form's order."""
        return list(declared(cls))

    @property
    def pretrained(self) -> bool:
        """Whether the run starts from pretrained weights."""
        return self.strategy != "scratch"

    def validate(self) -> None:
        """Raise ConfigError, naming the setting and its range, for any value a run cannot use."""
        for item in declared(type(self)):
            problem = check_value(item, getattr(self, item.name))
            if problem is not None:
                raise ConfigError(problem)

    def resolved_balance(self, imbalance: float) -> str:
        """``none``, ``weights`` or ``sampler``: what ``balance`` means for a dataset whose largest
        training class has ``imbalance`` times the images of its smallest."""
        return resolve_balance(self.balance, imbalance)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from ``to_dict()`` output, ignoring keys this version does not know.

        Whole-number floats become ints where the field is an int (JSON writers may write ``3.0``);
        anything else of the wrong type or out of range is a ConfigError naming the setting.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"settings must be a JSON object, not {type(values).__name__}")
        kinds = {item.name: item.kind for item in declared(cls)}
        known = {}
        for key, value in values.items():
            if key not in kinds:
                continue
            if kinds[key] is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            known[key] = value
        return cls(**known)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)
