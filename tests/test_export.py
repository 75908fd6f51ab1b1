"""Export to ONNX / TorchScript: metadata travels with the file, and the file agrees with the in-app model.

The acceptance tests export a resnet18 (random weights: no download is possible offline) and an
efficientnet_lite0 (built-in weights, fresh head) bundle in both formats and compare them with the
in-app model on every hymenoptera val image (153).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_images import make_image_folder
from torch import nn

from engine.cli import main
from engine.inference.export import (
    ExportError,
    _export_onnx,
    export_bundle,
    parity_check,
    parity_images,
    prepare_for_export,
    read_export_metadata,
)
from engine.inference.predict import Predictor, list_images
from engine.models.build import build_model
from engine.models.bundle import Bundle, save_bundle
from engine.models.registry import get_model_info

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
CLASSES = ["ants", "bees"]
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@pytest.fixture(scope="module")
def bundle_paths(tmp_path_factory) -> dict[str, Path]:
    """Bundles made without training: resnet18 with random weights, lite0 with its ImageNet backbone."""
    folder = tmp_path_factory.mktemp("bundles")
    paths = {}
    for name in ("resnet18", "efficientnet_lite0"):
        torch.manual_seed(0)
        model, _ = build_model(name, len(CLASSES), pretrained=name == "efficientnet_lite0")
        bundle = Bundle(
            name,
            CLASSES,
            model.state_dict(),
            get_model_info(name).preprocessing,
            metrics={"best_val_acc": 0.5},
        )
        paths[name] = save_bundle(folder / f"{name}.pt", bundle)
    return paths


@pytest.fixture(scope="module")
def predictors(bundle_paths) -> dict[str, Predictor]:
    """One in-app model per bundle, shared by its formats' parity checks (it answers each photo once)."""
    return {name: Predictor.from_bundle(path, device="cpu") for name, path in bundle_paths.items()}


@pytest.fixture(scope="module")
def few_images(tmp_path_factory) -> list[Path]:
    root = make_image_folder(
        tmp_path_factory.mktemp("few"), {"ants": 3, "bees": 2}, splits=None, size=(90, 70)
    )
    return list_images(root)


@pytest.mark.slow
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera dataset not present")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_export_matches_the_app_on_every_val_image(name, fmt, bundle_paths, predictors, tmp_path, capsys):
    images = parity_images(HYMENOPTERA)
    assert len(images) == 153
    result = export_bundle(bundle_paths[name], fmt, tmp_path / f"model{SUFFIX[fmt]}")
    parity = parity_check(predictors[name], result.path, images)
    with capsys.disabled():
        print(
            f"\n{name} {fmt}: agreement {parity.label_agreement} on {parity.n_images} images, "
            f"max prob diff {parity.max_prob_diff:.2e} ({result.exporter})"
        )
    assert parity.available and parity.n_images == 153 and parity.unreadable == 0
    assert parity.label_agreement == 1.0 and not parity.disagreements
    assert parity.max_prob_diff < 1e-3
    assert parity.passed()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_class_names_and_preprocessing_travel_with_the_file(fmt, bundle_paths, few_images, tmp_path):
    result = export_bundle(bundle_paths["resnet18"], fmt, tmp_path / "out" / f"m{SUFFIX[fmt]}")
    sidecar = json.loads(result.sidecar.read_text())
    assert result.sidecar == tmp_path / "out" / f"m{SUFFIX[fmt]}.json"
    assert sidecar["class_names"] == CLASSES and sidecar["architecture"] == "resnet18"
    assert sidecar["preprocessing"] == get_model_info("resnet18").preprocessing.to_dict()
    assert sidecar["model_format"] == fmt and sidecar["input"]["shape"] == ["batch", 3, 224, 224]
    if fmt == "torchscript":
        extra = {"transfer_studio.json": ""}
        module = torch.jit.load(str(result.path), _extra_files=extra)
        assert json.loads(extra["transfer_studio.json"]) == sidecar
        assert module(torch.zeros(3, 3, 224, 224)).shape == (3, 2)  # any batch size
    else:
        import onnx

        proto = onnx.load(str(result.path))
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["transfer_studio"]) == sidecar
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    result.sidecar.unlink()
    assert read_export_metadata(result.path)["class_names"] == CLASSES  # embedded copy
    parity = parity_check(bundle_paths["resnet18"], result.path, few_images, batch_size=2)
    assert parity.n_images == 5 and parity.passed()


