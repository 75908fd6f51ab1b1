"""Sorting photos with the model's help (engine and CLI): photos to sort in the scan, calibrated
proposals, the review order, moves with a journal and undo, the photo map, and bad input."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from helpers_images import class_colour, make_image, make_image_folder

from engine.cli import main
from engine.core.errors import Cancelled, DatasetError, TransferStudioError
from engine.data.datasets import format_report, scan_dataset
from engine.models.calibration import expected_calibration_error, fit_temperature
from engine.sorting.features import PhotoFeatures, photo_features
from engine.sorting.journal import accept, check_class_name, journal_file, read_journal, undo_last
from engine.sorting.photo_map import project, suggest_groups
from engine.sorting.proposals import expected_mistakes, fit_proposals, read_accept_csv
from engine.sorting.review import review_order


def _unlabeled(
    folder: Path, per_class: dict[int, int], size: tuple[int, int] = (48, 48), seed: int = 7
) -> dict[str, int]:
    """Photos of the given class colours in ``folder`` (some in a sub-folder); returns name -> class."""
    truth = {}
    for cls, n in per_class.items():
        for i in range(n):
            where = folder / ("deep/er" if i % 3 == 0 else "")
            where.mkdir(parents=True, exist_ok=True)
            name = f"photo {cls}-{i}.jpg"
            make_image(class_colour(cls), size, seed=seed * 1000 + cls * 100 + i).save(
                where / name, quality=90
            )
            truth[name] = cls
    return truth


@pytest.fixture
def to_sort(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """train/ and val/ of two colour classes (6 photos each) and 12 photos to sort in unlabeled/."""
    root = make_image_folder(tmp_path / "pets", {"cats": 6, "dogs": 6})
    return root, _unlabeled(root / "unlabeled", {0: 6, 1: 6})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# -- the scan ------------------------------------------------------------------------------------


def test_scan_counts_photos_to_sort_apart_in_both_layouts(tmp_path):
    split = make_image_folder(tmp_path / "split", {"cats": 3, "dogs": 3})
    flat = make_image_folder(tmp_path / "flat", {"cats": 4, "dogs": 4}, splits=None)
    for root in (split, flat):
        _unlabeled(root / "unlabeled", {0: 2, 1: 3})
        (root / "unlabeled" / "broken.jpg").write_bytes(b"not a photo")
        report = scan_dataset(root, list_unlabeled=True)
        assert report.classes == ["cats", "dogs"]  # unlabeled/ is never a class
        assert len(report.unlabeled) == 5 and report.unlabeled_root == root / "unlabeled"
        assert all(p.is_relative_to(root / "unlabeled") for p in report.unlabeled)
        assert not any(s.path.is_relative_to(root / "unlabeled") for ss in report.splits.values() for s in ss)
        assert [s.path.name for s in report.skipped] == ["broken.jpg"]  # listed as skipped
        assert report.summary()["unlabeled"] == 5
        assert "Photos to sort: 5 in unlabeled/" in format_report(report)
        assert not any("unlabeled" in w for w in report.warnings)
        training = scan_dataset(root)  # training does not list them, and still never takes them as a class
        assert training.unlabeled == [] and training.classes == ["cats", "dogs"]
        assert sum(len(s) for s in training.splits.values()) == sum(len(s) for s in report.splits.values())


def test_scan_command_counts_photos_to_sort(to_sort, tmp_path, capsys):
    root, _ = to_sort
    assert main(["scan", str(root), "--json"]) == 0
    assert _json(capsys)["unlabeled"] == 12
    other = tmp_path / "more"
    _unlabeled(other, {1: 2})
    assert main(["scan", str(root), "--unlabeled", str(other)]) == 0
    assert "Photos to sort: 2 in " in capsys.readouterr().out


def test_scan_takes_another_folder_of_photos_to_sort_and_refuses_a_class_folder(tmp_path):
    root = make_image_folder(tmp_path / "pets", {"cats": 3, "dogs": 3})
    elsewhere = tmp_path / "phone export"
    _unlabeled(elsewhere, {0: 2})
    report = scan_dataset(root, unlabeled=elsewhere)
    assert len(report.unlabeled) == 2 and report.unlabeled_root == elsewhere
    with pytest.raises(DatasetError, match="inside the dataset's class folders"):
        scan_dataset(root, unlabeled=root / "train" / "cats")
    with pytest.raises(DatasetError, match="holds the dataset itself"):
        scan_dataset(root, unlabeled=tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        scan_dataset(root, unlabeled=tmp_path / "missing")


# -- calibration -----------------------------------------------------------------------------------


def test_temperature_undoes_over_confidence_and_keeps_the_answers():
    generator = torch.Generator().manual_seed(0)
    n, classes = 4000, 3
    labels = torch.randint(0, classes, (n,), generator=generator)
    honest = torch.randn(n, classes, generator=generator) + 1.5 * torch.nn.functional.one_hot(labels, classes)
    right = torch.distributions.Categorical(logits=honest).sample()  # labels drawn from honest probabilities
    over = honest * 4  # four times too sure
    t = fit_temperature(over, right)
    assert 3.3 < t < 4.8
    before = expected_calibration_error(torch.softmax(over, 1), right)
    after = expected_calibration_error(torch.softmax(over / t, 1), right)
    assert after < 0.03 < before / 2
    assert torch.equal((over / t).argmax(1), over.argmax(1))


def test_temperature_on_a_few_right_answers_stays_modest():
    logits = torch.tensor([[4.0, -4.0], [-3.0, 3.0]] * 5)
    labels = torch.tensor([0, 1] * 5)
    t = fit_temperature(logits, labels)
    mean_confidence = float(torch.softmax(logits / t, 1).max(1).values.mean())
    assert math.isclose(mean_confidence, 11 / 12, abs_tol=1e-3)  # (10 right + 1) / (10 + 2)
    assert fit_temperature(torch.empty(0, 2), torch.empty(0, dtype=torch.long)) == 1.0


def test_ece_of_known_bins():
    probabilities = torch.tensor([[0.9, 0.1]] * 10)
    labels = torch.tensor([0] * 9 + [1])  # 0.9 confident, 90% right
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-6)
    assert expected_calibration_error(probabilities, torch.tensor([0] * 5 + [1] * 5)) == pytest.approx(0.4)


# -- proposals and the review order --------------------------------------------------------------


def _blobs(seed: int = 0) -> PhotoFeatures:
    """Two classes of features around two centres; photos to sort from both, with exact duplicates."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, 32, generator=g) * 3
    labels = [0] * 8 + [1] * 8
    labeled = centres[labels] + torch.randn(16, 32, generator=g)
    truth = [0] * 20 + [1] * 20
    unlabeled = centres[truth] + torch.randn(40, 32, generator=g) * 1.5
    unlabeled[1] = unlabeled[0]  # a duplicate
    names = [Path(f"u{i}.jpg") for i in range(40)]
    return PhotoFeatures(
        ["a", "b", "c"], [Path(f"l{i}") for i in range(16)], labels, labeled, names, unlabeled
    )


