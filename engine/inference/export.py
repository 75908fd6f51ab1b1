"""Exporting a bundle to ONNX or TorchScript, and checking the exported file against the in-app model.

Owns :func:`export_bundle` (the model file, plus a ``<out>.json`` sidecar holding the class names,
preprocessing and architecture; TorchScript also embeds it as the extra file ``transfer_studio.json``
and ONNX as the model property ``transfer_studio`` when the ``onnx`` package is installed), and
:func:`parity_check`, which runs images through the exported file (onnxruntime for ONNX, ``torch.jit``
for TorchScript) and through the in-app :class:`~engine.inference.predict.Predictor`, with the same preprocessed
tensors, and reports top-1 agreement and the largest probability difference.

The exported model takes a float32 ``[batch, 3, crop, crop]`` tensor, preprocessed exactly as
``engine.models.preprocessing.eval_transform`` does. A calibrated bundle's export returns the calibrated
probabilities ``[batch, classes]`` (``probabilities``) and, where the model can tell, each photo's
out-of-distribution score ``[batch]`` (``ood_score``: above the sidecar's threshold means "none of
these"), both computed inside the graph; a bundle made before calibration returns raw logits
(``logits``). The batch size is free. Both exports trace the model, so the image size is fixed to the
bundle's crop size.

Exports are float32 whatever the run computed in. The parity check compares the file with the app's
model in float32 (:data:`PARITY_TOLERANCE`); a model trained in bfloat16 answers in the app in bfloat16,
whose probabilities differ from the float32 file's by bfloat16's rounding (measured in BENCHMARKS.md,
"Issue 26": 0.021 at most on hymenoptera's 153 val photos, with every top-1 the same).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine import __version__
from engine.core.errors import DatasetError, TransferStudioError, raise_if_stopped
from engine.core.files import atomic_write_text
from engine.core.small_files import decode_json, read_json
from engine.data.datasets import DatasetReport, scan_dataset
from engine.data.outputs import check_output_file, run_dataset
from engine.inference import formats
from engine.inference.predict import Predictor, list_images
from engine.models.bundle import Bundle, load_bundle
from engine.models.heads import split_outputs
from engine.models.tta import FlipAveraged

log = logging.getLogger(__name__)

FORMATS = formats.FORMAT_NAMES  # onnx, torchscript, onnx-int8, openvino, coreml, tflite
ONNX_OPSET = 17
EXPORT_FORMAT = "transfer-studio-export"
EXPORT_VERSION = 1
EXTRA_FILE = "transfer_studio.json"  # TorchScript extra file / ONNX metadata key ("transfer_studio")
ONNX_METADATA_KEY = "transfer_studio"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"  # a bundle made before calibration
PROBABILITIES_NAME = "probabilities"
OOD_NAME = "ood_score"
PARITY_TOLERANCE = 1e-3
_LOAD_THREADS = 4


class ExportError(TransferStudioError):
    """The model could not be exported in the asked format."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_bundle` wrote."""

    path: Path
    sidecar: Path
    format: str
    exporter: str
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sidecar": str(self.sidecar),
            "format": self.format,
            "exporter": self.exporter,
            "seconds": round(self.seconds, 3),
            "size_bytes": self.path.stat().st_size if self.path.exists() else None,
        }


@dataclass(frozen=True)
class ParityReport:
    """How the exported file's outputs compare with the in-app model's on the same images.

    ``available`` is False (and the numbers None) when the runtime needed to run the file is missing.
    """

    format: str
    n_images: int
    label_agreement: float | None
    max_prob_diff: float | None
    available: bool = True
    reason: str | None = None
    disagreements: tuple[Path, ...] = ()
    unreadable: int = 0
    max_ood_diff: float | None = None  # the out-of-distribution score's, when the file computes it

    def passed(self, tolerance: float = PARITY_TOLERANCE) -> bool:
        """Same top-1 on every image, every (calibrated) probability and out-of-distribution score
        within ``tolerance``."""
        return (
            self.available
            and self.label_agreement == 1.0
            and self.max_prob_diff is not None
            and self.max_prob_diff < tolerance
            and (self.max_ood_diff is None or self.max_ood_diff < tolerance)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "available": self.available,
            "reason": self.reason,
            "n_images": self.n_images,
            "label_agreement": self.label_agreement,
            "max_prob_diff": self.max_prob_diff,
            "max_ood_diff": self.max_ood_diff,
            "passed": self.passed(),
            "disagreements": [str(p) for p in self.disagreements],
            "unreadable": self.unreadable,
        }


