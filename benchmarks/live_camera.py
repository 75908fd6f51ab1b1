"""Issue 27's live camera: answers per second, and how long the window's event loop ever waits.

Trains the built-in model with every default on DATA (``train DATA --epochs 10``, or takes
``--bundle``), opens the real window, loads the model on the Predict tab and turns the live camera
on, fed by a test source: Qt's ``QVideoFrameInput`` sending the validation photos as 1280x720 frames
at 30 frames per second (each photo, cropped to fill the frame, for one second) through the same capture session and video sink
as a camera. After a warm-up it counts, for ``--seconds``:

- the frames the model answered per second, and the median time per answer;
- the longest the GUI thread's event loop went without serving a 5 ms timer (a stall);
- the share of frames dropped because they came while another was being classified.

The naive baseline classifies every frame in the frame's own slot, on the GUI thread (what the
simplest code does), on the same frames for the same time.
``--screenshot PNG`` also saves the window with the camera view (run under Xvfb for a real window)::

    .venv/bin/python benchmarks/live_camera.py ../shared/data/hymenoptera [--bundle model.pt] \\
        [--screenshot docs/screenshot-camera.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FRAME_SIZE = (1280, 720)
FPS = 30


def train(data: Path, base: Path) -> Path:
    env = {**os.environ, "TRANSFER_STUDIO_CACHE": str(base / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "train", str(data), "--epochs", "10", "--out", str(base / "run"),
         "--json"], cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"training failed:\n{done.stderr[-3000:]}")
    return Path(json.loads(done.stdout.strip().splitlines()[-1])["bundle"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--bundle", type=Path, help="a run's model.pt (default: train one)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--screenshot", type=Path, help="save the window with the camera view here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-camera-"))
    os.environ["TRANSFER_STUDIO_SETTINGS"] = str(work / "settings.ini")
    os.environ["TRANSFER_STUDIO_RUNS"] = str(work / "runs")
    bundle = args.bundle or train(args.data, work)

    from PIL import Image, ImageOps
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtGui import QImage
    from PySide6.QtMultimedia import QVideoFrame, QVideoFrameInput
    from PySide6.QtWidgets import QApplication

    from engine.inference.predict import list_images
    from gui.background.live import pil_image
    from gui.shell.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])

    def frame_of(path: Path) -> QImage:
        """The photo filling a camera-sized frame (its middle, cropped to 16:9)."""
        with Image.open(path) as opened:
            photo = ImageOps.fit(opened.convert("RGB"), FRAME_SIZE)
        return QImage(photo.tobytes(), *FRAME_SIZE, 3 * FRAME_SIZE[0], QImage.Format.Format_RGB888).copy()

    photos = list_images(args.data / "val")
    frames = [frame_of(p) for p in photos[:: max(1, len(photos) // 40)]]
    frame_input = QVideoFrameInput()
    sent = [0]

    def send() -> None:
        frame_input.sendVideoFrame(QVideoFrame(frames[(sent[0] // FPS) % len(frames)]))
        sent[0] += 1

    source = QTimer()
    source.setTimerType(Qt.TimerType.PreciseTimer)
    source.timeout.connect(send)

    def wait(seconds: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    def stalls(seconds: float) -> int:
        """The longest gap between two ticks of a 5 ms timer over ``seconds`` (ms)."""
        clock = QElapsedTimer()
        clock.start()
        longest, last = [0], [0]

        def tick() -> None:
            now = clock.elapsed()
            longest[0] = max(longest[0], now - last[0])
            last[0] = now

        meter = QTimer()
        meter.setTimerType(Qt.TimerType.PreciseTimer)
        meter.timeout.connect(tick)
        meter.start(5)
        wait(seconds)
        meter.stop()
        return longest[0]

    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    tab = window.predict_tab
    window.tabs.setCurrentWidget(tab)
    tab.load_model(bundle)
    while tab.predictor is None:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    page = tab.camera_page
    tab.camera_button.setChecked(True)
    page.activate(frame_input)
    source.start(1000 // FPS)
    wait(3.0)  # warm-up: the first answers, the model's first passes
    times: list[float] = []
    page.classifier.answered.connect(lambda answer: times.append(answer.seconds))
    counts = (page.classifier.offered, page.classifier.dropped, page.classifier.classified)
    longest = stalls(args.seconds)
    offered = page.classifier.offered - counts[0]
    ours = {
        "answers_per_s": (page.classifier.classified - counts[2]) / args.seconds,
        "median_ms": 1000 * statistics.median(times),
        "stall_ms": longest,
        "dropped": (page.classifier.dropped - counts[1]) / offered,
        "frames_per_s": offered / args.seconds,
    }
    if args.screenshot:
        sent[0] = FPS * next(i for i, f in enumerate(frames) if f is frames[len(frames) // 2])
        wait(0.5)
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.screenshot))
    page.deactivate()

    # The naive baseline: every frame classified in its own slot, on the GUI thread.
    predictor = tab.predictor
    naive_times: list[float] = []
    naive_frames = [0]

    def classify_now(image: QImage) -> None:
        naive_frames[0] += 1
        start = time.perf_counter()
        predictor.classify_image(pil_image(image), top_k=3)
        naive_times.append(time.perf_counter() - start)

    page.panel.frameArrived.connect(classify_now)
    page.panel.feed_from(frame_input)
    wait(3.0)
    naive_times.clear()
    naive_frames[0] = 0
    naive_longest = stalls(args.seconds)
    naive = {
        "answers_per_s": len(naive_times) / args.seconds,
        "median_ms": 1000 * statistics.median(naive_times),
        "stall_ms": naive_longest,
        "dropped": 0.0,
        "frames_per_s": naive_frames[0] / args.seconds,
    }
    source.stop()
    page.panel.stop()
    window.close()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; `python "
          f"benchmarks/live_camera.py {args.data}` ({FRAME_SIZE[0]}x{FRAME_SIZE[1]} frames at {FPS} fps, "
          f"{args.seconds:.0f} s)\n")  # fmt: skip
    print("| | answers per second | median ms per answer | frames shown per second | frames dropped "
          "| longest event-loop stall (ms) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, row in (
        ("the app (worker thread, drops frames)", ours),
        ("naive (classify in the frame's slot)", naive),
    ):
        print(f"| {name} | {row['answers_per_s']:.1f} | {row['median_ms']:.0f} | {row['frames_per_s']:.1f} "
              f"| {100 * row['dropped']:.0f}% | {row['stall_ms']} |")  # fmt: skip
    print(f"\nStall ratio, naive / the app: {naive['stall_ms'] / max(1, ours['stall_ms']):.1f}x")


if __name__ == "__main__":
    main()
