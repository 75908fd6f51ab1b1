"""The one table of command-line sub-commands: the CLI builds its parser from it, and the launcher and
the self-test read it to tell a CLI call from a window launch. Standard library only (read at start-up).
"""

from __future__ import annotations

#: Sub-command -> the one-line help ``transfer-studio --help`` shows for it.
COMMANDS: dict[str, str] = {
    "scan": "check a dataset folder and report classes, counts and problems",
    "audit": "dataset doctor: duplicates, leaks, likely wrong labels, poor photos, balance",
    "sort": "propose classes for unsorted photos, review the most useful first, move them, undo",
    "models": "list the models you can train",
    "train": "train a classifier on a dataset folder",
    "predict": "classify an image or every image in a folder",
    "weights": "list, download or import pretrained weights files",
    "doctor": "show versions, CUDA, GPUs, caches, folders and what is wrong",
    "evaluate": "measure a model on a labelled folder: per-class metrics, errors",
    "export": "export a model to ONNX or TorchScript and check it matches",
    "compare": "bake-off: train several models and strategies on one split and rank them",
    "runs": "list the training runs under a runs folder, newest first",
    "report": "write a run's or a bake-off's report: one HTML file that opens offline",
}
#: Top-level options the CLI answers (never a window launch).
CLI_FLAGS = frozenset({"-h", "--help", "--version"})


def is_cli_call(argv: list[str] | tuple[str, ...]) -> bool:
    """Whether ``argv`` names a sub-command or a CLI flag anywhere (then it is not a window launch)."""
    return any(arg in COMMANDS or arg in CLI_FLAGS for arg in argv)
