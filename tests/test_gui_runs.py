"""The Runs tab: the runs table, its filter, comparing runs, and the actions on a run.

Most tests build run folders by hand (config, metrics and status, as a real run writes them) under
the test's runs folder; one trains a real one-epoch run through the window and opens its model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QTextDocumentFragment
from PySide6.QtWidgets import QComboBox, QLabel, QMessageBox, QPushButton, QTableView, QTableWidget, QWidget

from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.rundir import RunDir
from engine.core.runs import list_runs
from gui.tabs.compare_view import METRIC_PLOTS, legend_labels
from gui.tabs.runs_tab import BEST_ACC, DURATION

TRAIN_TIMEOUT_MS = 300_000


def make_run(
    root: Path,
    folder: str,
    *,
    model: str = "efficientnet_lite0",
    strategy: str = "feature-extract",
    dataset: str = "pets",
    epochs: int = 3,
    done: int | None = None,
    accs: tuple[float, ...] = (0.5, 0.7, 0.8),
    status: str | None = "finished",
    started: str = "2026-01-02T10:00:00+0000",
    checkpoint: bool = True,
    bundle: bool = True,
    **settings: object,
) -> Path:
    """A run folder as the trainer leaves it (a fake checkpoint and bundle: a few bytes each)."""
    done = epochs if done is None else done
    run = RunDir(root / folder)
    run.path.mkdir(parents=True)
    config = TrainConfig(model=model, strategy=strategy, epochs=epochs, **settings)
    run.write_config(config.to_dict(), root.parent / "data" / dataset)
    run.write_metrics(
        [
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "train_acc": min(1.0, accs[(e - 1) % len(accs)] + 0.05),
                "val_loss": 1.2 / e,
                "val_acc": accs[(e - 1) % len(accs)],
                "lr": 0.001,
                "seconds": 2.0,
            }
            for e in range(1, done + 1)
        ]
    )
    if status is not None:
        extra = {"pid": os.getpid()} if status == "running" else {}
        run.write_status(status, started=started, **extra)
    if checkpoint:
        run.checkpoint_path.write_bytes(b"x")
    if bundle:
        run.bundle_path.write_bytes(b"x")
    return run.path


@pytest.fixture
def runs_root() -> Path:
    """The window's runs folder (the GUI test guard points TRANSFER_STUDIO_RUNS at tmp_path)."""
    return Path(os.environ["TRANSFER_STUDIO_RUNS"])


def show_runs(window, qtbot):
    """Switch to the Runs tab and wait until it has listed the runs folder."""
    tab = window.runs_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: not tab.is_listing(), timeout=30_000)
    return tab


def refresh(tab, qtbot) -> None:
    with qtbot.waitSignal(tab.runsListed, timeout=30_000):
        tab.refresh()


def rows(window) -> list[dict[str, str]]:
    """The runs table's text, one dict (column title -> text) per row, in the order shown."""
    model = window.findChild(QTableView, "runsTable").model()
    titles = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    return [
        {titles[c]: model.index(r, c).data() for c in range(model.columnCount())}
        for r in range(model.rowCount())
    ]


def select(window, *folders: Path) -> None:
    window.runs_tab.select_paths(list(folders))


def curve_names(window, plot_name: str) -> list[str]:
    return [item.name() for item in window.findChild(pg.PlotWidget, plot_name).getPlotItem().listDataItems()]


def legend_text(window) -> str:
    """The plain text of the legend above the compare plots."""
    label = window.findChild(QLabel, "compareLegend")
    return QTextDocumentFragment.fromHtml(label.text()).toPlainText() if label.isVisibleTo(window) else ""


def button(window, name: str) -> QPushButton:
    return window.findChild(QPushButton, name)


