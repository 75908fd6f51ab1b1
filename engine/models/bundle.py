"""The model bundle: everything needed to use a trained classifier, in one ``torch.load``-safe file.

A bundle is a plain dict of strings, numbers, lists and tensors, so ``torch.load(path, weights_only=True)``
reads it without ever executing code from the file::

    {"format": "transfer-studio-bundle", "version": 1, "architecture": "resnet18", "head": {"kind": "replace"},
     "class_names": [...], "state_dict": {...}, "preprocessing": {...}, "metrics": {...}, "config": {...}}

``calibration`` (absent in bundles made before it) is the run's
:class:`~engine.models.calibration.Calibration`: the temperature every probability the app shows is
divided by, and what says "none of these".

``precision`` (absent in bundles made before it: ``float32``) is what the run computed in
(:mod:`engine.core.precision`); inference computes in the same, so it answers as the run's validation did.
``fused`` (absent before it: false) says the run's validation scored features of its backbone fused for
inference (:mod:`engine.models.fusion`); :meth:`Bundle.build` fuses it the same way.

``head`` is the head variant (:class:`~engine.models.heads.HeadSpec`) the weights were trained with; a
bundle without it (made before head variants) has the plain ``replace`` head. A bundle with another
head is written as version 2, so an earlier Transfer Studio, which would rebuild the wrong network,
says it was made by a newer version instead; a ``replace`` bundle stays version 1, readable by both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.core.errors import BundleError, ModelError, TransferStudioError
from engine.core.files import atomic_torch_save
from engine.core.precision import PRECISION_NAMES
from engine.models.build import build_model, head_is_last
from engine.models.bundle_file import bundle_file
from engine.models.calibration import Calibration
from engine.models.fusion import fuse_for_inference
from engine.models.heads import HeadSpec
from engine.models.preprocessing import Preprocessing

BUNDLE_FORMAT = "transfer-studio-bundle"
BUNDLE_VERSION = 2  # the newest this version reads and writes (2: a head variant other than replace)


@dataclass
class Bundle:
    """A trained classifier: architecture, weights, class names, preprocessing and how it scored."""

    architecture: str
    class_names: list[str]
    state_dict: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    head: HeadSpec = field(default_factory=HeadSpec)
    calibration: Calibration | None = None  # None: made before calibration (probabilities as trained)
    precision: str = "float32"  # what the run computed in: float32, bfloat16 or float16
    #: Whether the run's validation scored features of its fused backbone (engine.models.fusion):
    #: inference and exports then fuse it too, and answer as that validation did.
    fused: bool = False

    def to_dict(self) -> dict[str, Any]:
        extra = {"calibration": self.calibration.to_dict()} if self.calibration is not None else {}
        return extra | {
            "format": BUNDLE_FORMAT,
            "version": 1 if self.head.kind == "replace" else BUNDLE_VERSION,
            "architecture": self.architecture,
            "head": self.head.to_dict(),
            "class_names": list(self.class_names),
            "state_dict": self.state_dict,
            "preprocessing": self.preprocessing.to_dict(),
            "metrics": self.metrics,
            "config": self.config,
            "precision": self.precision,
            "fused": self.fused,
        }

    def build_model(self) -> nn.Module:
        """The network with this bundle's weights, in eval mode, on the CPU (fused for inference where
        the run's validation was: :attr:`fused`)."""
        return self.build()[0]

    def build(self) -> tuple[nn.Module, str | None]:
        """:meth:`build_model`, and the name of the head whose input is the features "none of these"
        scores (the head whose output is the model's; None when no head is last, e.g. squeezenet)."""
        try:
            model, head_names = build_model(
                self.architecture, len(self.class_names), pretrained=False, head=self.head
            )
            model.load_state_dict(self.state_dict)
        except TransferStudioError:
            raise
        except (RuntimeError, KeyError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            head = "" if self.head.kind == "replace" else f" and the {self.head.kind} head"
            raise BundleError(
                f"the bundle's weights do not fit a {self.architecture} with "
                f"{len(self.class_names)} classes{head}: {first_line}"
            ) from None
        model.eval()
        if self.fused:  # as the run's feature pass computed it: the same answers as its validation
            fuse_for_inference(model)
        last = next((h for h in head_names if head_is_last(model, h, self.preprocessing.crop_size)), None)
        return model, last


def save_bundle(path: str | Path, bundle: Bundle) -> Path:
    """Write ``bundle`` atomically to ``path``; returns the path."""
    path = Path(path)
    atomic_torch_save(bundle.to_dict(), path)
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle; BundleError with a one-line reason when the file is not a usable bundle."""
    path = bundle_file(path)  # the same checks (and words) as the command line's, before torch
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip/unpickling errors all mean "not a bundle"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path.name} is not a Transfer Studio model bundle ({reason[:160]})") from None
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path.name} is not a Transfer Studio model bundle")
    if raw.get("version", 0) > BUNDLE_VERSION:
        raise BundleError(f"{path.name} was made by a newer Transfer Studio (bundle v{raw['version']})")
    try:
        bundle = Bundle(
            architecture=str(raw["architecture"]),
            class_names=list(raw["class_names"]),
            state_dict=dict(raw["state_dict"]),
            preprocessing=Preprocessing.from_dict(raw["preprocessing"]),
            metrics=dict(raw.get("metrics", {})),
            config=dict(raw.get("config", {})),
            head=HeadSpec.from_dict(raw.get("head")),
            calibration=Calibration.from_dict(raw.get("calibration"), len(raw["class_names"])),
            precision=str(raw.get("precision", "float32")),
            fused=raw.get("fused", False) is True,
        )
    except ModelError as exc:
        raise BundleError(f"{path.name} has a head this version cannot build ({exc})") from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"{path.name} is a damaged bundle ({type(exc).__name__}: {exc})") from None
    check_bundle(bundle, path.name)
    return bundle


#: The most classes a bundle may name, and the most weights it may carry beyond its model's own.
MAX_CLASSES = 100_000
STATE_DICT_SLACK = 1.5


def check_bundle(bundle: Bundle, name: str) -> None:
    """Refuse, before anything is built, a bundle whose parts do not fit together: an unknown
    architecture, class names that are not distinct strings, a head or preprocessing out of range, or
    weights far larger than its model's. A bundle is a file people share: opening one must not cost
    more than its model."""
    from engine.core.config import HEADS, INPUT_SIZE_RANGE
    from engine.models.registry import get_model_info

    try:
        info = get_model_info(bundle.architecture)
    except ModelError as exc:
        raise BundleError(f"{name}: {exc}") from None
    names = bundle.class_names
    if not all(isinstance(c, str) and c for c in names) or not 2 <= len(names) <= MAX_CLASSES:
        raise BundleError(f"{name} is a damaged bundle: its class names are not 2 to {MAX_CLASSES} names")
    if len(set(names)) != len(names):
        raise BundleError(f"{name} is a damaged bundle: a class name appears twice")
    pre = bundle.preprocessing
    low, high = max(INPUT_SIZE_RANGE[0], info.min_input_size), INPUT_SIZE_RANGE[1]
    if not low <= pre.crop_size <= high or not pre.crop_size <= pre.resize_size <= 2 * high:
        raise BundleError(
            f"{name} asks for a {pre.crop_size} px crop of a {pre.resize_size} px image; {bundle.architecture} "
            f"takes {low} to {high} px"
        )
    if not all(math.isfinite(v) for v in (*pre.mean, *pre.std)):
        raise BundleError(f"{name} is a damaged bundle: its preprocessing has numbers that are not finite")
    if bundle.precision not in PRECISION_NAMES:
        raise BundleError(
            f"{name} is a damaged bundle: its precision {bundle.precision[:40]!r} is none of "
            f"{', '.join(PRECISION_NAMES)}"
        )
    head = bundle.head
    if head.kind not in HEADS or not 1 <= head.hidden <= 8192 or not 0 <= head.dropout < 1:
        raise BundleError(f"{name} is a damaged bundle: its head ({head.kind}) is out of range")
    tensors = bundle.state_dict.values()
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise BundleError(f"{name} is a damaged bundle: its weights are not all tensors")
    weights = sum(t.numel() for t in tensors)
    allowed = STATE_DICT_SLACK * info.num_params + head.hidden * 4096 + len(names) * 4096
    if weights > allowed:
        raise BundleError(
            f"{name} holds {weights:,} weights, far more than a {bundle.architecture} ({info.num_params:,})"
        )