def export_metadata(bundle: Bundle, fmt: str) -> dict[str, Any]:
    """What travels with an exported model: classes, preprocessing, architecture, input/output layout."""
    pre = bundle.preprocessing
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model_format": fmt,
        "architecture": bundle.architecture,
        "head": bundle.head.to_dict(),
        "class_names": list(bundle.class_names),
        "preprocessing": pre.to_dict(),
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, pre.crop_size, pre.crop_size],
            "dtype": "float32",
            "description": (
                f"RGB; shorter side resized to {pre.resize_size} ({pre.interpolation}), centre crop "
                f"{pre.crop_size}, scaled to [0, 1], minus mean, divided by std (per channel)"
            ),
        },
        **_output_metadata(bundle),
        "metrics": {k: v for k, v in bundle.metrics.items() if k != "history"},
        "exported_by": f"transfer-studio {__version__}, torch {torch.__version__}",
    }


def _output_metadata(bundle: Bundle) -> dict[str, Any]:
    pre, cal = bundle.preprocessing, bundle.calibration
    averaged = " (averaged with the mirrored input's: test-time augmentation)" if pre.tta == "flip" else ""
    classes = len(bundle.class_names)
    if cal is None:
        return {"output": {"name": OUTPUT_NAME, "shape": ["batch", classes],
                           "description": "logits, in class_names order; softmax gives probabilities" + averaged},
                "calibration": None}  # fmt: skip
    outputs = [{"name": PROBABILITIES_NAME, "shape": ["batch", classes],
                "description": f"calibrated probabilities, in class_names order: softmax(logits / {cal.temperature:.6g})"
                + averaged}]  # fmt: skip
    if cal.class_means is not None:
        outputs.append({"name": OOD_NAME, "shape": ["batch"], "description": (
            "how unlike the training photos the input is: 1 - the largest cosine similarity of the head's "
            "input features (plain view) to the class means of the training photos' features; above "
            "calibration.ood_threshold the app answers 'unknown' (none of these)")})  # fmt: skip
    return {
        "output": outputs[0],
        "outputs": outputs,
        "calibration": {"temperature": cal.temperature, "ood_method": cal.ood_method if cal.class_means is not None
                        else "none", "ood_threshold": cal.ood_threshold, "ece_before": cal.ece_before,
                        "ece_after": cal.ece_after},
    }  # fmt: skip


