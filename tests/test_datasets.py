"""Tests for engine.data.datasets: layouts, splitting, errors, skipped files, the report."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from helpers_images import make_image, make_image_folder

from engine.core.errors import DatasetError
from engine.data.datasets import DatasetReport, Sample, SkippedFile, format_report, scan_dataset
from engine.data.images import open_image

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared/data/hymenoptera"


def _names(samples: list[Sample]) -> set[str]:
    return {s.path.name for s in samples}


def _reasons(report: DatasetReport) -> dict[str, str]:
    return {s.path.name: s.reason for s in report.skipped}


# --- layouts ------------------------------------------------------------------------------------


def test_train_val_layout(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "ds", {"cats": 12, "dogs": 11})
    report = scan_dataset(root)
    assert report.root == root.resolve()
    assert report.classes == ["cats", "dogs"]
    assert not report.auto_split
    assert set(report.splits) == {"train", "val"}
    assert report.counts() == {"cats": {"train": 12, "val": 12}, "dogs": {"train": 11, "val": 11}}
    assert report.skipped == []
    assert all(s.path.parent.name == report.classes[s.label] for s in report.splits["train"])
    assert not any("No val/" in w for w in report.warnings)
    summary = json.loads(json.dumps(report.summary()))
    assert summary["classes"] == ["cats", "dogs"]
    assert summary["counts"]["dogs"]["val"] == 11
    assert summary["auto_split"] is False
    assert summary["imbalance"] == pytest.approx(12 / 11, abs=1e-3)


def test_test_split_is_kept(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 3}, splits=("train", "val", "test"))
    report = scan_dataset(root)
    assert set(report.splits) == {"train", "val", "test"}
    assert report.counts()["a"] == {"train": 3, "val": 3, "test": 3}


def test_flat_layout_gets_stratified_seeded_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"cats": 20, "dogs": 7, "owls": 2}, splits=None)
    report = scan_dataset(root, seed=3)
    assert report.auto_split
    assert report.classes == ["cats", "dogs", "owls"]
    assert report.counts() == {
        "cats": {"train": 16, "val": 4},
        "dogs": {"train": 6, "val": 1},
        "owls": {"train": 1, "val": 1},
    }
    train, val = _names(report.splits["train"]), _names(report.splits["val"])
    assert not train & val
    assert len(train | val) == 29
    assert any("No val/" in w and "20%" in w for w in report.warnings)
    # Same seed -> same split; another seed -> another split.
    assert scan_dataset(root, seed=3).splits == report.splits
    assert scan_dataset(root, seed=4).splits["val"] != report.splits["val"]


def test_val_fraction_and_at_least_one_each_side(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 10, "b": 3}, splits=None)
    counts = scan_dataset(root, val_fraction=0.5).counts()
    assert counts == {"a": {"train": 5, "val": 5}, "b": {"train": 1, "val": 2}}
    counts = scan_dataset(root, val_fraction=0.01).counts()
    assert counts["b"] == {"train": 2, "val": 1}
    counts = scan_dataset(root, val_fraction=0.99).counts()
    assert counts["b"] == {"train": 1, "val": 2}
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DatasetError, match="between 0 and 1"):
            scan_dataset(root, val_fraction=bad)


def test_train_without_val_is_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 10, "b": 10}, splits=("train",))
    report = scan_dataset(root)
    assert report.auto_split
    assert report.counts()["a"] == {"train": 8, "val": 2}


def test_empty_val_folder_means_auto_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 5, "b": 5}, splits=("train",))
    (root / "val" / "a").mkdir(parents=True)
    report = scan_dataset(root)
    assert report.auto_split
    assert any("val/ has no usable images" in w for w in report.warnings)


def test_nested_folders_are_included(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 4, "b": 4}, splits=None)
    deep = root / "a" / "2023" / "summer"
    deep.mkdir(parents=True)
    make_image((0, 0, 0)).save(deep / "nested.png")
    report = scan_dataset(root)
    assert report.counts()["a"]["train"] + report.counts()["a"]["val"] == 5


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlinks_followed_and_loops_guarded(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "ds", {"a": 4, "b": 4}, splits=None)
    outside = make_image_folder(tmp_path / "more", {"x": 3}, splits=None) / "x"
    try:
        (root / "a" / "linked").symlink_to(outside, target_is_directory=True)
        (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    except OSError:
        pytest.skip("cannot create symlinks here")
    report = scan_dataset(root)
    counts = report.counts()["a"]
    assert counts["train"] + counts["val"] == 7
    assert any("loop" in s.reason for s in report.skipped)


# --- errors ---------------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nowhere")


def test_not_a_folder(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DatasetError, match="Not a folder"):
        scan_dataset(f)


def test_no_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="No class folders"):
        scan_dataset(tmp_path)


def test_single_class(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"cats": 5}, splits=None)
    with pytest.raises(DatasetError, match="Only one class \\('cats'\\)"):
        scan_dataset(root)


def test_single_image_class_cannot_be_split(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"cats": 5, "dogs": 1}, splits=None)
    with pytest.raises(DatasetError, match="Class 'dogs' has only 1 image"):
        scan_dataset(root)


def test_class_missing_from_val(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 2, "b": 2, "birds": {"train": 2}})
    with pytest.raises(DatasetError, match="Class 'birds' has images in train/ but none in val/"):
        scan_dataset(root)


def test_class_missing_from_train(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 2, "b": 2, "birds": {"val": 2}})
    with pytest.raises(DatasetError, match="Class 'birds' has images in val/ but none in train/"):
        scan_dataset(root)


def test_val_without_train(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 2, "b": 2}, splits=("val",))
    with pytest.raises(DatasetError, match="no 'train' folder"):
        scan_dataset(root)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 2, "b": 2, "c": {"train": 1}})
    with pytest.raises(DatasetError) as info:
        scan_dataset(root)
    assert "\n" not in str(info.value)


# --- skipped files and warnings -----------------------------------------------------------------


def test_empty_class_folder_is_ignored_with_warning(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 3}, splits=None)
    (root / "empty").mkdir()
    report = scan_dataset(root)
    assert report.classes == ["a", "b"]
    assert any("'empty'" in w and "no usable images" in w for w in report.warnings)


def test_junk_files_are_ignored(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 3}, splits=None)
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "a" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "a" / "._a_000.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "a" / ".hidden.jpg").write_bytes(b"x")
    (root / ".git").mkdir()
    make_image((1, 2, 3)).save(root / ".git" / "x.png")
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._a_000.jpg").write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"x")
    report = scan_dataset(root)
    assert report.classes == ["a", "b"]
    assert report.skipped == []
    all_names = _names(report.splits["train"]) | _names(report.splits["val"])
    assert len(all_names) == 6
    assert not any(n.startswith(".") for n in all_names)


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 4, "b": 4})
    cls = root / "train" / "a"
    (cls / "fake.jpg").write_text("not really a jpeg")
    (cls / "empty.png").touch()
    (cls / "notes.txt").write_text("hello")
    (cls / "layers.psd").write_bytes(b"8BPS")
    data = (cls / "a_000.jpg").read_bytes()
    (cls / "truncated.jpg").write_bytes(data[: len(data) // 2])
    make_image((0, 0, 0)).save(root / "train" / "loose.png")
    report = scan_dataset(root)
    reasons = _reasons(report)
    assert reasons["fake.jpg"].startswith("not an image")
    assert reasons["empty.png"].startswith("empty file")
    assert reasons["notes.txt"] == "not an image (.txt)"
    assert reasons["layers.psd"].startswith("unsupported format (.psd)")
    assert reasons["truncated.jpg"].startswith("corrupt")
    assert reasons["loose.png"] == "not inside a class folder"
    assert report.counts()["a"] == {"train": 4, "val": 4}
    assert all(isinstance(s, SkippedFile) for s in report.skipped)
    summary = json.loads(json.dumps(report.summary()))
    assert {"path", "reason"} <= set(summary["skipped"][0])


def test_verify_false_only_checks_extensions(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 2, "b": 2})
    (root / "train" / "a" / "fake.jpg").write_text("not really a jpeg")
    (root / "train" / "a" / "notes.txt").write_text("hello")
    report = scan_dataset(root, verify=False)
    assert "fake.jpg" in _names(report.splits["train"])
    assert set(_reasons(report)) == {"notes.txt"}


def test_imbalance_and_tiny_class_warnings(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"big": {"train": 40, "val": 2}, "small": 12})
    report = scan_dataset(root, verify=False)
    assert report.imbalance() == pytest.approx(40 / 12)
    assert any("imbalanced" in w and "'big'" in w and "'small'" in w for w in report.warnings)
    assert not any("fewer than 10" in w for w in report.warnings)
    root2 = make_image_folder(tmp_path / "two", {"a": 12, "b": 5})
    report2 = scan_dataset(root2, verify=False)
    assert not any("imbalanced" in w for w in report2.warnings)
    assert [w for w in report2.warnings if "fewer than 10" in w] == [
        "Class 'b' has only 5 training images (fewer than 10); results will be unreliable"
    ]


def test_progress_callback(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 4})
    (root / "train" / "a" / "notes.txt").write_text("x")
    calls: list[tuple[int, int]] = []
    scan_dataset(root, on_progress=lambda d, t: calls.append((d, t)))
    # 14 photos are decoded; notes.txt is ruled out by its name before any decoding starts.
    assert calls[0] == (0, 14) and calls[-1] == (14, 14)
    assert [d for d, _ in calls] == list(range(15))


def test_progress_callback_can_cancel(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 3})

    def cancel(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_dataset(root, on_progress=cancel)


def test_scan_400_images_is_fast(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 100, "b": 100}, size=(64, 64))
    start = time.perf_counter()
    report = scan_dataset(root)
    assert time.perf_counter() - start < 3.0
    assert len(report.splits["train"]) + len(report.splits["val"]) == 400


def test_format_report(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"cats": 3, "dogs": 4}, splits=None)
    (root / "cats" / "bad.jpg").write_text("x")
    text = format_report(scan_dataset(root))
    assert "cats" in text and "dogs" in text
    assert "train" in text and "val" in text
    assert "cats/bad.jpg: not an image" in text
    assert "Warnings:" in text and "No val/" in text
    assert "fewer than 10" in text


# --- the real data set --------------------------------------------------------------------------


@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="hymenoptera data set not present")
def test_hymenoptera() -> None:
    report = scan_dataset(HYMENOPTERA)
    assert report.classes == ["ants", "bees"]
    assert not report.auto_split
    assert len(report.splits["train"]) == 245
    assert len(report.splits["val"]) == 153
    assert report.skipped == []
    train = _names(report.splits["train"])
    assert len(train) == 245
    assert "ant photos.jpg" in train
    assert "formica.jpeg" in train
    assert "imageNotFound.gif" in train  # a real (placeholder) GIF: a valid image, so it is kept
    for sample in report.splits["train"][:3]:
        assert open_image(sample.path).mode == "RGB"


# --- formats: AVIF and HEIC (issue 13) ----------------------------------------------------------

HEIC_PHOTO = Path(__file__).parent / "data" / "green_64x48.heic"  # 64x48, made with pillow-heif


def test_jpeg_and_avif_photos_are_all_counted(tmp_path: Path) -> None:
    for index, name in enumerate(("cats", "dogs")):
        folder = tmp_path / "ds" / name
        folder.mkdir(parents=True)
        for i in range(3):
            make_image((200 * index, 80, 40), (48, 40), seed=i).save(folder / f"{name}_{i}.jpg")
            make_image((40, 200 * index, 80), (48, 40), seed=i + 7).save(folder / f"{name}_{i}.avif")
    report = scan_dataset(tmp_path / "ds")
    assert report.skipped == []
    assert sum(len(samples) for samples in report.splits.values()) == 12
    avif = next(s.path for s in report.splits["train"] if s.path.suffix == ".avif")
    assert open_image(avif).size == (48, 40)


def test_heic_photos_are_counted_with_the_heic_extra(tmp_path: Path) -> None:
    pytest.importorskip("pi_heif", reason="the heic extra (pi-heif) is not installed")
    for name in ("cats", "dogs"):
        folder = tmp_path / "ds" / name
        folder.mkdir(parents=True)
        make_image((90, 90, 90), (48, 40)).save(folder / "a.jpg")
        make_image((90, 90, 90), (48, 40)).save(folder / "b.avif")
        (folder / "c.heic").write_bytes(HEIC_PHOTO.read_bytes())
    report = scan_dataset(tmp_path / "ds")
    assert report.skipped == []
    assert sum(len(samples) for samples in report.splits.values()) == 6
    image = open_image(tmp_path / "ds" / "cats" / "c.heic")
    assert image.size == (64, 48) and image.mode == "RGB"
    assert image.getpixel((3, 3))[1] > 120  # green, as written


def test_heic_without_the_extra_says_how_to_read_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.data.images as images

    monkeypatch.setattr(images, "heif_available", lambda: False)
    root = make_image_folder(tmp_path, {"a": 2, "b": 2})
    (root / "train" / "a" / "iphone.heic").write_bytes(HEIC_PHOTO.read_bytes())
    reason = _reasons(scan_dataset(root))["iphone.heic"]
    assert "heic extra" in reason and "transfer-studio[heic]" in reason


# --- the cheap checks every scan makes, and one split for every caller (issue 13) ----------------


def test_links_loops_pipes_and_empty_files_are_skipped_even_without_verifying(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 3})
    folder = root / "train" / "a"
    os.symlink(folder / "x2.jpg", folder / "x1.jpg")
    os.symlink(folder / "x1.jpg", folder / "x2.jpg")
    os.symlink("self.jpg", folder / "self.jpg")  # a link to itself
    os.symlink(tmp_path / "gone.jpg", folder / "dangling.jpg")
    os.mkfifo(folder / "pipe.png")
    (folder / "empty.jpg").touch()
    for verify in (True, False):
        reasons = _reasons(scan_dataset(root, verify=verify))
        assert reasons["x1.jpg"].startswith("link loop") and reasons["x2.jpg"].startswith("link loop")
        assert reasons["self.jpg"].startswith("link loop")
        assert reasons["dangling.jpg"] == "broken link"
        assert reasons["pipe.png"].startswith("not a regular file")
        assert reasons["empty.jpg"].startswith("empty file")


def test_every_good_photo_gets_the_same_split_whether_or_not_the_scan_decodes(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 15, "b": 12}, splits=None)
    for i in range(4):  # corrupt files among the good ones: they must not shift the split
        (root / "a" / f"broken_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    checked = scan_dataset(root, seed=5)
    quick = scan_dataset(root, seed=5, verify=False)
    broken = {p for p in (root / "a").glob("broken_*")}
    assert {s.path for s in checked.skipped} == broken
    for split in ("train", "val"):
        assert [s.path for s in checked.splits[split]] == [
            s.path for s in quick.splits[split] if s.path not in broken
        ]
    assert checked.same_split(0.2, 5) and not checked.same_split(0.2, 6)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads any file")
def test_unreadable_file_is_skipped(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, {"a": 3, "b": 3})
    locked = root / "train" / "a" / "a_000.jpg"
    locked.chmod(0)
    assert _reasons(scan_dataset(root, verify=False))["a_000.jpg"] == "unreadable (permission denied)"
