"""What a catalog model costs to run: milliseconds per photo, measured, then scaled to this machine.

``measured_costs.json`` (next to this module; written by ``benchmarks/model_costs.py``) holds, for the
built-in model and each curated timm model, the milliseconds per photo of a forward pass (eval,
batch 16) and of a training step (forward, backward and an optimizer step, batch 16) on the machine
it was measured on, at the model's input size. A model not measured (the torchvision ones) is priced
from its parameter count and input size at the measured models' mean cost per parameter and pixel,
and says so (``ModelCost.measured`` False).

This machine's speed is one factor (:func:`speed_factor`): the built-in model's forward on a small
batch, timed once per device and process, against the same probe in the file. Every figure is
multiplied by it (:func:`machine_cost`). Nothing here imports Qt or builds a model except the probe.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.models.registry import ModelInfo, get_model_info

logger = logging.getLogger(__name__)

COSTS_FILE = Path(__file__).with_name("measured_costs.json")
#: Photos in the probe's batch (small: the probe takes well under a second on a CPU).
PROBE_BATCH = 4
#: The probe's figure when the file has none: the built-in model's forward, as measured.
_FALLBACK_REFERENCE = "efficientnet_lite0"


@dataclass(frozen=True)
class ModelCost:
    """Milliseconds per photo at the model's input size: a forward pass and a training step."""

    name: str
    forward_ms: float
    train_ms: float
    input_size: int
    measured: bool  # False: priced from the parameter count and input size

    def scaled(self, factor: float) -> ModelCost:
        return ModelCost(
            self.name, self.forward_ms * factor, self.train_ms * factor, self.input_size, self.measured
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "forward_ms_per_photo": round(self.forward_ms, 2),
            "train_ms_per_photo": round(self.train_ms, 2),
            "measured": self.measured,
        }


@dataclass(frozen=True)
class MeasuredCosts:
    """The file's content: where and how it was measured, and each measured model's figures."""

    machine: str
    torch: str
    date: str
    reference: str
    probe_ms: float | None
    models: dict[str, ModelCost]


@functools.cache
def measured_costs() -> MeasuredCosts:
    """``measured_costs.json``, read once; an empty table (every model priced) if it is missing or
    damaged (logged)."""
    try:
        raw = json.loads(COSTS_FILE.read_text(encoding="utf-8"))
        models = {
            name: ModelCost(name, float(m["forward_ms"]), float(m["train_ms"]), int(m["input_size"]), True)
            for name, m in raw["models"].items()
        }
        probe = raw.get("probe_ms")
        return MeasuredCosts(
            machine=str(raw.get("machine", "")),
            torch=str(raw.get("torch", "")),
            date=str(raw.get("date", "")),
            reference=str(raw.get("reference", _FALLBACK_REFERENCE)),
            probe_ms=float(probe) if probe else None,
            models=models,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("Cannot read the measured model costs %s: %s", COSTS_FILE, exc)
        return MeasuredCosts("", "", "", _FALLBACK_REFERENCE, None, {})


def _pixels(px: int) -> float:
    return float(px * px)


def _rates(table: MeasuredCosts) -> tuple[float, float] | None:
    """Geometric-mean ms per (parameter x pixel) of the measured models: forward, training step."""
    logs_f, logs_t = [], []
    for name, cost in table.models.items():
        try:
            params = get_model_info(name).num_params
        except Exception:  # noqa: BLE001 - a name the catalog no longer has
            continue
        scale = params * _pixels(cost.input_size)
        if scale > 0 and cost.forward_ms > 0 and cost.train_ms > 0:
            logs_f.append(math.log(cost.forward_ms / scale))
            logs_t.append(math.log(cost.train_ms / scale))
    if not logs_f:
        return None
    return math.exp(sum(logs_f) / len(logs_f)), math.exp(sum(logs_t) / len(logs_t))


def model_cost(name: str, input_size: int | None = None) -> ModelCost:
    """``name``'s cost on the machine of the measurements, at ``input_size`` (default: its own),
    measured or priced from its parameters; ModelError for an unknown name."""
    info = get_model_info(name)
    px = input_size or info.input_size
    table = measured_costs()
    measured = table.models.get(info.name)
    if measured is not None:
        scale = _pixels(px) / _pixels(measured.input_size)
        return ModelCost(info.name, measured.forward_ms * scale, measured.train_ms * scale, px, True)
    return _priced(info, px, table)


def _priced(info: ModelInfo, px: int, table: MeasuredCosts) -> ModelCost:
    rates = _rates(table)
    if rates is None:  # no file: about the built-in model's figures on a 2-core CPU, per parameter
        rates = (3.0e-12, 1.5e-11)
    scale = info.num_params * _pixels(px)
    return ModelCost(info.name, rates[0] * scale, rates[1] * scale, px, False)


def probe_ms_per_photo(device: Any = None) -> float:
    """The built-in model's forward on :data:`PROBE_BATCH` random photos at 224 px on ``device`` (a
    torch.device; default CPU), in ms per photo, after one warm-up pass. Random weights: the cost does
    not depend on them."""
    import torch

    from engine.models.build import build_model

    device = device if device is not None else torch.device("cpu")
    model, _heads = build_model(measured_costs().reference, 2, pretrained=False)
    model = model.eval().to(device)
    x = torch.rand(PROBE_BATCH, 3, 224, 224, device=device)
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(3):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if attempt:  # the first pass warms up
                best = min(best, time.perf_counter() - started)
    return best * 1000 / PROBE_BATCH


_factors: dict[str, float] = {}


def speed_factor(device: Any = None) -> float:
    """How much slower (>1) or faster (<1) this machine's ``device`` is than the one measured: the
    probe timed once per device and process (about a second on a CPU) against the file's probe. 1.0
    when the file has no probe or the probe cannot run."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    key = str(device)
    if key not in _factors:
        reference = measured_costs().probe_ms
        factor = 1.0
        if reference:
            try:
                factor = probe_ms_per_photo(device) / reference
            except Exception:  # noqa: BLE001 - a device quirk: price as measured
                logger.warning("Cannot time this machine's speed on %s", device, exc_info=True)
        _factors[key] = factor if math.isfinite(factor) and factor > 0 else 1.0
    return _factors[key]


def set_speed_factor(factor: float, device: Any = "cpu") -> None:
    """Use ``factor`` for ``device`` instead of timing it (tests; a factor measured elsewhere)."""
    _factors[str(device)] = factor


def machine_cost(name: str, device: Any = None, input_size: int | None = None) -> ModelCost:
    """``name``'s cost on this machine's ``device``: :func:`model_cost` times :func:`speed_factor`."""
    return model_cost(name, input_size).scaled(speed_factor(device))