class _Tap(nn.Module):
    """A head that keeps what it was given (the features), for :class:`_Honest` to score."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        out: torch.Tensor = self.head(x)
        return out


class _Honest(nn.Module):
    """A logits model turned into calibrated probabilities and, with a tapped head and class means, the
    out-of-distribution score of the plain view's features: what the app's Predictor answers."""

    def __init__(
        self, model: nn.Module, temperature: float, tap: _Tap | None, class_means: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self.tap = tap
        means = None if class_means is None else torch.nn.functional.normalize(class_means.float(), dim=1)
        self.register_buffer("class_means", means)

    def forward(self, x: torch.Tensor) -> Any:
        if self.tap is not None:
            self.tap.seen.clear()
        probabilities = torch.softmax(self.model(x) / self.temperature, dim=1)
        if self.tap is None or self.class_means is None:
            return probabilities
        features = self.tap.seen[0]  # the first call: the plain view
        self.tap.seen.clear()
        features = features.mean(dim=(2, 3)) if features.dim() == 4 else features.flatten(1)
        means: torch.Tensor = self.class_means  # type: ignore[assignment]  # a registered buffer
        similarity = torch.nn.functional.normalize(features, dim=1) @ means.T
        return probabilities, 1.0 - similarity.max(dim=1).values


def exportable(bundle: Bundle) -> nn.Module:
    """The module an export traces: logits for a bundle made before calibration, else calibrated
    probabilities (and the out-of-distribution score where the model can tell)."""
    built, feature_head = bundle.build()
    net = prepare_for_export(built)
    tap = None
    cal = bundle.calibration
    if cal is not None and cal.class_means is not None and feature_head is not None:
        parent_name, _, attr = feature_head.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        tap = _Tap(getattr(parent, attr))
        setattr(parent, attr, tap)
    model: nn.Module = _Logits(net).eval()
    if bundle.preprocessing.tta == "flip":  # the file averages like the app: parity holds
        model = FlipAveraged(model).eval()
    if cal is None:
        return model
    return _Honest(model, cal.temperature, tap, cal.class_means if tap is not None else None).eval()


class _Logits(nn.Module):
    """The model with a single tensor output (the main logits), whatever the architecture returns."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return split_outputs(self.model(x))[0]


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Make a model traceable; returns it (changed in place).

    The efficientnet-pytorch family's ``MemoryEfficientSwish`` is a custom autograd Function that
    neither ONNX nor TorchScript can record; it computes ``x * sigmoid(x)``, exactly ``nn.SiLU``, so
    every such module is swapped for one. (Calling the package's ``set_swish(memory_efficient=False)``
    would be wrong here: the Lite models use ReLU6, which that call would replace with Swish.) The
    built-in ``efficientnet_lite0`` has no such module; the swap keeps any future one exportable.
    """
    for qname, module in list(model.named_modules()):
        if type(module).__name__ == "MemoryEfficientSwish":
            parent_name, _, attr = qname.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, nn.SiLU())
            log.debug("export: %s MemoryEfficientSwish -> SiLU", qname)
    return model.eval()


#: The suffixes an existing export may have to be replaced by a new one (with ``force``).
EXPORT_SUFFIXES = (".onnx", ".pt", ".pth", ".ts", ".torchscript", ".ptl", ".xml", ".tflite")


def sidecar_path(out: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def export_bundle(
    bundle: str | Path | Bundle,
    fmt: str,
    out: str | Path,
    *,
    opset: int = ONNX_OPSET,
    force: bool = False,
    protect: Iterable[str | Path] = (),
    calibration_photos: Sequence[Path] = (),
) -> ExportResult:
    """Export a bundle to ``out`` in ``fmt`` (:data:`FORMATS`) and write the JSON sidecar.

    ``out`` and its sidecar are checked first (:func:`engine.data.outputs.check_output_file`): never a
    bundle, a photo, a run's file or anything inside ``protect`` (the datasets in use; a bundle given by
    path adds its run's dataset); an existing export is replaced only with ``force``. A format whose
    converter is missing says which package to install before anything is written. Every format is
    made in a scratch folder beside ``out`` and moved into place complete, so a failure leaves nothing
    behind. ``calibration_photos``: the training photos an ``onnx-int8`` export is calibrated on.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    formats.require(fmt)
    datasets = [*protect]
    if isinstance(bundle, (str, Path)):
        datasets += run_dataset(bundle)
    out = Path(out).expanduser()
    _check_export_paths(out, fmt, datasets, force)
    if isinstance(bundle, (str, Path)):
        bundle = load_bundle(bundle)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    metadata = export_metadata(bundle, fmt)
    model = exportable(bundle)
    names = [o["name"] for o in metadata.get("outputs", [metadata["output"]])]
    crop = bundle.preprocessing.crop_size
    example = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    try:
        scratch_folder = tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.")
    except OSError as exc:
        raise ExportError(f"cannot write in {out.parent}: {exc.strerror or exc}") from None
    with scratch_folder as scratch_name:
        scratch = Path(scratch_name)
        made = scratch / out.name
        with warnings.catch_warnings():
            # Tracer, deprecation and "trace might not generalise" warnings are expected here: the
            # export is checked by running it (parity_check), not by these heuristics.
            warnings.simplefilter("ignore")
            if fmt == "torchscript":
                exporter = _export_torchscript(model, example, made, metadata)
            elif fmt == "coreml":
                formats.convert_coreml(model, made, crop, bundle.class_names)
                exporter = "coremltools (ML program, float32)"
            elif fmt == "tflite":
                formats.convert_tflite(model, made, crop)
                exporter = "litert-torch (float32, batch 1)"
            else:
                fp32 = made if fmt == "onnx" else scratch / "float32.onnx"
                exporter = _export_onnx(model, example, fp32, opset, names)
                if fmt == "onnx-int8":
                    predictor = Predictor(bundle, "cpu", precision="float32")
                    formats.quantize_onnx(fp32, made, calibration_photos, lambda p: _pixels(predictor, p))
                    exporter += (
                        f", then int8 (onnxruntime static quantization, {len(calibration_photos)} photos)"
                    )
                elif fmt == "openvino":
                    formats.convert_openvino(fp32, made)
                    exporter += f", then OpenVINO IR ({_openvino_version()})"
                if fmt != "openvino":
                    _embed_onnx_metadata(made, metadata)
        _move_into_place(made, out, fmt)
    sidecar = sidecar_path(out)
    atomic_write_text(sidecar, json.dumps(metadata, indent=2) + "\n")
    seconds = time.perf_counter() - started
    log.info("exported %s to %s with %s in %.1fs", bundle.architecture, out, exporter, seconds)
    return ExportResult(out, sidecar, fmt, exporter, seconds, metadata)