def test_proposals_rank_every_photo_and_never_suggest_a_class_without_photos():
    features = _blobs()
    proposals = fit_proposals(features)
    assert [p.path for p in proposals.proposals] == features.unlabeled_paths
    assert sorted(p.review_rank for p in proposals.proposals) == list(range(1, 41))
    assert proposals.classes == ["a", "b", "c"] and proposals.classes_without_photos == ["c"]
    assert {p.suggested for p in proposals.proposals} <= {"a", "b"}
    right = sum(p.suggested == ("a" if i < 20 else "b") for i, p in enumerate(proposals.proposals))
    assert right >= 36
    assert (
        min(p.confidence for p in proposals.proposals) >= 0.5
        and max(p.confidence for p in proposals.proposals) < 1
    )
    assert 0 < proposals.estimated_accuracy <= 1
    sure = proposals.sure(0.9)
    assert all(p.confidence >= 0.9 for p in sure)
    assert expected_mistakes(sure) == pytest.approx(sum(1 - p.confidence for p in sure))


def test_review_order_spreads_over_classes_and_skips_near_copies():
    features = _blobs()
    probabilities = torch.tensor([[0.5, 0.5]] * 40)  # every photo equally uncertain
    probabilities[20:] = torch.tensor([0.45, 0.55])
    order = review_order(probabilities, features.unlabeled, features.labeled)
    assert sorted(order) == list(range(40))
    first = order[:10]
    assert {0, 1} & set(first) != {0, 1}  # never both copies near the front
    assert sum(i < 20 for i in first) == 5  # the suggested classes take turns


