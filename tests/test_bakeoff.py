"""The bake-off: candidates on one frozen split, ranked, Stop keeps what finished, the time budget."""

from __future__ import annotations

import pytest
from helpers_images import make_image_folder

from engine.core.errors import TransferStudioError
from engine.experiments import bakeoff
from engine.experiments.bakeoff import (
    Candidate,
    candidates_from,
    default_candidates,
    read_leaderboard,
    run_bakeoff,
)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    return make_image_folder(tmp_path / "data", {"red": 6, "green": 6})


def _quick(monkeypatch):
    """Small batches so each candidate takes a second or two on a CPU."""
    real = bakeoff.TrainConfig.for_strategy

    def for_strategy(strategy, **overrides):
        return real(strategy, **overrides, batch_size=8, workers=1)

    monkeypatch.setattr(bakeoff.TrainConfig, "for_strategy", staticmethod(for_strategy))


def test_candidates_are_ranked_best_first_on_one_split(data, tmp_path, monkeypatch):
    _quick(monkeypatch)
    events: list = []
    candidates = candidates_from(["efficientnet_lite0"], ["scratch", "feature-extract"])
    result = run_bakeoff(
        data, candidates, epochs=1, device="cpu", out=tmp_path / "bo", on_event=events.append
    )
    board = result.leaderboard
    assert [b.best_val_acc for b in board] == sorted((b.best_val_acc for b in board), reverse=True)
    assert {e.strategy for e in board} == {"scratch", "feature-extract"} and not result.cancelled
    payload = result.to_json()
    assert payload["best"] == payload["leaderboard"][0]
    assert set(payload["best"]) >= {
        "model",
        "strategy",
        "best_val_acc",
        "best_epoch",
        "seconds",
        "run_dir",
        "bundle",
    }
    assert read_leaderboard(tmp_path / "bo").to_json()["leaderboard"] == payload["leaderboard"]
    # One frozen split: every candidate trained and validated on the same images.
    from engine.training import events as ev

    started = [(e.num_train, e.num_val) for e in events if isinstance(e, ev.RunStarted)]
    assert len(started) == 2 and started[0] == started[1]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "BakeoffStarted" and kinds[-1] == "BakeoffFinished"
    ended = [e for e in events if isinstance(e, bakeoff.CandidateEnded)]
    assert [len(e.leaderboard) for e in ended] == [1, 2]  # the leaderboard grows as candidates finish
    # After each batch, the whole bake-off's progress: its clock runs on, the first candidate's
    # estimates include a price for the second.
    overall = [e for e in events if isinstance(e, bakeoff.BakeoffProgress)]
    batches = [e for e in events if isinstance(e, ev.BatchProgress)]
    assert len(overall) == len(batches) and all(e.eta_s >= 0 for e in overall)
    assert [e.elapsed_s for e in overall] == sorted(e.elapsed_s for e in overall)
    first_end = kinds.index("CandidateEnded")
    first = [e for i, e in enumerate(events) if i < first_end and isinstance(e, bakeoff.BakeoffProgress)]
    own = [e for i, e in enumerate(events) if i < first_end and isinstance(e, ev.BatchProgress)]
    assert all(o.eta_s > b.eta_s for o, b in zip(first, own, strict=True))


def test_candidate_work_counts_what_each_strategy_computes(data):
    from engine.core.config import TrainConfig
    from engine.data.datasets import scan_dataset
    from engine.experiments.bakeoff_eta import TRAIN_PASS, BakeoffEta, CandidateWork, candidate_work

    report = scan_dataset(data)
    n_train, n_val = len(report.splits["train"]), len(report.splits["val"])
    fe = TrainConfig.for_strategy("feature-extract", tta="flip")
    ft = TrainConfig.for_strategy("fine-tune", epochs=3)
    work = candidate_work(fe, report, views=2, input_px=224, cached_features=True)
    assert (work.feature_images, work.train_images, work.val_images) == (2 * n_train + 2 * n_val, 0, 0)
    work = candidate_work(ft, report, views=2, input_px=448, cached_features=False)
    head_first = n_train if ft.head_first else 0
    assert (work.feature_images, work.train_images, work.val_images) == (head_first, 3 * n_train, 3 * n_val)
    assert work.passes() == pytest.approx(4 * (head_first + TRAIN_PASS * 3 * n_train + 3 * n_val))  # 4x px

    # A candidate to come is priced at the seconds per pass measured so far.
    works = [
        CandidateWork(100, 0, 0, 224, 10),
        CandidateWork(0, 100, 0, 224, 10),
        CandidateWork(0, 0, 100, 224, 20),
    ]
    eta = BakeoffEta(works)
    assert eta.seconds_left(0, elapsed=6.0, left=4.0) == pytest.approx(4.0 + 10.0 * TRAIN_PASS + 20.0)
    eta.ended(0, 10.0)
    eta.skip(2)
    assert eta.seconds_left(1, elapsed=1.0, left=2.0) == pytest.approx(2.0)
    # A candidate whose features came from the cache took less than it was counted for: it prices nothing.
    eta = BakeoffEta(works)
    eta.ended(0, 0.5, features_cached=True)
    # Candidate 2 alone sets the rate: 2*TRAIN_PASS s for 100 training passes of a 10-parameter model,
    # so candidate 3's 100 forward passes of a 20-parameter model cost 4 s.
    assert eta.seconds_left(1, elapsed=2.0, left=2.0 * TRAIN_PASS - 2.0) == pytest.approx(
        2.0 * TRAIN_PASS - 2.0 + 4.0
    )


