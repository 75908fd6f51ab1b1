"""The trainer: phases, events, strategies, best epoch, cancellation, determinism, exact resume."""

from __future__ import annotations

import pytest
import torch
from helpers_images import SMALL_INPUT, make_image_folder

from engine.core.config import TrainConfig
from engine.core.rundir import RunDir
from engine.data.datasets import scan_dataset
from engine.models.build import build_model
from engine.models.bundle import load_bundle
from engine.models.heads import split_outputs
from engine.training import events as ev
from engine.training.strategies import parameter_groups
from engine.training.trainer import resume, train

FAST = {"batch_size": 8, "workers": 0, "device": "cpu", "lr": 1e-2, "input_size": SMALL_INPUT}


def _config(strategy: str = "feature-extract", **changes) -> TrainConfig:
    model = "efficientnet_lite0" if strategy != "scratch" else "mobilenet_v3_small"
    return TrainConfig.for_strategy(strategy, model=model, **({"epochs": 2} | FAST | changes))


def _data(tmp_path):
    return make_image_folder(tmp_path / "data", {"red": 8, "green": 8}, splits=("train", "val"))


def test_a_run_on_cached_features_says_so(tmp_path):
    """Issue 22: a run whose feature pass came from the cache is marked (its time is not a first run's)."""
    data = _data(tmp_path)
    first = train(_config(epochs=1), data, run_dir=tmp_path / "first")
    events: list = []
    again = train(_config(epochs=1), data, run_dir=tmp_path / "again", on_event=events.append)
    assert not first.features_cached and again.features_cached
    assert RunDir(tmp_path / "again").read_status()["features_cached"] is True
    assert not [e for e in events if isinstance(e, ev.BatchProgress) and e.phase == "features"]


def test_feature_extract_run_writes_everything_and_keeps_backbone(tmp_path):
    data = _data(tmp_path)
    events: list = []
    result = train(_config(), data, run_dir=tmp_path / "run", on_event=events.append)

    kinds = [type(e) for e in events]
    assert kinds.count(ev.RunStarted) == 1 and kinds.count(ev.RunFinished) == 1
    assert kinds.index(ev.RunStarted) < kinds.index(ev.BatchProgress)  # only dataset messages come before
    assert set(kinds[: kinds.index(ev.RunStarted)]) <= {ev.Message, ev.ScanProgress}
    assert kinds[-1] is ev.RunFinished
    epoch_ends = [e for e in events if isinstance(e, ev.EpochEnd)]
    assert [e.epoch for e in epoch_ends] == [1, 2]
    phases = {e.phase for e in events if isinstance(e, ev.BatchProgress)}
    assert phases >= {"train", "val"}
    assert result.epochs_completed == 2 and not result.cancelled
    assert result.best_val_acc == max(e.val_acc for e in epoch_ends)
    assert result.best_val_acc >= 0.9  # colours are trivially separable with pretrained features
    assert not result.features_cached and not RunDir(tmp_path / "run").read_status().get("features_cached")

    run = RunDir(tmp_path / "run")
    assert len(run.read_metrics()) == 2
    assert run.config_path.exists() and run.checkpoint_path.exists()
    bundle = load_bundle(result.bundle_path)
    assert bundle.class_names == ["green", "red"]
    assert bundle.metrics["best_epoch"] == result.best_epoch

    # Only the head learned: every backbone tensor (weights and batch-norm statistics) is untouched.
    pretrained, heads = build_model("efficientnet_lite0", 2, pretrained=True)
    trained = bundle.state_dict
    for name, tensor in pretrained.state_dict().items():
        if any(name.startswith(h + ".") for h in heads):
            continue
        assert torch.equal(tensor, trained[name]), name
    head_weight = next(k for k in trained if k.startswith(heads[0] + ".") and k.endswith("weight"))
    assert not torch.equal(pretrained.state_dict()[head_weight], trained[head_weight])