def test_fewer_than_two_classes_with_photos_is_one_line():
    features = _blobs()
    one = PhotoFeatures(features.classes, features.labeled_paths[:8], features.labels[:8], features.labeled[:8],
                        features.unlabeled_paths, features.unlabeled)  # fmt: skip
    with pytest.raises(TransferStudioError, match="at least two classes") as caught:
        fit_proposals(one)
    assert "\n" not in str(caught.value)


# -- moves, the journal, undo --------------------------------------------------------------------


def test_accept_and_undo_round_trip_without_overwriting(to_sort):
    root, truth = to_sort
    before = _files(root)
    clash = next(p for p in (root / "unlabeled").rglob("*.jpg"))
    (root / "train" / "cats" / clash.name).write_bytes(b"a photo with the same name")
    before = _files(root)
    chosen = [(clash, "cats"), (root / "unlabeled" / "photo 1-1.jpg", "lizards")]
    batch = accept(root, chosen)
    assert batch.moves[0].destination == root / "train" / "cats" / f"{clash.stem} (2).jpg"
    assert (root / "train" / "lizards" / "photo 1-1.jpg").is_file()
    assert batch.created == (root / "train" / "lizards",)
    assert _files(root)[f"train/cats/{clash.stem} (2).jpg"] == before[clash.relative_to(root).as_posix()]
    assert not journal_file(root).is_relative_to(root)  # kept outside the dataset
    assert undo_last(root).number == batch.number
    assert _files(root) == before and not (root / "train" / "lizards").exists()
    history = read_journal(root)
    assert [(b.number, b.undone, len(b.moves)) for b in history] == [(1, True, 2)]
    assert undo_last(root) is None


def test_bad_batches_move_nothing(to_sort):
    root, _ = to_sort
    before = _files(root)
    photo = next((root / "unlabeled").glob("*.jpg"))
    for choices, message in [
        ([(photo, "cats"), (photo, "dogs")], "listed twice"),
        ([(photo, "cats"), (root / "unlabeled" / "gone.jpg", "cats")], "not a photo that exists"),
        ([(photo, "../escape")], "cannot be a class name"),
        ([(photo, "val")], "cannot be a class name"),
    ]:
        with pytest.raises(TransferStudioError, match=message):
            accept(root, choices)
        assert _files(root) == before
    assert check_class_name("  wasps ") == "wasps"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_read_only_dataset_fails_in_one_line_and_changes_nothing(to_sort, capsys, monkeypatch):
    root, _ = to_sort
    before = _files(root)
    folders = [p for p in [root, *root.rglob("*")] if p.is_dir()]
    if os.geteuid() == 0:  # root may write anywhere: the dataset answers as a read-only one would
        monkeypatch.setattr(
            "engine.sorting.journal._writable", lambda folder: not folder.is_relative_to(root)
        )
    for folder in folders:
        folder.chmod(0o555)
    try:
        assert main(["sort", str(root), "--accept-sure", "0", "--device", "cpu"]) != 0
        err = capsys.readouterr().err.strip()
        assert "read-only" in err and len(err.splitlines()) == 1
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert _files(root) == before and not journal_file(root).exists()


# -- the command line --------------------------------------------------------------------------


def test_sort_json_accept_file_and_undo_round_trip(to_sort, tmp_path, capsys):
    root, truth = to_sort
    (root / "unlabeled" / "unreadable.jpg").write_bytes(b"\xff\xd8 broken")
    before = _files(root)
    assert main(["sort", str(root), "--json", "--device", "cpu"]) == 0
    payload = _json(capsys)
    assert payload["classes"] == ["cats", "dogs"] and payload["labeled"] == 24 and payload["unlabeled"] == 12
    assert [s["path"] for s in payload["skipped"]] == ["unlabeled/unreadable.jpg"]
    assert sorted(p["review_rank"] for p in payload["proposals"]) == list(range(1, 13))
    assert {p["path"] for p in payload["proposals"]} == {
        p.relative_to(root).as_posix() for p in (root / "unlabeled").rglob("photo*.jpg")
    }
    right = sum(p["suggested"] == ["cats", "dogs"][truth[Path(p["path"]).name]] for p in payload["proposals"])
    assert right >= 11
    table = tmp_path / "accept.csv"
    rows = payload["proposals"][:3]
    table.write_text("path,class\n" + "".join(f"{p['path']},{p['suggested']}\n" for p in rows[:2])
                     + f"{root / rows[2]['path']},wolves\n")  # fmt: skip
    assert main(["sort", str(root), "--accept", str(table), "--json"]) == 0
    moved = _json(capsys)
    assert moved["accepted"] == 3 and {m["class"] for m in moved["moves"]} <= {"cats", "dogs", "wolves"}
    assert all((root / m["to"]).is_file() and not (root / m["path"]).exists() for m in moved["moves"])
    assert main(["sort", str(root), "--undo"]) == 0
    assert "Put back 3 photo(s) of batch 1" in capsys.readouterr().out
    assert _files(root) == before  # every file and its bytes as before
    records = [json.loads(line) for line in journal_file(root).read_text().splitlines()]
    assert records[0]["batch"] == 1 and len(records[0]["moves"]) == 3 and records[1]["undo"] == 1
    assert {m["from"] for m in records[0]["moves"]} == {str(root / p["path"]) for p in rows}


