"""Honest answers (issue 24), engine side: the calibration a run fits and its bundle carries, the
"none of these" score, older bundles, and exports that output calibrated probabilities."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from helpers_images import SMALL_INPUT
from PIL import Image

from engine.cli import main
from engine.core.config import TrainConfig
from engine.core.errors import BundleError
from engine.inference.evaluate import evaluate
from engine.inference.export import (
    OOD_NAME,
    PROBABILITIES_NAME,
    export_bundle,
    parity_check,
    read_export_metadata,
)
from engine.inference.predict import Predictor, list_images
from engine.models.bundle import load_bundle
from engine.models.calibration import (
    OOD_PASS_RATE,
    Calibration,
    coverage,
    expected_calibration_error,
    fit_calibration,
    ood_scores,
    reliability,
)
from engine.training.trainer import train


def test_fit_calibration_never_worsens_the_error_where_it_was_measured():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (60,), generator=g)
    logits = torch.randn(60, 3, generator=g) + 2 * torch.nn.functional.one_hot(labels, 3)
    cal = fit_calibration(logits, labels)
    assert cal.ece_after <= cal.ece_before
    assert cal.ece_after == pytest.approx(expected_calibration_error(cal.probabilities(logits), labels))
    assert cal.class_means is None and cal.ood_threshold is None


def test_class_means_and_a_threshold_that_lets_95_percent_through():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, 16, generator=g) * 4
    train_labels = torch.tensor([0, 1] * 20)
    train_features = centres[train_labels] + torch.randn(40, 16, generator=g)
    val_labels = torch.tensor([0, 1] * 50)
    val_features = centres[val_labels] + torch.randn(100, 16, generator=g)
    logits = torch.randn(100, 2, generator=g)
    cal = fit_calibration(logits, val_labels, val_features, train_features, train_labels)
    assert cal.class_means is not None and cal.class_means.shape == (2, 16)
    assert torch.allclose(cal.class_means.norm(dim=1), torch.ones(2))
    passed = (cal.ood(val_features) <= cal.ood_threshold).float().mean()
    assert float(passed) == pytest.approx(OOD_PASS_RATE, abs=0.01)
    far = -centres.mean(0, keepdim=True).repeat(5, 1) * 3 + torch.randn(5, 16, generator=g)
    assert bool((ood_scores(far, cal.class_means) > cal.ood_threshold).all())
    round_trip = Calibration.from_dict(cal.to_dict(), 2)
    assert round_trip is not None and round_trip.ood_threshold == cal.ood_threshold
    assert Calibration.from_dict(None, 2) is None
    with pytest.raises(ValueError):
        Calibration.from_dict({**cal.to_dict(), "temperature": -1.0}, 2)
    with pytest.raises(ValueError):
        Calibration.from_dict(cal.to_dict(), 3)  # class means of 2 classes for a 3-class model


def test_reliability_bins_and_coverage():
    probabilities = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    labels = torch.tensor([0, 1, 1, 0])
    bins = reliability(probabilities, labels)
    assert len(bins) == 15 and sum(b["photos"] for b in bins) == 4
    top = next(b for b in bins if b["low"] < 0.95 <= b["high"])
    assert top["photos"] == 1 and top["accuracy"] == 1.0
    table = {row["threshold"]: row for row in coverage(probabilities, labels, (0.5, 0.9, 0.99))}
    assert table[0.5]["kept"] == 4 and table[0.5]["accuracy"] == 0.75
    assert table[0.9]["kept"] == 1 and table[0.9]["accuracy"] == 1.0
    assert table[0.99]["kept"] == 0 and table[0.99]["accuracy"] is None


def test_a_run_is_calibrated_and_predict_uses_it(trained_bundle, synthetic_dataset, tmp_path, capsys):
    bundle = load_bundle(trained_bundle)
    cal = bundle.calibration
    assert cal is not None and cal.temperature > 0 and cal.class_means is not None
    assert cal.photos == 16 and math.isfinite(cal.ood_threshold)
    predictor = Predictor(bundle, "cpu")
    assert predictor.calibrated and predictor.can_say_unknown
    images = list_images(synthetic_dataset / "val")
    logits, scores = predictor.file_outputs(images, torch.stack([predictor.preprocessed(p) for p in images]))
    shown = predictor.predict_paths(images, top_k=2)
    expected = torch.softmax(logits / cal.temperature, dim=1).max(dim=1).values
    assert [p.probability for p in shown] == pytest.approx(expected.tolist(), abs=1e-6)
    assert [p.ood_score for p in shown] == pytest.approx(scores.tolist(), abs=1e-6)
    assert sum(p.unknown for p in shown) == int((scores > cal.ood_threshold).sum()) <= 1
    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(3):  # checkerboards, unlike the flat colour photos it was trained on
        board = torch.zeros(96, 96, 3, dtype=torch.uint8)
        board[(torch.arange(96)[:, None] // 12 + torch.arange(96)[None, :] // 12) % 2 == 0] = 255
        Image.fromarray(board.roll(i * 4, 0).numpy()).save(odd / f"board-{i}.png")
    assert all(p.unknown for p in predictor.predict_paths(list_images(odd)))
    report = evaluate(predictor, synthetic_dataset).to_json()
    assert report["ece_before"] >= 0 and report["ece_after"] >= 0 and report["calibration"]["calibrated"]


def test_a_bundle_made_before_calibration_predicts_as_before(
    trained_bundle, synthetic_dataset, tmp_path, capsys
):
    raw = torch.load(trained_bundle, weights_only=True)
    del raw["calibration"]
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    predictor = Predictor.from_bundle(old, "cpu")
    assert not predictor.calibrated and not predictor.can_say_unknown and predictor.unknown_threshold is None
    images = list_images(synthetic_dataset / "val")
    logits = predictor.logits(torch.stack([predictor.preprocessed(p) for p in images]))
    shown = predictor.predict_paths(images)
    assert [p.probability for p in shown] == pytest.approx(
        torch.softmax(logits, 1).max(1).values.tolist(), abs=1e-6
    )
    assert not any(p.unknown for p in shown) and all(p.ood_score is None for p in shown)
    table = tmp_path / "old.csv"
    assert main(["predict", str(old), str(synthetic_dataset / "val"), "--csv", str(table), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "uncalibrated" in err
    assert json.loads(out.strip().splitlines()[-1])["calibrated"] is False
    rows = list(csv.DictReader(table.open()))
    assert all(r["unknown"] == "0" and r["ood_score"] == "" for r in rows)
    assert main(["evaluate", str(old), str(synthetic_dataset), "--json"]) == 0
    honesty = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["calibration"]
    assert honesty["calibrated"] is False and honesty["ece_before"] == honesty["ece_after"]
    raw["calibration"] = {"temperature": "warm"}
    torch.save(raw, old)
    with pytest.raises(BundleError, match="damaged"):
        load_bundle(old)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exports_output_calibrated_probabilities_and_the_score(
    fmt, trained_bundle, synthetic_dataset, tmp_path
):
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    result = export_bundle(trained_bundle, fmt, out)
    meta = read_export_metadata(result.path)
    cal = load_bundle(trained_bundle).calibration
    assert [o["name"] for o in meta["outputs"]] == [PROBABILITIES_NAME, OOD_NAME]
    assert meta["calibration"]["temperature"] == pytest.approx(cal.temperature)
    assert meta["calibration"]["ood_method"] == "class-mean-cosine"
    assert meta["calibration"]["ood_threshold"] == pytest.approx(cal.ood_threshold)
    parity = parity_check(trained_bundle, result.path, list_images(synthetic_dataset / "val"))
    assert parity.passed() and parity.max_ood_diff is not None and parity.max_ood_diff < 1e-3


def test_a_fine_tuned_run_is_calibrated_on_the_image_path(synthetic_dataset, tmp_path):
    config = TrainConfig.for_strategy("fine-tune", epochs=1, batch_size=8, device="cpu", workers=0,
                                      input_size=SMALL_INPUT, head_first=False)  # fmt: skip
    result = train(config, synthetic_dataset, run_dir=tmp_path / "run")
    cal = load_bundle(result.bundle_path).calibration
    assert cal is not None and cal.class_means is not None and cal.photos == 16
    predictor = Predictor.from_bundle(result.bundle_path, "cpu")
    shown = predictor.predict_paths(list_images(synthetic_dataset / "val"))
    assert sum(p.unknown for p in shown) <= 1  # the threshold lets 95% of the val photos through
