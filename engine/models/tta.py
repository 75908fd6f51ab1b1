"""Test-time augmentation: a photo's logits averaged over itself and its mirror image.

A preprocessing's ``tta`` (:class:`~engine.models.preprocessing.Preprocessing`, recorded in the bundle)
says which views of an already preprocessed ``[B, 3, H, W]`` batch a model's main logits are averaged
over: ``none`` (the batch alone) or ``flip`` (also the batch mirrored left to right). Validation during
training, :class:`~engine.inference.predict.Predictor`, evaluation and the exported ONNX/TorchScript
model all average the same way, so their accuracies and outputs agree.

Logits are averaged (not probabilities): for a linear head that equals the head applied to the
averaged backbone features, which is what feature extraction validates on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.models.heads import split_outputs


def tta_logits(model: nn.Module, batch: torch.Tensor, tta: str) -> torch.Tensor:
    """The model's main logits for ``batch``, averaged over the views of ``tta``."""
    logits = split_outputs(model(batch))[0]
    if tta == "none":
        return logits
    if tta != "flip":
        raise ValueError(f"unknown test-time augmentation {tta!r}")
    mirrored = split_outputs(model(batch.flip(-1)))[0]
    return (logits + mirrored) / 2


class FlipAveraged(nn.Module):
    """``model`` whose main logits are averaged with those of the mirrored input, except while
    ``model`` is in training mode or ``averaging`` is off (then its outputs pass through unchanged)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # Off while a training pass runs: a frozen backbone keeps the model in eval mode then, and a
        # training step must see the one (augmented) view, as the cached-feature path does.
        self.averaging = True

    def forward(self, x: torch.Tensor) -> Any:
        if self.model.training or not self.averaging:
            return self.model(x)
        return tta_logits(self.model, x, "flip")