def test_stop_keeps_what_finished_and_skips_the_rest(data, tmp_path, monkeypatch):
    _quick(monkeypatch)
    state = {"stop": False}

    def on_event(event):
        if isinstance(event, bakeoff.CandidateStarted) and event.index == 1:
            state["stop"] = True  # stop during the second candidate

    candidates = [Candidate("efficientnet_lite0", "feature-extract")] * 1 + [
        Candidate("efficientnet_lite0", "scratch"),
        Candidate("efficientnet_lite0", "fine-tune"),
    ]
    result = run_bakeoff(
        data, candidates, epochs=1, device="cpu", out=tmp_path / "bo", on_event=on_event,
        should_stop=lambda: state["stop"],
    )  # fmt: skip
    assert result.cancelled
    assert [(e.strategy, e.status) for e in result.entries] == [
        ("feature-extract", "finished"), ("scratch", "stopped"), ("fine-tune", "skipped")
    ]  # fmt: skip
    assert [e.strategy for e in result.leaderboard] == ["feature-extract"]
    assert read_leaderboard(tmp_path / "bo").to_json()["best"]["strategy"] == "feature-extract"


def test_time_budget_skips_what_would_not_fit(data, tmp_path, monkeypatch):
    _quick(monkeypatch)
    candidates = candidates_from(["efficientnet_lite0"], ["feature-extract", "fine-tune"])
    result = run_bakeoff(data, candidates, epochs=1, device="cpu", out=tmp_path / "bo", budget_minutes=1e-4)
    assert [e.status for e in result.entries] == ["finished", "skipped"]
    assert "time budget" in (result.entries[1].reason or "")


def test_estimator_uses_measured_epochs():
    estimator = bakeoff._Estimator()
    lite_fe = Candidate("efficientnet_lite0", "feature-extract")
    assert estimator.estimate(lite_fe, 5) is None
    estimator.record(lite_fe, seconds=10.0, epochs=5)
    assert estimator.estimate(lite_fe, 3) == pytest.approx(6.0)
    bigger = estimator.estimate(Candidate("resnet50", "feature-extract"), 5)
    assert bigger is not None and bigger > 10.0  # more parameters: more time


def test_a_failing_candidate_does_not_end_the_bakeoff(data, tmp_path, monkeypatch):
    _quick(monkeypatch)
    real_train = bakeoff.train

    def train(config, *args, **kwargs):
        if config.strategy == "fine-tune":
            raise TransferStudioError("cannot get the pretrained weights (offline)")
        if config.strategy == "scratch":
            raise RuntimeError("a model quirk that is not the user's fault")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(bakeoff, "train", train)
    candidates = candidates_from(["efficientnet_lite0"], ["fine-tune", "scratch", "feature-extract"])
    events: list = []
    result = run_bakeoff(
        data, candidates, epochs=1, device="cpu", out=tmp_path / "bo", on_event=events.append
    )
    assert [(e.strategy, e.status) for e in result.entries] == [
        ("fine-tune", "failed"),
        ("scratch", "failed"),
        ("feature-extract", "finished"),
    ]
    assert "offline" in (result.entries[0].reason or "")
    assert "RuntimeError" in (result.entries[1].reason or "")
    assert isinstance(events[-1], bakeoff.BakeoffFinished) and result.best.strategy == "feature-extract"


def test_default_set_is_what_runs_here(monkeypatch):
    from engine.core.config import STRATEGIES

    # Without a budget: the built-in model with every strategy, then downloadable backbones (issue 25:
    # the bake-off downloads them only when allowed).
    cands = default_candidates("cpu", speed=1.0)
    assert cands[:3] == [Candidate("efficientnet_lite0", s) for s in STRATEGIES]
    assert all(c.model.startswith("timm:") for c in cands[3:])
    monkeypatch.setattr(
        bakeoff, "weights_status", lambda name: "cached" if name in ("resnet18", "vit_h_14") else "download"
    )
    cands = default_candidates("cpu", speed=1.0)
    assert Candidate("resnet18", "feature-extract") in cands and Candidate("resnet18", "fine-tune") in cands
    assert all(c.model != "vit_h_14" for c in cands)  # too big for a CPU bake-off
    assert all(c.strategy != "scratch" for c in cands if c.model == "resnet18")


def test_bad_names_are_one_line_errors():
    with pytest.raises(TransferStudioError, match="unknown strategy"):
        candidates_from(["efficientnet_lite0"], ["warp-speed"])
    with pytest.raises(TransferStudioError, match="Unknown model"):
        candidates_from(["efficientnet_lite9"], ["fine-tune"])
