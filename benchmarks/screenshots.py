"""Screenshots of the tabs during a real run, for the README (docs/screenshot-*.png).

Drives the real window the way a person would: opens the dataset, shows a class's thumbnails,
trains with the offline default model (feature extraction), captures the Train tab while the run is
going and again at the end, then classifies the validation folder on the Predict tab. Last, it
trains the same model with the other strategies (``--compare``, as the CLI would) and captures the
Runs tab comparing the runs, and runs a bake-off on the Bake-off tab. Run it under
Xvfb for a real X11 window (``QWidget.grab`` works the same offscreen)::

    xvfb-run -s "-screen 0 1440x960x24" .venv/bin/python benchmarks/screenshots.py \\
        ../shared/data/hymenoptera --out docs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT")
    parser.add_argument(
        "--small",
        type=Path,
        default=None,
        help="also save the Train and Bake-off tabs at 1024x700 here (to check by eye)",
    )
    parser.add_argument(
        "--bakeoff-epochs", type=int, default=1, help="epochs per bake-off candidate (0: none)"
    )
    parser.add_argument(
        "--compare",
        default="fine-tune,scratch",
        help="strategies to train after the window's run, for the Runs tab's shot ('' for none)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ts-shots-"))
    os.environ.setdefault("TRANSFER_STUDIO_SETTINGS", str(work / "settings.ini"))
    os.environ.setdefault("TRANSFER_STUDIO_RUNS", str(work / "runs"))

    from PySide6.QtCore import QEventLoop, QObject, Slot
    from PySide6.QtWidgets import QApplication

    from gui.shell.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Transfer Studio")
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    args.out.mkdir(parents=True, exist_ok=True)

    def wait(condition, timeout: float = 600.0, settle: float = 0.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise SystemExit("timed out waiting for the window")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)

    def shoot(name: str) -> None:
        app.processEvents()
        path = args.out / f"screenshot-{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")

    wait(lambda: window.environment is not None and window.catalog)
    window.data_tab.open_dataset(args.dataset.resolve())
    wait(lambda: window.data_tab.report is not None)
    table = window.data_tab.class_table
    table.selectRow(table.rowCount() - 1)
    grid = window.data_tab.grid
    wait(lambda: grid.thumbs.rowCount() > 0, settle=0.5)
    visible = len(grid.visible_rows()) // 2
    wait(lambda: grid.thumbs.loaded_count() >= min(visible, grid.thumbs.rowCount()), settle=0.5)
    shoot("data")

    window.tabs.setCurrentWidget(window.train_tab)
    form = window.train_tab.form
    form.strategy_picker.setCurrentIndex(form.strategy_picker.findText("feature-extract"))
    form.control("epochs").set_value(args.epochs)
    shot_epoch = max(1, args.epochs * 2 // 3)

    class MidRunShot(QObject):
        """Lives on the GUI thread; its slot runs right after the Train tab updated its plots."""

        @Slot(object)
        def on_epoch(self, event) -> None:
            if event.epoch == shot_epoch:
                shoot("train")

    mid_run = MidRunShot()
    window.train_tab.start()
    assert window.train_tab.worker is not None
    window.train_tab.worker.epochEnded.connect(mid_run.on_epoch)
    wait(lambda: not window.train_tab.is_running(), timeout=3600, settle=0.5)
    shoot("train-finished")

    window.tabs.setCurrentWidget(window.predict_tab)
    wait(window.predict_tab.has_model)
    val = args.dataset / "val"
    window.predict_tab.classify([val if val.is_dir() else args.dataset])
    wait(lambda: not window.predict_tab.is_busy())
    predictions = window.predict_tab.predictions
    row = next((i for i, p in enumerate(predictions) if "bee" in str(p.path.parent).lower()), 0)
    window.predict_tab.table.selectRow(row)
    window.predict_tab.table.scrollToItem(window.predict_tab.table.item(row, 0))
    wait(lambda: window.predict_tab.preview.pixmap() is not None, settle=1.0)
    shoot("predict")

    strategies = [s for s in args.compare.split(",") if s]
    if strategies:
        train_alongside(Path(window.train_tab.run_dir), strategies)
        tab = window.runs_tab
        window.tabs.setCurrentWidget(tab)
        wait(lambda: not tab.is_listing() and len(tab.runs) > len(strategies))
        tab.select_paths(list(tab.runs))
        wait(lambda: True, settle=1.0)
        shoot("runs")

    if args.bakeoff_epochs:
        panel = window.train_tab.bakeoff
        window.tabs.setCurrentWidget(window.train_tab.bakeoff_page)
        panel.epochs.setValue(args.bakeoff_epochs)
        wait(lambda: panel.start_button.isEnabled(), timeout=120)
        panel.start()
        wait(lambda: not panel.is_running(), timeout=3600, settle=1.0)
        shoot("bakeoff")

    if args.small is not None:
        args.small.mkdir(parents=True, exist_ok=True)
        window.resize(1024, 700)
        for name, tab in (("train", window.train_tab), ("bakeoff", window.train_tab.bakeoff_page)):
            window.tabs.setCurrentWidget(tab)
            wait(lambda: True, settle=0.5)
            path = args.small / f"screenshot-{name}-1024x700.png"
            window.grab().save(str(path))
            print(f"wrote {path}")
    window.close()
    return 0


def train_alongside(run_dir: Path, strategies: list[str]) -> None:
    """Train the model of ``run_dir`` on its dataset with the same settings but other strategies."""
    import dataclasses

    from engine.core.config import TrainConfig
    from engine.core.rundir import RunDir, new_run_dir
    from engine.training.trainer import train

    values, data_root = RunDir(run_dir).read_config()
    base = TrainConfig.from_dict(values)
    for strategy in strategies:
        config = dataclasses.replace(base, strategy=strategy)
        print(f"training {config.model} with {strategy}…")
        train(config, data_root, run_dir=new_run_dir(config.model, strategy, run_dir.parent))


if __name__ == "__main__":
    sys.exit(main())