# -- the table --------------------------------------------------------------------------------------
def test_runs_tab_follows_evaluate_and_names_its_widgets(window):
    titles = [window.tabs.tabText(i).split()[-1] for i in range(window.tabs.count())]
    assert titles.index("Runs") == titles.index("Evaluate") + 1
    assert window.tabs.widget(titles.index("Runs")).objectName() == "runsTab"
    for kind, name in (
        (QWidget, "runsTab"),
        (QTableView, "runsTable"),
        (pg.PlotWidget, "comparePlot"),
        (QComboBox, "runsDatasetFilter"),
        (QPushButton, "runsRefreshButton"),
        (QPushButton, "runsOpenPredictButton"),
        (QPushButton, "runsOpenEvaluateButton"),
        (QPushButton, "runsResumeButton"),
        (QPushButton, "runsShowFolderButton"),
        (QPushButton, "runsRenameButton"),
        (QPushButton, "runsReportButton"),
        (QPushButton, "runsDeleteButton"),
        (QTableWidget, "compareTable"),
    ):
        widget = window.findChild(kind, name)
        assert widget is not None, name
        assert widget.accessibleName(), name


def test_each_run_is_a_row_newest_first_and_sortable(window, qtbot, runs_root):
    make_run(runs_root, "old", started="2026-01-01T09:00:00+0000", accs=(0.9,), epochs=2)
    make_run(runs_root, "new", strategy="scratch", started="2026-01-03T09:00:00+0000", accs=(0.4, 0.6))
    make_run(runs_root, "stopped", strategy="fine-tune", epochs=5, done=2, accs=(0.55, 0.65), status="stopped",
             started="2026-01-02T09:00:00+0000", bundle=True)  # fmt: skip
    show_runs(window, qtbot)
    table = rows(window)
    assert [r["Name"] for r in table] == ["new", "stopped", "old"]
    new, stopped, old = table
    assert (new["Model"], new["Strategy"], new["Dataset"]) == ("efficientnet_lite0", "scratch", "pets")
    assert (new["Epochs"], new["Best val acc"], new["Best epoch"], new["Status"]) == (
        "3/3",
        "60.0%",
        "2",
        "finished",
    )
    assert new["Duration"] == "6.0 s" and new["Started"].startswith("2026-01-0")
    assert stopped["Status"] == "stopped · resumable" and stopped["Epochs"] == "2/5"
    assert old["Best val acc"] == "90.0%"
    assert "3 runs" in window.runs_tab.summary.text()

    view = window.findChild(QTableView, "runsTable")
    view.sortByColumn(BEST_ACC, Qt.SortOrder.DescendingOrder)
    assert [r["Name"] for r in rows(window)] == ["old", "stopped", "new"]
    view.sortByColumn(DURATION, Qt.SortOrder.AscendingOrder)  # 4 s, 4 s, 6 s
    assert rows(window)[-1]["Name"] == "new"


def test_duration_is_the_whole_run_when_its_status_says_so(window, qtbot, runs_root):
    run = make_run(runs_root, "features-first", epochs=2, started="2026-01-02T10:00:00+0000")
    RunDir(run).write_status("finished", seconds=185.0)  # the trainer's wall time: features took 3 min
    make_run(runs_root, "no-end", epochs=2, started="2026-01-01T10:00:00+0000")
    show_runs(window, qtbot)
    assert [(r["Name"], r["Duration"]) for r in rows(window)] == [
        ("features-first", "3:05"),
        ("no-end", "4.0 s"),
    ]


def test_a_run_of_cached_features_shows_its_real_time_and_says_why(window, qtbot, runs_root):
    """Issue 22: half a second is not "0:00", and a run whose feature pass came from the cache says so."""
    run = make_run(runs_root, "cached", epochs=2, started="2026-01-02T10:00:00+0000")
    RunDir(run).write_status("finished", seconds=0.5, features_cached=True)
    show_runs(window, qtbot)
    (row,) = rows(window)
    assert row["Duration"] == "0.5 s · features from the cache"
    view = window.findChild(QTableView, "runsTable")
    tip = view.model().index(0, DURATION).data(Qt.ItemDataRole.ToolTipRole)
    assert "already in the cache" in tip


