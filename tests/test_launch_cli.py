"""The CLI side of multi-process training that needs no second process, and events across processes."""

from __future__ import annotations

import json
import math

import pytest

from engine.cli import main
from engine.training import events as ev


def test_every_event_survives_the_trip_through_json() -> None:
    samples = [
        ev.RunStarted("run", "CPU", ("ants", "bees"), 10, 5, 3, 1, 2),
        ev.ScanProgress(3, 9),
        ev.BatchProgress(1, "train", 2, 3, 0.5, 1.0, 2.0),
        ev.EpochEnd(1, 3, 0.5, 0.75, 0.4, 0.8, 1e-3, 1.5, True),
        ev.Message("warning", "two\nlines"),
        ev.RunFinished(1, 0.8, 1, 2.0, "model.pt", False, "CPU", "run", stopped_early=True),
        ev.RunFailed("boom"),
    ]
    for event in samples:
        assert ev.from_json(json.loads(json.dumps(ev.to_json(event)))) == event
    nan = ev.from_json(json.loads(json.dumps(ev.to_json(ev.BatchProgress(1, "train", 1, 1, math.nan, 0, 0)))))
    assert math.isnan(nan.loss)
    with pytest.raises(ValueError, match="unknown event"):
        ev.from_json({"event": "Nope"})


def test_launch_options_are_checked_before_any_process_starts(tmp_path, capsys) -> None:
    assert main(["train", str(tmp_path), "--nproc-per-node", "0"]) == 1
    assert "--nproc-per-node must be a whole number of at least 1" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--nnodes", "2"]) == 1
    assert "need --nproc-per-node" in capsys.readouterr().err
    assert (
        main(["train", str(tmp_path / "missing"), "--nproc-per-node", "2"]) == 1
    )  # the scan's message, once
    assert main(["train", str(tmp_path), "--model", "no_such_net", "--nproc-per-node", "2"]) == 1
    assert "no_such_net" in capsys.readouterr().err
