"""How much memory a batch needs, against what the machine has free: a batch that would not fit is
halved (with a message) before it is tried, and one image that would not fit is refused, instead of the
system killing the process.

The estimate is deliberately rough and on the safe side: activations of a convolutional network are
about :data:`ACTIVATION_FLOATS_PER_PIXEL` floats per input pixel for inference, three times that while
training (gradients and the optimizer's copies). The decoded-image cache of a fine-tuning run is sized
from the same free memory (:func:`image_cache_bytes`). Free memory comes from psutil (every system).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from engine.core.errors import TransferStudioError

log = logging.getLogger(__name__)

#: Activation floats per input pixel of one image, for inference; training needs TRAINING_FACTOR times it.
ACTIVATION_FLOATS_PER_PIXEL = 150
TRAINING_FACTOR = 3
#: The share of the free memory a batch may take (the rest: the model, the cache, the window, the system).
USABLE_SHARE = 0.5
#: The share of the free memory the automatic decoded-image cache may take.
IMAGE_CACHE_SHARE = 0.25


def available_bytes() -> int | None:
    """Memory the system can give this process now (psutil's ``available``); None where it is not known."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError, RuntimeError, AttributeError):
        return None


def image_cache_bytes(needed: int) -> int:
    """The automatic decoded-image cache: ``needed`` (every photo of the run), at most
    :data:`IMAGE_CACHE_SHARE` of the memory free now; nothing where free memory is not known."""
    free = available_bytes()
    if free is None:
        return 0
    return max(0, min(needed, int(free * IMAGE_CACHE_SHARE)))


def bytes_per_image(crop_size: int, training: bool) -> int:
    """The estimated memory one image of ``crop_size`` px takes in a batch."""
    factor = TRAINING_FACTOR if training else 1
    return 4 * crop_size * crop_size * ACTIVATION_FLOATS_PER_PIXEL * factor


def fit_batch(
    batch: int, crop_size: int, *, training: bool, what: str, warn: Callable[[str], None] | None = None
) -> int:
    """``batch``, halved until its estimated memory fits in what is free; TransferStudioError when even
    one image would not fit. ``what`` names the batch in the message ("the training batch")."""
    free = available_bytes()
    if free is None:
        return batch
    budget = free * USABLE_SHARE
    need = bytes_per_image(crop_size, training)
    if need > budget:
        raise TransferStudioError(
            f"one {crop_size} px image needs about {need / 2**30:.1f} GB, more than the {free / 2**30:.1f} GB "
            "free: choose a smaller input size or close other programs"
        )
    fitted = batch
    while fitted > 1 and fitted * need > budget:
        fitted //= 2
    if fitted < batch:
        message = (
            f"{what} of {batch} images at {crop_size} px would need about {batch * need / 2**30:.1f} GB, "
            f"more than half the {free / 2**30:.1f} GB free: using {fitted}"
        )
        log.warning("%s", message)
        if warn is not None:
            warn(message)
    return fitted
