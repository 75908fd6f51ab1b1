"""A training run's events on the terminal: tqdm bars (terminals only) and one stdout line per epoch."""

from __future__ import annotations

import time
from typing import Any, TextIO

from engine.cli.common import PROG
from engine.core.progress import CountBar, bars_wanted, new_bar


class TrainingProgress:
    """Turns trainer events into tqdm bars (terminals only) and one stdout line per epoch."""

    PHASES = {"features": "features", "train": "training", "val": "validation"}

    def __init__(self, stream: TextIO, *, json_output: bool = False) -> None:
        self.stream = stream
        self.enabled = bars_wanted(stream, json_output=json_output)
        self.bar: Any = None
        self.key: tuple[int, str] | None = None
        self.scan = CountBar("checking photos", unit="file", enabled=self.enabled)

    def __call__(self, event: Any) -> None:
        from engine.training import events as ev

        if isinstance(event, ev.ScanProgress):
            self.scan(event.done, event.total)
            if event.done >= event.total:
                self.scan.close()
        elif isinstance(event, ev.RunStarted):
            self.say(
                f"training on {event.device}: {event.num_train} train / {event.num_val} val images, "
                f"{len(event.classes)} classes; run folder {event.run_dir}"
            )
        elif isinstance(event, ev.BatchProgress):
            self._draw(event)
        elif isinstance(event, ev.EpochEnd):
            self.close()
            best = "  *best" if event.is_best else ""
            print(
                f"epoch {event.epoch}/{event.epochs}  train loss {event.train_loss:.4f} "
                f"acc {event.train_acc:.4f} | val loss {event.val_loss:.4f} acc {event.val_acc:.4f} "
                f"| lr {event.lr:.2e} | {event.seconds:.1f}s{best}",
                flush=True,
            )
        elif isinstance(event, ev.Message):
            self.say(f"{PROG}: {event.level}: {event.text}")
        elif isinstance(event, (ev.RunFinished, ev.RunFailed)):
            self.close()

    def _draw(self, event: Any) -> None:
        key = (event.epoch, event.phase)
        if self.bar is None or key != self.key:
            self.close()
            phase = self.PHASES.get(event.phase, event.phase)
            what = phase if event.phase == "features" else f"epoch {event.epoch} {phase}"
            self.bar = new_bar(what, event.batches, unit="batch", enabled=self.enabled)
            self.key = key
        self.bar.update(event.batch - self.bar.n)
        eta = time.strftime("%M:%S", time.gmtime(event.eta_s)) if event.eta_s < 3600 else ">1h"
        loss = f"{event.loss:.4f}" if event.loss == event.loss else "-"  # nan: a batch of unreadable images
        self.bar.set_postfix_str(f"loss {loss}, run ETA {eta}", refresh=False)

    def say(self, text: str) -> None:
        """A line on standard error that does not tear a bar."""
        if self.bar is not None:
            self.bar.clear()
        print(text, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        self.scan.close()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.key = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
