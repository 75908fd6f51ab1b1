"""A deploy folder: an exported ONNX model with everything needed to use it without the app or torch.

Owns :func:`write_deploy_folder`, which writes into a new (or empty) folder:

- ``model.onnx`` (the float32 or the int8 model);
- ``labels.json``: the class names, in the model's output order;
- ``preprocessing.json``: how a photo becomes the model's input (sizes, interpolation, mean and std,
  and the file extensions taken as photos);
- ``calibration.json``: the temperature already applied inside the model, and the threshold above
  which the model's ``ood_score`` output means "none of these";
- ``predict.py`` (a copy of :mod:`engine.inference.deploy_predict`), which needs only onnxruntime,
  numpy and Pillow and prints what ``transfer-studio predict`` prints;
- ``README.md`` with the one command to run it.

The folder is written beside its destination and renamed into place when complete: a failure leaves
nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engine.core.errors import TransferStudioError
from engine.data.images import IMAGE_EXTENSIONS
from engine.data.outputs import check_output_folder
from engine.models.bundle import Bundle

PREDICT_SCRIPT = Path(__file__).with_name("deploy_predict.py")
FILES = ("model.onnx", "labels.json", "preprocessing.json", "calibration.json", "predict.py", "README.md")


def check_deploy_folder(folder: Path, *, datasets: Sequence[Path] = ()) -> Path:
    """``folder``, checked as a new deploy folder: new or empty, outside ``datasets``, and where this
    user may write; one clear line (OutputRefused or TransferStudioError) otherwise."""
    folder = check_output_folder(Path(folder).expanduser(), what="the deploy folder", datasets=datasets)
    existing = folder.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TransferStudioError(f"cannot write the deploy folder {folder}: {existing} is not writable")
    return folder


def write_deploy_folder(
    bundle: Bundle, onnx_model: Path, folder: Path, *, datasets: Sequence[Path] = ()
) -> Path:
    """Write the deploy folder ``folder`` (new or empty; never inside ``datasets``) around ``onnx_model``."""
    folder = check_deploy_folder(folder, datasets=datasets)
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}."))
        scratch.chmod(0o755)  # a folder to share, not mkdtemp's private 0700
    except OSError as exc:
        raise TransferStudioError(
            f"cannot write the deploy folder in {parent}: {exc.strerror or exc}"
        ) from None
    try:
        shutil.copyfile(onnx_model, scratch / "model.onnx")
        _write_json(scratch / "labels.json", {"class_names": list(bundle.class_names)})
        pre = bundle.preprocessing
        _write_json(
            scratch / "preprocessing.json",
            {
                "resize_size": pre.resize_size,
                "crop_size": pre.crop_size,
                "interpolation": pre.interpolation,
                "mean": list(pre.mean),
                "std": list(pre.std),
                "test_time_augmentation": pre.tta,  # done inside the model
                "extensions": sorted(IMAGE_EXTENSIONS),
            },
        )
        cal = bundle.calibration
        _write_json(
            scratch / "calibration.json",
            {
                "temperature": None if cal is None else cal.temperature,  # applied inside the model
                "ood_threshold": None if cal is None or cal.class_means is None else cal.ood_threshold,
            },
        )
        shutil.copyfile(PREDICT_SCRIPT, scratch / "predict.py")
        (scratch / "README.md").write_text(_readme(bundle), encoding="utf-8")
        if folder.exists():  # empty (checked above): replaced by the complete one
            folder.rmdir()
        os.replace(scratch, folder)
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise TransferStudioError(f"cannot write the deploy folder {folder}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return folder


def _write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _readme(bundle: Bundle) -> str:
    classes = ", ".join(bundle.class_names)
    return f"""# {bundle.architecture} classifier ({len(bundle.class_names)} classes)

Made with Transfer Studio. Classes: {classes}.

Run it (Python 3.9 or newer):

    pip install onnxruntime numpy pillow
    python predict.py PHOTO_OR_FOLDER

`--json` prints one JSON object (as `transfer-studio predict --json`); `--top-k K` lists K classes.
A photo unlike every class the model was trained on is answered `unknown` (none of these).

Files: `model.onnx` (input `input`: float32 `[batch, 3, {bundle.preprocessing.crop_size}, {bundle.preprocessing.crop_size}]`),
`labels.json`, `preprocessing.json` (how a photo becomes the input), `calibration.json`.
"""
