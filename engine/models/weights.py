"""Pretrained weights files: downloading them into torch's hub cache, importing them, listing them.

torchvision looks for a model's ImageNet weights in ``torch.hub.get_dir()/checkpoints/<file>``, where
``<file>`` is the last part of the weights URL, e.g. ``resnet18-f37072fd.pth``. The part matched by
``torch.hub.HASH_REGEX`` (``f37072fd``) is a prefix of the file's SHA-256 hex digest.

The curated timm models' weights are ``model.safetensors`` in their Hugging Face Hub repository
(``timm/<architecture>.<tag>``), cached in the same folder as ``timm--<architecture>.<tag>--model.safetensors``
(:func:`hub_file_name`). They are fetched with the same downloader (urllib, not ``huggingface_hub``):
first the Hub's model-info API (``{endpoint}/api/models/{repo}/revision/main?blobs=true``) gives the
commit and the file's size and SHA-256, then ``{endpoint}/{repo}/resolve/{commit}/model.safetensors``
is downloaded. The endpoint is ``https://huggingface.co``, or the standard ``HF_ENDPOINT`` variable.

Every file placed in the cache here is verified first (against the hash prefix of a torchvision
file's name, or the Hub's SHA-256) and appears there only by an atomic rename of a fully written
file in the same file system, so a dropped connection, a corrupt download, a cancel or a full disk
never leaves something that counts as cached.

A download that breaks (connection reset, cut short, timed out) keeps what it got in
``<cache>/.partial/<cache file name>.part``, beside ``<cache file name>.json`` saying what it is part
of (the URL, or the Hub commit, SHA-256 and size); the next download of that file asks for the rest
(``Range: bytes=N-``) and appends it when the server answers 206, or starts over on a 200, or when
the note is for another file. Cancel deletes the partial file and its note.

The functions are plain and blocking, meant to run on a worker thread: ``download_weights`` reports
progress through ``on_progress(bytes_done, bytes_total, bytes_per_s)`` (``bytes_total`` is 0 when the
server does not say) and stops, raising :class:`~engine.core.errors.Cancelled`, soon after ``should_stop()`` is true.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import torch

from engine.core.errors import Cancelled, ModelError
from engine.core.sizes import format_size
from engine.core.small_files import DamagedFile, decode_json, encode_json
from engine.models import lite0, timm_models
from engine.models.registry import ModelInfo, get_model_info, list_models

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float], None]
StopCallback = Callable[[], bool]

CHUNK_SIZE = 256 * 1024
PROGRESS_INTERVAL_S = 0.1
#: The file a timm model's weights are in, in its Hub repository.
HUB_WEIGHTS_FILE = "model.safetensors"
#: The Hugging Face Hub, unless the standard ``HF_ENDPOINT`` environment variable names a mirror.
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
HUB_ENDPOINT_ENV = "HF_ENDPOINT"
#: The folder, inside the cache folder, where broken downloads keep their bytes until resumed.
PARTIAL_DIR = ".partial"
#: The largest model-info answer read from the Hub (a timm repository's is a few kB).
MAX_HUB_INFO_BYTES = 4 * 1024 * 1024
IMPORT_HINT = "`transfer-studio weights import FILE` (or Import weights file… in the app)"


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


def import_hint(model: str | None = None) -> str:
    """How to import a file fetched elsewhere, naming the model when known."""
    if not model:
        return IMPORT_HINT
    return f"`transfer-studio weights import FILE --model {model}` (or Import weights file… in the app)"


def weights_cache_dir() -> Path:
    """Where torch hub keeps downloaded weights (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_file_name(hub_repo: str, file: str = HUB_WEIGHTS_FILE) -> str:
    """The cache file name of a Hugging Face Hub file: ``timm/convnext_atto.d2_in1k`` ->
    ``timm--convnext_atto.d2_in1k--model.safetensors``."""
    return f"{hub_repo.replace('/', '--')}--{file}"


def hub_endpoint() -> str:
    """The Hugging Face Hub's address: ``$HF_ENDPOINT`` when set, else ``https://huggingface.co``."""
    return (os.environ.get(HUB_ENDPOINT_ENV) or "").strip().rstrip("/") or DEFAULT_HUB_ENDPOINT


def hub_info_url(hub_repo: str, revision: str = "main") -> str:
    """The Hub's model-info API for ``hub_repo`` at ``revision``, with each file's size and hash."""
    return (
        f"{hub_endpoint()}/api/models/{hub_repo}/revision/{urllib.parse.quote(revision, safe='')}?blobs=true"
    )


def hub_file_url(hub_repo: str, revision: str = "main", file: str = HUB_WEIGHTS_FILE) -> str:
    """Where the Hub serves ``file`` of ``hub_repo`` at ``revision`` (a branch or a commit)."""
    return f"{hub_endpoint()}/{hub_repo}/resolve/{urllib.parse.quote(revision, safe='')}/{file}"


def cached_weights_path(name: str) -> Path | None:
    """Where a catalog model's downloaded weights are, if they are in the cache (None otherwise,
    and for the built-in model)."""
    info = get_model_info(name)
    if info.hub_repo:
        path = weights_cache_dir() / hub_file_name(info.hub_repo)
    elif info.weights_url:
        path = weights_cache_dir() / file_name_of(info.weights_url)
    else:
        return None
    return path if path.is_file() else None


def weights_status(name: str) -> str:
    """ "offline" (built in), "cached" (already downloaded) or "download" (needs the internet)."""
    info = get_model_info(name)
    if info.offline:
        return "offline"
    if info.hub_repo:
        return "cached" if cached_weights_path(name) else "download"
    if info.weights_url and (weights_cache_dir() / file_name_of(info.weights_url)).is_file():
        return "cached"
    return "download"


def file_name_of(url: str) -> str:
    """The cache file name torch hub uses for ``url`` (its last path part, no query)."""
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def hash_prefix(file_name: str) -> str | None:
    """The SHA-256 prefix in a torchvision weights file name (``torch.hub.HASH_REGEX``), or None."""
    match = torch.hub.HASH_REGEX.search(file_name)
    return match.group(1) if match and match.group(1) else None


# -- downloading ------------------------------------------------------------------------------------


def download_weights(
    name_or_url: str,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    timeout: float = 30,
    cache_dir: Path | None = None,
) -> Path:
    """Make sure the weights of a catalog model (or at a URL) are in the cache; return their path.

    A file already in the cache is returned as is, and so is the built-in offline model's file.
    Otherwise the file is streamed with urllib into the partial-downloads folder (resuming what a
    broken download left there), its SHA-256 is checked -- against the hash prefix of a torchvision
    file's name, or the SHA-256 the Hub gives for a timm model's file -- and only then is it renamed
    into place. Raises ``WeightsError`` (``offline=True`` when the server cannot be reached),
    ``Cancelled`` when ``should_stop()`` turns true, and ``ModelError`` for an unknown model name.
    ``timeout`` is per network operation, in seconds.
    """
    folder = Path(cache_dir) if cache_dir is not None else weights_cache_dir()
    if "://" not in name_or_url:
        info = get_model_info(name_or_url)
        if info.hub_repo:
            return _download_hub(info, folder, on_progress, should_stop, timeout)
        if info.offline or not info.weights_url:  # built in: nothing to download
            return lite0.weights_file()
        url, model = info.weights_url, info.name
    else:
        url, model = name_or_url, None
    file_name = file_name_of(url)
    dest = folder / file_name
    if dest.is_file():
        logger.debug("%s is already cached at %s", file_name, dest)
        return dest
    job = _Download(
        url=url,
        what=f"the {model} weights ({file_name})" if model else file_name,
        file_name=file_name,
        folder=folder,
        public_url=url,
        public_file=file_name,
        hint=import_hint(model),
        key=f"url {url}",
    )
    expected = hash_prefix(file_name)
    if not expected:
        logger.warning("%s has no hash in its name; it will not be verified", file_name)
    return _download_verified(job, expected or "", on_progress, should_stop, timeout)


@dataclass(frozen=True)
class HubFile:
    """A file in a Hub repository at one commit, as the model-info API describes it."""

    repo: str
    file: str
    commit: str
    sha256: str
    size: int


class _Lfs(msgspec.Struct):
    sha256: str
    size: int


class _Sibling(msgspec.Struct):
    rfilename: str
    size: int | None = None
    lfs: _Lfs | None = None


class _RepoInfo(msgspec.Struct):
    sha: str
    siblings: list[_Sibling] = msgspec.field(default_factory=list)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def hub_file_info(
    hub_repo: str,
    file: str = HUB_WEIGHTS_FILE,
    *,
    timeout: float = 30,
    what: str | None = None,
    hint: str = IMPORT_HINT,
    folder: Path | None = None,
) -> HubFile:
    """Ask the Hub's model-info API for ``file`` of ``hub_repo`` on its main branch: the commit, and
    the file's size and SHA-256 (WeightsError, ``offline=True`` when the Hub cannot be reached)."""
    api = hub_info_url(hub_repo)
    job = _Download(
        url=api,
        what=what or f"{file} of {hub_repo}",
        file_name=hub_file_name(hub_repo, file),
        folder=folder if folder is not None else weights_cache_dir(),
        public_url=hub_file_url(hub_repo, "main", file),
        public_file=file,
        hint=hint,
        key="",
    )
    request = urllib.request.Request(
        api, headers={"User-Agent": "transfer-studio", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_HUB_INFO_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise job.failed(f"the Hub answered {exc.code} {exc.reason} about {hub_repo}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout
        host = urllib.parse.urlsplit(api).hostname or api
        raise job.failed(f"cannot reach {host} ({_reason(exc)})", offline=True) from None
    if len(data) > MAX_HUB_INFO_BYTES:
        raise job.failed(f"the Hub's description of {hub_repo} is too large")
    try:
        repo_info = decode_json(data, _RepoInfo, api)
    except DamagedFile as exc:
        raise job.failed(f"the Hub's description of {hub_repo} is not understood ({_reason(exc)})") from None
    sibling = next((s for s in repo_info.siblings if s.rfilename == file), None)
    if sibling is None:
        raise job.failed(f"the Hub repository {hub_repo} has no {file}")
    if sibling.lfs is None or not _HEX64.fullmatch(sibling.lfs.sha256.lower()):
        raise job.failed(f"the Hub gives no SHA-256 for {file} of {hub_repo}, so it cannot be verified")
    return HubFile(hub_repo, file, repo_info.sha, sibling.lfs.sha256.lower(), sibling.lfs.size)


def _download_hub(
    info: ModelInfo,
    folder: Path,
    on_progress: ProgressCallback | None,
    should_stop: StopCallback | None,
    timeout: float,
) -> Path:
    assert info.hub_repo is not None
    repo = info.hub_repo
    file_name = hub_file_name(repo)
    dest = folder / file_name
    if dest.is_file():
        logger.debug("%s is already cached at %s", file_name, dest)
        return dest
    what = f"the {info.name} weights ({HUB_WEIGHTS_FILE} of {repo})"
    hint = import_hint(info.name)
    _raise_if_stopped(should_stop, what)
    meta = hub_file_info(repo, timeout=timeout, what=what, hint=hint, folder=folder)
    job = _Download(
        url=hub_file_url(repo, meta.commit),
        what=what,
        file_name=file_name,
        folder=folder,
        public_url=hub_file_url(repo),
        public_file=HUB_WEIGHTS_FILE,
        hint=hint,
        key=f"sha256 {meta.sha256}",
        size=meta.size,
        commit=meta.commit,
        sha256=meta.sha256,
    )
    return _download_verified(job, meta.sha256, on_progress, should_stop, timeout)


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


# -- importing --------------------------------------------------------------------------------------


def import_weights(file: str | os.PathLike[str], name: str | None = None) -> Path:
    """Verify a weights file fetched elsewhere and copy it atomically into the cache; return its path.

    With ``name``, the file must be that catalog model's weights, whatever the file is called: for a
    torchvision model its SHA-256 must start with the hash prefix of the expected file name; for a
    timm model (whose Hub hash cannot be asked offline) it must be a safetensors file holding the
    tensors of that model, by name and shape. Without ``name``, the file is matched to a catalog model
    by its name or, failing that, by its SHA-256; a file that matches no model but carries a hash in
    its own name is accepted under that name once the hash checks out. A ``.safetensors`` file is
    matched only by its cache name (``timm--<model>--model.safetensors``); any other needs ``name``.
    """
    source = Path(file).expanduser()
    if not source.is_file():
        raise WeightsError(f"{source} is not a file")
    folder = weights_cache_dir()
    expected: dict[str, str] = {}  # expected cache file name -> model name
    hub_model: ModelInfo | None = None
    if name is not None:
        info = get_model_info(name)
        if info.hub_repo:
            hub_model = info
        elif info.offline or not info.weights_url:
            raise WeightsError(f"{info.name} has built-in weights: there is nothing to import")
        else:
            expected[file_name_of(info.weights_url)] = info.name
    else:
        models = list_models()
        hub_names = {hub_file_name(i.hub_repo): i for i in models if i.hub_repo}
        if source.name in hub_names:
            hub_model = hub_names[source.name]
        elif source.suffix.lower() == ".safetensors":
            example = next(iter(hub_names.values())).name if hub_names else "NAME"
            raise WeightsError(
                f"{source.name} cannot be matched to a model offline (the Hub's files carry no hash in "
                f"their name): name the model it is for (--model NAME, e.g. --model {example}), or "
                "import it from that model's weights dialog in the app"
            )
        else:
            expected = {file_name_of(i.weights_url): i.name for i in models if i.weights_url}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise WeightsError(f"Cannot write to the cache folder {folder}: {_reason(exc)}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _copy_hashing(source, out, folder)
        if hub_model is not None:
            assert hub_model.hub_repo is not None
            check_hub_tensors(tmp, hub_model.name, shown_as=source.name)
            target = hub_file_name(hub_model.hub_repo)
        else:
            target = _import_target(source, digest, expected, name)
        os.replace(tmp, folder / target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("Imported %s as %s (SHA-256 %s)", source, folder / target, digest)
    return folder / target


def check_hub_tensors(path: Path, name: str, *, shown_as: str | None = None) -> None:
    """Check that ``path`` is a safetensors file holding catalog timm model ``name``'s weights: every
    tensor of the model (a vision transformer's backbone, without its classifier) by name and shape.
    WeightsError, one line naming the model, when it is not."""
    shown = shown_as or path.name
    entry = timm_models.entry(name)
    if entry is None:
        raise WeightsError(f"{name} is not among the curated timm models")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as weights_file:
            shapes = {key: tuple(weights_file.get_slice(key).get_shape()) for key in weights_file.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, a header that is not JSON...
        raise WeightsError(
            f"{shown} is not the {name} weights: it is not a readable safetensors file ({_reason(exc)})"
        ) from None
    wanted = _hub_tensor_shapes(entry)
    # BatchNorm's step counters are optional (torch fills them in); timm resamples a ViT's position
    # embedding to the model's input size, so its shape may differ.
    missing = [key for key in wanted if key not in shapes and not key.endswith("num_batches_tracked")]
    wrong = [
        key for key, shape in wanted.items() if key in shapes and shapes[key] != shape and key != "pos_embed"
    ]
    if missing:
        raise WeightsError(
            f"{shown} is not the {name} weights: {len(missing)} of the model's {len(wanted)} tensors are "
            f"missing from it (e.g. {missing[0]})"
        )
    if wrong:
        key = wrong[0]
        raise WeightsError(
            f"{shown} is not the {name} weights: {len(wrong)} tensors have other shapes (e.g. {key} is "
            f"{list(shapes[key])}, not {list(wanted[key])})"
        )
    extra = [key for key in shapes if key not in wanted]
    if extra:
        logger.info("%s holds %d tensors %s does not use (e.g. %s)", shown, len(extra), name, extra[0])


def _hub_tensor_shapes(entry: timm_models.TimmEntry) -> dict[str, tuple[int, ...]]:
    """Name -> shape of each tensor in the Hub file of ``entry``, from the architecture built on the
    meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = timm_models.build(entry, None)
    module = model.backbone if isinstance(model, timm_models.ClassTokenAndMeanPool) else model
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _copy_hashing(source: Path, out: IO[bytes], folder: Path) -> str:
    sha = hashlib.sha256()
    try:
        with source.open("rb") as src:
            while chunk := src.read(1024 * 1024):
                sha.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise WeightsError(f"Cannot copy {source} into the cache folder {folder}: {_reason(exc)}") from None
    return sha.hexdigest()


def _import_target(source: Path, digest: str, expected: dict[str, str], name: str | None) -> str:
    """The cache file name ``source`` (with SHA-256 ``digest``) goes to; WeightsError if none fits."""
    short = digest[:8]
    if name is not None:
        ((target, model),) = expected.items()
        prefix = hash_prefix(target)
        if prefix and not digest.startswith(prefix):
            raise WeightsError(
                f"{source.name} is not the {model} weights: its SHA-256 starts with {short}, "
                f"the expected file {target} with {prefix}",
                file_name=target,
            )
        return target
    if source.name in expected:
        prefix = hash_prefix(source.name)
        if prefix and not digest.startswith(prefix):
            raise WeightsError(
                f"{source.name} is corrupt or incomplete: its SHA-256 starts with {short}, not {prefix}",
                file_name=source.name,
            )
        return source.name
    matches = [f for f in expected if (p := hash_prefix(f)) and digest.startswith(p)]
    if matches:
        return matches[0]
    own = hash_prefix(source.name)
    if own:
        if not digest.startswith(own):
            raise WeightsError(
                f"{source.name} is corrupt or incomplete: its SHA-256 starts with {short}, not {own}",
                file_name=source.name,
            )
        return source.name
    raise WeightsError(
        f"{source.name} matches no model's weights (its SHA-256 starts with {short}); "
        "name the model it is for (--model NAME)"
    )


def weights_table() -> list[dict[str, Any]]:
    """One row per catalog model: name, status, file, url, path and size (bytes, when present).

    ``status`` is "offline" (built in), "cached" (in the cache) or "download" (needs the internet);
    ``file`` is the name in the cache (``timm--<model>--model.safetensors`` for a timm model, whose
    ``url`` is the Hub's address of its ``model.safetensors``); ``path``/``size`` are None unless the
    file is on this machine.
    """
    folder = weights_cache_dir()
    rows = []
    for info in list_models():
        path: Path | None = None
        if info.offline:
            status, file_name, url = "offline", None, None
            try:
                path = lite0.weights_file()
                file_name = path.name
            except ModelError:
                path = None
        elif info.hub_repo:
            url = hub_file_url(info.hub_repo)
            file_name = hub_file_name(info.hub_repo)
            path = folder / file_name if (folder / file_name).is_file() else None
            status = "cached" if path else "download"
        else:
            url = info.weights_url
            file_name = file_name_of(url) if url else None
            candidate = folder / file_name if file_name else None
            path = candidate if candidate is not None and candidate.is_file() else None
            status = "cached" if path else "download"
        size = _file_size(path)
        rows.append(
            {
                "name": info.name,
                "status": status,
                "file": file_name,
                "url": url,
                "path": str(path) if size is not None else None,
                "size": size,
            }
        )
    return rows


def _file_size(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return path.stat().st_size
    except OSError:
        return None
