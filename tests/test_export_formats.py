"""Issue 27's exports: onnx-int8, OpenVINO, Core ML and TFLite, the export report, and the deploy folder that
runs without the app or torch; missing extras, bad folders and failed conversions leave nothing behind.

The acceptance runs on hymenoptera with the built-in model (a 3-epoch feature-extract run); the
speed of the int8 model against the float32 ONNX is measured by ``benchmarks/export_formats.py``
(BENCHMARKS.md), not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from engine.cli import main
from engine.inference import formats

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def hymenoptera_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model after a short default feature-extract run on hymenoptera."""
    from engine.core.config import TrainConfig
    from engine.training.trainer import train

    if not HYMENOPTERA.is_dir():
        pytest.skip("the hymenoptera dataset is not here")
    config = TrainConfig.for_strategy("feature-extract", epochs=3, device="cpu")
    result = train(config, HYMENOPTERA, run_dir=tmp_path_factory.mktemp("run") / "run")
    assert result.bundle_path is not None
    return result.bundle_path


@pytest.mark.slow
def test_int8_openvino_coreml_and_tflite_on_hymenoptera(hymenoptera_bundle, tmp_path, capsys):
    out = tmp_path / "exports"
    assert main(["export", str(hymenoptera_bundle), "--format", "onnx-int8", "--out", str(out / "m8.onnx"),
                 "--json"]) == 0  # fmt: skip
    int8 = _last_json(capsys)
    assert set(int8) == {"format", "path", "size_bytes", "val_accuracy", "reference_val_accuracy",
                         "top1_agreement", "max_prob_diff", "latency_ms", "reference_latency_ms",
                         "fp32_onnx_latency_ms"}  # fmt: skip
    assert int8["format"] == "onnx-int8"
    assert int8["val_accuracy"] >= int8["reference_val_accuracy"] - 0.01  # within 1 point of the app
    assert int8["size_bytes"] < 5_000_000  # a quarter of the float32 model's 13 MB

    assert main(["export", str(hymenoptera_bundle), "--format", "openvino", "--out", str(out / "m.xml"),
                 "--json"]) == 0  # fmt: skip
    openvino = _last_json(capsys)
    assert openvino["top1_agreement"] >= 0.99
    assert (out / "m.bin").is_file() and (out / "m.xml.json").is_file()

    assert main(["export", str(hymenoptera_bundle), "--format", "coreml", "--out", str(out / "m.mlpackage"),
                 "--json"]) == 0  # fmt: skip
    coreml = _last_json(capsys)
    assert coreml["size_bytes"] > 1_000_000 and coreml["val_accuracy"] is None  # runs only on macOS
    spec = formats.coreml_spec(out / "m.mlpackage")
    from engine.models.bundle import load_bundle

    crop = load_bundle(hymenoptera_bundle).preprocessing.crop_size
    assert spec["input_shape"] == [1, 3, crop, crop]
    assert spec["class_labels"] == ["ants", "bees"]
    assert spec["predicted_feature"] == "classLabel"
    assert main(["export", str(hymenoptera_bundle), "--format", "tflite", "--out", str(out / "m.tflite"),
                 "--json"]) == 0  # fmt: skip
    assert _last_json(capsys)["top1_agreement"] >= 0.99
    assert _leftovers(out) == ["m.bin", "m.mlpackage", "m.mlpackage.json", "m.tflite", "m.tflite.json", "m.xml",
                               "m.xml.json", "m8.onnx", "m8.onnx.json"]  # fmt: skip