def test_filter_by_dataset(window, qtbot, runs_root):
    make_run(runs_root, "p1", dataset="pets")
    make_run(runs_root, "p2", dataset="pets", strategy="scratch")
    make_run(runs_root, "f1", dataset="flowers")
    tab = show_runs(window, qtbot)
    combo = window.findChild(QComboBox, "runsDatasetFilter")
    assert [combo.itemText(i) for i in range(combo.count())] == ["All datasets", "flowers", "pets"]
    combo.setCurrentIndex(combo.findText("pets"))
    assert sorted(r["Name"] for r in rows(window)) == ["p1", "p2"]
    assert {r["Dataset"] for r in rows(window)} == {"pets"}
    assert "2 of 3 runs" in tab.summary.text()
    refresh(tab, qtbot)  # the filter survives a refresh
    assert combo.currentText() == "pets" and len(rows(window)) == 2
    combo.setCurrentIndex(combo.findText("All datasets"))
    assert len(rows(window)) == 3


def test_an_empty_runs_folder_says_so(window, qtbot):
    tab = show_runs(window, qtbot)
    assert rows(window) == []
    assert "No runs yet" in tab.summary.text()
    assert not button(window, "runsDeleteButton").isEnabled()
    assert curve_names(window, "comparePlot") == []


# -- curves and comparison ------------------------------------------------------------------------------
def test_one_selected_run_shows_its_curves_and_settings(window, qtbot, runs_root):
    run = make_run(runs_root, "solo", lr=0.005, epochs=4, accs=(0.5, 0.6, 0.7, 0.65), input_size=-1)
    RunDir(run).record_dataset({"input_size": 288, "validation": "folder", "device": "CPU (2 threads)"})
    split = make_run(runs_root, "split", val_fraction=0.25, device="cpu")  # an automatic split, older run
    show_runs(window, qtbot)
    select(window, run)
    for _key, name, *_rest in METRIC_PLOTS:
        items = window.findChild(pg.PlotWidget, name).getPlotItem().listDataItems()
        assert len(items) == 1, name
        x, _y = items[0].getData()
        assert list(x) == [1, 2, 3, 4], name
    _x, y = window.findChild(pg.PlotWidget, "comparePlot").getPlotItem().listDataItems()[0].getData()
    assert list(y) == pytest.approx([50, 60, 70, 65])  # percent
    table = window.findChild(QTableWidget, "compareTable")
    settings = {table.verticalHeaderItem(r).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    assert settings["learning rate"] == "0.005"
    assert settings["strategy"] == "feature-extract" and settings["model"] == "efficientnet_lite0"
    assert settings["best val accuracy"] == "70.0%" and settings["best epoch"] == "3"
    assert settings["duration"] == "0:08"
    # Issue 22: settings in words, with what "automatic" came to.
    assert settings["input size"] == "automatic (288 px)"
    assert settings["validation fraction"] == "the dataset's val folder"
    assert settings["device"] == "automatic (CPU (2 threads))"
    assert "True" not in settings.values() and "False" not in settings.values()
    assert button(window, "runsOpenPredictButton").isEnabled()
    assert button(window, "runsOpenEvaluateButton").isEnabled()
    assert not button(window, "runsResumeButton").isEnabled()  # finished
    select(window, split)
    settings = {table.verticalHeaderItem(r).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    assert settings["validation fraction"] == "25% of each class (automatic split)"
    assert settings["device"] == "CPU"


def test_two_selected_runs_draw_two_curves_named_by_what_differs(window, qtbot, runs_root):
    fine = make_run(runs_root, "a", strategy="fine-tune", accs=(0.6, 0.8, 0.9))
    scratch = make_run(runs_root, "b", strategy="scratch", accs=(0.3, 0.4, 0.5))
    show_runs(window, qtbot)
    select(window, fine, scratch)
    for _key, name, *_rest in METRIC_PLOTS:
        assert sorted(curve_names(window, name)) == ["fine-tune", "scratch"], name
    assert sorted(legend_text(window).replace("■", "").split()) == ["fine-tune", "scratch"]
    items = window.findChild(pg.PlotWidget, "comparePlot").getPlotItem().listDataItems()
    colours = {item.opts["pen"].color().name() for item in items}
    assert len(colours) == 2
    by_name = {item.name(): list(item.getData()[1]) for item in items}
    assert by_name["fine-tune"] == pytest.approx([60, 80, 90])
    table = window.findChild(QTableWidget, "compareTable")
    rows_ = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert rows_[0] == "strategy" and "learning rate" not in rows_  # only what differs
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert sorted(headers) == ["fine-tune", "scratch"]
    best = rows_.index("best val accuracy")
    assert sorted(table.item(best, c).text() for c in range(2)) == ["50.0%", "90.0%"]
    assert not button(window, "runsDeleteButton").isEnabled()  # actions take one run

    # The curves follow the selection: one run again, then none.
    select(window, scratch)
    assert curve_names(window, "comparePlot") == ["b"]
    assert legend_text(window).split() == ["■■", "b"]
    select(window)
    assert curve_names(window, "comparePlot") == []
    assert legend_text(window) == ""


def test_legend_names_what_differs_between_the_runs(window, qtbot, runs_root):
    a = make_run(runs_root, "a", model="efficientnet_lite0", strategy="fine-tune", lr=0.001)
    b = make_run(runs_root, "b", model="resnet18", strategy="scratch", lr=0.001)
    c = make_run(runs_root, "c", model="resnet18", strategy="scratch", lr=0.01)
    show_runs(window, qtbot)
    select(window, a, b)
    assert sorted(curve_names(window, "comparePlot")) == [
        "efficientnet_lite0 · fine-tune",
        "resnet18 · scratch",
    ]
    select(window, b, c)
    assert sorted(curve_names(window, "valLossComparePlot")) == ["lr 0.001", "lr 0.01"]
    assert "learning rate" in window.runs_tab.compare.heading.text()


def test_every_setting_that_changes_a_result_is_compared(window, qtbot, runs_root):
    a = make_run(runs_root, "a", weight_decay=1e-4)
    b = make_run(runs_root, "b", weight_decay=1e-2)
    show_runs(window, qtbot)
    select(window, a, b)
    assert "weight decay" in window.runs_tab.compare.heading.text()
    assert sorted(curve_names(window, "comparePlot")) == ["weight decay 0.0001", "weight decay 0.01"]


def test_strategies_name_the_runs_even_when_their_defaults_differ(window, qtbot, runs_root):
    """The tutorials' comparison: scratch's own default weight decay stays in the table, not the legend."""
    a = make_run(runs_root, "a", strategy="fine-tune", weight_decay=1e-4)
    b = make_run(runs_root, "b", strategy="scratch", weight_decay=5e-4)
    show_runs(window, qtbot)
    select(window, a, b)
    assert sorted(curve_names(window, "comparePlot")) == ["fine-tune", "scratch"]
    assert "weight decay" in window.runs_tab.compare.heading.text()


def test_legend_labels_fall_back_to_names():
    root = Path("/runs")

    def summary(name: str, **settings: object):
        from engine.core.runs import RunSummary

        base = {"epochs": 3, "batch_size": 32, "lr": 0.001, "optimizer": "adamw", "schedule": "cosine",
                "augment": True, "seed": 0, "device": "auto"}  # fmt: skip
        return RunSummary(
            path=root / name, name=name, note="", dataset="/data/pets", model="m", strategy="s",
            settings={**base, **settings}, started=None, seconds=1.0, epochs_done=3, epochs_planned=3,
            best_val_acc=0.5, best_epoch=1, status="finished", resumable=False, has_bundle=True, message=None,
        )  # fmt: skip

    assert legend_labels([summary("first"), summary("second")]) == ["first", "second"]
    assert legend_labels([summary("x", augment=False), summary("y")]) == ["not augmented", "augmented"]
    assert legend_labels([summary("x", seed=1), summary("y"), summary("z")]) == [
        "seed 1",
        "seed 0 (y)",
        "seed 0 (z)",
    ]
    assert legend_labels([summary("x", batch_size=16, lr=0.01), summary("y")]) == [
        "batch 16 · lr 0.01",
        "batch 32 · lr 0.001",
    ]


def test_more_than_eight_selected_runs_show_the_first_eight(window, qtbot, runs_root):
    folders = [
        make_run(runs_root, f"r{i:02d}", seed=i, started=f"2026-01-02T10:00:{i:02d}+0000") for i in range(10)
    ]
    show_runs(window, qtbot)
    select(window, *folders)
    assert len(window.runs_tab.selected_runs()) == 10
    names = curve_names(window, "comparePlot")
    assert len(names) == 8
    assert names == [f"seed {i}" for i in range(9, 1, -1)]  # newest first, as in the table
    assert "first 8 of 10" in window.runs_tab.compare.heading.text()
    assert window.findChild(QTableWidget, "compareTable").columnCount() == 8


# -- actions --------------------------------------------------------------------------------------------
def test_delete_moves_the_run_to_the_trash(window, qtbot, runs_root, trash_home, dialogs):
    keep = make_run(runs_root, "keep")
    gone = make_run(runs_root, "gone", strategy="scratch")
    tab = show_runs(window, qtbot)
    select(window, gone)
    assert button(window, "runsDeleteButton").isEnabled()
    with qtbot.waitSignal(tab.runsListed, timeout=30_000):
        button(window, "runsDeleteButton").click()
    assert [r["Name"] for r in rows(window)] == ["keep"]
    assert not gone.exists() and keep.exists()
    assert (trash_home / "gone" / "config.json").is_file()
    assert dialogs.shown == []  # the trash is recoverable: no question asked
    assert "trash" in tab.message.text()


@pytest.mark.parametrize("answer", [QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No])
def test_without_a_trash_delete_asks_first(window, qtbot, runs_root, monkeypatch, dialogs, answer):
    import gui.tabs.runs_tab

    def no_trash(path):
        raise TransferStudioError(f"cannot move {path} to the trash: no trash here")

    monkeypatch.setattr(gui.tabs.runs_tab, "move_run_to_trash", no_trash)
    asked = []

    def question(_parent, title, text, *_args, **_kwargs):
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    run = make_run(runs_root, "doomed")
    tab = show_runs(window, qtbot)
    select(window, run)
    button(window, "runsDeleteButton").click()
    assert len(asked) == 1 and "for good" in asked[0]
    if answer == QMessageBox.StandardButton.Yes:
        qtbot.waitUntil(lambda: rows(window) == [], timeout=30_000)
        assert not run.exists()
    else:
        assert run.exists() and len(rows(window)) == 1
    assert not tab.message.isVisible() or tab.message.level != "error"


def test_a_running_run_cannot_be_deleted(window, qtbot, runs_root):
    run = make_run(runs_root, "busy", status="running", done=1, bundle=False)
    tab = show_runs(window, qtbot)
    assert rows(window)[0]["Status"] == "running"
    select(window, run)
    delete = button(window, "runsDeleteButton")
    assert not delete.isEnabled()
    assert not button(window, "runsOpenPredictButton").isEnabled()  # no model.pt yet
    tab.delete_selected()  # e.g. the Delete key
    assert run.exists()
    assert tab.message.isVisible() and tab.message.level == "error"
    assert "still training" in tab.message.text()


def test_rename_and_note(window, qtbot, runs_root):
    run = make_run(runs_root, "20260102-100000-efficientnet_lite0-feature-extract")
    tab = show_runs(window, qtbot)
    select(window, run)
    button(window, "runsRenameButton").click()
    dialog = tab.note_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.name_edit.setText("  baseline ")
    dialog.note_edit.setPlainText("first try, default settings")
    with qtbot.waitSignal(tab.runsListed, timeout=30_000):
        dialog.accept()
    assert rows(window)[0]["Name"] == "baseline"
    assert tab.selected_runs()[0].note == "first try, default settings"  # still selected
    assert "first try" in tab.compare.heading.text()
    assert list_runs(runs_root)[0].name == "baseline"


def test_a_failing_action_shows_a_banner_not_a_traceback(window, qtbot, runs_root):
    import shutil

    run = make_run(runs_root, "vanishing")
    tab = show_runs(window, qtbot)
    select(window, run)
    shutil.rmtree(run)  # deleted behind the window's back
    button(window, "runsRenameButton").click()
    tab.note_dialog.name_edit.setText("x")
    tab.note_dialog.accept()
    assert tab.message.isVisible() and tab.message.level == "error"
    assert "Cannot save" in tab.message.text() and "Traceback" not in tab.message.text()
    assert not run.exists()


def test_show_folder_opens_the_run_folder(window, qtbot, runs_root, monkeypatch):
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))
    run = make_run(runs_root, "here")
    show_runs(window, qtbot)
    select(window, run)
    button(window, "runsShowFolderButton").click()
    assert [Path(url.toLocalFile()) for url in opened] == [run]


