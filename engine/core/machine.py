"""What is measured once per machine and cached: whether bfloat16 is faster than float32 on this CPU,
and the batch size and thread count that pass photos through a network fastest here.

The hardware's report (:func:`engine.core.device.cpu_has_native_bf16`) says whether the CPU computes
bfloat16 natively; a short timing (a few convolution blocks shaped like the built-in model's, under
autocast and without it, about half a second) confirms that it is also faster here. The result is kept in
``<data>/machine.json`` (the app's data folder) under a key naming the CPU, its core count, PyTorch's version and its thread
count, so a new machine, an upgrade or another thread count measures again, and every later process
reads it at no cost. ``doctor`` shows the measurement and the choice.

The sweep (:func:`cpu_inference_choice`, about two seconds) times the same blocks without gradients, in
the precision ``auto`` picks, at each of :data:`SWEEP_BATCHES` and each candidate thread count (PyTorch's
default, one per physical core, and every logical core where there are more); passes without gradients
on a CPU (the feature pass, validation) then use the smallest batch within 5% of the fastest, and
a ``train`` command on the CPU the fastest thread count (``OMP_NUM_THREADS`` wins).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.core.device import cpu_has_native_bf16
from engine.core.files import atomic_write_text
from engine.core.locations import app_data_dir

log = logging.getLogger(__name__)

__all__ = [
    "cpu_bf16_choice",
    "cpu_has_native_bf16",
    "cpu_inference_choice",
    "cpu_name",
    "forget_choices",
    "machine_file",
    "machine_key",
    "measured",
    "remember",
    "sweep_batches_and_threads",
    "time_bf16_against_fp32",
    "use_measured_threads",
]

MACHINE_FILE = "machine.json"
#: bfloat16 is used on a CPU when the timing finds it at least this many times faster than float32.
BF16_MIN_SPEED_UP = 1.15
#: The batch sizes the sweep tries for passes without gradients on a CPU (64 costs lite0 +1.3 GB for
#: barely any speed).
SWEEP_BATCHES = (8, 16, 32)
#: A batch within this share of the fastest per-photo time counts as as fast (the smaller one is kept).
SWEEP_SLACK = 0.05


def machine_file() -> Path:
    """Where the measurements are kept: the app's data folder (they describe the machine, not a
    dataset, so emptying the feature cache does not measure again)."""
    return app_data_dir() / MACHINE_FILE


def machine_key() -> str:
    """Names this machine's CPU, its cores, PyTorch's version and thread count: a change measures anew."""
    return f"{cpu_name()}|{os.cpu_count()} cores|torch {torch.__version__}|{torch.get_num_threads()} threads"


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _read() -> dict[str, Any]:
    try:
        raw = json.loads(machine_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def measured(what: str) -> dict[str, Any] | None:
    """The cached measurement ``what`` for this machine, or None."""
    entry = _read().get(machine_key(), {}).get(what)
    return entry if isinstance(entry, dict) else None


def remember(what: str, value: dict[str, Any]) -> None:
    """Cache the measurement ``what`` for this machine (a folder that cannot be written is only logged)."""
    everything = _read()
    everything.setdefault(machine_key(), {})[what] = value
    try:
        machine_file().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(machine_file(), json.dumps(everything, indent=2))
    except OSError as exc:
        log.warning("could not save this machine's measurements to %s: %s", machine_file(), exc)


def _probe_model() -> nn.Module:
    """Convolution blocks like an EfficientNet's (a stem, an inverted residual, a 3x3 convolution)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU6(),
        nn.Conv2d(32, 96, 1),
        nn.ReLU6(),
        nn.Conv2d(96, 96, 3, padding=1, groups=96),
        nn.ReLU6(),
        nn.Conv2d(96, 48, 1),
        nn.Conv2d(48, 64, 3, padding=1),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
    ).eval()


def _best_ms(model: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None, repeats: int = 3) -> float:
    best = float("inf")
    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            model(batch)
            if attempt:  # the first pass warms the kernels up
                best = min(best, time.perf_counter() - started)
    return best * 1000


