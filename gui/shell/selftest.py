"""Self-test mode: drive the real window through a tiny training run and a prediction, then exit.

Started by ``transfer-studio --self-test`` (or ``TransferStudio --self-test`` in the app bundle), or by
the environment variable ``TRANSFER_STUDIO_SELFTEST=1`` when no CLI subcommand is given. It

1. makes a synthetic two-class dataset (coloured PNG images) in a temporary folder,
2. opens the real :class:`gui.shell.main_window.MainWindow`, types the folder into ``datasetPath`` and
   presses Return (the Data tab scans it on its worker thread),
3. on the Train tab picks ``efficientnet_lite0`` (built-in weights, works offline), the
   ``feature-extract`` strategy and 1 epoch, and clicks ``startButton`` (the real TrainWorker runs),
4. waits for the trained model to load on the Predict tab, classifies one new image and checks
   that ``predictResults`` shows it,
5. prints one line of JSON to stdout and exits 0; on any failure it prints the reason to stderr
   (plus a JSON line with ``"status": "failed"``) and exits 1; after the hard time limit it exits 3.

Settings, runs and the feature cache go to the temporary folder, which is removed afterwards, so the
self-test never touches the user's own settings or runs. Environment variables:

  ``TRANSFER_STUDIO_SELFTEST``          ``1`` runs the self-test instead of the normal window
  ``TRANSFER_STUDIO_SELFTEST_TIMEOUT``  hard limit in seconds (default 300)
  ``TRANSFER_STUDIO_SELFTEST_REPORT``   also write the JSON line to this file (windowed builds on
                                        Windows have no stdout)
  ``TRANSFER_STUDIO_SELFTEST_KEEP``     ``1`` keeps the temporary folder (its path is logged)

Importing this module is cheap (standard library only): Qt, torch and the window are imported when
the self-test runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.core.commands import is_cli_call

logger = logging.getLogger(__name__)

FLAG = "--self-test"
ENV = "TRANSFER_STUDIO_SELFTEST"
DEFAULT_TIMEOUT_S = 300.0
EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 3
MODEL = "efficientnet_lite0"
STRATEGY = "feature-extract"
#: (name, RGB) of the two synthetic classes; very different colours, so one epoch separates them.
CLASSES = (("red", (215, 40, 35)), ("blue", (35, 70, 215)))
TRAIN_PER_CLASS, VAL_PER_CLASS, IMAGE_SIZE = 12, 4, 64


class SelfTestError(RuntimeError):
    """A step of the self-test failed; the message says which and why."""


def requested(argv: Sequence[str]) -> bool:
    """True when ``argv`` has ``--self-test``, or ``$TRANSFER_STUDIO_SELFTEST`` is set for a window launch."""
    if FLAG in argv:
        return True
    flag = os.environ.get(ENV, "").strip().lower()
    return flag in {"1", "true", "yes", "on"} and not is_cli_call(list(argv))


# -- the synthetic dataset -------------------------------------------------------------------------------


def _image(colour: tuple[int, int, int], seed: int) -> Any:
    """A noisy ``IMAGE_SIZE`` square of ``colour`` with a darker patch at a random place."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    arr[:] = colour
    arr += rng.normal(0.0, 10.0, size=arr.shape)
    x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE // 2, size=2))
    arr[y0 : y0 + IMAGE_SIZE // 3, x0 : x0 + IMAGE_SIZE // 3] *= 0.6
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


def make_dataset(root: Path) -> tuple[Path, Path, str]:
    """``root/data/{train,val}/<class>/*.png`` plus one extra image; returns (dataset, image, its class)."""
    data = root / "data"
    seed = 0
    for split, count in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for name, colour in CLASSES:
            folder = data / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed += 1
                _image(colour, seed).save(folder / f"{name}_{i:03d}.png")
    name, colour = CLASSES[0]
    probe = root / "probe" / f"new_{name}.png"
    probe.parent.mkdir(parents=True)
    _image(colour, 10_000).save(probe)
    return data, probe, name


# -- driving the window ----------------------------------------------------------------------------------


class _Driver:
    """Runs the steps on the GUI thread, pumping the event loop while it waits."""

    def __init__(self, app: Any, window: Any) -> None:
        self.app = app
        self.window = window
        self.errors: list[str] = []

    def child(self, cls: type, name: str) -> Any:
        widget = self.window.findChild(cls, name)
        if widget is None:
            raise SelfTestError(f"the window has no {cls.__name__} named {name!r}")
        return widget

    def pump(self, ms: int = 25) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def check_banners(self) -> None:
        from PySide6.QtWidgets import QWidget

        if self.errors:
            raise SelfTestError(f"unexpected error in the app: {self.errors[0]}")
        window = self.window
        if window.device_label.text() == "PyTorch unavailable":  # MainWindow._on_environment_failed
            raise SelfTestError(f"the window could not load PyTorch: {window.statusBar().currentMessage()}")
        details = window.train_tab.form.model_details.text()
        if details.startswith("The model list could not be loaded"):  # MainWindow._on_catalog_failed
            raise SelfTestError(details)
        for name in ("dataError", "trainError", "predictError"):
            banner = self.window.findChild(QWidget, name)
            if banner is not None and banner.isVisible():
                label = getattr(banner, "label", None)
                text = label.text() if label is not None else ""
                raise SelfTestError(f"the window shows an error ({name}): {_plain(text)}")

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Pump events until ``condition()``; returns the seconds it took."""
        start = time.monotonic()
        while True:
            self.check_banners()
            if condition():
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise SelfTestError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.pump()


def _plain(html: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", html).strip()


def _drive(driver: _Driver, dataset: Path, probe: Path, expected: str, timeout_s: float) -> dict[str, Any]:
    from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLineEdit, QProgressBar, QPushButton, QSpinBox

    window = driver.window
    timings: dict[str, float] = {}

    timings["catalog_s"] = driver.wait(lambda: bool(window.catalog), timeout_s, "the model catalog")
    logger.info("self-test: catalog loaded (%d models); device %s", len(window.catalog),
                window.environment.device if window.environment else "?")  # fmt: skip

    window.tabs.setCurrentWidget(window.data_tab)
    path_edit = driver.child(QLineEdit, "datasetPath")
    path_edit.setText(str(dataset))
    path_edit.returnPressed.emit()
    timings["scan_s"] = driver.wait(lambda: window.data_tab.report is not None, timeout_s, "the dataset scan")
    report = window.data_tab.report
    if sorted(report.classes) != sorted(name for name, _ in CLASSES):
        raise SelfTestError(f"the scan found classes {report.classes}, expected {[n for n, _ in CLASSES]}")
    logger.info("self-test: dataset scanned: %s", ", ".join(report.classes))

    window.tabs.setCurrentWidget(window.train_tab)
    strategy = driver.child(QComboBox, "strategyPicker")
    strategy.setCurrentIndex(strategy.findData(STRATEGY))
    if not window.train_tab.form.model_picker.select_model(MODEL):
        raise SelfTestError(f"the model picker has no {MODEL}")
    driver.child(QSpinBox, "epochsSpin").setValue(1)
    driver.child(QSpinBox, "batchSizeSpin").setValue(8)
    driver.child(QDoubleSpinBox, "learningRateSpin").setValue(0.01)
    picked = driver.child(QComboBox, "modelPicker")
    if window.train_tab.form.model_picker.current_model() != MODEL:
        raise SelfTestError(f"the model picker shows {picked.currentText()!r}, not {MODEL}")
    start_button = driver.child(QPushButton, "startButton")
    if not start_button.isEnabled():
        raise SelfTestError(f"Start training is disabled: {window.train_tab.start_hint.text()}")
    start_button.click()
    if not window.train_tab.is_running():
        raise SelfTestError("clicking Start training did not start a run")
    logger.info("self-test: training started")
    timings["train_s"] = driver.wait(lambda: not window.train_tab.is_running(), timeout_s, "the training run")
    bundle_path = window.train_tab.bundle_path
    if not bundle_path or not Path(bundle_path).is_file():
        raise SelfTestError(f"training ended without a saved model ({window.train_tab.status.text()})")
    progress = driver.child(QProgressBar, "trainProgress")
    if progress.value() != progress.maximum():
        raise SelfTestError(f"trainProgress stopped at {progress.value()}/{progress.maximum()}")
    logger.info("self-test: trained in %.1f s: %s", timings["train_s"], bundle_path)

    predict = window.predict_tab
    window.tabs.setCurrentWidget(predict)
    timings["load_model_s"] = driver.wait(
        lambda: predict.has_model() and predict.model_path == bundle_path,
        timeout_s,
        "the trained model to load",
    )
    predict.classify([probe])
    results = predict.results
    if results.objectName() != "predictResults":
        raise SelfTestError("the Predict tab's result table is not named predictResults")
    timings["predict_s"] = driver.wait(
        lambda: not predict.is_busy() and len(predict.predictions) == 1 and results.rowCount() > 0,
        timeout_s,
        "the prediction",
    )
    prediction = predict.predictions[0]
    if prediction.error:
        raise SelfTestError(f"the test image could not be classified: {prediction.error}")
    metrics = predict.predictor.bundle.metrics
    return {
        "device": window.environment.device if window.environment else None,
        "model": MODEL,
        "strategy": STRATEGY,
        "epochs": 1,
        "classes": list(report.classes),
        "val_acc": metrics.get("best_val_acc"),
        "predicted": prediction.label,
        "probability": round(float(prediction.probability), 4),
        "expected": expected,
        "correct": prediction.label == expected,
        "top_classes": results.class_names(),
        **{key: round(value, 2) for key, value in timings.items()},
    }


# -- entry point -----------------------------------------------------------------------------------------


def _emit(summary: dict[str, Any]) -> None:
    line = json.dumps(summary, sort_keys=False)
    if sys.stdout is not None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    report = os.environ.get("TRANSFER_STUDIO_SELFTEST_REPORT")
    if report:
        Path(report).write_text(line + "\n", encoding="utf-8")


def _fail(message: str) -> None:
    if sys.stderr is not None:
        sys.stderr.write(f"Transfer Studio self-test FAILED: {message}\n")
        sys.stderr.flush()


def _start_watchdog(timeout_s: float, started: float) -> threading.Timer:
    """Kill the process after ``timeout_s`` whatever the GUI thread is doing (a hang, a modal dialog)."""

    def expire() -> None:
        _fail(f"hard time limit of {timeout_s:.0f} s reached")
        _emit({"status": "timeout", "seconds": round(time.monotonic() - started, 2)})
        os._exit(EXIT_TIMEOUT)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    return timer


def bundle_info() -> dict[str, Any] | None:
    """``build_info.json`` of a PyInstaller bundle (version, flavour, torch build), else None."""
    base = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or base is None:
        return None
    try:
        return json.loads((Path(base) / "build_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("TRANSFER_STUDIO_SELFTEST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _configure_logging() -> None:
    level = os.environ.get("TRANSFER_STUDIO_LOG_LEVEL", "WARNING").upper()
    if sys.stderr is not None:
        logging.basicConfig(
            level=getattr(logging, level, logging.WARNING),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the self-test; returns the exit code (0 ok, 1 failed, 3 timed out via the watchdog)."""
    args = [arg for arg in (sys.argv[1:] if argv is None else argv) if arg != FLAG]
    started = time.monotonic()
    timeout_s = _timeout()
    watchdog = _start_watchdog(timeout_s, started)
    _configure_logging()
    workdir = Path(tempfile.mkdtemp(prefix="transfer-studio-selftest-"))
    keep = os.environ.get("TRANSFER_STUDIO_SELFTEST_KEEP", "") == "1"
    os.environ["TRANSFER_STUDIO_SETTINGS"] = str(workdir / "settings" / "settings.ini")
    os.environ["TRANSFER_STUDIO_RUNS"] = str(workdir / "runs")
    os.environ["TRANSFER_STUDIO_CACHE"] = str(workdir / "cache")
    logger.info("self-test: working in %s (limit %.0f s)", workdir, timeout_s)
    window = None
    previous_hook = sys.excepthook
    summary: dict[str, Any] = {"status": "failed"}
    code = EXIT_FAILED
    try:
        dataset, probe, expected = make_dataset(workdir)
        from PySide6.QtWidgets import QApplication

        import gui.core.qt_compat  # noqa: F401 - PySide6 work-arounds before heavy Qt use
        from gui.core.settings import Settings
        from gui.shell.environment import app_version
        from gui.shell.icon import app_icon
        from gui.shell.main_window import MainWindow

        existing = QApplication.instance()
        app = (
            existing
            if isinstance(existing, QApplication)
            else QApplication([sys.argv[0] if sys.argv else "transfer-studio", *args])
        )
        app.setApplicationName("Transfer Studio")
        app.setOrganizationName("TransferStudio")
        app.setDesktopFileName("transfer-studio")
        app.setWindowIcon(app_icon())
        window = MainWindow(Settings())
        driver = _Driver(app, window)

        def record(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            logger.error("unexpected error", exc_info=(exc_type, exc, tb))
            driver.errors.append(f"{exc_type.__name__}: {exc}")

        sys.excepthook = record
        shown: list[float] = []
        window.firstShown.connect(lambda: shown.append(time.monotonic() - started))
        window.show()
        driver.wait(lambda: bool(shown), timeout_s, "the window to open")
        result = _drive(driver, dataset, probe, expected, timeout_s)
        summary = {
            "status": "ok",
            "version": app_version(),
            "frozen": bool(getattr(sys, "frozen", False)),
            "bundle": bundle_info(),
            "platform": app.platformName(),
            "window_s": round(shown[0], 2),
            **result,
        }
        code = EXIT_OK
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message and exit code 1
        logger.debug("self-test failed", exc_info=True)
        reason = str(exc) if isinstance(exc, SelfTestError) else "".join(
            traceback.format_exception_only(type(exc), exc)
        ).strip()  # fmt: skip
        if not isinstance(exc, SelfTestError) and sys.stderr is not None:
            traceback.print_exc()
        _fail(reason)
        summary = {"status": "failed", "error": reason}
    finally:
        if window is not None:
            window.shutdown(60.0)  # stops a run still going (no "quit?" question), joins the workers
            window.close()
            window.deleteLater()
        sys.excepthook = previous_hook
        if keep:
            logger.info("self-test: kept %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["seconds"] = round(time.monotonic() - started, 2)
    watchdog.cancel()
    _emit(summary)
    return code
