"""The ETA against a real cold run: recorded batch timings (benchmarks/record_eta.py) replayed through
the estimator. Once 10% of the run is done, every estimate is within 30% of the time really left
(plus half a second: the Train tab shows whole seconds, and the last head-only epochs take less)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.training.eta import Eta

RECORDING = Path(__file__).parent / "data" / "eta_cold_feature_extract.json"


def _replay(recording: dict) -> list[tuple[float, float, float]]:
    """(time, estimated seconds left, real seconds left) after each batch."""
    plan = recording["planned"]
    eta = Eta()
    eta.plan(
        features=plan["features"],
        train=plan["train"],
        val=plan["val"],
        cached_features=bool(plan["cached_features"]),
    )
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
