"""Photos captured into a class folder (engine.sorting.capture) and one decoded image classified
(Predictor.classify_image): the engine side of the live camera (issue 27)."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import pytest
from helpers_images import make_image

from engine.core.errors import TransferStudioError
from engine.inference.predict import Predictor
from engine.sorting.capture import capture_name, save_capture

WHEN = datetime(2026, 12, 6, 10, 15, 3)


def test_a_capture_goes_into_train_class_and_never_overwrites(tmp_path):
    root = tmp_path / "pets"
    (root / "train" / "cats").mkdir(parents=True)
    (root / "val" / "cats").mkdir(parents=True)
    first = save_capture(root, "cats", b"one", WHEN)
    assert first == root / "train" / "cats" / "capture 2026-12-06 10.15.03.jpg"
    second = save_capture(root, "cats", b"two", WHEN)  # the same second: a new name
    assert second.name == "capture 2026-12-06 10.15.03 (2).jpg"
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    new_class = save_capture(root, " hamsters ", b"three", WHEN)
    assert new_class.parent == root / "train" / "hamsters"


def test_a_folder_without_splits_gets_class_folders_at_its_top(tmp_path):
    path = save_capture(tmp_path, "ants", b"x", WHEN)
    assert path.parent == tmp_path / "ants" and path.name == capture_name(WHEN)


@pytest.mark.parametrize("name", ["", "../escape", "train", "unlabeled", "a/b", ".hidden"])
def test_a_name_that_cannot_be_a_class_folder_writes_nothing(tmp_path, name):
    with pytest.raises(TransferStudioError, match="cannot be a class name"):
        save_capture(tmp_path, name, b"x", WHEN)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="permissions (root ignores them)")
def test_a_read_only_dataset_gives_one_line_and_no_file(tmp_path):
    (tmp_path / "cats").mkdir()
    tmp_path.chmod(0o555)
    (tmp_path / "cats").chmod(0o555)
    try:
        with pytest.raises(TransferStudioError, match="cannot save the photo"):
            save_capture(tmp_path, "cats", b"x", WHEN)
        with pytest.raises(TransferStudioError, match="cannot make the class folder"):
            save_capture(tmp_path, "dogs", b"x", WHEN)
    finally:
        (tmp_path / "cats").chmod(0o755)
        tmp_path.chmod(0o755)
    assert list((tmp_path / "cats").iterdir()) == []


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    def full_disk(fd, mode="r", *args, **kwargs):
        file = real_fdopen(fd, mode, *args, **kwargs)

        def write(_data):
            raise OSError(28, "No space left on device")

        file.write = write  # type: ignore[method-assign]
        return file

    monkeypatch.setattr(os, "fdopen", full_disk)
    with pytest.raises(TransferStudioError, match="No space left on device"):
        save_capture(tmp_path, "cats", b"x", WHEN)
    assert list((tmp_path / "cats").iterdir()) == []


def test_classify_image_gives_what_predict_gives_for_the_file(trained_bundle, synthetic_dataset, tmp_path):
    predictor = Predictor.from_bundle(trained_bundle, device="cpu")
    for path in sorted((synthetic_dataset / "val" / "dogs").iterdir())[:2]:
        from_file = predictor.predict_paths([path], top_k=2)[0]
        live = predictor.classify_image(predictor.load(path), top_k=2, name="camera")
        assert live.path == Path("camera")
        assert live.label == from_file.label == "dogs"
        assert [c for c, _ in live.top] == [c for c, _ in from_file.top]
        assert [p for _, p in live.top] == pytest.approx([p for _, p in from_file.top], abs=1e-4)
        assert live.unknown == from_file.unknown
        assert live.ood_score == pytest.approx(from_file.ood_score, abs=1e-4)
    grey = make_image((128, 128, 128), (64, 48))
    assert predictor.classify_image(grey.convert("L"), top_k=1).top  # any mode: converted to RGB


def test_two_threads_on_one_predictor_get_their_own_answers(trained_bundle, synthetic_dataset):
    """The live camera and a folder's prediction share the window's predictor: each pass hooks the
    feature layer for "none of these", so passes take turns (a mixed-up score was possible before)."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor.from_bundle(trained_bundle, device="cpu")
    paths = sorted((synthetic_dataset / "val").rglob("*.*"))
    images = [predictor.load(p) for p in paths]
    alone = [predictor.classify_image(image, top_k=2) for image in images]

    def live() -> list:
        return [predictor.classify_image(image, top_k=2) for image in images for _ in range(3)]

    with ThreadPoolExecutor(2) as pool:
        camera = pool.submit(live)
        folder = pool.submit(
            lambda: [predictor.predict_paths(paths, top_k=2, batch_size=8) for _ in range(3)]
        )
        live_answers, folder_answers = camera.result(), folder.result()
    for n, answer in enumerate(live_answers):
        expected = alone[n // 3]
        assert answer.label == expected.label
        assert answer.ood_score == pytest.approx(expected.ood_score, abs=1e-4)
    for run in folder_answers:
        assert [a.label for a in run] == [a.label for a in alone]


def test_the_classes_already_there_are_those_captures_would_join(tmp_path):
    from engine.sorting.capture import existing_classes

    assert existing_classes(tmp_path / "missing") == []
    (tmp_path / "bees").mkdir()
    (tmp_path / ".thumbs").mkdir()
    assert existing_classes(tmp_path) == ["bees"]
    (tmp_path / "train" / "ants").mkdir(parents=True)
    assert existing_classes(tmp_path) == ["ants"]  # with split folders: train/'s classes