def test_export_report_asks_for_the_selected_run(window, qtbot, runs_root):
    run = make_run(runs_root, "reported")
    empty = make_run(runs_root, "empty", done=0, status="failed", checkpoint=False, bundle=False)
    tab = show_runs(window, qtbot)
    select(window, empty)
    assert not button(window, "runsReportButton").isEnabled()  # nothing to report yet
    select(window, run)
    with qtbot.waitSignal(tab.reportRequested, timeout=5_000) as requested:
        button(window, "runsReportButton").click()
    assert requested.args == [str(run)]


def test_file_export_report_writes_the_selected_runs_report(window, qtbot, runs_root, monkeypatch):
    """Issue 22: with a feature-extract run selected in the Runs tab, File → Export report wrote the
    last-trained (fine-tune) run's report. It reports the selected run, without a folder to pick;
    from another tab the folder dialog starts at the run in view."""
    from PySide6.QtWidgets import QFileDialog

    from gui.dialogs.report_export import ReportExporter

    extract = make_run(runs_root, "extract")
    tuned = make_run(runs_root, "tuned", strategy="fine-tune")
    window.train_tab.run_dir = str(tuned)  # the run trained last, as the Train tab shows it
    asked: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda _p, _t, start: asked.append(start) or "")
    )
    suggested: list[str] = []
    target = runs_root.parent / "out" / "report.html"
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda _p, _t, path, _f: (suggested.append(path), (str(target), ""))[1]),
    )
    written: list[tuple[Path, Path]] = []
    monkeypatch.setattr(ReportExporter, "_start", lambda _self, folder, out: written.append((folder, out)))

    show_runs(window, qtbot)
    select(window, extract)
    window.export_report_action.trigger()
    assert asked == []  # the selection says which run
    assert written == [(extract, target)]
    assert Path(suggested[0]).parent == extract

    window.tabs.setCurrentWidget(window.train_tab)  # elsewhere: the picker starts at the run in view
    window.export_report_action.trigger()
    assert [Path(a) for a in asked] == [tuned]


