"""Seconds a model will take on a dataset of a given size, before anything runs.

Priced from the measured milliseconds per photo of each model (:mod:`engine.models.costs`, scaled by
this machine's speed factor) plus decoding each photo (by its typical size): a feature-extract run is
one forward pass per cached view of each training photo and one per validation photo (its head trains
on cached features in no time worth counting); a fine-tuning epoch is a training step per training
photo and a forward pass per validation photo. A download is priced at :data:`DOWNLOAD_BYTES_PER_S`.
These are for choosing what to try; the bake-off still measures each candidate as it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.sizes import format_size
from engine.data.datasets import DatasetReport
from engine.models.costs import ModelCost
from engine.models.registry import get_model_info
from engine.training.data_path import auto_input_size

#: A rough download speed for "about N s to download" (a home connection): 5 MB/s.
DOWNLOAD_BYTES_PER_S = 5_000_000
#: Decoding a JPEG with PIL (draft mode helps large ones), ms per megapixel, on one core.
DECODE_MS_PER_MEGAPIXEL = 6.0
#: Cached views per training photo on a CPU (engine.training.data_path.feature_views's automatic value).
CPU_FEATURE_VIEWS = 2
#: A fine-tuning run's fixed start: building the model, the first batches (seconds).
START_SECONDS = 5.0


@dataclass(frozen=True)
class DatasetSize:
    """How many photos are trained and validated on, and their typical shorter side in pixels."""

    train: int
    val: int
    typical_side: float | None = None

    @property
    def photos(self) -> int:
        return self.train + self.val

    def decode_ms(self) -> float:
        """Decoding one photo of the typical size (4:3), in ms; a 224-px photo when unknown."""
        side = self.typical_side or 224.0
        return DECODE_MS_PER_MEGAPIXEL * side * side * 4 / 3 / 1e6


def dataset_size(report: DatasetReport) -> DatasetSize:
    """The photos ``report``'s split trains and validates on, and their typical shorter side (from
    the headers of a sample of the training photos)."""
    train, val = report.splits["train"], report.splits["val"]
    try:
        _size, side = auto_input_size(get_model_info("efficientnet_lite0").preprocessing, train)
    except Exception:  # noqa: BLE001 - the size only prices decoding
        side = None
    return DatasetSize(len(train), len(val), side)


def feature_extract_seconds(cost: ModelCost, data: DatasetSize, views: int = CPU_FEATURE_VIEWS) -> float:
    """A feature-extract run: every view of every photo through the frozen backbone once."""
    per_photo = cost.forward_ms + data.decode_ms()
    return START_SECONDS + (views * data.train + data.val) * per_photo / 1000


def epoch_seconds(cost: ModelCost, data: DatasetSize) -> float:
    """One fine-tuning (or from-scratch) epoch: a training step per training photo, a forward pass per
    validation photo."""
    decode = data.decode_ms()
    return (data.train * (cost.train_ms + decode) + data.val * (cost.forward_ms + decode)) / 1000


def fine_tune_seconds(cost: ModelCost, data: DatasetSize, epochs: int, head_first: bool = True) -> float:
    """A fine-tuning run of ``epochs`` (with the head-first pass over the training photos)."""
    first = data.train * (cost.forward_ms + data.decode_ms()) / 1000 if head_first else 0.0
    return START_SECONDS + first + epochs * epoch_seconds(cost, data)


def download_seconds(num_bytes: int | None) -> float:
    return (num_bytes or 0) / DOWNLOAD_BYTES_PER_S


def describe_download(num_bytes: int | None) -> str:
    """E.g. ``88.2 MB, about 18 s to download``."""
    seconds = download_seconds(num_bytes)
    return f"{format_size(num_bytes or 0)}, about {describe_seconds(seconds)} to download"


def describe_seconds(seconds: float) -> str:
    """E.g. ``40 s``, ``3 min``, ``1 h 20 min``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
