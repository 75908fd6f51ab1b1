"""“Find the best model” in the window: the leaderboard fills in as candidates finish, best first; Stop
keeps what finished; the winner becomes the model in Predict and Evaluate; one thing trains at a time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QLabel, QPushButton, QSpinBox, QTableWidget, QWidget
from test_gui_training import configure, open_dataset, start, wait_until_finished

BAKEOFF_TIMEOUT_MS = 300_000
LITE0 = "efficientnet_lite0"


@pytest.fixture
def bakeoff(monkeypatch, tmp_path):
    """engine.experiments.bakeoff with a fresh feature cache (so no test depends on another's)."""
    from engine.experiments import bakeoff

    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    return bakeoff


def use_candidates(monkeypatch, bakeoff, *strategies: str) -> list:
    """Make the default set these cheap efficientnet_lite0 candidates."""
    chosen = [bakeoff.Candidate(LITE0, s) for s in strategies]
    monkeypatch.setattr(bakeoff, "default_candidates", lambda device="auto", **_kw: list(chosen))
    return chosen


def hold_until_stopped(monkeypatch, bakeoff, strategy: str) -> None:
    """The candidate with ``strategy`` waits for Stop before it trains (so Stop lands during it)."""
    real_train = bakeoff.train

    def train(config, data_root, **kwargs):
        if config.strategy == strategy:
            deadline = time.monotonic() + 60
            while not kwargs["should_stop"]() and time.monotonic() < deadline:
                time.sleep(0.01)
        return real_train(config, data_root, **kwargs)

    monkeypatch.setattr(bakeoff, "train", train)


def widgets(window):
    return (
        window.findChild(QPushButton, "bakeoffButton"),
        window.findChild(QPushButton, "bakeoffStopButton"),
        window.findChild(QSpinBox, "bakeoffEpochsSpin"),
        window.findChild(QTableWidget, "leaderboard"),
    )


def board_rows(board: QTableWidget) -> list[tuple[str, str, float]]:
    return [
        (board.item(r, 1).text(), board.item(r, 2).text(), float(board.item(r, 3).text().rstrip("%")))
        for r in range(board.rowCount())
    ]


def start_bakeoff(window, qtbot, epochs: int = 1) -> None:
    window.tabs.setCurrentWidget(window.train_tab.bakeoff_page)  # the Bake-off tab
    button, stop, spin, _board = widgets(window)
    spin.setValue(epochs)
    assert button.isEnabled() and not stop.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.train_tab.bakeoff.is_running()
    assert stop.isEnabled() and not button.isEnabled()


def test_contract_names_and_defaults(window):
    button, stop, spin, board = widgets(window)
    for widget in (button, stop, spin, board):
        assert widget is not None and widget.accessibleName()
    assert isinstance(board, QAbstractItemView)
    assert (spin.value(), spin.minimum(), spin.maximum()) == (3, 1, 100)
    budget = window.findChild(QSpinBox, "bakeoffBudgetSpin")
    assert budget.value() == budget.minimum() and budget.text() == "no limit"
    assert not button.isEnabled() and not stop.isEnabled()  # no dataset yet
    assert "Data tab" in window.findChild(QLabel, "bakeoffHint").text()


def test_leaderboard_grows_best_first_and_the_winner_opens_in_predict(
    window, qtbot, monkeypatch, synthetic_dataset, bakeoff
):
    chosen = use_candidates(monkeypatch, bakeoff, "feature-extract", "scratch")
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    panel = window.train_tab.bakeoff
    hint = window.findChild(QLabel, "bakeoffHint")
    qtbot.waitUntil(lambda: "It will try 2" in hint.text(), timeout=120_000)  # the set it will try
    assert f"{LITE0} with feature-extract and scratch" in hint.text()
    button, stop, _spin, board = widgets(window)
    rows_when_ended: list[int] = []
    panel.candidateEnded.connect(lambda _index: rows_when_ended.append(board.rowCount()))
    run_dirs: list[str] = []
    window.train_tab.runStarted.connect(run_dirs.append)

    progress: list[int] = []
    panel.progress.valueChanged.connect(progress.append)
    start_bakeoff(window, qtbot, epochs=1)
    assert not window.findChild(QPushButton, "startButton").isEnabled()  # one thing trains at a time
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=BAKEOFF_TIMEOUT_MS)
    assert progress and progress == sorted(progress)  # issue 22: the bar never goes back
    assert progress[-1] == panel.progress.maximum() and panel.clock.seconds_left() is not None
    status = window.findChild(QLabel, "bakeoffStatus").text()
    assert status.startswith("Finished after 0:"), status  # the wall time the user waited

    assert not window.findChild(QWidget, "bakeoffError").isVisible()
    assert rows_when_ended == [1, 2]  # a row per finished candidate, as each one finishes
    # Issue 22: the bake-off has a tab of its own, and draws on its own plots, never the Train tab's.
    assert window.tabs.tabText(window.tabs.indexOf(window.train_tab.bakeoff_page)).endswith("Bake-off")
    assert window.train_tab.bakeoff_plots.series_lengths()["val_acc"] >= 1
    assert window.train_tab.plots.series_lengths() == dict.fromkeys(
        ("train_loss", "val_loss", "train_acc", "val_acc"), 0
    )
    assert not window.train_tab.isAncestorOf(panel)
    rows = board_rows(board)
    accuracies = [acc for _m, _s, acc in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    result = panel.result
    assert result is not None and not result.cancelled
    saved = bakeoff.read_leaderboard(result.out).to_json()["leaderboard"]
    assert [(m, s) for m, s, _acc in rows] == [(e["model"], e["strategy"]) for e in saved]
    assert {s for _m, s, _acc in rows} == {"feature-extract", "scratch"}
    assert [round(acc, 1) for acc in accuracies] == [round(100 * e["best_val_acc"], 1) for e in saved]
    # The winner is marked, and only the winner.
    assert board.item(0, 0).text().startswith("★") and board.item(0, 0).font().bold()
    assert not board.item(1, 0).text().startswith("★") and not board.item(1, 0).font().bold()
    # Each candidate's run folder was announced (the Runs tab lists it) as it started.
    assert [Path(d).name for d in run_dirs] == [
        f"0{i + 1}-{LITE0}-{c.strategy}" for i, c in enumerate(chosen)
    ]
    runs_table = window.findChild(QAbstractItemView, "runsTable")
    assert runs_table is not None
    qtbot.waitUntil(lambda: runs_table.model().rowCount() == 2, timeout=30_000)

    # The winner is the model in Predict and Evaluate.
    winner = Path(saved[0]["bundle"])
    assert winner.is_file()
    qtbot.waitUntil(lambda: window.predict_tab.has_model(), timeout=60_000)
    assert Path(window.predict_tab.model_path) == winner
    assert window.evaluate_tab.predictor is window.predict_tab.predictor
    assert "Winner" in window.findChild(QWidget, "bakeoffResult").text()
    # Idle again: both trainings can start.
    assert button.isEnabled() and not stop.isEnabled()
    assert window.findChild(QPushButton, "startButton").isEnabled()

    # Open in Predict on the second row.
    board.selectRow(1)
    open_button = window.findChild(QPushButton, "bakeoffOpenButton")
    assert open_button.isEnabled()
    qtbot.mouseClick(open_button, Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.predict_tab
    qtbot.waitUntil(lambda: Path(window.predict_tab.model_path) == Path(saved[1]["bundle"]), timeout=60_000)


def test_stop_during_the_second_candidate_keeps_the_first(
    window, qtbot, monkeypatch, synthetic_dataset, bakeoff
):
    use_candidates(monkeypatch, bakeoff, "feature-extract", "scratch", "fine-tune")
    hold_until_stopped(monkeypatch, bakeoff, "scratch")
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    panel = window.train_tab.bakeoff
    button, stop, _spin, board = widgets(window)

    start_bakeoff(window, qtbot, epochs=1)
    qtbot.waitUntil(lambda: panel.current == 1, timeout=BAKEOFF_TIMEOUT_MS)  # the second candidate
    assert board.rowCount() == 1
    qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert not stop.isEnabled()  # asked once
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=BAKEOFF_TIMEOUT_MS)

    assert [(m, s) for m, s, _acc in board_rows(board)] == [(LITE0, "feature-extract")]
    assert panel.result is not None and panel.result.cancelled
    assert [e.status for e in panel.result.entries] == ["finished", "stopped", "skipped"]
    unranked = window.findChild(QLabel, "bakeoffNotRanked")
    assert unranked.isVisible()
    assert "scratch: stopped by you" in unranked.text() and "fine-tune: not tried" in unranked.text()
    saved = bakeoff.read_leaderboard(panel.result.out).to_json()
    assert [e["strategy"] for e in saved["leaderboard"]] == ["feature-extract"] and saved["cancelled"]
    # The run ended: the buttons are back to idle, and the one finished candidate is the winner.
    assert button.isEnabled() and not stop.isEnabled()
    assert window.findChild(QPushButton, "startButton").isEnabled()
    assert board.item(0, 0).text().startswith("★")
    qtbot.waitUntil(lambda: window.predict_tab.has_model(), timeout=60_000)
    assert Path(window.predict_tab.model_path) == Path(saved["best"]["bundle"])


def test_a_training_run_and_a_bakeoff_never_run_together(
    window, qtbot, monkeypatch, synthetic_dataset, bakeoff
):
    use_candidates(monkeypatch, bakeoff, "scratch")
    hold_until_stopped(monkeypatch, bakeoff, "scratch")
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    panel = window.train_tab.bakeoff
    button, stop, _spin, _board = widgets(window)
    start_button = window.findChild(QPushButton, "startButton")

    # A bake-off refuses a training run ...
    start_bakeoff(window, qtbot)
    assert not start_button.isEnabled()
    assert "bake-off" in window.findChild(QLabel, "startHint").text()
    window.train_tab.start()  # even when asked directly
    assert not window.train_tab.is_running()
    assert "bake-off is running" in window.findChild(QWidget, "trainError").text()
    qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=BAKEOFF_TIMEOUT_MS)
    assert button.isEnabled() and start_button.isEnabled()

    # ... and a training run refuses a bake-off.
    configure(window, epochs=1)
    start(window, qtbot)
    assert window.train_tab.is_running()
    assert not button.isEnabled()
    assert "Training is running" in window.findChild(QLabel, "bakeoffHint").text()
    panel.start()  # even when asked directly
    assert not panel.is_running()
    assert "training run is going" in window.findChild(QWidget, "bakeoffError").text()
    wait_until_finished(window, qtbot)
    assert button.isEnabled()


def test_closing_the_window_stops_the_bakeoff(
    window, qtbot, monkeypatch, synthetic_dataset, bakeoff, dialogs
):
    use_candidates(monkeypatch, bakeoff, "scratch", "feature-extract")
    hold_until_stopped(monkeypatch, bakeoff, "scratch")
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    start_bakeoff(window, qtbot)
    qtbot.waitUntil(lambda: window.train_tab.bakeoff.current == 0, timeout=BAKEOFF_TIMEOUT_MS)
    window.close()  # asks (answered Yes), then stops every worker and waits for it
    assert any(kind == "question" for kind, _title, _text in dialogs.shown)
    assert not window.isVisible() and not window.runner.is_busy()
    saved = list(Path(window.settings.runs_root()).glob("*-bakeoff/leaderboard.json"))
    assert len(saved) == 1
    payload = bakeoff.read_leaderboard(saved[0].parent).to_json()
    assert payload["cancelled"] and payload["leaderboard"] == []