@pytest.mark.slow
def test_the_deploy_folder_runs_without_torch_and_answers_as_the_app(hymenoptera_bundle, tmp_path, capsys):
    deploy = tmp_path / "deploy"
    assert main(["export", str(hymenoptera_bundle), "--format", "onnx", "--deploy", str(deploy)]) == 0
    capsys.readouterr()
    assert _leftovers(deploy) == sorted(
        ["model.onnx", "labels.json", "preprocessing.json", "calibration.json", "predict.py", "README.md"]
    )
    assert _leftovers(tmp_path) == ["deploy"]  # the ONNX made on the way is gone
    val = HYMENOPTERA / "val"
    assert main(["predict", str(hymenoptera_bundle), str(val), "--json", "--device", "cpu"]) == 0
    app = {row["path"]: row["label"] for row in _last_json(capsys)["predictions"]}

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "onnxruntime", "numpy", "pillow"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    assert has_torch.returncode != 0  # only onnxruntime, numpy and Pillow
    done = subprocess.run([str(python), str(deploy / "predict.py"), str(val), "--json"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])["predictions"]
    assert len(rows) == len(app) == 153
    same = sum(row["label"] == app[row["path"]] for row in rows)
    assert same >= 152, f"{same} of 153 the same"

    # The same folder with the int8 model.
    deploy8 = tmp_path / "deploy8"
    assert main(["export", str(hymenoptera_bundle), "--format", "onnx-int8", "--deploy", str(deploy8),
                 "--no-parity"]) == 0  # fmt: skip
    photo = next(iter(sorted((val / "bees").iterdir())))
    done = subprocess.run([str(python), str(deploy8 / "predict.py"), str(photo), "--json"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["predictions"][0]["top"][0][0] in ("ants", "bees")


def test_a_missing_extra_is_named_and_nothing_is_written(trained_bundle, tmp_path, capsys, monkeypatch):
    real = formats.importlib.util.find_spec
    monkeypatch.setattr(
        formats.importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    assert (
        main(["export", str(trained_bundle), "--format", "openvino", "--out", str(tmp_path / "m.xml")]) != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "openvino" in err[0] and "transfer-studio[export]" in err[0]
    assert _leftovers(tmp_path) == []


def test_a_failed_conversion_leaves_nothing_behind(trained_bundle, tmp_path, capsys, monkeypatch):
    def broken(fp32_onnx: Path, out: Path) -> None:
        out.write_text("half")  # a converter that dies halfway
        out.with_suffix(".bin").write_text("half")
        raise formats.TransferStudioError("cannot convert the model to OpenVINO: broken on purpose")

    monkeypatch.setattr(formats, "convert_openvino", broken)
    assert (
        main(["export", str(trained_bundle), "--format", "openvino", "--out", str(tmp_path / "m.xml")]) != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken on purpose" in err[0]
    assert _leftovers(tmp_path) == []


def test_an_unwritable_deploy_folder_is_one_line_and_writes_nothing(trained_bundle, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["export", str(trained_bundle), "--format", "onnx", "--deploy", str(blocker / "deploy")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deploy folder" in err[0]
    assert _leftovers(tmp_path) == ["a-file"]


def test_deploy_needs_an_onnx_format(trained_bundle, tmp_path, capsys):
    assert (
        main(["export", str(trained_bundle), "--format", "torchscript", "--deploy", str(tmp_path / "d")]) != 0
    )
    assert "--deploy" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_int8_needs_photos_to_calibrate_on(trained_bundle, tmp_path, capsys):
    bundle = tmp_path / "alone" / "model.pt"  # a bundle outside its run: no dataset to calibrate on
    bundle.parent.mkdir()
    bundle.write_bytes(Path(trained_bundle).read_bytes())
    assert main(["export", str(bundle), "--format", "onnx-int8", "--out", str(tmp_path / "m8.onnx")]) != 0
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "m8.onnx").exists()


def test_the_report_of_a_format_that_cannot_run_here_says_why(
    trained_bundle, synthetic_dataset, tmp_path, capsys
):
    if sys.platform == "darwin":
        pytest.skip("Core ML runs on macOS")
    out = tmp_path / "m.mlpackage"
    assert main(["export", str(trained_bundle), "--format", "coreml", "--out", str(out),
                 "--data", str(synthetic_dataset)]) == 0  # fmt: skip
    assert "only on macOS" in capsys.readouterr().out
    assert (out / "Manifest.json").is_file()
