"""Resumable, verified, atomic downloads of one file into a cache folder.

Owns :class:`WeightsError` (what every failed download, verification or import raises) and the
machinery :mod:`engine.models.weights` and :mod:`engine.models.hub` fetch files with: a
``_Download`` job (what is fetched, where it goes, how to talk about it and how to import it by
hand), streamed with urllib (:func:`_fetch_resumable`), its SHA-256 checked against what is expected
and only then renamed into place (:func:`_download_verified`), so a dropped connection, a corrupt
download, a cancel or a full disk never leaves something that counts as cached.

A download that breaks (connection reset, cut short, timed out) keeps what it got in
``<cache>/.partial/<cache file name>.part``, beside ``<cache file name>.json`` saying what it is part
of (the URL, or the Hub commit, SHA-256 and size); the next download of that file asks for the rest
(``Range: bytes=N-``) and appends it when the server answers 206, or starts over on a 200, or when
the note is for another file. Cancel deletes the partial file and its note.

Progress is reported through ``on_progress(bytes_done, bytes_total, bytes_per_s)`` (``bytes_total``
is 0 when the server does not say); a download stops, raising :class:`~engine.core.errors.Cancelled`,
soon after ``should_stop()`` is true. Nothing here knows the model catalog.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from engine.core.errors import Cancelled, ModelError
from engine.core.sizes import format_size
from engine.core.small_files import DamagedFile, decode_json, encode_json

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float], None]
StopCallback = Callable[[], bool]

CHUNK_SIZE = 256 * 1024
PROGRESS_INTERVAL_S = 0.1
#: The folder, inside the cache folder, where broken downloads keep their bytes until resumed.
PARTIAL_DIR = ".partial"


class WeightsError(ModelError):
    """A weights file cannot be downloaded, verified or imported.

    A ``ModelError`` (so code that handles model-building errors handles these too) and therefore a
    ``TransferStudioError``. ``offline`` is True when the server could not be reached at all, the
    case where the caller should offer to import the file (``file_name``, from ``url``) instead.
    """

    def __init__(self, message: str, *, url: str | None = None, file_name: str | None = None,
                 offline: bool = False) -> None:  # fmt: skip
        super().__init__(message)
        self.url = url
        self.file_name = file_name
        self.offline = offline


@dataclass(frozen=True)
class _Download:
    """One file to fetch into the cache, and how to talk about it."""

    url: str  # what is fetched
    what: str  # "the resnet18 weights (resnet18-f37072fd.pth)"
    file_name: str  # its name in the cache
    folder: Path  # the cache folder
    public_url: str  # where a user fetches it by hand (the Hub's resolve/main address)
    public_file: str  # the name it has there
    hint: str  # how to import it
    key: str  # what a kept partial file must be part of to be resumed
    size: int = 0  # expected, when known beforehand (0: from the answer)
    commit: str | None = None
    sha256: str | None = None

    @property
    def partial(self) -> Path:
        return self.folder / PARTIAL_DIR / f"{self.file_name}.part"

    @property
    def note(self) -> Path:
        return self.folder / PARTIAL_DIR / f"{self.file_name}.json"

    def failed(self, reason: str, offline: bool = False, resumable: bool = False) -> WeightsError:
        again = "Run the download again to resume it, or fetch" if resumable else "Fetch"
        return WeightsError(
            f"Cannot download {self.what}: {reason}. {again} {self.public_url} on a machine with internet "
            f"access, then import it with {self.hint}; the cache folder is {self.folder}",
            url=self.public_url,
            file_name=self.public_file,
            offline=offline,
        )

    def cannot_write(self, exc: BaseException) -> WeightsError:
        return WeightsError(
            f"Cannot write {self.what} to the cache folder {self.folder}: {_reason(exc)}",
            url=self.public_url,
            file_name=self.public_file,
        )


class _PartialNote(msgspec.Struct):
    """The JSON note beside a kept partial download: what it is part of."""

    key: str
    url: str
    size: int = 0
    commit: str | None = None
    sha256: str | None = None


def _download_verified(
    job: _Download,
    expected: str,
    on_progress: ProgressCallback | None,
    should_stop: StopCallback | None,
    timeout: float,
) -> Path:
    """Fetch ``job`` (resuming), check its SHA-256 starts with ``expected`` (all of it for the Hub's),
    rename it into the cache; return its path there."""
    digest = _fetch_resumable(job, on_progress, should_stop, timeout)
    if expected and not digest.startswith(expected):
        _discard_partial(job)
        shown = min(len(expected), 16)
        raise WeightsError(
            f"The download of {job.what} is corrupt: its SHA-256 starts with {digest[:shown]}, not "
            f"{expected[:shown]}. Try again, or fetch {job.public_url} elsewhere and import it with {job.hint}",
            url=job.public_url,
            file_name=job.public_file,
        )
    dest = job.folder / job.file_name
    try:
        os.replace(job.partial, dest)
    except OSError as exc:
        _discard_partial(job)
        raise job.cannot_write(exc) from None
    _discard_partial(job)  # the note, and the folder when empty
    logger.info("Downloaded %s to %s", job.url, dest)
    return dest


def _raise_if_stopped(should_stop: StopCallback | None, what: str) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(f"the download of {what} was cancelled")


def _discard_partial(job: _Download) -> None:
    """Delete a partial download and its note, and the partial-downloads folder once empty."""
    for path in (job.partial, job.note):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("Cannot delete %s: %s", path, _reason(exc))
    try:
        job.partial.parent.rmdir()
    except OSError:  # missing, or holds other downloads' parts
        pass


def _kept_bytes(job: _Download) -> tuple[int, int]:
    """How many bytes of ``job`` a broken download left to resume from, and the total its note
    recorded (0, 0 when nothing usable is kept; a part of another file is deleted)."""
    try:
        kept = job.partial.stat().st_size
    except OSError:
        kept = 0
    if kept == 0:
        if job.note.exists() or job.partial.exists():
            _discard_partial(job)
        return 0, 0
    try:
        note = decode_json(job.note.read_bytes(), _PartialNote, job.note)
    except (OSError, DamagedFile):
        note = None
    if (
        note is None
        or note.key != job.key
        or (job.size and note.size != job.size)
        or (note.size and kept >= note.size)
    ):
        logger.info("Starting %s over: the kept partial download is of another file", job.file_name)
        _discard_partial(job)
        return 0, 0
    return kept, note.size


def _write_note(job: _Download, total: int) -> None:
    note = _PartialNote(key=job.key, url=job.url, size=total, commit=job.commit, sha256=job.sha256)
    tmp = job.note.with_name(job.note.name + ".tmp")
    tmp.write_text(encode_json(note), encoding="utf-8")
    os.replace(tmp, job.note)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def _open(job: _Download, kept: int, known_total: int, timeout: float) -> tuple[Any, int, int]:
    """Request ``job.url`` (the rest of it after ``kept`` bytes, if any); return the response, the
    bytes kept that it continues (0 when it starts over) and the file's total size (0: unknown)."""
    headers = {"User-Agent": "transfer-studio"}
    if kept:
        headers["Range"] = f"bytes={kept}-"
    request = urllib.request.Request(job.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if kept and exc.code == 416:  # the kept part is no part of the file: start over
            _discard_partial(job)
            return _open(job, 0, job.size, timeout)
        raise job.failed(f"the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout
        host = urllib.parse.urlsplit(job.url).hostname or job.url
        raise job.failed(f"cannot reach {host} ({_reason(exc)})", offline=True) from None
    length = _content_length(response)
    if kept and response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
        start = int(match.group(1)) if match else -1
        total = int(match.group(3)) if match and match.group(3) != "*" else 0
        if start == kept and (not known_total or not total or total == known_total):
            return response, kept, total or known_total or (kept + length if length else 0)
        logger.info("Starting %s over: the server sent another part than asked", job.file_name)
        response.close()
        _discard_partial(job)
        return _open(job, 0, job.size, timeout)
    if kept:
        logger.info(
            "Starting %s over: the server cannot resume (it answered %s)", job.file_name, response.status
        )
    return response, 0, job.size or length


def _fetch_resumable(
    job: _Download,
    on_progress: ProgressCallback | None,
    should_stop: StopCallback | None,
    timeout: float,
) -> str:
    """Stream ``job.url`` into ``job.partial``, after what an earlier broken download kept there when
    the server resumes; return the SHA-256 hex digest of the whole partial file.

    A broken connection keeps the partial file and its note (WeightsError saying that running
    again resumes); Cancel, a write error or anything else deletes them."""
    _raise_if_stopped(should_stop, job.what)
    kept, known_total = _kept_bytes(job)
    response, kept, total = _open(job, kept, job.size or known_total, timeout)
    keep = False
    try:
        with response:
            try:
                job.partial.parent.mkdir(parents=True, exist_ok=True)
                if not kept:
                    job.partial.unlink(missing_ok=True)
                _write_note(job, total)
            except OSError as exc:
                raise job.cannot_write(exc) from None
            sha = hashlib.sha256()
            if kept:
                _hash_kept(job, kept, sha, should_stop)
            done = kept
            start = last_report = time.monotonic()
            if on_progress is not None:
                on_progress(done, total, 0.0)
            try:
                out = job.partial.open("ab" if kept else "wb")
            except OSError as exc:
                raise job.cannot_write(exc) from None
            with out:
                while True:
                    _raise_if_stopped(should_stop, job.what)
                    try:
                        chunk = response.read(CHUNK_SIZE)
                    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                        keep = done > 0
                        of = f" of {format_size(total)}" if total else ""
                        raise job.failed(
                            f"the connection broke after {format_size(done)}{of} ({_reason(exc)})",
                            resumable=keep,
                        ) from None
                    if not chunk:
                        break
                    sha.update(chunk)
                    _write(job, out, chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if on_progress is not None and now - last_report >= PROGRESS_INTERVAL_S:
                        last_report = now
                        on_progress(done, total, (done - kept) / max(now - start, 1e-6))
            if total and done != total:
                keep = 0 < done < total
                raise job.failed(
                    f"the connection broke after {format_size(done)} of {format_size(total)}", resumable=keep
                )
            if on_progress is not None:
                on_progress(done, total or done, (done - kept) / max(time.monotonic() - start, 1e-6))
    except BaseException:
        if keep:
            logger.info(
                "Kept %s of %s to resume from", format_size(_file_size(job.partial) or 0), job.file_name
            )
        else:
            _discard_partial(job)
        raise
    return sha.hexdigest()


def _write(job: _Download, out: IO[bytes], chunk: bytes) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise job.cannot_write(exc) from None


def _hash_kept(job: _Download, kept: int, sha: Any, should_stop: StopCallback | None) -> None:
    """Feed the first ``kept`` bytes of the partial file to ``sha``."""
    left = kept
    try:
        with job.partial.open("rb") as kept_file:
            while left > 0:
                _raise_if_stopped(should_stop, job.what)
                chunk = kept_file.read(min(4 * CHUNK_SIZE, left))
                if not chunk:
                    break
                sha.update(chunk)
                left -= len(chunk)
    except OSError as exc:
        raise job.cannot_write(exc) from None
    if left:
        raise job.cannot_write(OSError(f"the kept part of {job.file_name} shrank while being read"))


def _content_length(response: Any) -> int:
    try:
        return max(int(response.headers.get("Content-Length") or 0), 0)
    except ValueError:
        return 0


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = (str(reason).strip().splitlines() or [""])[0] or type(exc).__name__
    return text[:200]


def _file_size(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return path.stat().st_size
    except OSError:
        return None
