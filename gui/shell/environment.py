"""What the app runs on: versions and the compute device, probed off the GUI thread after start-up.

:func:`probe_environment` imports torch (seconds), so the window calls it from a worker thread and
shows the result in the status bar and the About box.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

logger = logging.getLogger(__name__)


def app_version() -> str:
    """The installed transfer-studio version (or the source tree's placeholder)."""
    try:
        return version("transfer-studio")
    except PackageNotFoundError:
        return "0.0.0+source"


@dataclass(frozen=True)
class Environment:
    app: str
    torch: str
    torchvision: str
    pyside: str
    pyqtgraph: str
    python: str
    device: str  # e.g. "CUDA: NVIDIA H100 80GB HBM3" or "CPU, 2 threads"
    cuda_note: str  # why CUDA is not used, or ""
    gpus: int = 0  # usable CUDA GPUs: more than one offers multi-process training


def probe_environment() -> Environment:
    """Import torch and describe the versions and the device training will use."""
    import pyqtgraph
    import PySide6
    import torch
    import torchvision

    note = ""
    gpus = 0
    try:
        from engine.core.device import (
            cuda_unavailable_reason,
            describe_device,
            is_accelerator,
            resolve_device,
        )

        chosen = resolve_device("auto")
        device = describe_device(chosen)
        note = "" if is_accelerator(chosen) else cuda_unavailable_reason() or ""
        gpus = torch.cuda.device_count() if chosen.type == "cuda" else 0
    except Exception:  # noqa: BLE001 - a broken driver must not hide the window's status
        logger.warning("device probe failed", exc_info=True)
        device = f"CPU, {torch.get_num_threads()} threads"
        gpus = 0
    return Environment(
        app=app_version(),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        pyside=PySide6.__version__,
        pyqtgraph=pyqtgraph.__version__,
        python=platform.python_version(),
        device=device,
        cuda_note=note,
        gpus=gpus,
    )


def about_html(env: Environment | None) -> str:
    """The About box text; ``env`` None while the probe is still running."""
    rows = [("Transfer Studio", env.app if env else app_version())]
    if env:
        rows += [
            ("PyTorch", env.torch),
            ("torchvision", env.torchvision),
            ("PySide6", env.pyside),
            ("pyqtgraph", env.pyqtgraph),
            ("Python", env.python),
            ("Compute device", env.device),
        ]
        if env.cuda_note:
            rows.append(("GPU", env.cuda_note))
    else:
        rows.append(("PyTorch", "still loading…"))
    body = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
    return (
        "<p>Train an image classifier on your own photos by transfer learning, with no code.</p>"
        f"<table>{body}</table>"
    )
