"""Property-based tests (Hypothesis): whatever number a user types for a setting, and whatever a small
file of the app holds, the answer is a value in range or one clear error, never a traceback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import build_parser
from engine.cli.train import config_from_args
from engine.core.config import ConfigError, TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.rundir import RunDir
from engine.core.runs import list_runs_and_problems, read_note
from engine.core.setting import check_value
from engine.core.small_files import DamagedFile

NUMBERS = [item for item in TrainConfig.settings() if item.kind in (int, float) and not item.choices]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: What a user may type for a number: numbers of every size and sign, special floats, words, junk.
typed = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "auto", "model", "off", "", " ", "0x10", "1_000"]),
    st.text(max_size=12),
)


@pytest.mark.parametrize("item", NUMBERS, ids=lambda item: item.name)
@FAST
@given(text=typed)
def test_a_typed_number_is_in_range_or_one_clear_error(item, text):
    parser = build_parser()
    try:
        args = parser.parse_args(["train", "DATA", item.option, text])
    except SystemExit as exit_:
        assert exit_.code == 2  # argparse's one line: not a number
        return
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        assert item.setting.label.lower() in str(exc) and "\n" not in str(exc)
        return
    assert check_value(item, getattr(config, item.name)) is None


other_options = [  # checked as they are parsed (predict's and evaluate's are checked by the command)
    (["compare", "D", "--budget-minutes"], float),
    (["scan", "D", "--seed"], int),
    (["scan", "D", "--val-fraction"], float),
    (["audit", "D", "--seed"], int),
]


@pytest.mark.parametrize(
    "prefix, kind", other_options, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
@FAST
@given(text=typed)
def test_other_commands_numbers_are_in_range_or_a_usage_error(prefix, kind, text, capsys):
    try:
        args = build_parser().parse_args([*prefix, text])
    except SystemExit as exit_:
        assert exit_.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        return
    value = getattr(args, prefix[-1].lstrip("-").replace("-", "_"))
    assert isinstance(value, kind) and value == value and abs(value) != float("inf")


# -- small files ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _objects_like(keys: list[str]) -> Any:
    """Objects with the file's own keys (and others), holding anything."""
    return st.dictionaries(st.sampled_from([*keys, "other"]), json_values, max_size=len(keys) + 1)


@FAST
@given(
    config=st.one_of(json_values, _objects_like(["config", "data_root", "dataset", "dataset_changes"])),
    status=st.one_of(json_values, _objects_like(["status", "started", "pid", "seconds", "message"])),
    metrics=st.lists(
        st.one_of(json_values, _objects_like(["epoch", "val_acc", "train_loss", "seconds"])), max_size=3
    ),
    note=st.one_of(json_values, _objects_like(["name", "note"])),
)
def test_a_run_folder_holding_anything_is_listed_or_named(tmp_path_factory, config, status, metrics, note):
    root = tmp_path_factory.mktemp("runs")
    folder = root / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    (folder / "note.json").write_text(json.dumps(note))
    listing = list_runs_and_problems(root)
    assert len(listing.runs) + len(listing.broken) == 1
    for path, why in listing.broken:
        assert path == folder and "\n" not in why
    run = RunDir(folder)
    for read in (run.read_status, run.read_metrics, run.read_dataset, lambda: read_note(folder)):
        read()  # tolerant readers: never raise
    try:
        run.read_config()
    except TransferStudioError:
        pass


@FAST
@given(payload=st.one_of(json_values, _objects_like(["excluded", "version", "root"])))
def test_an_exclusion_list_holding_anything_is_read_or_named(tmp_path_factory, payload, monkeypatch):
    from engine.data.exclusions import exclusions_file, load_exclusions

    monkeypatch.setenv("TRANSFER_STUDIO_DATA", str(tmp_path_factory.mktemp("app")))
    data = tmp_path_factory.mktemp("data")
    path = exclusions_file(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    try:
        excluded = load_exclusions(data)
    except DamagedFile as exc:
        assert str(path) in str(exc)
    else:
        assert all(isinstance(p, Path) for p in excluded)


@FAST
@given(payload=st.one_of(json_values, _objects_like(["leaderboard", "best", "skipped", "cancelled"])))
def test_a_leaderboard_holding_anything_is_read_or_named(tmp_path_factory, payload):
    from engine.experiments.bakeoff import read_leaderboard

    folder = tmp_path_factory.mktemp("bakeoff")
    (folder / "leaderboard.json").write_text(json.dumps(payload))
    try:
        result = read_leaderboard(folder)
    except TransferStudioError as exc:
        assert "leaderboard.json" in str(exc) and "\n" not in str(exc)
    else:
        assert all(entry.model for entry in result.entries) or not result.entries


def test_the_parser_has_no_number_option_without_a_range():
    """Every number a command line takes goes through a checked type (the properties above cover them)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    by_the_command = {"train --nproc-per-node", "predict --top-k", "predict --threshold", "evaluate --top-k"}
    unchecked = {
        f"{name} {action.option_strings[0]}"
        for name, command in sub.choices.items()
        for action in command._actions
        if action.type in (int, float)
    }
    assert unchecked == by_the_command  # each of these has a test of its range (test_nothing_lost.py)