def test_fine_tune_gives_backbone_a_smaller_learning_rate():
    config = TrainConfig.for_strategy("fine-tune", lr=1e-3, backbone_lr_scale=0.1, lr_decay_per_stage=1.0)
    model, heads = build_model("mobilenet_v3_small", 3, pretrained=False)
    groups = {g["name"]: g for g in parameter_groups(model, heads, config)}
    assert groups["head"]["lr"] == 1e-3
    assert abs(groups["backbone"]["lr"] - 1e-4) < 1e-12
    assert all(p.requires_grad for p in model.parameters())


def test_feature_extract_freezes_all_but_head():
    config = TrainConfig.for_strategy("feature-extract")
    model, heads = build_model("resnet18", 3, pretrained=False)
    groups = parameter_groups(model, heads, config)
    assert len(groups) == 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def test_scratch_trains_all_layers_and_is_deterministic(tmp_path):
    data = _data(tmp_path)
    config = _config("scratch", seed=3)
    first = train(config, data, run_dir=tmp_path / "a")
    second = train(config, data, run_dir=tmp_path / "b")
    assert first.history and [{k: v for k, v in row.items() if k != "seconds"} for row in first.history] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in second.history
    ]


def test_stop_takes_effect_within_one_batch(tmp_path):
    data = _data(tmp_path)
    stop = {"flag": False}
    seen: list = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, ev.BatchProgress):
            stop["flag"] = True

    result = train(
        _config(), data, run_dir=tmp_path / "run", on_event=on_event, should_stop=lambda: stop["flag"]
    )
    assert result.cancelled
    assert sum(isinstance(e, ev.BatchProgress) for e in seen) == 1
    assert result.bundle_path is None  # nothing finished, nothing to keep
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].cancelled


@pytest.mark.parametrize("strategy", ["scratch", "feature-extract"])
def test_resume_continues_exactly(tmp_path, strategy):
    data = _data(tmp_path)
    config = _config(strategy, epochs=3, seed=1)
    full = train(config, data, run_dir=tmp_path / "full")

    stop = {"flag": False}

    def stop_after_first_epoch(event):
        if isinstance(event, ev.EpochEnd) and event.epoch == 1:
            stop["flag"] = True

    partial = train(
        config,
        data,
        run_dir=tmp_path / "part",
        on_event=stop_after_first_epoch,
        should_stop=lambda: stop["flag"],
    )
    assert partial.cancelled and partial.epochs_completed == 1
    stopped = RunDir(tmp_path / "part").read_status()
    assert stopped["status"] == "stopped" and stopped["resumed"] is None
    resumed = resume(tmp_path / "part")
    assert resumed.epochs_completed == 3
    status = RunDir(tmp_path / "part").read_status()
    assert status["status"] == "finished" and status["started"] == stopped["started"]  # its first start
    assert status["resumed"] and status["seconds"] > stopped["seconds"]  # both sessions counted

    def strip(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert strip(resumed.history) == strip(full.history)
    assert resumed.best_val_acc == full.best_val_acc
    full_state = load_bundle(full.bundle_path).state_dict
    resumed_state = load_bundle(resumed.bundle_path).state_dict
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)


def test_split_outputs_handles_auxiliary_heads():
    model, heads = build_model("inception_v3", 3, pretrained=False)
    assert "AuxLogits.fc" in heads
    model.train()
    main, aux = split_outputs(model(torch.randn(2, 3, 299, 299)))
    assert main.shape == (2, 3) and len(aux) == 1 and aux[0].shape == (2, 3)
    model.eval()
    with torch.no_grad():
        main, aux = split_outputs(model(torch.randn(1, 3, 75, 75)))
    assert main.shape == (1, 3) and aux == []