def test_parity_is_reported_unavailable_without_onnxruntime(tmp_path, bundle_paths, few_images, monkeypatch):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not checked before the runtime is found")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    parity = parity_check(bundle_paths["resnet18"], fake, few_images)
    assert not parity.available and "onnxruntime is not installed" in parity.reason
    assert parity.label_agreement is None and not parity.passed()
    assert parity.to_json()["available"] is False


def test_onnx_falls_back_to_the_dynamo_exporter(tmp_path, monkeypatch):
    import onnxruntime

    real_export = torch.onnx.export

    def legacy_broken(*args, **kwargs):
        if not kwargs.get("dynamo", True):
            raise RuntimeError("pretend the TorchScript-based exporter cannot handle this model")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", legacy_broken)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    model.eval()
    path = tmp_path / "tiny.onnx"
    exporter = _export_onnx(model, torch.randn(2, 3, 16, 16), path, 17)
    assert "dynamo" in exporter
    batch = torch.randn(5, 3, 16, 16)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
    np.testing.assert_allclose(got, model(batch).detach().numpy(), atol=1e-5)


def test_memory_efficient_swish_is_swapped_for_silu():
    from efficientnet_lite_pytorch.utils import MemoryEfficientSwish

    model = nn.Sequential(nn.Conv2d(3, 4, 3), MemoryEfficientSwish(), nn.Sequential(MemoryEfficientSwish()))
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    prepare_for_export(model)
    assert isinstance(model[1], nn.SiLU) and isinstance(model[2][0], nn.SiLU)
    torch.testing.assert_close(model(x), before)
    lite0, _ = build_model("efficientnet_lite0", 2, pretrained=False)
    relu6 = sum(isinstance(m, nn.ReLU6) for m in lite0.modules())
    prepare_for_export(lite0)
    assert sum(isinstance(m, nn.ReLU6) for m in lite0.modules()) == relu6  # Lite models keep ReLU6


def test_bad_export_requests_are_clear_errors(bundle_paths, tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        export_bundle(bundle_paths["resnet18"], "tfjs", tmp_path / "m.json")
    with pytest.raises(ExportError, match="is a folder"):
        export_bundle(bundle_paths["resnet18"], "onnx", tmp_path)
    with pytest.raises(ExportError, match="no such file"):
        parity_check(bundle_paths["resnet18"], tmp_path / "missing.onnx", [])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(ExportError, match="not a loadable TorchScript"):
        parity_check(bundle_paths["resnet18"], junk, [])


def test_parity_images_are_the_val_split_or_a_plain_folder(few_images, synthetic_dataset):
    assert len(parity_images(synthetic_dataset)) == 16  # val/ of a train/val folder
    flat = parity_images(few_images[0].parent.parent)  # a flat class folder: all of it (train, then val)
    assert len(flat) == len(few_images) and sorted(flat) == sorted(few_images)
    assert parity_images(few_images[0]) == [few_images[0]]


# -- command line ---------------------------------------------------------------------------------


def test_cli_export_checks_parity_on_the_runs_val_images(trained_bundle, synthetic_dataset, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_bundle), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "parity on 16 images: label agreement 1.0000" in text and out.is_file()

    args = ["export", str(trained_bundle), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]
    assert main([*args, "--json", "--parity-data", str(synthetic_dataset / "val")]) == 0  # --data's old name
    first, last = capsys.readouterr().out.strip().splitlines()
    payload = json.loads(first)
    assert payload["parity"]["passed"] is True and payload["export"]["format"] == "torchscript"
    assert json.loads(last)["top1_agreement"] == 1.0  # the export report's summary comes last


def test_cli_export_without_validation_images_skips_parity(bundle_paths, tmp_path, capsys):
    args = [
        "export",
        str(bundle_paths["resnet18"]),
        "--format",
        "torchscript",
        "--out",
        str(tmp_path / "m.pt"),
    ]
    assert main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["parity"]["available"] is False and "--data" in payload["parity"]["reason"]
    assert main([*args, "--data", str(tmp_path / "missing")]) == 1
    assert "--data" in capsys.readouterr().err


def test_cli_export_errors_are_one_line(bundle_paths, tmp_path, capsys):
    bad = ["export", str(tmp_path / "nope.pt"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
    assert main(bad) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as usage:
        main(["export", str(bundle_paths["resnet18"]), "--format", "tfjs", "--out", "m"])
    assert usage.value.code == 2 and "invalid choice" in capsys.readouterr().err