def test_resume_is_offered_for_a_resumable_run_only(window, qtbot, runs_root, monkeypatch):
    resumed: list[str] = []
    monkeypatch.setattr(window.train_tab, "resume", lambda path: resumed.append(str(path)))
    stopped = make_run(runs_root, "stopped", epochs=5, done=2, status="stopped")
    finished = make_run(runs_root, "finished")
    show_runs(window, qtbot)
    select(window, finished)
    assert not button(window, "runsResumeButton").isEnabled()
    select(window, stopped)
    resume = button(window, "runsResumeButton")
    assert resume.isEnabled()
    window.runs_tab.set_training(True)  # while another run trains, resuming waits
    assert not resume.isEnabled()
    window.runs_tab.set_training(False)
    qtbot.waitUntil(lambda: not window.runs_tab.is_listing(), timeout=30_000)
    select(window, stopped)
    resume.click()
    assert resumed == [str(stopped)]
    assert window.tabs.currentWidget() is window.train_tab


def test_a_run_started_from_the_window_appears_at_once(window, qtbot, runs_root):
    make_run(runs_root, "earlier")
    tab = show_runs(window, qtbot)
    assert len(rows(window)) == 1
    run = make_run(runs_root, "now", status="running", done=0, bundle=False, checkpoint=False,
                   started="2026-02-01T00:00:00+0000")  # fmt: skip
    with qtbot.waitSignal(tab.runsListed, timeout=30_000):
        window.train_tab.runStarted.emit(str(run))
    assert rows(window)[0]["Name"] == "now" and rows(window)[0]["Status"] == "running"
    RunDir(run).write_status("finished")
    with qtbot.waitSignal(tab.runsListed, timeout=30_000):
        window.train_tab.runningChanged.emit(False)  # the run ended
    assert rows(window)[0]["Status"] == "finished"