def test_undecodable_image_is_skipped_not_fatal(tmp_path):
    data = _data(tmp_path)
    (data / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    events: list = []
    result = train(_config(epochs=1), data, run_dir=tmp_path / "run", on_event=events.append, report=None)
    assert result.epochs_completed == 1
    warnings = [e.text for e in events if isinstance(e, ev.Message) and e.level == "warning"]
    # The training scan (the same as `scan`) skips it up front, with its reason, once.
    assert sum(w.count("train/red/broken.jpg: ") for w in warnings) == 1
    assert not any("could not be decoded" in w for w in warnings)
    finished = events[-1]
    assert isinstance(finished, ev.RunFinished) and finished.bundle_path and not finished.cancelled


def test_image_broken_after_the_scan_is_skipped_not_fatal(tmp_path):
    data = _data(tmp_path)
    report = scan_dataset(data)
    victim = report.splits["train"][0].path
    victim.write_bytes(b"\xff\xd8\xff\xe0 broken since the scan")
    events: list = []
    result = train(_config(epochs=1), data, run_dir=tmp_path / "run", on_event=events.append, report=report)
    assert result.epochs_completed == 1
    warnings = [e.text for e in events if isinstance(e, ev.Message) and e.level == "warning"]
    assert [w for w in warnings if "decoded" in w] == ["1 image(s) could not be decoded and were skipped"]


def test_eta_prices_head_only_epochs_far_below_feature_batches():
    from engine.training.eta import HEAD_BATCH_PER_FEATURE_BATCH, Eta

    eta = Eta()
    eta.plan(features=2, train=10, val=10, cached_features=True)
    eta.last = 0.0
    eta.record("features", 1.0)
    # Epochs not measured yet: priced as head-only batches, not as feature batches.
    assert eta.seconds_left() == pytest.approx(1.0 + 20 * HEAD_BATCH_PER_FEATURE_BATCH)
    eta.record("features", 2.0)
    eta.record("train", 2.1)
    assert eta.seconds_left() == pytest.approx(9 * 0.1 + 10 * 0.1)  # val priced like train until measured
    eta.record("val", 2.15)
    assert eta.seconds_left() == pytest.approx(9 * 0.1 + 9 * 0.05)


def test_eta_on_images_prices_training_batches_above_validation_ones():
    from engine.training.eta import TRAIN_PASS_PER_FORWARD, Eta

    eta = Eta()
    eta.plan(features=0, train=4, val=4, cached_features=False)
    eta.last = 0.0
    eta.record("train", 3.0)
    assert eta.seconds_left() == pytest.approx(3 * 3.0 + 4 * 3.0 / TRAIN_PASS_PER_FORWARD)


def test_head_snapshot_loading_is_strict():
    from engine.core.errors import TransferStudioError
    from engine.training.checkpoints import load_weights_snapshot, weights_snapshot

    model, heads = build_model("mobilenet_v3_small", 3, pretrained=False)
    snapshot = weights_snapshot(model, heads, head_only=True)
    assert set(snapshot) == {"classifier.3.weight", "classifier.3.bias"}
    load_weights_snapshot(model, snapshot, heads, head_only=True)  # fits exactly

    other, other_heads = build_model("mobilenet_v3_small", 5, pretrained=False)
    with pytest.raises(TransferStudioError, match="other shape: classifier.3.bias, classifier.3.weight"):
        load_weights_snapshot(other, snapshot, other_heads, head_only=True)
    with pytest.raises(TransferStudioError, match="missing: classifier.3.bias"):
        load_weights_snapshot(model, {"classifier.3.weight": snapshot["classifier.3.weight"]}, heads, True)
    extra = snapshot | {"features.0.0.weight": torch.zeros(1)}
    with pytest.raises(TransferStudioError, match="unexpected: features.0.0.weight"):
        load_weights_snapshot(model, extra, heads, head_only=True)
    with pytest.raises(TransferStudioError, match="missing"):  # a head-only snapshot is not a whole model
        load_weights_snapshot(model, snapshot, heads, head_only=False)


def test_resuming_with_a_checkpoint_for_another_head_fails_clearly(tmp_path):
    data = _data(tmp_path)
    train(_config(epochs=1), data, run_dir=tmp_path / "run")
    run = RunDir(tmp_path / "run")
    checkpoint = run.load_checkpoint()
    checkpoint["model"] = {k: v[:1] for k, v in checkpoint["model"].items()}  # a one-class head
    run.save_checkpoint(checkpoint)
    events: list = []
    from engine.core.errors import TransferStudioError

    with pytest.raises(TransferStudioError, match="do not fit this model"):
        resume(tmp_path / "run", epochs=2, on_event=events.append)
    assert isinstance(events[-1], ev.RunFailed)
