"""Acting on a dataset without harming it (exclusion lists, moves with undo) and class-imbalance handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder
from PIL import Image

from engine.cli import main
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.rundir import RunDir
from engine.data.datasets import format_report, scan_dataset
from engine.data.exclusions import (
    exclude,
    exclusions_file,
    include,
    load_exclusions,
    move_to_class,
    undo_move,
)
from engine.inference.evaluate import evaluate
from engine.training.pipeline import epoch_order
from engine.training.recipe import class_weights
from engine.training.trainer import train

# -- exclusion lists --------------------------------------------------------------------------------


def test_exclusion_list_lives_outside_the_dataset_and_round_trips(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "ds", {"a": 4, "b": 4})
    before = sorted(p for p in root.rglob("*"))
    photo = root / "train" / "a" / "a_001.jpg"
    assert exclude(root, [photo]) == {photo.resolve()}
    assert not exclusions_file(root).is_relative_to(root)
    assert sorted(p for p in root.rglob("*")) == before  # nothing written into the dataset folder
    assert load_exclusions(root) == {photo.resolve()}
    assert include(root, ["train/a/a_001.jpg"]) == set()
    with pytest.raises(TransferStudioError, match="not inside"):
        exclude(root, [tmp_path / "elsewhere.jpg"])


def test_damaged_exclusion_list_is_ignored(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "ds", {"a": 3, "b": 3})
    exclusions_file(root).parent.mkdir(parents=True, exist_ok=True)
    exclusions_file(root).write_text("{not json", encoding="utf-8")
    assert load_exclusions(root) == set()
    assert scan_dataset(root).excluded == []


def test_excluding_changes_the_next_runs_images_and_is_recorded(tmp_path: Path, capsys) -> None:
    root = make_image_folder(tmp_path / "ds", {"a": 8, "b": 8}, splits=None)
    first = scan_dataset(root)
    left_out = [first.splits["train"][0].path, first.splits["val"][0].path]
    exclude(root, left_out)
    second = scan_dataset(root)
    assert sorted(second.excluded) == sorted(p.resolve() for p in left_out)
    assert len(second.splits["train"]) == len(first.splits["train"]) - 1
    assert len(second.splits["val"]) == len(first.splits["val"]) - 1
    # Excluding photos moves no other photo between train and val.
    for split in ("train", "val"):
        kept = [s.path for s in first.splits[split] if s.path not in left_out]
        assert [s.path for s in second.splits[split]] == kept
    assert "Excluded by you (2" in format_report(second)
    assert main(["scan", str(root), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["excluded"]) == 2

    config = TrainConfig.for_strategy(
        "scratch", model="mobilenet_v3_small", epochs=1, batch_size=8, device="cpu", input_size=SMALL_INPUT
    )
    result = train(config, root, run_dir=tmp_path / "run")
    recorded = RunDir(result.run_dir).read_dataset()
    assert recorded["images"] == {"train": len(second.splits["train"]), "val": len(second.splits["val"])}
    assert sorted(recorded["excluded"]) == sorted(p.relative_to(root).as_posix() for p in left_out)


# -- moving a photo to another class, and undo ------------------------------------------------------


def test_move_to_the_suggested_class_and_undo(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "ds", {"ants": 3, "bees": 3})
    photo = root / "train" / "ants" / "ants_000.jpg"
    (root / "train" / "bees" / "ants_000.jpg").write_bytes(b"a different photo with the same name")
    original = photo.read_bytes()
    move = move_to_class(photo, "ants", "bees")
    assert not photo.exists()
    assert move.destination == root / "train" / "bees" / "ants_000 (2).jpg"  # never overwrites
    assert move.destination.read_bytes() == original
    assert (root / "train" / "bees" / "ants_000.jpg").read_bytes() == b"a different photo with the same name"
    assert scan_dataset(root).counts()["bees"]["train"] == 4
    undo_move(move)
    assert photo.read_bytes() == original and not move.destination.exists()
    with pytest.raises(TransferStudioError, match="cannot undo"):
        undo_move(move)


# -- class imbalance --------------------------------------------------------------------------------


def test_class_weights_and_the_balanced_sampler() -> None:
    from engine.data.datasets import DatasetReport, Sample

    samples = [Sample(Path(f"a{i}"), 0) for i in range(30)] + [Sample(Path(f"b{i}"), 1) for i in range(10)]
    report = DatasetReport(Path("."), ["a", "b"], {"train": samples, "val": []})
    weights = class_weights(report)
    assert torch.allclose(weights, torch.tensor([40 / 60, 40 / 20]))
    labels = torch.tensor([0] * 90 + [1] * 10)
    order = epoch_order(labels, torch.Generator().manual_seed(0), balanced=True)
    share = float((labels[order] == 1).float().mean())
    assert len(order) == 100 and 0.4 < share < 0.6  # about half minority, not a tenth
    plain = epoch_order(labels, torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(100))


def test_auto_balance_switches_on_only_for_large_imbalance() -> None:
    assert TrainConfig().resolved_balance(1.5) == "none"
    assert TrainConfig().resolved_balance(5.0) == "weights"
    assert TrainConfig(balance="sampler").resolved_balance(1.0) == "sampler"
    with pytest.raises(TransferStudioError, match="unknown balance"):
        TrainConfig(balance="magic")


def _noisy_brightness_photos(folder: Path, mean: float, count: int, seed: int) -> None:
    """Photos whose only class signal is a small brightness shift under heavy noise (classes overlap)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(rng.normal(mean, 45.0, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


@pytest.mark.slow
def test_balance_weights_raises_the_minority_recall(tmp_path: Path) -> None:
    root = tmp_path / "imbalanced"
    _noisy_brightness_photos(root / "train" / "common", 90, 96, seed=1)
    _noisy_brightness_photos(root / "train" / "rare", 160, 8, seed=2)
    _noisy_brightness_photos(root / "val" / "common", 90, 24, seed=3)
    _noisy_brightness_photos(root / "val" / "rare", 160, 24, seed=4)
    recalls = {}
    for balance in ("none", "weights"):
        config = TrainConfig.for_strategy(
            "feature-extract", epochs=15, batch_size=16, device="cpu", balance=balance, input_size=SMALL_INPUT
        )
        result = train(config, root, run_dir=tmp_path / balance)
        assert RunDir(result.run_dir).read_dataset()["balance"] == balance
        report = evaluate(result.bundle_path, root, split="val", device="cpu")
        recalls[balance] = next(m.recall for m in report.per_class if m.name == "rare")
    assert recalls["weights"] > recalls["none"], recalls
