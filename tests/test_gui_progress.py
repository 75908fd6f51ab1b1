"""Honest progress (issue 22): the bar never goes back, the elapsed clock ticks every second, the
estimate counts down between measurements; in real runs of each strategy and in a bake-off."""

from __future__ import annotations

import re
import time

import pytest
from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QSpinBox
from test_gui_layout import assert_train_tab_fits
from test_gui_training import configure, open_dataset, start, wait_until_finished

from gui.views.progress_clock import ProgressClock


def test_the_bar_never_goes_back_and_the_estimate_counts_down(qtbot):
    bar = QProgressBar()
    bar.setRange(0, 1000)
    qtbot.addWidget(bar)
    clock = ProgressClock(bar)
    clock.start()
    assert bar.value() == 0 and "estimating" in clock.text()
    clock.update(0.3, 10.0)
    assert bar.value() == 300
    clock.update(0.1, 40.0)  # a new measurement raised the estimate: the bar stays where it was
    assert bar.value() == 300 and "about 0:40 left" in clock.text()
    clock.update(1.0, 0.0)
    assert bar.value() == 999  # full only when the job ends
    clock.finish()
    assert bar.value() == 1000 and not clock.is_running()
    clock.start()
    clock.update(0.5, 3.0)
    qtbot.wait(1100)
    assert clock.seconds_left() is not None and 1.5 < clock.seconds_left() < 2.05
    clock.finish(completed=False)
    assert bar.value() == 500


def test_a_job_without_an_engine_estimate_is_priced_from_its_measured_rate(qtbot, monkeypatch):
    """The dataset doctor and Evaluate report only how far they got: the estimate is the rest of the
    job at the rate measured since the first report (the model's loading before it does not count)."""
    now = [100.0]
    monkeypatch.setattr("gui.views.progress_clock.time.monotonic", lambda: now[0])
    bar = QProgressBar()
    bar.setRange(0, 0)  # busy until the job knows its size
    qtbot.addWidget(bar)
    clock = ProgressClock(bar)
    clock.start()
    now[0] += 5.0  # loading the model
    bar.setRange(0, 200)
    clock.measure(0.0)
    assert clock.seconds_left() is None and "estimating" in clock.text()
    now[0] += 0.5
    clock.measure(0.05)
    assert clock.seconds_left() is None  # not measured over a second yet
    now[0] += 1.5  # 10% in 2 s: 18 s left
    clock.measure(0.1)
    assert clock.seconds_left() == pytest.approx(18.0) and bar.value() == 20
    assert "elapsed 0:07 · about 0:18 left" in clock.text()
    now[0] += 8.0  # slower now: 50% in 10 s, 10 s left
    clock.measure(0.5)
    assert clock.seconds_left() == pytest.approx(10.0) and bar.value() == 100
    clock.measure(0.4)  # a stage reported late never moves the bar back
    assert bar.value() == 100


def test_the_elapsed_text_changes_every_second(qtbot):
    bar = QProgressBar()
    qtbot.addWidget(bar)
    clock = ProgressClock(bar)
    seen: list[tuple[float, str]] = []
    clock.ticked.connect(lambda text: seen.append((time.monotonic(), text)))
    clock.start()
    qtbot.wait(2300)
    clock.finish()
    elapsed = [re.search(r"elapsed (\S+)", text).group(1) for _t, text in seen]
    assert elapsed[0] == "0:00" and len(set(elapsed)) >= 3  # 0:00, 0:01, 0:02
    changes = [t for (t, text), (_t0, before) in zip(seen[1:], seen) if text != before]
    gaps = [b - a for a, b in zip([seen[0][0], *changes], changes)]
    assert gaps and max(gaps) <= 1.3


def _values(bar: QProgressBar) -> list[int]:
    values: list[int] = []
    bar.valueChanged.connect(values.append)
    return values


def test_progress_never_decreases_in_a_feature_extract_and_a_fine_tune_run(
    window, qtbot, monkeypatch, synthetic_dataset, tmp_path
):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))  # a cold feature pass
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    bar = window.train_tab.progress
    status = window.findChild(QLabel, "trainStatus")
    for strategy in ("feature-extract", "fine-tune"):
        configure(window, epochs=2, batch_size=4)
        picker = window.findChild(QComboBox, "strategyPicker")
        picker.setCurrentIndex(picker.findText(strategy))
        window.findChild(QSpinBox, "epochsSpin").setValue(2)
        values = _values(bar)
        start(window, qtbot)
        wait_until_finished(window, qtbot)
        assert values and values == sorted(values), (strategy, values)  # from 0 (the start) upwards
        assert values[-1] == bar.maximum(), strategy
        assert "Finished 2 epochs" in status.text(), status.text()
    assert_train_tab_fits(window, qtbot)  # issue 22: settings, plots and the result, no scrolling
