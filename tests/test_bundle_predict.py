"""Bundles (weights_only, clear errors) and prediction (top-k, folders, CSV)."""

from __future__ import annotations

import csv
import pickle

import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder

from engine.core.config import TrainConfig
from engine.core.errors import BundleError
from engine.inference.predict import Predictor, list_images, write_predictions_csv
from engine.models.build import build_model
from engine.models.bundle import Bundle, load_bundle, save_bundle
from engine.models.registry import get_model_info
from engine.training.trainer import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    data = make_image_folder(tmp / "data", {"red": 8, "green": 8})
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=2, batch_size=8, lr=1e-2, device="cpu", workers=0, input_size=SMALL_INPUT
    )
    result = train(config, data, run_dir=tmp / "run")
    return data, result


def _small_bundle(classes=("a", "b")) -> Bundle:
    model, _ = build_model("mobilenet_v3_small", len(classes), pretrained=False)
    return Bundle(
        architecture="mobilenet_v3_small",
        class_names=list(classes),
        state_dict=model.state_dict(),
        preprocessing=get_model_info("mobilenet_v3_small").preprocessing,
    )


def test_bundle_round_trips_with_weights_only(tmp_path):
    path = save_bundle(tmp_path / "m.pt", _small_bundle())
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "transfer-studio-bundle"
    bundle = load_bundle(path)
    assert bundle.class_names == ["a", "b"]
    model = bundle.build_model()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_not_a_bundle_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(BundleError, match="not a Transfer Studio model bundle"):
        load_bundle(text)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BundleError):
        load_bundle(evil)

    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(BundleError):
        load_bundle(other)

    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path / "missing.pt")


def test_bundle_of_wrong_shape_gives_clear_error(tmp_path):
    bundle = _small_bundle(("a", "b"))
    bundle.class_names = ["a", "b", "c"]
    with pytest.raises(BundleError, match="do not fit"):
        bundle.build_model()


def test_predict_image_and_folder(trained, tmp_path):
    data, result = trained
    predictor = Predictor.from_bundle(result.bundle_path, device="cpu")
    red_image = sorted((data / "val" / "red").iterdir())[0]
    top = predictor.predict_image(red_image, top_k=5)
    assert len(top) == 2  # top-k is capped at the number of classes
    assert top[0][0] == "red"
    assert abs(sum(p for _, p in top) - 1.0) < 1e-5

    (data / "val" / "red" / "junk.png").write_bytes(b"not a png")
    paths = list_images(data / "val")
    predictions = predictor.predict_paths(paths, top_k=1, batch_size=4)
    assert len(predictions) == len(paths)
    bad = [p for p in predictions if p.error]
    assert [p.path.name for p in bad] == ["junk.png"]
    good = [p for p in predictions if not p.error]
    correct = sum(p.label == p.path.parent.name for p in good)
    assert correct / len(good) >= 0.9

    out = write_predictions_csv(predictions, tmp_path / "out.csv", top_k=2)
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["path", "label", "probability"]
    assert len(rows) == len(paths) + 1
    assert rows[1][0] == str(paths[0])


def test_a_predictor_runs_each_unchanged_file_through_the_network_once(trained, tmp_path):
    """Predict, evaluate and the export's parity check on the same photos: one pass of the network;
    a file changed since (size or modification time) is run again."""
    import shutil

    from engine.inference.evaluate import evaluate

    data, result = trained
    predictor = Predictor.from_bundle(result.bundle_path, device="cpu")
    seen: list[int] = []
    predictor.model.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[0]))
    val = list_images(data / "val")
    first = predictor.predict_paths(val)
    per_photo = 2 if predictor.bundle.preprocessing.tta else 1  # the photo, and its mirror image
    readable = [p for p in first if p.error is None]
    assert len(readable) >= 8 and sum(seen) == per_photo * len(readable)

    report = evaluate(predictor, data, split="val", device="cpu")
    again = predictor.predict_paths(val)
    assert sum(seen) == per_photo * len(readable)  # remembered: nothing ran again
    assert [p.top for p in again] == [p.top for p in first]
    assert report.n_images == len(readable)
    first_label = {p.path: p.label for p in first}
    assert all(predictor.class_names[r.predicted_index] == first_label[r.path] for r in report.results)

    changed, other = readable[0].path, readable[-1]
    shutil.copy(other.path, changed)  # another photo under the same name: new size or time
    swapped = predictor.predict_paths([changed])
    assert sum(seen) == per_photo * (len(readable) + 1)
    assert swapped[0].label == other.label  # the other photo's answer (alone, not in a batch of 16)
    assert swapped[0].probability == pytest.approx(other.probability, abs=1e-5)
