"""The window at small sizes and across sessions (issue 22): the Data tab's columns and tab labels in
view at 1024×700, the doctor's Detail column kept, Start reachable, splitters and columns remembered."""

from __future__ import annotations

from pathlib import Path

from helpers_images import make_image_folder
from PySide6.QtWidgets import QPushButton, QScrollArea, QSplitter, QTableView, QTableWidget, QTabWidget
from test_gui_training import open_dataset


def _visible_in_window(widget, window) -> bool:
    """``widget`` is shown, and its whole rectangle lies inside the window's."""
    top_left = widget.mapTo(window, widget.rect().topLeft())
    bottom_right = widget.mapTo(window, widget.rect().bottomRight())
    inside = window.rect().contains(top_left) and window.rect().contains(bottom_right)
    return widget.isVisible() and not widget.visibleRegion().isEmpty() and inside


def assert_train_tab_fits(window, qtbot) -> None:
    """At 1280x800 the Train tab shows its settings, plots and result without scrolling."""
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.wait(100)
    tab = window.train_tab
    scroll = window.findChild(QScrollArea, "trainSettingsScroll")
    assert not scroll.verticalScrollBar().isVisible(), (
        scroll.widget().sizeHint(),
        scroll.viewport().height(),
    )
    for widget in (tab.result, tab.plots, window.findChild(QPushButton, "startButton")):
        assert _visible_in_window(widget, window), widget.objectName()


def test_data_tab_keeps_every_column_and_tab_label_at_1024x700(window, qtbot, monkeypatch, tmp_path):
    data = make_image_folder(tmp_path / "a-dataset-with-a-rather-long-name", {"ants": 4, "honeybees": 5})
    (data / "train" / "ants" / "broken.jpg").write_bytes(b"not a photo")
    window.resize(1024, 700)
    open_dataset(window, qtbot, monkeypatch, data)
    qtbot.wait(50)
    table = window.findChild(QTableWidget, "classTable")
    header = table.horizontalHeader()
    assert header.count() == 5 and table.horizontalHeaderItem(header.count() - 1).text() == "Share"
    right_edge = header.sectionViewportPosition(header.count() - 1) + header.sectionSize(header.count() - 1)
    assert right_edge <= table.viewport().width()  # Share is in view, not behind a scroll bar
    share = header.count() - 1
    assert header.sectionSize(share) >= table.sizeHintForColumn(share) - 1
    issues = window.findChild(QTabWidget, "datasetIssues")
    bar = issues.tabBar()
    for index in range(bar.count()):
        text = bar.tabText(index)
        assert bar.tabRect(index).width() >= bar.fontMetrics().horizontalAdvance(text), text
        assert bar.tabRect(index).right() <= bar.width()


def test_the_train_settings_are_never_cut_on_the_right(window, qtbot):
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.wait(50)
    form = window.train_tab.form
    viewport = form.parentWidget()
    while viewport is not None and viewport.objectName() != "qt_scrollarea_viewport":
        viewport = viewport.parentWidget()
    assert viewport is not None
    assert form.minimumSizeHint().width() <= viewport.width()
    assert form.mapTo(viewport, form.rect().topRight()).x() < viewport.width()


def test_start_is_inside_the_window_at_1024x700(window, qtbot, monkeypatch, tmp_path):
    data = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    window.resize(1024, 700)
    open_dataset(window, qtbot, monkeypatch, data)
    window.tabs.setCurrentWidget(window.train_tab)
    qtbot.wait(50)
    start = window.findChild(QPushButton, "startButton")
    assert _visible_in_window(start, window)


def test_splitters_and_column_widths_are_remembered(make_window, qtbot, tmp_path):
    settings = tmp_path / "layout" / "settings.ini"
    first = make_window(settings)
    first.tabs.setCurrentWidget(first.predict_tab)
    splitter = first.findChild(QSplitter, "predictSplitter")
    total = sum(splitter.sizes())
    splitter.setSizes([total // 4, total - total // 4])
    chosen = splitter.sizes()
    runs = first.findChild(QTableView, "runsTable")
    runs.horizontalHeader().resizeSection(0, 333)
    first.close()

    second = make_window(settings)
    second.tabs.setCurrentWidget(second.predict_tab)
    assert second.findChild(QSplitter, "predictSplitter").sizes() == chosen
    assert second.findChild(QTableView, "runsTable").horizontalHeader().sectionSize(0) == 333
    assert Path(settings).is_file()


def test_plots_keep_the_last_point_and_the_legends_off_the_data(qtbot):
    """Issue 22: the last epoch sat on the right edge, a legend covered the val line, and a 0–100 axis
    flattened accuracies of 80–96%."""
    from PySide6.QtCore import QPointF

    from gui.views.plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 520)
    plots.show()
    qtbot.waitExposed(plots)
    plots.clear(5)
    epochs = [(0.9, 0.7, 0.80, 0.90), (0.5, 0.4, 0.90, 0.93), (0.4, 0.35, 0.93, 0.95),
              (0.35, 0.3, 0.95, 0.96), (0.3, 0.28, 0.96, 0.96)]  # fmt: skip
    for epoch, values in enumerate(epochs, start=1):
        plots.add_epoch(epoch, *values)
    qtbot.wait(100)  # the legends are laid out
    pairs = ((plots.loss_plot, (plots.train_loss, plots.val_loss)),
             (plots.accuracy_plot, (plots.train_acc, plots.val_acc)))  # fmt: skip
    for plot, curves in pairs:
        item = plot.getPlotItem()
        (_x0, x1), (y0, y1) = item.viewRange()
        legend = item.legend.sceneBoundingRect()
        for curve in curves:
            xs, ys = curve.getData()
            assert x1 - max(xs) >= 0.25, plot.objectName()
            for x, y in zip(xs, ys):
                assert y0 < y < y1, plot.objectName()
                assert not legend.contains(item.getViewBox().mapViewToScene(QPointF(x, y))), plot.objectName()
    _x, (low, high) = plots.accuracy_plot.getPlotItem().viewRange()
    assert low > 40 and high <= 102  # fitted to 80–96%, not 0–100