def test_the_runs_tab_does_not_import_torch():
    import subprocess

    code = (
        "import sys, os\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import gui.shell.main_window, gui.tabs.runs_tab, gui.tabs.compare_view\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')]\n"
        "assert not heavy, heavy[:5]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# -- a real run -----------------------------------------------------------------------------------------
def test_a_finished_run_appears_and_opens_in_predict_and_evaluate(
    window, qtbot, monkeypatch, synthetic_dataset
):
    from test_gui_training import configure, open_dataset, start

    started: list[str] = []
    window.train_tab.runStarted.connect(started.append)
    open_dataset(window, qtbot, monkeypatch, synthetic_dataset)
    configure(window, epochs=1)
    start(window, qtbot)
    qtbot.waitUntil(lambda: not window.train_tab.is_running(), timeout=TRAIN_TIMEOUT_MS)
    assert window.train_tab.bundle_path, window.findChild(QWidget, "trainError").text()
    qtbot.waitUntil(window.predict_tab.has_model, timeout=60_000)  # the window loads the new model itself

    tab = show_runs(window, qtbot)
    table = rows(window)
    assert len(table) == 1
    row = table[0]
    assert (row["Model"], row["Strategy"], row["Status"]) == (
        "efficientnet_lite0",
        "feature-extract",
        "finished",
    )
    assert row["Epochs"] == "1/1" and row["Dataset"] == synthetic_dataset.name and row["Best epoch"] == "1"
    run = tab.runs[next(iter(tab.runs))]
    assert [Path(p).resolve() for p in started] == [run.path.resolve()]  # reported as it started
    bundle = Path(window.train_tab.bundle_path)
    assert bundle == RunDir(run.path).bundle_path

    select(window, run.path)
    assert curve_names(window, "comparePlot") == [run.name]
    before = window.predict_tab.predictor
    with qtbot.waitSignal(window.predict_tab.modelLoaded, timeout=60_000) as loaded:
        button(window, "runsOpenPredictButton").click()
        assert window.tabs.currentWidget() is window.predict_tab
    assert loaded.args[0] is window.predict_tab.predictor is not before  # loaded again, from the run
    assert Path(window.predict_tab.model_path) == bundle
    assert loaded.args[0].bundle.class_names == ["cats", "dogs"]
    assert not window.predict_tab.error.isVisible()

    window.tabs.setCurrentWidget(tab)
    select(window, run.path)
    with qtbot.waitSignal(window.predict_tab.modelLoaded, timeout=60_000) as loaded:
        button(window, "runsOpenEvaluateButton").click()
        assert window.tabs.currentWidget() is window.evaluate_tab
    assert window.evaluate_tab.predictor is loaded.args[0]
    assert window.evaluate_tab.evaluate_button.isEnabled()  # with the dataset that is open