def _check_export_paths(out: Path, fmt: str, datasets: list[str | Path], force: bool) -> None:
    """Refuse ``out`` (and what goes beside it) before anything is made; see :func:`export_bundle`."""
    if fmt == "coreml":
        if out.suffix.lower() != ".mlpackage":
            raise ExportError(f"{out}: a Core ML export is a folder named *.mlpackage")
        if out.exists() and not force:
            raise ExportError(f"{out} already exists: choose another name, or add --force to replace it")
        if out.exists() and not (out / "Manifest.json").is_file():
            raise ExportError(f"{out} is not a Core ML package: it is kept")
        check_output_file(out.with_name(out.name + ".tmp"), what="the exported model", datasets=datasets)
    else:
        if out.is_dir():
            raise ExportError(f"{out} is a folder; give a file name for the exported model")
        check_output_file(
            out, what="the exported model", datasets=datasets, force=force, replaceable=EXPORT_SUFFIXES
        )
    if fmt == "openvino":
        if out.suffix.lower() != ".xml":
            raise ExportError(f"{out}: an OpenVINO export is an .xml file (with its .bin beside it)")
        check_output_file(out.with_suffix(".bin"), what="the OpenVINO weights", datasets=datasets,
                          force=force, replaceable=(".bin",))  # fmt: skip
    check_output_file(sidecar_path(out), what="the export's metadata", datasets=datasets, force=force,
                      replaceable=(".json",))  # fmt: skip


