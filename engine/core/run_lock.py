"""One writer per run folder: an operating-system lock on ``RUN_DIR/.lock`` while a process trains in it.

:meth:`RunLock.acquire` opens ``.lock`` and takes an exclusive lock on it without waiting (``flock`` on
Linux and macOS, ``msvcrt.locking`` on Windows), then writes the owner's process id and host into it. A
second writer (another ``train --out`` into the same folder, a ``--resume`` of a run still training,
the window resuming it twice) is refused with the owner named. The operating system drops the lock
when its process ends, however it ends, so a killed run's lock is stale by construction: the next
writer takes it over and :attr:`RunLock.took_over` names the process it came from. That also means a
process id reused by an unrelated program never looks like a run. Standard library only (and msgspec).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import msgspec

from engine.core.errors import TransferStudioError
from engine.core.small_files import DamagedFile, decode_json

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunBusy(TransferStudioError):
    """Another process trains in this run folder."""


class LockOwner(msgspec.Struct, frozen=True):
    """What the lock file says: who holds (or last held) it."""

    pid: int
    host: str = ""


def _try_lock(fd: int, exclusive: bool) -> bool:
    """Lock the open file ``fd`` without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def read_owner(folder: str | Path) -> LockOwner | None:
    """Who the lock file of ``folder`` names (None when there is none or it cannot be read)."""
    path = Path(folder) / LOCK_FILE
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return decode_json(data, LockOwner, path) if data.strip() else None
    except DamagedFile:
        return None


def is_locked(folder: str | Path) -> bool:
    """Whether a process holds ``folder``'s lock now (a run trains there)."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY if sys.platform != "win32" else os.O_RDWR)
    except OSError:
        return False
    try:
        if _try_lock(fd, exclusive=sys.platform == "win32"):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


@dataclass
class RunLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) lets it go."""

    path: Path
    fd: int
    took_over: LockOwner | None = None

    @classmethod
    def acquire(cls, folder: str | Path) -> RunLock:
        """Hold ``folder``'s lock (the folder is created); RunBusy when another process holds it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never deleted: every writer locks this one
        if not _try_lock(fd, exclusive=True):
            os.close(fd)
            raise RunBusy(_busy_message(folder, read_owner(folder)))
        previous = read_owner(folder)
        me = LockOwner(pid=os.getpid(), host=socket.gethostname())
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(msgspec.to_builtins(me)) + "\n").encode("utf-8"), 0)
        took_over = previous if previous is not None and previous != me else None
        if took_over is not None:
            log.info("took over the lock of %s from process %s, which has ended", folder, took_over.pid)
        return cls(path, fd, took_over)

    def release(self) -> None:
        """Let the lock go. The file stays, emptied: a lock file that still names its owner was left by a
        process that ended without letting go (killed, or crashed), and the next writer says so."""
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)
            _unlock(self.fd)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()


def _busy_message(folder: Path, owner: LockOwner | None) -> str:
    who = "another process"
    if owner is not None:
        elsewhere = f" on {owner.host}" if owner.host and owner.host != socket.gethostname() else ""
        who = f"process {owner.pid}{elsewhere}"
    return f"{folder} is in use by another training ({who}): stop it first, or choose another folder"