def time_bf16_against_fp32() -> dict[str, float]:
    """Milliseconds per pass of the probe blocks in float32 and under bfloat16 autocast (best of 3)."""
    model = _probe_model().to(memory_format=torch.channels_last)
    batch = torch.randn(8, 3, 160, 160).contiguous(memory_format=torch.channels_last)
    return {
        "fp32_ms": round(_best_ms(model, batch, None), 2),
        "bf16_ms": round(_best_ms(model, batch, torch.bfloat16), 2),
    }


def thread_candidates() -> list[int]:
    """PyTorch's default thread count, and every logical core where there are more."""
    default = torch.get_num_threads()
    logical = os.cpu_count() or default
    return sorted({default, logical})


def sweep_batches_and_threads(dtype: torch.dtype | None) -> dict[str, Any]:
    """Milliseconds per photo at each batch size (default threads) and at each thread count (batch 32)."""
    model = _probe_model().to(memory_format=torch.channels_last)
    images = torch.randn(max(SWEEP_BATCHES), 3, 112, 112).contiguous(memory_format=torch.channels_last)
    per_batch = {str(b): round(_best_ms(model, images[:b], dtype, 2) / b, 3) for b in SWEEP_BATCHES}
    before = torch.get_num_threads()
    per_threads: dict[str, float] = {}
    try:
        for threads in thread_candidates():
            torch.set_num_threads(threads)
            per_threads[str(threads)] = round(_best_ms(model, images[:32], dtype, 2) / 32, 3)
    finally:
        torch.set_num_threads(before)
    best = min(per_batch.values())
    batch = min(int(b) for b, ms in per_batch.items() if ms <= best * (1 + SWEEP_SLACK))
    threads = int(min(per_threads, key=lambda t: per_threads[t]))
    return {
        "ms_per_photo_by_batch": per_batch,
        "ms_per_photo_by_threads": per_threads,
        "batch": batch,
        "threads": threads,
    }


def cpu_inference_choice() -> dict[str, Any]:
    """The sweep's result for this machine (measured at first use, then read from the cache)."""
    return _inference_choice_in(str(machine_file()))


@functools.cache
def _inference_choice_in(_file: str) -> dict[str, Any]:
    """One answer per process and cache file, so every process that shares a cache folder agrees."""
    found = measured("sweep")
    if found is None or not {"batch", "threads"} <= set(found):
        use_bf16, _ = cpu_bf16_choice()
        found = sweep_batches_and_threads(torch.bfloat16 if use_bf16 else None)
        remember("sweep", found)
        log.info("measured batch sizes and threads on this CPU: %s", found)
    return found


def cpu_bf16_choice() -> tuple[bool, str]:
    """Whether ``auto`` computes in bfloat16 on this CPU, and why (in words, for ``doctor`` and the log)."""
    return _bf16_choice_in(str(machine_file()))


def use_measured_threads() -> int:
    """Set PyTorch's thread count to the one this machine's sweep measured fastest; returns it."""
    threads = int(cpu_inference_choice()["threads"])
    if threads != torch.get_num_threads():
        log.info("using %d threads, measured faster than %d on this CPU", threads, torch.get_num_threads())
        torch.set_num_threads(threads)
    return threads


def forget_choices() -> None:
    """Forget this process's answers (tests; a new cache folder is read anyway)."""
    _bf16_choice_in.cache_clear()
    _inference_choice_in.cache_clear()


@functools.cache
def _bf16_choice_in(_file: str) -> tuple[bool, str]:
    if not cpu_has_native_bf16():
        return False, "this CPU has no native bfloat16 (AVX512-BF16, AMX or Arm BF16)"
    timing = measured("bf16")
    if timing is None or not {"fp32_ms", "bf16_ms"} <= set(timing):
        timing = time_bf16_against_fp32()
        remember("bf16", timing)
        log.info("measured bfloat16 against float32 on this CPU: %s", timing)
    speed_up = timing["fp32_ms"] / max(timing["bf16_ms"], 1e-6)
    if speed_up >= BF16_MIN_SPEED_UP:
        return True, f"this CPU has native bfloat16, measured {speed_up:.1f}x as fast as float32"
    return (
        False,
        f"this CPU has native bfloat16 but measured only {speed_up:.2f}x as fast as float32: float32",
    )
