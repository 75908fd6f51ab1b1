"""The one reader of the app's small JSON files: run files, leaderboards, exclusion lists, notes.

Each file has a declared shape (a dataclass or ``msgspec.Struct``); :func:`read_json` parses it and
checks every field's type with msgspec (BSD-3). A file that is missing, too large, not
UTF-8 JSON, nested deeper than Python can follow, or of the wrong shape is a :class:`DamagedFile`: one
line naming the file and what is wrong, never a traceback. Callers that read many files (the runs
listing) skip the damaged one and name it. Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from engine.core.errors import TransferStudioError

T = TypeVar("T")

#: The largest small file read (a leaderboard of thousands of runs is far below it).
MAX_BYTES = 16 * 1024 * 1024


class DamagedFile(TransferStudioError):
    """A small file cannot be used: missing, unreadable, not JSON, or not of its declared shape."""


def decode_json(data: bytes | str, kind: type[T], where: str | Path) -> T:
    """``data`` decoded as ``kind``; DamagedFile naming ``where`` when it does not fit.

    The text is parsed by the standard library (which keeps a path's bytes that are not UTF-8, written
    as ``\\udcXX`` escapes, and the NaN an older version wrote), then checked against ``kind`` by msgspec.
    """
    try:
        parsed = json.loads(data)
    except RecursionError:
        raise DamagedFile(f"{where} is damaged: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise DamagedFile(f"{where} is not valid JSON: {exc}") from None
    try:
        return msgspec.convert(parsed, type=kind)
    except msgspec.ValidationError as exc:
        raise DamagedFile(f"{where} is damaged: {exc}") from None
    except RecursionError:
        raise DamagedFile(f"{where} is damaged: nested too deeply") from None


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a small file; DamagedFile when it is missing, unreadable or too large."""
    path = Path(path)
    try:
        with path.open("rb") as source:
            data = source.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise DamagedFile(f"{path} does not exist") from None
    except OSError as exc:
        raise DamagedFile(f"{path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise DamagedFile(f"{path} is too large to be one of the app's files (over {MAX_BYTES // 2**20} MB)")
    return data


def read_json(path: str | Path, kind: type[T]) -> T:
    """The JSON file at ``path`` decoded as ``kind`` (a dataclass, ``msgspec.Struct``, list or dict type)."""
    return decode_json(read_bytes(path), kind, path)


def read_json_lines(path: str | Path, kind: type[T]) -> tuple[list[tuple[int, T]], list[int]]:
    """Each line of a JSON-lines file decoded as ``kind``: the good ones with their line numbers, and the
    numbers of the lines that were not (a last line cut off by a crash, say). A missing file has none."""
    try:
        data = read_bytes(path)
    except DamagedFile:
        if not Path(path).exists():
            return [], []
        raise
    good: list[tuple[int, T]] = []
    bad: list[int] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            good.append((number, decode_json(line, kind, path)))
        except DamagedFile:
            bad.append(number)
    return good, bad


def encode_json(value: Any) -> str:
    """``value`` as indented JSON text (dataclasses and Structs included), ending with a newline."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode("utf-8") + "\n"