def _move_into_place(made: Path, out: Path, fmt: str) -> None:
    """Move a finished export from its scratch folder to ``out`` (an OpenVINO ``.xml`` with its
    ``.bin``; a Core ML package folder, replacing the old one)."""
    if fmt == "openvino":
        os.replace(made.with_suffix(".bin"), out.with_suffix(".bin"))
    if fmt == "coreml" and out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(made, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(made, out)


def _pixels(predictor: Predictor, path: Path) -> np.ndarray | None:
    pixels = predictor.try_preprocessed(path)
    return None if isinstance(pixels, str) else pixels.numpy()


def _openvino_version() -> str:
    import openvino

    return f"openvino {openvino.__version__.split('-')[0]}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, names: Sequence[str] = (OUTPUT_NAME,)
) -> str:
    """The TorchScript-based exporter first (mature, no extra packages), then the dynamo one."""
    try:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(names),
            dynamic_axes={INPUT_NAME: {0: "batch"}} | {name: {0: "batch"} for name in names},
            opset_version=opset,
            dynamo=False,
        )
        return f"torch.onnx (TorchScript-based), opset {opset}"
    except Exception as first:  # noqa: BLE001 - any failure: try the other exporter before giving up
        log.info("TorchScript-based ONNX export failed (%s); trying the dynamo exporter", _first_line(first))
        path.unlink(missing_ok=True)
        chatter = io.StringIO()  # the dynamo exporter prints its progress to stdout
        try:
            with contextlib.redirect_stdout(chatter):
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    input_names=[INPUT_NAME],
                    output_names=list(names),
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    opset_version=max(opset, 18),
                    dynamo=True,
                    external_data=False,
                )
        except Exception as second:  # noqa: BLE001
            raise ExportError(
                f"cannot export to ONNX: {_first_line(first)} (dynamo exporter: {_first_line(second)})"
            ) from None
        log.debug("dynamo exporter output:\n%s", chatter.getvalue())
        return f"torch.onnx (dynamo), opset {max(opset, 18)}"


