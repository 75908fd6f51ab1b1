"""Screenshots of the Data tab's Sort view and photo map, for the README (docs/screenshot-sort*.png).

Opens a dataset with photos to sort (for example hymenoptera with 5 labelled training photos per
class and the rest in ``unlabeled/``: ``--few-labels`` builds one from hymenoptera, with links), waits
for the suggestions and thumbnails, shoots the Sort view, then places the photos on the map, suggests
groups and shoots the map::

    xvfb-run -s "-screen 0 1440x960x24" .venv/bin/python benchmarks/sort_screenshots.py \\
        ../shared/data/hymenoptera --few-labels --out docs
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
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--few-labels", action="store_true", help="sort hymenoptera from 5 photos per class")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-sort-shots-"))
    os.environ.setdefault("TRANSFER_STUDIO_SETTINGS", str(work / "settings.ini"))
    os.environ.setdefault("TRANSFER_STUDIO_DATA", str(work / "data"))
    data = args.dataset.resolve()
    if args.few_labels:
        from test_sort_hymenoptera import few_labels

        data = few_labels(work / "hymenoptera", 0)

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from gui.shell.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    args.out.mkdir(parents=True, exist_ok=True)

    def wait(condition, timeout: float = 900.0, settle: float = 0.0) -> None:
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
    tab = window.data_tab
    tab.open_dataset(data)
    wait(lambda: tab.report is not None)
    panel = tab.sort
    tab.views.setCurrentWidget(panel)
    wait(lambda: panel.proposals is not None, settle=3.0)
    panel.order_picker.setCurrentIndex(1)  # review order
    side = panel.map_side
    panel.map_toggle.setChecked(True)
    wait(lambda: not side.is_busy() and bool(side.placed_paths()), settle=1.0)
    side.colour_picker.setCurrentIndex(1)  # coloured by suggestion
    wait(lambda: True, settle=3.0)
    shoot("sort")
    side.suggest_groups()
    wait(lambda: not side.is_busy(), settle=2.0)
    shoot("sort-map")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
