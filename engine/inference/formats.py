"""The export formats beyond ONNX and TorchScript, each made from the float32 ONNX or TorchScript file.

Owns what each format needs installed (:data:`NEEDS`, the ``export`` extra), how it is converted and
how a converted file is run on this machine:

- ``onnx-int8``: onnxruntime's static quantization (int8 weights per channel, uint8 activations, as
  QLinearConv and friends: 1.6x the float32 model's speed on the built-in model here, where the QDQ
  layout ran at 1.17x), calibrated on training photos preprocessed as the app does, with ranges from
  the 99.999th percentile of each activation (on hymenoptera every top-1 stayed the app's, where the
  plain min/max ranges and the entropy method changed 2 of 153);
- ``openvino``: OpenVINO IR (``.xml`` with its ``.bin``) through OpenVINO's own converter, run by
  OpenVINO's CPU plugin;
- ``coreml``: a Core ML ``.mlpackage`` (ML program) through coremltools, from the TorchScript trace. It
  converts on any system; only macOS runs it, so here it is checked by its spec alone;
- ``tflite``: a LiteRT (TensorFlow Lite) flatbuffer through Google's litert-torch (Apache-2.0, no
  TensorFlow needed), batch 1, run by LiteRT's interpreter (the ``tflite`` extra: it brings JAX and
  more, so it is kept apart from ``export``).

Every converter writes into a scratch folder; :func:`engine.inference.export.export_bundle` moves the
result into place only once it is complete, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from engine.core.errors import TransferStudioError

log = logging.getLogger(__name__)

#: The Python packages each format needs to be made (and, but for Core ML, run), all in the ``export``
#: extra: onnx and onnxruntime (MIT, Apache-2.0), openvino (Apache-2.0), coremltools (BSD-3-Clause).
NEEDS: dict[str, tuple[str, ...]] = {
    "onnx": (),  # torch writes it; onnxruntime (for the checks) is optional
    "torchscript": (),
    "onnx-int8": ("onnx", "onnxruntime"),
    "openvino": ("openvino",),
    "coreml": ("coremltools",),
    "tflite": ("litert_torch", "ai_edge_litert"),
}
#: The extra that brings each format's packages.
EXTRA = {"tflite": "tflite"}
#: The file name suffix of each format's model ("" for a folder of the format's own).
SUFFIXES = {
    "onnx": ".onnx",
    "torchscript": ".pt",
    "onnx-int8": ".onnx",
    "openvino": ".xml",
    "coreml": ".mlpackage",
    "tflite": ".tflite",
}
FORMAT_NAMES = tuple(NEEDS)
#: Training photos the int8 quantization is calibrated on (spread over the classes).
CALIBRATION_PHOTOS = 100
#: Photos whose activations the calibration holds at a time.
CALIBRATION_CHUNK = 8


class FormatUnavailable(TransferStudioError):
    """A format whose converter is not installed here."""


def missing_packages(fmt: str) -> list[str]:
    """The packages ``fmt`` needs that are not installed (without importing them)."""
    return [name for name in NEEDS.get(fmt, ()) if importlib.util.find_spec(name) is None]


def require(fmt: str) -> None:
    """Raise :class:`FormatUnavailable`, naming what to install, when ``fmt`` cannot be made here."""
    missing = missing_packages(fmt)
    if missing:
        names = " ".join(name.replace("_", "-") for name in missing)
        raise FormatUnavailable(
            f"the {fmt} export needs {' and '.join(missing)}, which is not installed "
            f"({install_hint(fmt)}, or pip install {names})"
        )


def install_hint(fmt: str) -> str:
    """The pip command that brings ``fmt``'s converter."""
    return f"pip install 'transfer-studio[{EXTRA.get(fmt, 'export')}]'"


def runs_here(fmt: str) -> str | None:
    """None when a ``fmt`` file can be run on this machine, else why not (in words)."""
    if fmt == "coreml" and sys.platform != "darwin":
        return "Core ML models run only on macOS (this file was checked by its spec)"
    if fmt in ("onnx", "onnx-int8") and importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime)"
    missing = missing_packages(fmt)
    return f"{' and '.join(missing)} is not installed ({install_hint(fmt)})" if missing else None