def _embed_onnx_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Add the metadata as an ONNX model property, when the onnx package is installed."""
    try:
        import onnx
    except ImportError:
        log.info("onnx is not installed: the class names travel in the JSON sidecar only")
        return
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {ONNX_METADATA_KEY: json.dumps(metadata)})
    onnx.save(proto, str(path))


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]) -> str:
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(metadata)})
    except Exception as exc:  # noqa: BLE001 - tracing errors come in many types
        raise ExportError(f"cannot export to TorchScript: {_first_line(exc)}") from None
    return "torch.jit.trace"


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file: its sidecar, else what is embedded in it; {} when none."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return read_json(sidecar, dict[str, Any])
    if path.suffix.lower() == ".onnx":
        with contextlib.suppress(ImportError):
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            if ONNX_METADATA_KEY in props:
                return decode_json(props[ONNX_METADATA_KEY], dict[str, Any], f"{path}'s metadata")
        return {}
    files = {EXTRA_FILE: ""}
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return decode_json(files[EXTRA_FILE], dict[str, Any], f"{path}'s metadata") if files[EXTRA_FILE] else {}


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    by_suffix = {".onnx": "onnx", ".xml": "openvino", ".mlpackage": "coreml", ".tflite": "tflite"}
    return by_suffix.get(suffix, "torchscript")


def runner(path: Path, fmt: str) -> Callable[[np.ndarray], list[np.ndarray]] | str:
    """A function batch -> the exported file's outputs (logits; or probabilities and maybe
    out-of-distribution scores), or why it cannot run here."""
    cannot = formats.runs_here(fmt)
    if cannot is not None:
        return cannot
    if fmt == "tflite":
        try:
            return formats.tflite_runner(path)
        except Exception as exc:  # noqa: BLE001 - LiteRT raises its own exception types
            raise ExportError(f"LiteRT cannot load {path.name}: {_first_line(exc)}") from None
    if fmt == "openvino":
        try:
            return formats.openvino_runner(path)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own exception types
            raise ExportError(f"OpenVINO cannot load {path.name}: {_first_line(exc)}") from None
    if fmt in ("onnx", "onnx-int8"):
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime cannot load {path.name}: {_first_line(exc)}") from None
        name = session.get_inputs()[0].name
        return lambda batch: list(session.run(None, {name: batch}))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", FutureWarning
            )  # torch.jit is deprecated, still what loads the file
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{path.name} is not a loadable TorchScript file: {_first_line(exc)}") from None

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(torch.from_numpy(batch))
        return [t.numpy() for t in out] if isinstance(out, (tuple, list)) else [out.numpy()]

    return run


def parity_check(
    bundle: str | Path | Bundle | Predictor,
    exported: str | Path,
    images: Sequence[str | Path],
    *,
    fmt: str | None = None,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ParityReport:
    """Compare the exported file with the in-app model (on the CPU, in float32 like the file) on ``images``.

    Both get the very same preprocessed tensors. ``fmt`` defaults to the file's suffix (``.onnx`` or
    else TorchScript). Unreadable images are skipped and counted.
    """
    exported = Path(exported)
    fmt = _format_of(exported, fmt)
    if not exported.is_file():
        raise ExportError(f"{exported}: no such file")
    run = runner(exported, fmt)
    if isinstance(run, str):
        return ParityReport(fmt, 0, None, None, available=False, reason=run)
    # The reference is the app's model in float32, as the file is: a bfloat16 model's own answers differ
    # from float32 by bfloat16's rounding (BENCHMARKS.md, "Issue 26"), which is not the export's doing.
    if isinstance(bundle, Predictor):
        in_fp32_here = bundle.device.type == "cpu" and bundle.precision.dtype is None
        predictor = bundle if in_fp32_here else Predictor(bundle.bundle, "cpu", precision="float32")
    else:
        opened = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        predictor = Predictor(opened, "cpu", precision="float32")
    paths = [Path(p) for p in images]
    total = len(paths)
    agree, seen, unreadable, max_diff = 0, 0, 0, 0.0
    max_ood: float | None = None
    disagreements: list[Path] = []
    if on_progress:
        on_progress(0, total)
    with ThreadPoolExecutor(_LOAD_THREADS, thread_name_prefix="parity") as pool:
        for start in range(0, total, batch_size):
            raise_if_stopped(should_stop, "the parity check")
            chunk = paths[start : start + batch_size]
            loaded = list(pool.map(predictor.try_preprocessed, chunk))
            for reason in loaded:
                if isinstance(reason, str):
                    log.warning("parity check: skipping %s", reason)
            kept = [(p, t) for p, t in zip(chunk, loaded) if isinstance(t, torch.Tensor)]
            unreadable += len(chunk) - len(kept)
            if kept:
                batch = torch.stack([t for _, t in kept])
                with torch.inference_mode():
                    logits, app_ood = predictor.file_outputs([p for p, _ in kept], batch)
                app = predictor.probabilities_of(logits)
                outputs = [torch.from_numpy(np.asarray(o)).float() for o in run(batch.numpy())]
                # a calibrated export gives probabilities (and scores); an older one logits
                other = outputs[0] if predictor.calibrated else torch.softmax(outputs[0], dim=1)
                if len(outputs) > 1 and other.shape == app.shape:
                    gap = float((outputs[1] - app_ood).abs().max())
                    max_ood = gap if max_ood is None else max(max_ood, gap)
                if other.shape != app.shape:
                    raise ExportError(
                        f"{exported.name} returns {list(other.shape)} for {list(app.shape)} expected"
                    )
                same = app.argmax(1) == other.argmax(1)
                agree += int(same.sum())
                disagreements += [p for (p, _), ok in zip(kept, same.tolist()) if not ok]
                max_diff = max(max_diff, float((app - other).abs().max()))
                seen += len(kept)
            if on_progress:
                on_progress(min(start + batch_size, total), total)
    if seen == 0:
        raise TransferStudioError("no readable image for the parity check")
    return ParityReport(
        fmt,
        seen,
        agree / seen,
        max_diff,
        disagreements=tuple(disagreements),
        unreadable=unreadable,
        max_ood_diff=max_ood,
    )


def parity_images(data: str | Path | DatasetReport, max_images: int | None = None) -> list[Path]:
    """Images for a parity check: the val/ images of a dataset that has one, else every image in it.

    ``data`` is a dataset folder or an already scanned :class:`DatasetReport` (the window's).
    """
    if isinstance(data, DatasetReport):
        report: DatasetReport | None = data
    else:
        try:
            report = scan_dataset(Path(data), verify=False)
        except DatasetError:
            report = None
    if report is None:
        assert not isinstance(data, DatasetReport)  # only a folder fails to scan
        paths = list_images(Path(data))
    elif report.auto_split:
        paths = sorted(s.path for part in report.splits.values() for s in part)
    else:
        paths = [s.path for s in report.splits["val"]]
    return paths[:max_images] if max_images else paths
