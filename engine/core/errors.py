"""The engine's error types, and the one exception that ends a cancelled operation.

Each :class:`TransferStudioError` carries a one-line message meant for the user. :class:`Cancelled` is
not one of them: it is how every long operation (training, the feature pass, evaluation, the export
parity check, a weights download) unwinds after its caller's ``should_stop()`` turned true.
"""

from __future__ import annotations

from collections.abc import Callable

#: Polled between steps (batches, chunks) by every long engine operation; True asks it to stop.
StopCheck = Callable[[], bool]


class TransferStudioError(Exception):
    """Base class of every error the engine raises on purpose (bad input, not bugs)."""


class DatasetError(TransferStudioError):
    """The dataset folder cannot be used (missing, no classes, one class, split mismatch)."""


class DatasetChanged(TransferStudioError):
    """A run's dataset holds other photos than when it started, and going on was not allowed."""


class UnreadableImageError(TransferStudioError):
    """An image file cannot be decoded; ``reason`` is the cause without the file name."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class ModelError(TransferStudioError):
    """Unknown model name, or a model that cannot be built as asked."""


class BundleError(TransferStudioError):
    """A file is not a valid Transfer Studio model bundle."""


class Cancelled(Exception):  # noqa: N818 - a request, not an error: "the operation was cancelled"
    """A long operation stopped because its caller asked it to; nothing it was writing was left half done."""


def raise_if_stopped(should_stop: StopCheck | None, what: str) -> None:
    """Raise :class:`Cancelled` (``"<what> stopped"``) when ``should_stop`` is given and returns True."""
    if should_stop is not None and should_stop():
        raise Cancelled(f"{what} stopped")
