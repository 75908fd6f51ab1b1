"""Choosing the compute device, saying why one cannot be used, and describing it in words.

``auto`` takes the accelerator ``torch.accelerator`` reports (CUDA, Apple's MPS or an Intel XPU) when
this PyTorch has that API, else CUDA when usable, else the CPU. Asking for a device that cannot be
used is a one-line :class:`ConfigError` that says why.
"""

from __future__ import annotations

import torch

from engine.core.config import ConfigError

#: The accelerators the engine trains on, besides the CPU.
ACCELERATORS = ("cuda", "mps", "xpu")


def cuda_unavailable_reason() -> str | None:
    """None when CUDA can be used, else a plain-words reason."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return "this PyTorch build has no CUDA support (a CPU-only build is installed)"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU or driver was found"
    return None


def mps_unavailable_reason() -> str | None:
    """None when Apple's Metal (MPS) backend can be used, else a plain-words reason."""
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return "this PyTorch build has no Apple GPU (MPS) support (MPS needs macOS on Apple silicon)"
    if not mps.is_available():
        return "no Apple GPU is usable here (MPS needs macOS 12.3 or later on Apple silicon)"
    return None


def xpu_unavailable_reason() -> str | None:
    """None when an Intel GPU (XPU) can be used, else a plain-words reason."""
    xpu = getattr(torch, "xpu", None)
    if xpu is None:
        return "this PyTorch build has no Intel GPU (XPU) support"
    if not xpu.is_available():
        return "no Intel GPU or driver was found (or this PyTorch build has no XPU support)"
    return None


def unavailable_reason(kind: str) -> str | None:
    """None when ``kind`` (cpu, cuda, mps, xpu) can be used, else why not."""
    if kind == "cpu":
        return None
    reasons = {"cuda": cuda_unavailable_reason, "mps": mps_unavailable_reason, "xpu": xpu_unavailable_reason}
    if kind not in reasons:
        return f"unknown device {kind!r}; choose auto, cpu, {', '.join(ACCELERATORS)}"
    return reasons[kind]()


def _reported_accelerator() -> torch.device | None:
    """The accelerator ``torch.accelerator`` reports, when this PyTorch has the API and it is usable."""
    api = getattr(torch, "accelerator", None)
    if api is None:
        return None
    try:
        if not api.is_available():
            return None
        device = api.current_accelerator()
    except RuntimeError:  # a broken driver: treat as none
        return None
    if device is None or device.type not in ACCELERATORS:
        return None
    return torch.device(device.type)


def resolve_device(name: str = "auto") -> torch.device:
    """The device for ``name``: auto (the best usable one), cpu, cuda, mps or xpu."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        reported = _reported_accelerator()
        if reported is not None:
            return reported
        return torch.device("cuda") if cuda_unavailable_reason() is None else torch.device("cpu")
    if name not in ACCELERATORS:
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu, {', '.join(ACCELERATORS)}")
    reason = unavailable_reason(name)
    if reason:
        raise ConfigError(f"--device {name} was asked for, but {reason}")
    return torch.device(name)


def is_accelerator(device: torch.device) -> bool:
    """Whether ``device`` is a GPU-like accelerator (large no-grad batches are cheap there)."""
    return device.type in ACCELERATORS


def describe_device(device: torch.device) -> str:
    """E.g. ``CUDA: NVIDIA H100 80GB HBM3``, ``Apple GPU (MPS)`` or ``CPU, 2 threads``."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    if device.type == "xpu":
        return f"Intel GPU (XPU): {torch.xpu.get_device_name(device)}"
    return f"CPU, {torch.get_num_threads()} threads"


def usable_devices() -> dict[str, str | None]:
    """Each device kind and None when usable, else why not (for ``doctor`` and the window)."""
    return {kind: unavailable_reason(kind) for kind in ("cpu", *ACCELERATORS)}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86: AVX512-BF16 or AMX; Arm: FEAT_BF16).

    Only what the hardware reports (Linux's /proc/cpuinfo, macOS's sysctl); elsewhere False. PyTorch
    runs bfloat16 on other CPUs too, but emulated, slower than float32.
    """
    import platform
    import subprocess

    system = platform.system()  # not sys.platform: type checkers prune the other systems' branches
    if system == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
                flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
        except OSError:
            return False
        return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags.split(":", 1)[-1].split()))
    if system == "Darwin" and platform.machine() == "arm64":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return out.stdout.strip() == "1"
    return False