def calibration_photos(training: Sequence[Any]) -> list[Path]:
    """Up to :data:`CALIBRATION_PHOTOS` of a split's samples (anything with a ``path``), spread evenly
    over the list (which is sorted by class), for :func:`quantize_onnx`."""
    step = max(1, len(training) // CALIBRATION_PHOTOS)
    return [sample.path for sample in training[::step]][:CALIBRATION_PHOTOS]


def quantize_onnx(
    fp32_onnx: Path, out: Path, photos: Sequence[Any], preprocess: Callable[[Any], np.ndarray | None]
) -> None:
    """Write ``out``: ``fp32_onnx`` statically quantized to int8, calibrated on ``photos``.

    ``preprocess(photo)`` gives a photo's ``[3, H, W]`` float32 input as the app preprocesses it (None
    for one that cannot be read).
    """
    require("onnx-int8")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    inputs = [pixels[None].astype(np.float32) for pixels in map(preprocess, photos) if pixels is not None]

    class Photos(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime's untyped base
        """The photos, handed out a stretch at a time (``set_range``): the percentile method keeps
        every activation of the photos it was given until it merges them into its histograms, so it
        gets :data:`CALIBRATION_CHUNK` photos at a time (100 photos at once took 24 GB)."""

        def __init__(self) -> None:
            self._todo: list[np.ndarray] = []

        def __len__(self) -> int:
            return len(inputs)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._todo = list(inputs[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return {"input": self._todo.pop(0)} if self._todo else None

    stride = max(d for d in range(1, CALIBRATION_CHUNK + 1) if len(inputs) % d == 0) if inputs else 1
    if not inputs:
        raise TransferStudioError("the int8 export needs training photos to calibrate on; give --data DATA")
    prepared = out.with_name(out.stem + ".prepared.onnx")
    try:
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Photos(),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibStridedMinMax": stride},  # despite its name: any method, in stretches
        )
    except TransferStudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime's tools raise many types
        raise TransferStudioError(f"cannot quantize the model to int8: {_first_line(exc)}") from None
    finally:
        prepared.unlink(missing_ok=True)


def convert_openvino(fp32_onnx: Path, out: Path) -> None:
    """Write ``out`` (``.xml``) and its ``.bin``: the ONNX model as OpenVINO IR."""
    require("openvino")
    import openvino

    try:
        model = openvino.convert_model(str(fp32_onnx))
        openvino.save_model(model, str(out), compress_to_fp16=False)
    except Exception as exc:  # noqa: BLE001
        raise TransferStudioError(f"cannot convert the model to OpenVINO: {_first_line(exc)}") from None


class _ProbabilitiesOnly(nn.Module):
    """The export's first output alone (the calibrated probabilities, or the logits of a bundle made
    before calibration): Core ML's classifier takes one tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Any) -> Any:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def convert_coreml(model: nn.Module, out: Path, crop_size: int, class_names: Sequence[str]) -> None:
    """Write ``out`` (an ``.mlpackage`` folder) from the export's module: a classifier whose input is
    ``[1, 3, crop, crop]`` named ``input`` and whose spec lists the class labels (``classLabel`` and
    ``classLabel_probs``; without the out-of-distribution score, which a Core ML classifier has no
    place for)."""
    require("coreml")
    import warnings

    import torch

    with _quiet_coremltools():
        import coremltools as ct

    single = _ProbabilitiesOnly(with_fixed_padding(model, crop_size)).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(single, torch.zeros(1, 3, crop_size, crop_size), check_trace=False)
        with _quiet_coremltools():
            converted = ct.convert(
                traced,
                inputs=[ct.TensorType(name="input", shape=(1, 3, crop_size, crop_size), dtype=np.float32)],
                classifier_config=ct.ClassifierConfig(list(class_names)),
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT32,
            )
        converted.short_description = "Transfer Studio image classifier"
        converted.user_defined_metadata["class_names"] = json.dumps(list(class_names))
        converted.save(str(out))
    except Exception as exc:  # noqa: BLE001 - coremltools raises many types
        shutil.rmtree(out, ignore_errors=True)
        raise TransferStudioError(f"cannot convert the model to Core ML: {_first_line(exc)}") from None


@contextlib.contextmanager
def _quiet_coremltools() -> Iterator[None]:
    """coremltools logs warnings about untested versions and its macOS-only runtime at import and
    prints progress bars while converting: into the debug log instead."""
    level = logging.getLogger("coremltools").level
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
            yield
    finally:
        logging.getLogger("coremltools").setLevel(level)
        log.debug("coremltools said:\n%s", chatter.getvalue()[-2000:])


def with_fixed_padding(model: nn.Module, size: int) -> nn.Module:
    """``model`` (changed in place) with each TensorFlow-style "same"-padding convolution, which works
    its padding out from the input's shape on every call, padding by the fixed amounts a ``size`` px
    input needs: shape arithmetic that Core ML's converter cannot take."""
    import torch

    inputs: dict[str, tuple[int, int]] = {}
    convs = {name: m for name, m in model.named_modules() if type(m).__name__ == "Conv2dDynamicSamePadding"}

    def remember(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            inputs[name] = (int(args[0].shape[-2]), int(args[0].shape[-1]))

        return hook

    handles = [conv.register_forward_pre_hook(remember(name)) for name, conv in convs.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    for name, conv in convs.items():
        if name not in inputs:
            continue
        pads = []
        for length, k, s, d in zip(inputs[name], conv.kernel_size, conv.stride, conv.dilation, strict=True):
            total = max((-(-length // s) - 1) * s + (k - 1) * d + 1 - length, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)  # fmt: skip
        plain.weight, plain.bias = conv.weight, conv.bias
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), plain))
    return model


def coreml_spec(path: Path) -> dict[str, Any]:
    """What a Core ML package declares: its input's name and shape, its classifier outputs, and the
    class labels."""
    require("coreml")
    with _quiet_coremltools():
        import coremltools as ct

        spec = ct.utils.load_spec(str(path))
    first = spec.description.input[0]
    return {
        "input": first.name,
        "input_shape": [int(n) for n in first.type.multiArrayType.shape],
        "predicted_feature": spec.description.predictedFeatureName,
        "predicted_probabilities": spec.description.predictedProbabilitiesName,
        "class_labels": json.loads(spec.description.metadata.userDefined.get("class_names", "[]")),
    }


def convert_tflite(model: nn.Module, out: Path, crop_size: int) -> None:
    """Write ``out`` (``.tflite``): the export's module through litert-torch, for one photo at a time."""
    require("tflite")
    import torch

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
            import litert_torch

            edge = litert_torch.convert(model.eval(), (torch.zeros(1, 3, crop_size, crop_size),))
            edge.export(str(out))
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        out.unlink(missing_ok=True)
        raise TransferStudioError(f"cannot convert the model to TFLite: {_first_line(exc)}") from None
    finally:
        log.debug("litert-torch said:\n%s", chatter.getvalue()[-2000:])


def tflite_runner(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A function batch -> the TFLite model's outputs, photo by photo on LiteRT's interpreter."""
    require("tflite")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    # The outputs in the model's own order (probabilities, then the score), as the ONNX file gives them.
    targets = sorted(interpreter.get_output_details(), key=lambda d: str(d["name"]))
    order = [d["index"] for d in targets]

    def run(batch: np.ndarray) -> list[np.ndarray]:
        rows: list[list[np.ndarray]] = []
        for photo in batch:
            interpreter.set_tensor(source, photo[None].astype(np.float32))
            interpreter.invoke()
            rows.append([np.array(interpreter.get_tensor(index)) for index in order])
        return [np.concatenate([row[i] for row in rows]) for i in range(len(order))]

    return run


def openvino_runner(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A function batch -> the IR's outputs, on OpenVINO's CPU plugin."""
    require("openvino")
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU")
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> list[np.ndarray]:
        results = request.infer({0: batch})
        return [np.asarray(results[output]) for output in compiled.outputs]

    return run


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
