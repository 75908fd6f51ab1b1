"""Images for display, rendered off the GUI thread: the one loader behind thumbnail grids, galleries,
previews and Grad-CAM overlays.

An :class:`ImageLoader` renders ``request(key, path)`` on its own small thread pool (a thumbnail by
default: PIL's JPEG draft mode, EXIF rotation, transparency on white) and hands back ``loaded(key,
QImage)`` on the GUI thread, or ``failed(key, message)``. :meth:`ImageLoader.clear` drops what is queued
and whatever is still on its way, so a grid that scrolled on or a gallery that was refilled never gets an
old picture. Work units hold plain data and the loader's own delivery object, never a widget, and the
pool is drained before the loader goes (:meth:`ImageLoader.shutdown`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from collections.abc import Set as AbstractSet
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPainter

from engine.core.errors import TransferStudioError
from gui.background.jobs import friendly_error, import_torch, lower_thread_priority

logger = logging.getLogger(__name__)

THUMB_SIZE = 112
#: How long :meth:`ImageLoader.shutdown` waits for an image being rendered.
SHUTDOWN_WAIT_MS = 5000

#: Renders the file at a path into a QImage on a pool thread (null on failure); may raise
#: TransferStudioError with a message for the user.
Render = Callable[[str], QImage]


def _centred(image: QImage, size: int) -> QImage:
    """``image`` centred on a transparent ``size`` x ``size`` canvas (so grid labels line up)."""
    canvas = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    canvas.fill(Qt.GlobalColor.transparent)
    painter = QPainter(canvas)
    painter.drawImage((size - image.width()) // 2, (size - image.height()) // 2, image)
    painter.end()
    return canvas


def load_thumbnail(path: str | Path, size: int = THUMB_SIZE, square: bool = False) -> QImage:
    """Decode ``path`` into a QImage whose longer side is at most ``size`` (null on failure).

    ``square`` centres it on a transparent square canvas. Safe on any thread (QImage, not QPixmap).
    """
    from PIL import Image, ImageOps  # only on pool threads

    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (size * 2, size * 2))
            im: Image.Image = ImageOps.exif_transpose(opened)
            if im.mode in ("RGBA", "LA", "PA", "P"):
                im = im.convert("RGBA")
                flat = Image.new("RGB", im.size, (255, 255, 255))
                flat.paste(im, mask=im.getchannel("A"))
                im = flat
            else:
                im = im.convert("RGB")
            im.thumbnail((size, size))
            data = im.tobytes()
            image = QImage(data, im.width, im.height, 3 * im.width, QImage.Format.Format_RGB888)
            return _centred(image, size) if square else image.copy()
    except Exception as exc:  # noqa: BLE001 - a broken file just shows a placeholder
        logger.debug("no thumbnail for %s: %s", path, exc)
        return QImage()


class _Delivery(QObject):
    """The loader's own mailbox: pool threads emit here; the loader, on the GUI thread, receives."""

    rendered = Signal(int, int, object, QImage, str)  # ticket, generation, key, image, error message


class _Render(QRunnable):
    """One image to render: plain data and the loader's mailbox.

    Not auto-deleted: the loader holds it until its answer arrives (or it is taken off the queue), so it
    is always freed on the GUI thread and never while a pool thread runs it.
    """

    def __init__(
        self, delivery: _Delivery, ticket: int, generation: int, key: Hashable, path: str, render: Render,
        torch: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.setAutoDelete(False)
        self.delivery, self.ticket, self.generation = delivery, ticket, generation
        self.key, self.path, self.render, self.torch = key, path, render, torch

    def run(self) -> None:
        lower_thread_priority()
        message = ""
        try:
            if self.torch:
                import_torch()
            image = self.render(self.path)
        except TransferStudioError as exc:
            image, message = QImage(), friendly_error(exc)
        except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn is shown as such
            logger.warning("cannot render %s: %s", self.path, exc, exc_info=True)
            image, message = QImage(), friendly_error(exc)
        try:
            self.delivery.rendered.emit(self.ticket, self.generation, self.key, image, message)
        except RuntimeError:  # the loader is gone (the window closed while this image was drawn)
            logger.debug("dropped the image of %s: its loader is gone", self.path)


class ImageLoader(QObject):
    """Renders images on ``threads`` pool threads; ``loaded(key, image)`` or ``failed(key, message)``.

    ``size`` and ``square`` shape the default render (a thumbnail); ``imports_torch`` imports torch on
    the pool thread first (for renders that need it, such as Grad-CAM).
    """

    loaded = Signal(object, QImage)
    failed = Signal(object, str)

    def __init__(
        self,
        parent: QObject,
        *,
        size: int = THUMB_SIZE,
        square: bool = False,
        threads: int = 2,
        imports_torch: bool = False,
    ) -> None:
        super().__init__(parent)
        self.size, self.square, self.imports_torch = size, square, imports_torch
        self.generation = 0
        self._tickets = 0
        self._tasks: dict[int, _Render] = {}  # every unit queued or being rendered, by ticket
        self._pending: dict[Hashable, int] = {}  # key -> the ticket whose answer is awaited
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._delivery = _Delivery(self)
        self._delivery.rendered.connect(self._on_rendered)
        self._closed = False

    def request(self, key: Hashable, path: str | Path, render: Render | None = None) -> None:
        """Render ``path`` (a thumbnail unless ``render`` says otherwise); the answer carries ``key``."""
        if self._closed:
            return
        size, square = self.size, self.square
        renderer = render or (lambda p: load_thumbnail(p, size, square))
        self._tickets += 1
        task = _Render(
            self._delivery, self._tickets, self.generation, key, str(path), renderer, self.imports_torch
        )
        self._tasks[task.ticket] = task
        self._pending[key] = task.ticket
        self._pool.start(task)

    def is_pending(self, key: Hashable) -> bool:
        return key in self._pending

    def is_busy(self) -> bool:
        return bool(self._tasks)

    def clear(self) -> None:
        """Drop the queued images and every answer still on its way."""
        self.generation += 1
        self._pending.clear()
        for ticket, task in list(self._tasks.items()):
            if self._pool.tryTake(task):  # not started: off the queue; one being drawn is kept until it ends
                del self._tasks[ticket]

    def keep_only(self, keys: AbstractSet[Hashable]) -> None:
        """Take the queued requests for other keys off the queue (a grid that scrolled on)."""
        for key, ticket in list(self._pending.items()):
            if key not in keys and self._pool.tryTake(self._tasks[ticket]):
                del self._tasks[ticket]
                del self._pending[key]

    def shutdown(self) -> None:
        """No more images: drop the queue and wait for those being drawn (the window is closing)."""
        self._closed = True
        self.clear()
        if self._pool.waitForDone(SHUTDOWN_WAIT_MS):
            self._tasks.clear()

    @Slot(int, int, object, QImage, str)
    def _on_rendered(self, ticket: int, generation: int, key: Hashable, image: QImage, message: str) -> None:
        self._tasks.pop(ticket, None)
        if generation != self.generation or self._pending.get(key) != ticket:
            return
        del self._pending[key]
        if message:
            self.failed.emit(key, message)
        else:
            self.loaded.emit(key, image)