def test_accept_sure_moves_exactly_the_sure_ones(to_sort, capsys):
    root, _ = to_sort
    assert main(["sort", str(root), "--json", "--device", "cpu"]) == 0
    proposals = _json(capsys)["proposals"]
    ranked = sorted(p["confidence"] for p in proposals)
    middle = len(ranked) // 2
    threshold = round((ranked[middle - 1] + ranked[middle]) / 2, 7)  # between two photos, not on one
    sure = {p["path"] for p in proposals if p["confidence"] >= threshold}
    assert main(["sort", str(root), "--accept-sure", str(threshold), "--json", "--device", "cpu"]) == 0
    batch = _json(capsys)
    assert {m["path"] for m in batch["moves"]} == sure
    expected = sum(1 - p["confidence"] for p in proposals if p["path"] in sure)
    assert batch["expected_mistakes"] == pytest.approx(expected, abs=1e-3)


def test_sort_bad_input_is_one_line(tmp_path, to_sort, capsys):
    root, _ = to_sort
    plain = make_image_folder(tmp_path / "plain", {"cats": 3, "dogs": 3})
    one = make_image_folder(tmp_path / "one", {"cats": 3})
    table = tmp_path / "bad.csv"
    cases = [
        (["sort", str(plain)], "has no photos to sort"),
        (["sort", str(one)], "at least two are needed"),
        (["sort", str(root), "--accept", str(table)], "cannot read"),
    ]
    for args, message in cases:
        assert main(args) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    table.write_text("file,label\nx,y\n")
    assert main(["sort", str(root), "--accept", str(table)]) != 0
    assert "path,class" in capsys.readouterr().err
    table.write_text(f"path,class\ntrain/cats/{next((root / 'train' / 'cats').iterdir()).name},dogs\n")
    assert main(["sort", str(root), "--accept", str(table)]) != 0
    assert "not one of the photos to sort" in capsys.readouterr().err
    assert read_accept_csv("path,class\n a.jpg , cats \n") == [("a.jpg", "cats")]


def test_features_are_shared_with_training_cache_and_skip_unreadable(to_sort, tmp_path):
    root, _ = to_sort
    (root / "unlabeled" / "bad.png").write_bytes(b"\x89PNG nothing")
    report = scan_dataset(root, list_unlabeled=True, verify=False)
    first = photo_features(report, device="cpu", cache_dir=tmp_path / "cache")
    assert first.computed == 24 + 12 and [s.path.name for s in first.skipped] == ["bad.png"]
    again = photo_features(report, device="cpu", cache_dir=tmp_path / "cache")
    assert again.computed == 0 and torch.equal(again.unlabeled, first.unlabeled)
    with pytest.raises(Cancelled):
        photo_features(report, device="cpu", cache_dir=tmp_path / "other", should_stop=lambda: True)


# -- the photo map -------------------------------------------------------------------------------


def test_photo_map_places_every_photo_and_groups_clear_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 64, generator=g) * 4
    truth = [i % 3 for i in range(150)]
    features = centres[truth] + torch.randn(150, 64, generator=g)
    xy = project(features)
    assert xy.shape == (150, 2) and bool((xy == xy).all())
    assert project(features[:20]).shape == (20, 2)  # PCA alone for a few photos
    groups = suggest_groups(features, 3)
    assert len(set(groups)) == 3
    assert all(len({groups[i] for i in range(150) if truth[i] == c}) == 1 for c in range(3))
    with pytest.raises(Cancelled):
        project(features, should_stop=lambda: True)
