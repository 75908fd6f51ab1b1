"""The engine's error types: each carries a one-line message meant for the user."""


class TransferStudioError(Exception):
    """Base class of every error the engine raises on purpose (bad input, not bugs)."""


class DatasetError(TransferStudioError):
    """The dataset folder cannot be used (missing, no classes, one class, split mismatch)."""


class UnreadableImageError(TransferStudioError):
    """An image file cannot be decoded."""


class ModelError(TransferStudioError):
    """Unknown model name, or a model that cannot be built as asked."""


class BundleError(TransferStudioError):
    """A file is not a valid Transfer Studio model bundle."""


class TrainingCancelled(TransferStudioError):
    """Raised inside the trainer when the caller asked to stop."""
