"""Evaluation: hand-checked metrics, folder layouts, class matching by name, the CLI, predict --threshold.

The acceptance test trains efficientnet_lite0 (feature extraction) on hymenoptera and checks that
``evaluate --json`` reproduces the run's best val accuracy exactly (about a minute on a 2-core CPU).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers_images import make_image_folder

from engine.cli import main
from engine.core.errors import Cancelled, TransferStudioError
from engine.inference.evaluate import (
    evaluate,
    format_evaluation,
    metrics_from_predictions,
)
from engine.models.bundle import load_bundle

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"

# Nine images, three classes. Confusion matrix (rows = true): a [3 1 0], b [0 2 0], c [1 1 1].
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 2, 0, 1]
PROBS = [
    [0.70, 0.20, 0.10],
    [0.60, 0.30, 0.10],
    [0.50, 0.10, 0.40],
    [0.35, 0.55, 0.10],  # a -> b, true class 2nd
    [0.10, 0.80, 0.10],
    [0.20, 0.70, 0.10],
    [0.10, 0.20, 0.70],
    [0.80, 0.15, 0.05],  # c -> a, true class last: the worst error
    [0.20, 0.50, 0.30],  # c -> b, true class 2nd
]


def test_metrics_match_a_hand_computation():
    paths = [Path(f"img{i}.png") for i in range(9)]
    report = metrics_from_predictions(Y_TRUE, Y_PRED, PROBS, ["a", "b", "c"], paths=paths, top_k=2)
    assert report.confusion_matrix == [[3, 1, 0], [0, 2, 0], [1, 1, 1]]
    assert report.accuracy == pytest.approx(6 / 9)
    assert report.top_k == 2 and report.top_k_accuracy == pytest.approx(8 / 9)
    # precision = tp / column sum, recall = tp / row sum, f1 = harmonic mean
    expected = {
        "a": (3 / 4, 3 / 4, 3 / 4, 4),
        "b": (2 / 4, 2 / 2, 2 * 0.5 * 1.0 / 1.5, 2),
        "c": (1 / 1, 1 / 3, 2 * 1.0 * (1 / 3) / (4 / 3), 3),
    }
    for m in report.per_class:
        precision, recall, f1, support = expected[m.name]
        assert (m.precision, m.recall, m.f1) == pytest.approx((precision, recall, f1))
        assert m.support == support
    assert report.macro_average() == pytest.approx(
        {"precision": 0.75, "recall": (0.75 + 1 + 1 / 3) / 3, "f1": (0.75 + 2 / 3 + 0.5) / 3}
    )
    assert report.mean_loss == pytest.approx(-sum(math.log(p[t]) for p, t in zip(PROBS, Y_TRUE)) / 9)
    wrong = report.misclassified
    assert [w.path.name for w in wrong] == ["img7.png", "img8.png", "img3.png"]  # by loss, descending
    assert wrong[0].loss == pytest.approx(-math.log(0.05))
    assert [r.path.name for r in report.images_in_cell(2, 1)] == ["img8.png"]

    payload = json.loads(json.dumps(report.to_json()))
    assert {"accuracy", "top_k_accuracy", "per_class", "confusion_matrix", "misclassified"} <= set(payload)
    assert payload["per_class"]["b"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2}
    )
    first = payload["misclassified"][0]
    assert (first["path"], first["true"], first["predicted"]) == ("img7.png", "c", "a")
    assert first["probabilities"] == pytest.approx({"a": 0.8, "b": 0.15, "c": 0.05})
    assert "accuracy 0.6667" in format_evaluation(report)


def test_metrics_without_predictions_or_images_of_a_class_are_zero():
    probs = [[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0]]
    report = metrics_from_predictions([0, 0, 1, 1], None, probs, ["x", "y", "z"])
    z = report.per_class[2]
    assert (z.precision, z.recall, z.f1, z.support) == (0.0, 0.0, 0.0, 0)
    assert report.per_class[1].precision == pytest.approx(2 / 3)
    assert report.macro_average()["recall"] == pytest.approx((0.5 + 1.0) / 2)  # only classes with images
    assert math.isfinite(report.mean_loss)
    with pytest.raises(TransferStudioError):
        metrics_from_predictions([], None, [], ["x", "y"])


def test_evaluates_the_val_split_of_a_train_val_folder(trained_bundle, synthetic_dataset):
    progress = []
    report = evaluate(
        trained_bundle, synthetic_dataset, device="cpu", on_progress=lambda d, t: progress.append((d, t))
    )
    assert report.source["split"] == "val"
    assert report.n_images == 16 == sum(map(sum, report.confusion_matrix))
    assert [m.support for m in report.per_class] == [8, 8]
    assert progress[0] == (0, 16) and progress[-1] == (16, 16)
    assert report.top_k == 2 and report.top_k_accuracy == 1.0
    assert evaluate(trained_bundle, synthetic_dataset, split="train", device="cpu").n_images == 16


def test_a_flat_folder_is_evaluated_whole(trained_bundle, tmp_path):
    flat = make_image_folder(tmp_path / "flat", {"cats": 5, "dogs": 4}, splits=None, seed=3)
    report = evaluate(trained_bundle, flat, device="cpu")
    assert report.source["split"] == "all" and report.n_images == 9


def test_classes_are_matched_by_name(trained_bundle, synthetic_dataset):
    """A model whose classes are in another order gives the same per-class numbers."""
    bundle = load_bundle(trained_bundle)
    swapped = load_bundle(trained_bundle)
    swapped.class_names = list(reversed(bundle.class_names))
    for key in ("_fc.weight", "_fc.bias"):
        swapped.state_dict[key] = bundle.state_dict[key].flip(0)
    a = evaluate(bundle, synthetic_dataset, device="cpu")
    b = evaluate(swapped, synthetic_dataset, device="cpu")
    assert a.accuracy == b.accuracy
    assert {m.name: m.f1 for m in a.per_class} == pytest.approx({m.name: m.f1 for m in b.per_class})
    assert torch.equal(torch.tensor(a.confusion_matrix).flip(0, 1), torch.tensor(b.confusion_matrix))


def test_a_class_the_model_does_not_know_is_a_clear_error(trained_bundle, tmp_path):
    data = make_image_folder(tmp_path / "birds", {"cats": 2, "birds": 2})
    with pytest.raises(TransferStudioError, match="does not know the class 'birds'"):
        evaluate(trained_bundle, data, device="cpu")


def test_stops_when_asked_and_skips_unreadable_images(trained_bundle, synthetic_dataset, tmp_path):
    with pytest.raises(Cancelled):
        evaluate(trained_bundle, synthetic_dataset, device="cpu", should_stop=lambda: True)
    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    (data / "val" / "cats" / "broken.jpg").write_bytes(b"not a jpeg")
    report = evaluate(trained_bundle, data, device="cpu", batch_size=5)
    assert report.n_images == 16
    assert [p.name for p, _ in report.unreadable] == ["broken.jpg"]


# -- command line ---------------------------------------------------------------------------------


def test_cli_evaluate_text_and_json(trained_bundle, synthetic_dataset, capsys):
    assert main(["evaluate", str(trained_bundle), str(synthetic_dataset), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out and "Confusion matrix" in out
    assert main(["evaluate", str(trained_bundle), str(synthetic_dataset), "--json", "--top-k", "1"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["top_k"] == 1 and payload["top_k_accuracy"] == payload["accuracy"]
    assert sum(map(sum, payload["confusion_matrix"])) == 16


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "{missing}", "{data}"], "no such file"),
        (["evaluate", "{bundle}", "{missing}"], "does not exist"),
        (["evaluate", "{bundle}", "{data}", "--top-k", "0"], "--top-k"),
        (["evaluate", "{bundle}", "{data}", "--split", "test"], "no test/ folder"),
        (["predict", "{bundle}", "{data}", "--threshold", "1.5"], "--threshold"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, trained_bundle, synthetic_dataset, tmp_path, capsys):
    values = {"bundle": trained_bundle, "data": synthetic_dataset, "missing": tmp_path / "nope"}
    assert main([a.format(**values) for a in args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_predict_threshold_marks_unsure(trained_bundle, synthetic_dataset, tmp_path, capsys):
    folder = synthetic_dataset / "val"
    out = tmp_path / "p.csv"
    assert main(["predict", str(trained_bundle), str(folder), "--json", "--device", "cpu"]) == 0
    plain = json.loads(capsys.readouterr().out)["predictions"]
    probs = sorted(p["top"][0][1] for p in plain)
    threshold = (probs[len(probs) // 2 - 1] + probs[len(probs) // 2]) / 2  # half the images fall below
    args = ["predict", str(trained_bundle), str(folder), "--threshold", str(threshold), "--device", "cpu",
            "--no-unknown"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert sum(r["label"] == "unsure" for r in rows) == len(rows) // 2
    assert all(r["label"] in ("unsure", r["top"][0][0]) for r in rows)

    assert main([*args, "--csv", str(out), "--top-k", "2"]) == 0
    assert "unsure: " in capsys.readouterr().out
    table = list(csv.DictReader(out.open()))
    assert list(table[0]) == [
        "path",
        "label",
        "probability",
        "best_guess",
        "label_2",
        "probability_2",
        "unknown",
        "ood_score",
        "error",
    ]
    for row in table:
        below = float(row["probability"]) < threshold
        assert row["label"] == ("unsure" if below else row["best_guess"])
        assert row["best_guess"] in ("cats", "dogs")


# -- acceptance: the same accuracy as the run's validation ------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera dataset not present")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_evaluate_json_equals_the_runs_val_accuracy(tmp_path, monkeypatch, capsys, feature_cache, precision):
    """In float32 and in bfloat16 (emulated where the CPU lacks it): the bundle records the run's
    precision and evaluate computes in it, so it reproduces the validation exactly."""
    from engine.core.config import TrainConfig
    from engine.models.bundle import load_bundle
    from engine.training.trainer import train

    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(feature_cache))  # the acceptance runs' shared features
    config = TrainConfig.for_strategy("feature-extract", epochs=3, device="cpu", precision=precision)
    result = train(config, HYMENOPTERA, run_dir=tmp_path / "run")
    best = result.history[result.best_epoch - 1]
    assert load_bundle(result.bundle_path).precision == {"fp32": "float32", "bf16": "bfloat16"}[precision]

    assert main(["evaluate", str(result.bundle_path), str(HYMENOPTERA), "--json", "--device", "cpu"]) == 0
    payload = json.loads(capsys.readouterr().out)
    with capsys.disabled():
        print(f"\nevaluate accuracy {payload['accuracy']!r}, run's best val accuracy {result.best_val_acc!r}")
    assert abs(payload["accuracy"] - result.best_val_acc) <= 1e-6
    assert payload["accuracy"] == pytest.approx(best["val_acc"], abs=1e-6)
    assert payload["mean_loss"] == pytest.approx(best["val_loss"], abs=1e-4)
    assert sum(map(sum, payload["confusion_matrix"])) == 153
    assert {name: m["support"] for name, m in payload["per_class"].items()} == {"ants": 70, "bees": 83}
    losses = [m["loss"] for m in payload["misclassified"]]
    assert losses == sorted(losses, reverse=True)
