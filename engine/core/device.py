"""Choosing the compute device and describing it in words."""

from __future__ import annotations

import torch

from engine.core.config import ConfigError


def cuda_unavailable_reason() -> str | None:
    """None when CUDA can be used, else a plain-words reason."""
    if torch.version.cuda is None:
        return "this PyTorch build has no CUDA support (a CPU-only build is installed)"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU or driver was found"
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when usable, else the CPU; asking for ``cuda`` without one is an error."""
    if name == "cpu":
        return torch.device("cpu")
    reason = cuda_unavailable_reason()
    if name == "cuda":
        if reason:
            raise ConfigError(f"--device cuda was asked for, but {reason}")
        return torch.device("cuda")
    if name != "auto":
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device("cuda") if reason is None else torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """E.g. ``CUDA: NVIDIA H100 80GB HBM3`` or ``CPU, 2 threads``."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    return f"CPU, {torch.get_num_threads()} threads"
