"""Classify photos with a Transfer Studio model, without Transfer Studio or torch.

Needs only onnxruntime, numpy and Pillow (``pip install onnxruntime numpy pillow``). Run it from
anywhere; it reads the files beside it (``model.onnx``, ``labels.json``, ``preprocessing.json``,
``calibration.json``):

    python predict.py IMAGE_OR_FOLDER [--json] [--top-k K]

It prepares each photo exactly as the app does (the same decode, resize, crop and scaling), and prints
one line per photo, or with ``--json`` the same JSON as ``transfer-studio predict --json``. A photo
unlike every class the model was trained on is answered "unknown" (none of these).

This file is copied into every deploy folder by ``transfer-studio export --deploy`` (it imports nothing
of the app).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
UNKNOWN_LABEL = "unknown"
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "nearest": Image.Resampling.NEAREST}  # fmt: skip
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def read_json(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text(encoding="utf-8"))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas white (as the app does)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        mode = "PA"
    if mode in ALPHA_MODES:
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def preprocess(path: Path, pre: dict[str, Any]) -> np.ndarray:
    """``[3, crop, crop]`` float32: decoded (JPEG at the smallest scale still at least the resize size),
    EXIF-rotated, shorter side resized, centre-cropped, scaled to [0, 1], normalised."""
    resize, crop = pre["resize_size"], pre["crop_size"]
    with Image.open(path) as opened:
        if opened.format == "JPEG":
            opened.draft("RGB", (resize, resize))
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)
        image = to_rgb(opened)
        image = image.copy() if image is opened else image
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = resize, int(resize * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    if size != image.size:
        image = image.resize(size, FILTERS.get(pre["interpolation"], Image.Resampling.BILINEAR))
    image = center_crop(center_crop(image, resize), crop)
    pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / 255
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(3, 1, 1)
    return (pixels - mean) / std


def list_images(target: Path, extensions: list[str]) -> list[Path]:
    if target.is_file():
        return [target]
    if not target.is_dir():
        sys.exit(f"{target}: no such file or folder")
    found = [p for p in target.rglob("*")
             if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")]  # fmt: skip
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description="Classify photos with this folder's model.")
    parser.add_argument("target", type=Path, help="a photo, or a folder of photos")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object, as transfer-studio predict --json"
    )
    parser.add_argument("--top-k", type=int, default=3, help="the K most likely classes (default 3)")
    args = parser.parse_args()
    labels = read_json("labels.json")["class_names"]
    pre = read_json("preprocessing.json")
    calibration = read_json("calibration.json")
    session = onnxruntime.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    threshold = calibration.get("ood_threshold")
    rows: list[dict[str, Any]] = []
    for path in list_images(args.target, pre["extensions"]):
        row: dict[str, Any] = {
            "path": str(path),
            "top": [],
            "unknown": False,
            "ood_score": None,
            "label": None,
            "error": None,
        }
        try:
            pixels = preprocess(path, pre)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, never fatal
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            row["error"] = f"{path.name}: unreadable ({reason})"
            rows.append(row)
            continue
        result = dict(zip(outputs, session.run(None, {input_name: pixels[None]}), strict=True))
        first = np.asarray(result[outputs[0]], dtype=np.float64)[0]
        if calibration.get("temperature") is None:  # a model made before calibration gives logits
            first = np.exp(first - first.max())
            first = first / first.sum()
        order = np.argsort(-first, kind="stable")[: max(1, min(args.top_k, len(labels)))]
        row["top"] = [[labels[i], float(first[i])] for i in order]
        if "ood_score" in result:
            score = float(np.asarray(result["ood_score"])[0])
            row["ood_score"] = score if math.isfinite(score) else None
            row["unknown"] = threshold is not None and math.isfinite(score) and score > threshold
        row["label"] = UNKNOWN_LABEL if row["unknown"] else row["top"][0][0]
        rows.append(row)
    if args.json:
        print(json.dumps({"predictions": rows, "calibrated": calibration.get("temperature") is not None}))
        return 0
    for row in rows:
        if row["error"]:
            print(f"{row['path']}\tunreadable: {row['error']}")
            continue
        ranked = ", ".join(f"{label} {prob:.3f}" for label, prob in row["top"])
        if row["unknown"]:
            ranked = f"none of these (unlike the training photos, score {row['ood_score']:.3f}); best guess {ranked}"
        print(f"{row['path']}\t{ranked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
