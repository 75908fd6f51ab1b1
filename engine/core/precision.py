"""The compute precision of training and inference: the ``precision`` setting resolved on a device.

``auto`` (the default) computes under bfloat16 autocast where the device does so natively and faster,
and in float32 elsewhere:

- a CUDA GPU: bfloat16 where it has it, else float16 (with a gradient scaler when training);
- an Intel GPU (XPU): bfloat16;
- a CPU: bfloat16 where the hardware reports native support (AVX512-BF16, AMX or Arm's BF16) *and* a
  short timing, measured once per machine and cached (:mod:`engine.core.machine`), confirms that it is
  faster; float32 otherwise, with the reason (``doctor`` shows it). A run that trains the backbone
  (fine-tuning, from scratch) stays in float32 on a CPU: its backward pass under bfloat16 autocast
  measured slower than float32 (BENCHMARKS.md, "Issue 26"), so only the frozen feature pass and
  inference gain;
- Apple's GPU (MPS): float32.

``fp32`` always computes in float32; ``bf16`` asks for bfloat16 autocast on any device that can run it
(emulated, so slower, on a CPU without native support).

A run records what it resolved to (``float32``, ``bfloat16`` or ``float16``) in its checkpoints and
its bundle, and inference on a bundle computes in the recorded precision (:func:`for_bundle`), so that
``evaluate`` reproduces the run's validation accuracy exactly. Weights always stay float32: autocast
only changes the dtype operations compute in, and exports are float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from engine.core.config import PRECISION_SETTINGS
from engine.core.errors import TransferStudioError

log = logging.getLogger(__name__)

#: The dtype names a run records (``str(dtype)`` without ``torch.``).
PRECISION_NAMES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: the autocast dtype (None: float32) and why it was chosen."""

    dtype: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        """``float32``, ``bfloat16`` or ``float16``: what a run records."""
        return str(self.dtype or torch.float32).removeprefix("torch.")

    def autocast(self, device: torch.device) -> torch.autocast:
        """Autocast to this precision on ``device`` (a no-op for float32)."""
        return autocast(device, self.dtype)


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` to ``dtype`` on ``device``; disabled when ``dtype`` is None (float32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


FP32 = Precision(None, "float32 was asked for")


def resolve_precision(setting: str, device: torch.device, *, trains_backbone: bool = False) -> Precision:
    """What ``setting`` (``auto``, ``fp32`` or ``bf16``) means on ``device``, for a run that trains its
    backbone (``trains_backbone``) or only computes through it (a frozen feature pass, inference).

    Raises TransferStudioError for ``bf16`` on a device that cannot compute it.
    """
    if setting not in PRECISION_SETTINGS:
        raise TransferStudioError(
            f"unknown precision {setting!r}; choose one of {', '.join(PRECISION_SETTINGS)}"
        )
    if setting == "fp32":
        return FP32
    kind = device.type
    if setting == "bf16":
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise TransferStudioError(
                f"{torch.cuda.get_device_name(device)} has no bfloat16: choose precision auto (float16) or fp32"
            )
        if kind == "mps":
            raise TransferStudioError(
                "bfloat16 is not offered on Apple's GPU (MPS): choose precision auto or fp32"
            )
        return Precision(torch.bfloat16, "bfloat16 was asked for")
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, "the GPU computes bfloat16 natively")
        return Precision(torch.float16, "the GPU has no bfloat16: float16 with a gradient scaler")
    if kind == "xpu":
        return Precision(torch.bfloat16, "the Intel GPU computes bfloat16 natively")
    if kind == "cpu":
        from engine.core.machine import cpu_bf16_choice

        use, reason = cpu_bf16_choice()
        if use and trains_backbone:
            return Precision(None, "training the whole network in bfloat16 is slower than float32 on a CPU")
        return Precision(torch.bfloat16 if use else None, reason)
    return Precision(None, f"float32 on {kind}: mixed precision there depends on the system's version")


def for_bundle(recorded: str, device: torch.device) -> Precision:
    """The precision inference on ``device`` uses for a bundle trained in ``recorded``: the same, so its
    answers are the run's; float32 where the device cannot compute it (float16 on a CPU or MPS, bfloat16
    on MPS or on a GPU without it)."""
    dtype = PRECISION_NAMES.get(recorded)
    if dtype is None:
        return Precision(None, "the model was trained in float32")
    kind = device.type
    if dtype == torch.float16 and kind != "cuda":
        return Precision(None, "the model was trained in float16 on a GPU; float32 here")
    if dtype == torch.bfloat16 and (kind == "mps" or (kind == "cuda" and not torch.cuda.is_bf16_supported())):
        return Precision(None, "the model was trained in bfloat16, which this device lacks; float32 here")
    return Precision(dtype, f"the model was trained in {recorded}")
