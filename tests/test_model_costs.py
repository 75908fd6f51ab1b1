"""Issue 25: measured model costs, `models --json`, the bake-off's default set and epochs from the
budget, downloads in the bake-off, and "Recommended for your photos"."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from helpers_images import make_image_folder

from engine.cli import main as cli_main
from engine.core.errors import Cancelled
from engine.experiments import bakeoff, recommend
from engine.experiments.bakeoff import Candidate, default_candidates, plan_epochs, run_bakeoff
from engine.experiments.estimates import DatasetSize
from engine.models import costs, timm_models
from engine.models.registry import get_model_info, list_models
from engine.models.weights import WeightsError

LITE0 = "efficientnet_lite0"
TIMM_NAMES = [e.name for e in timm_models.CURATED]


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    """No weights downloaded yet (an empty torch hub folder), this machine as fast as the measured one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("TRANSFER_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(bakeoff, "speed_factor", lambda _device=None: 1.0)
    monkeypatch.setattr(recommend, "speed_factor", lambda _device=None: 1.0)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    return make_image_folder(tmp_path / "data", {"red": 6, "green": 6})


# -- measured costs -----------------------------------------------------------------------------------


def test_every_curated_model_and_the_built_in_one_are_measured():
    table = costs.measured_costs()
    assert table.machine and table.torch and table.date and table.reference == LITE0
    assert table.probe_ms and table.probe_ms > 0
    for name in [LITE0, *TIMM_NAMES]:
        cost = costs.model_cost(name)
        assert cost.measured and 0 < cost.forward_ms < cost.train_ms, name
        assert cost.input_size == get_model_info(name).input_size
    # A bigger model of the same family costs more.
    small, base = costs.model_cost(TIMM_NAMES[0]), costs.model_cost(TIMM_NAMES[1])
    assert base.train_ms > small.train_ms and base.forward_ms > small.forward_ms


def test_models_not_measured_are_priced_from_their_parameters():
    r18, r50 = costs.model_cost("resnet18"), costs.model_cost("resnet50")
    assert not r18.measured and not r50.measured
    assert r50.forward_ms / r18.forward_ms == pytest.approx(
        get_model_info("resnet50").num_params / get_model_info("resnet18").num_params
    )
    # A larger input costs its pixels.
    assert costs.model_cost(LITE0, 448).forward_ms == pytest.approx(4 * costs.model_cost(LITE0).forward_ms)
    assert costs.model_cost(LITE0).scaled(2.0).train_ms == pytest.approx(2 * costs.model_cost(LITE0).train_ms)


def test_speed_factor_is_timed_once_per_device(monkeypatch):
    calls: list[object] = []

    def probe(device=None):
        calls.append(device)
        return 2 * costs.measured_costs().probe_ms

    monkeypatch.setattr(costs, "probe_ms_per_photo", probe)
    monkeypatch.setattr(costs, "_factors", {})
    assert costs.speed_factor("cpu") == pytest.approx(2.0)
    assert costs.speed_factor("cpu") == pytest.approx(2.0) and len(calls) == 1
    assert costs.machine_cost(LITE0, "cpu").forward_ms == pytest.approx(
        2 * costs.model_cost(LITE0).forward_ms
    )


# -- models --json ------------------------------------------------------------------------------------


def test_models_json_has_source_licence_figures_cost_and_weights(capsys, fresh_machine):
    assert cli_main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    keys = {"name", "family", "params", "input_size", "weights", "source", "licence", "published_top1",
            "published_source", "download_bytes", "cost"}  # fmt: skip
    assert all(keys <= set(r) for r in rows.values())
    assert rows[LITE0]["source"] == "built-in" and rows[LITE0]["weights"] == "offline"
    timm_rows = [r for r in rows.values() if r["source"] == "timm"]
    assert sorted(r["name"] for r in timm_rows) == sorted(TIMM_NAMES)
    for row in timm_rows:
        assert row["licence"] and not timm_models.is_non_commercial(row["licence"]), row
        assert row["published_top1"] > 0 and row["published_source"]
        assert row["download_bytes"] > 1_000_000 and row["params"] > 1_000_000
        assert row["input_size"] >= 224 and row["weights"] == "download"
        assert row["cost"]["measured"] and row["cost"]["train_ms_per_photo"] > 0


def test_timm_licences_match_timm_and_none_is_non_commercial():
    timm = pytest.importorskip("timm")
    for info in list_models():
        if info.source != "timm":
            continue
        entry = timm_models.entry(info.name)
        assert entry is not None
        licence = timm.models.get_pretrained_cfg(entry.timm_name).license
        assert licence == info.licence, info.name
        assert not timm_models.is_non_commercial(licence), f"{info.name}: {licence}"


# -- the default set and the epochs -------------------------------------------------------------------


def test_default_set_fits_the_budget(fresh_machine):
    small = DatasetSize(train=318, val=80)
    unlimited = default_candidates("cpu", data=small, speed=1.0)
    assert unlimited[:3] == [Candidate(LITE0, s) for s in ("feature-extract", "fine-tune", "scratch")]
    extras = [c for c in unlimited if c.model != LITE0]
    assert extras and all(c.model.startswith("timm:") for c in extras)
    families = {get_model_info(c.model).family for c in extras}
    assert len(families) == len({c.model for c in extras}) <= bakeoff.MAX_DOWNLOADABLE  # one per family

    # A few minutes: the built-in model's pretrained strategies, no scratch, and only what fits.
    three = default_candidates("cpu", data=small, budget_minutes=3, speed=1.0)
    assert three[:2] == [Candidate(LITE0, "feature-extract"), Candidate(LITE0, "fine-tune")]
    assert Candidate(LITE0, "scratch") not in three
    # A slow machine: nothing downloadable fits, the built-in model is still fine-tuned.
    slow = default_candidates("cpu", data=small, budget_minutes=3, speed=50.0)
    assert slow == [Candidate(LITE0, "feature-extract"), Candidate(LITE0, "fine-tune")]
    # More time admits at least as strong a backbone.
    hour = default_candidates("cpu", data=small, budget_minutes=60, speed=1.0)

    def strongest(cands: list[Candidate]) -> float:
        return max(
            (get_model_info(c.model).published_top1 or 0.0 for c in cands if c.model != LITE0), default=0
        )

    assert strongest(hour) >= strongest(three) and strongest(hour) > 0


def test_the_budget_decides_fine_tuning_epochs():
    data = DatasetSize(train=400, val=100)
    cands = [Candidate(LITE0, "feature-extract"), Candidate(LITE0, "fine-tune"), Candidate(LITE0, "scratch")]
    assert plan_epochs(cands, data, budget_minutes=None) == [10, 5, 30]  # the strategies' defaults
    assert plan_epochs(cands, data, budget_minutes=None, epochs=2) == [2, 2, 2]
    tight = plan_epochs(cands, data, budget_minutes=0.1)
    assert tight[1:] == [1, 1]  # at least one epoch each
    roomy = plan_epochs(cands, data, budget_minutes=24 * 60)
    assert roomy == [10, 5, 30]  # at most the default
    middle = plan_epochs(cands, data, budget_minutes=4)
    assert 1 <= middle[1] <= 5 and 1 <= middle[2] <= 30 and middle != roomy
    # Split from the measured per-epoch costs: the planned time fits the budget.
    from engine.experiments.estimates import feature_extract_seconds, fine_tune_seconds

    lite = costs.model_cost(LITE0)
    spent = (
        feature_extract_seconds(lite, data)
        + fine_tune_seconds(lite, data, middle[1])
        + fine_tune_seconds(lite, data, middle[2], head_first=False)
    )
    assert spent <= 4 * 60


# -- the bake-off and downloads -----------------------------------------------------------------------


def _quick(monkeypatch):
    real = bakeoff.TrainConfig.for_strategy

    def for_strategy(strategy, **overrides):
        return real(strategy, **overrides, batch_size=8, workers=1, input_size=64)

    monkeypatch.setattr(bakeoff.TrainConfig, "for_strategy", staticmethod(for_strategy))


def test_compare_with_a_budget_on_a_fresh_machine(data, tmp_path, capsys, monkeypatch, fresh_machine):
    """`compare DATA --budget-minutes M --json` with no weights downloaded: the built-in model is
    fine-tuned, and `skipped` names every model that needs a download."""
    _quick(monkeypatch)
    code = cli_main(
        ["compare", str(data), "--budget-minutes", "5", "--epochs", "1", "--device", "cpu",
         "--out", str(tmp_path / "bo"), "--json"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    ranked = {(e["model"], e["strategy"]) for e in result["leaderboard"]}
    assert (LITE0, "fine-tune") in ranked and (LITE0, "feature-extract") in ranked
    skipped = result["skipped"]
    planned = json.loads((tmp_path / "bo" / "bakeoff.json").read_text())["candidates"]
    downloads = {m for m, s in planned if m != LITE0 and s != "scratch"}
    assert downloads, "the default set tries at least one downloadable backbone"
    assert {e["model"] for e in skipped} == downloads
    for entry in skipped:
        size = get_model_info(entry["model"]).download_bytes / 1e6
        assert entry["status"] == "skipped"
        assert f"needs a download of {size:.1f} MB (run with --download)" == entry["reason"]


def _fake_run(config, run_dir):
    return types.SimpleNamespace(
        bundle_path=None, cancelled=False, best_val_acc=0.9, best_epoch=1, seconds=1.0,
        epochs_completed=config.epochs, run_dir=Path(run_dir), features_cached=False,
    )  # fmt: skip


def test_downloads_are_made_before_training_when_allowed(data, tmp_path, monkeypatch, fresh_machine):
    model = "timm:convnext_atto.d2_in1k"
    on_disk: set[str] = set()
    monkeypatch.setattr(bakeoff, "weights_status", lambda n: "offline" if n == LITE0 else (
        "cached" if n in on_disk else "download"))  # fmt: skip
    fetched: list[str] = []

    def download(name, on_progress=None, should_stop=None):
        fetched.append(name)
        on_progress(0, 100, 0.0)
        on_progress(100, 100, 1e6)
        on_disk.add(name)
        return tmp_path / "w.safetensors"

    trained: list[tuple[str, str]] = []

    def train(config, data_root, run_dir, **_kwargs):
        trained.append((config.model, config.strategy))
        return _fake_run(config, run_dir)

    monkeypatch.setattr(bakeoff, "download_weights", download)
    monkeypatch.setattr(bakeoff, "train", train)
    events: list = []
    cands = [Candidate(model, "feature-extract"), Candidate(model, "fine-tune")]
    result = run_bakeoff(data, cands, epochs=1, device="cpu", out=tmp_path / "bo",
                         on_event=events.append, allow_downloads=True)  # fmt: skip
    assert fetched == [model]  # once for both candidates
    assert trained == [(model, "feature-extract"), (model, "fine-tune")]
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("DownloadStarted") < kinds.index("DownloadProgress") < kinds.index("DownloadEnded")
    assert kinds.index("DownloadEnded") < kinds.index("CandidateStarted")
    assert [e.status for e in result.entries] == ["finished", "finished"]
    # The run folders' names have no colon.
    assert all(":" not in Path(e.run_dir).name for e in result.entries)


def test_a_failed_download_skips_that_model_and_cancel_stops(data, tmp_path, monkeypatch, fresh_machine):
    _quick(monkeypatch)
    model = "timm:convnext_atto.d2_in1k"

    def offline(name, on_progress=None, should_stop=None):
        raise WeightsError("Cannot download it: cannot reach huggingface.co", offline=True)

    monkeypatch.setattr(bakeoff, "download_weights", offline)
    cands = [Candidate(model, "feature-extract"), Candidate(LITE0, "feature-extract"),
             Candidate(model, "fine-tune")]  # fmt: skip
    result = run_bakeoff(data, cands, epochs=1, device="cpu", out=tmp_path / "a", allow_downloads=True)
    assert [e.status for e in result.entries] == ["skipped", "finished", "skipped"]
    assert "the download failed: Cannot download it" in (result.entries[0].reason or "")
    assert result.entries[2].reason == result.entries[0].reason  # tried once

    def cancelled(name, on_progress=None, should_stop=None):
        raise Cancelled("the download was cancelled")

    monkeypatch.setattr(bakeoff, "download_weights", cancelled)
    result = run_bakeoff(data, cands, epochs=1, device="cpu", out=tmp_path / "b", allow_downloads=True)
    assert result.cancelled and [e.status for e in result.entries] == ["skipped"] * 3


# -- recommended for your photos ----------------------------------------------------------------------


def _status(name: str) -> str:
    return "offline" if name == LITE0 else "download"


def test_recommendations_for_a_few_hundred_photos():
    recs = recommend.recommend_models(318, 80, typical_side=500, speed=1.0, weights_status=_status)
    assert 1 <= len(recs) <= 2
    first = recs[0]
    info = get_model_info(first.model)
    # The strongest model whose feature-extract run fits in the few minutes: self-supervised first.
    fitting = [
        i for i in list_models()
        if i.source in ("built-in", "timm") and recommend.feature_extract_seconds(
            costs.model_cost(i.name), recommend.DatasetSize(318, 80, 500)) <= recommend.RECOMMEND_MINUTES * 60
    ]  # fmt: skip
    best = max(fitting, key=lambda i: (i.self_supervised, i.published_top1 or 0))
    assert best.self_supervised and info == best
    assert first.seconds <= recommend.RECOMMEND_MINUTES * 60
    assert "398 photos" in first.reason and "learnt without labels" in first.reason
    assert "MB download" in first.reason and first.download_bytes == info.download_bytes
    # It needs a download: the second is the strongest already here, the built-in model.
    assert recs[1].model == LITE0 and "built in" in recs[1].reason and recs[1].download_bytes is None


def test_recommendations_on_a_slow_machine_and_a_large_dataset():
    recs = recommend.recommend_models(8000, 2000, typical_side=3000, speed=20.0, weights_status=_status)
    assert [r.model for r in recs] == [LITE0] and "nothing stronger fits" in recs[0].reason
    # With the weights already downloaded, a fitting timm model needs no second, offline choice.
    recs = recommend.recommend_models(80, 20, speed=1.0, weights_status=lambda n: "cached")
    assert len(recs) == 1 and "already downloaded" in recs[0].reason
    # Where no self-supervised model fits, the best published ImageNet figure decides.
    recs = recommend.recommend_models(3000, 800, typical_side=500, speed=1.0, weights_status=_status)
    first = get_model_info(recs[0].model)
    assert not first.self_supervised and "the strongest features" in recs[0].reason
