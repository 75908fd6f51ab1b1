"""The ETA against real cold runs: recorded batch timings (benchmarks/record_eta.py) replayed through
the estimators. Once 10% of a run is done, every estimate is within 30% of the time really left (plus
half a second for a feature-extraction run: the Train tab shows whole seconds, and the last head-only
epochs take less; plus a second for a fine-tune run and a bake-off)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.experiments.bakeoff_eta import BakeoffEta, CandidateWork
from engine.training.eta import Eta

RECORDING = Path(__file__).parent / "data" / "eta_cold_feature_extract.json"
FINE_TUNE = Path(__file__).parent / "data" / "eta_fine_tune.json"
BAKEOFF = Path(__file__).parent / "data" / "eta_bakeoff.json"


def _replay(recording: dict) -> list[tuple[float, float, float]]:
    """(time, estimated seconds left, real seconds left) after each batch."""
    plan = recording["planned"]
    eta = Eta()
    eta.plan(**{**plan, "cached_features": bool(plan["cached_features"])})
    eta.last = recording["batches_start"]
    points = []
    for batch in recording["batches"]:
        if batch["kind"] == "restart":  # the trainer restarted the clock (set-up work, not a batch)
            eta.last = batch["t"]
            continue
        eta.record(batch["kind"], batch["t"], batch["weight"])
        points.append((batch["t"], eta.seconds_left(), recording["end"] - batch["t"]))
    return points


def test_the_recording_is_a_cold_feature_extract_run():
    recording = json.loads(RECORDING.read_text())
    kinds = [b["kind"] for b in recording["batches"] if b["kind"] != "restart"]
    assert kinds[0] == "features" and kinds.count("features") >= 10  # computed, not read from a cache
    assert (
        sum(b["weight"] for b in recording["batches"] if b["kind"] == "features")
        == recording["planned"]["features"]
    )
    assert (
        kinds.count("train") == recording["planned"]["train"]
        and kinds.count("val") == recording["planned"]["val"]
    )


def test_estimates_are_within_30_percent_once_a_tenth_is_done():
    recording = json.loads(RECORDING.read_text())
    total = recording["end"]
    checked = 0
    for t, estimate, real in _replay(recording):
        if t < 0.1 * total:
            continue
        checked += 1
        assert abs(estimate - real) <= 0.3 * real + 0.5, (
            f"at {t:.2f} s: estimated {estimate:.2f} s, really {real:.2f} s"
        )
    assert checked > 100


def test_the_first_feature_batch_already_gives_a_usable_estimate():
    """What the Train tab shows from the first feature batch on: the right order of magnitude."""
    recording = json.loads(RECORDING.read_text())
    t, estimate, real = _replay(recording)[0]
    assert estimate == pytest.approx(real, rel=0.5)


def test_a_fine_tune_run_is_estimated_within_30_percent_once_a_tenth_is_done():
    """Fine-tuning: the head-first fit's frozen pass, then epochs of training on images."""
    recording = json.loads(FINE_TUNE.read_text())
    kinds = {b["kind"] for b in recording["batches"]}
    assert {"features", "train", "val"} <= kinds and not recording["planned"]["cached_features"]
    total = recording["end"]
    checked = 0
    for t, estimate, real in _replay(recording):
        if t < 0.1 * total:
            continue
        checked += 1
        assert abs(estimate - real) <= 0.3 * real + 1.0, (
            f"at {t:.2f} s: estimated {estimate:.2f} s, really {real:.2f} s"
        )
    assert checked > 20


def test_a_bakeoff_is_estimated_within_30_percent_once_a_tenth_is_done():
    """The whole bake-off (the running candidate's estimate plus a price for each one to come),
    replayed from a recorded cold bake-off of lite0 with every strategy."""
    recording = json.loads(BAKEOFF.read_text())
    assert recording["statuses"] == ["finished"] * 3
    eta = BakeoffEta([CandidateWork(**w) for w in recording["works"]])
    total = recording["end"]
    checked = 0
    for row in recording["events"]:
        if row["kind"] == "ended":
            eta.ended(row["index"], row["seconds"])
        if row["kind"] != "batch":
            continue
        estimate = eta.seconds_left(row["index"], row["elapsed"], row["eta"])
        real = total - row["t"]
        if row["t"] < 0.1 * total:
            continue
        checked += 1
        assert abs(estimate - real) <= 0.3 * real + 1.0, (
            f"candidate {row['index'] + 1} at {row['t']:.2f} s: estimated {estimate:.2f} s, really {real:.2f} s"
        )
    assert checked > 20
