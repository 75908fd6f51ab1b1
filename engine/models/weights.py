"""Pretrained weights files: downloading them into torch's hub cache, importing them, listing them.

torchvision looks for a model's ImageNet weights in ``torch.hub.get_dir()/checkpoints/<file>``, where
``<file>`` is the last part of the weights URL, e.g. ``resnet18-f37072fd.pth``. The part matched by
``torch.hub.HASH_REGEX`` (``f37072fd``) is a prefix of the file's SHA-256 hex digest.

Every file placed in the cache here is verified against that prefix first and appears there only by
an atomic rename of a fully written temporary file in the same folder, so a dropped connection, a
corrupt download, a cancel or a full disk never leaves something that counts as cached.

The functions are plain and blocking, meant to run on a worker thread: ``download_weights`` reports
progress through ``on_progress(bytes_done, bytes_total, bytes_per_s)`` (``bytes_total`` is 0 when the
server does not say) and stops, raising :class:`~engine.core.errors.Cancelled`, soon after ``should_stop()`` is true.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from engine.core.errors import Cancelled, ModelError
from engine.core.sizes import format_size
from engine.models import lite0
from engine.models.registry import get_model_info, list_models

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float], None]
StopCallback = Callable[[], bool]

CHUNK_SIZE = 256 * 1024
PROGRESS_INTERVAL_S = 0.1
#: The file a timm model's weights are in, in its Hub repository.
HUB_WEIGHTS_FILE = "model.safetensors"
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


def weights_cache_dir() -> Path:
    """Where torch hub keeps downloaded weights (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_file_name(hub_repo: str, file: str = HUB_WEIGHTS_FILE) -> str:
    """The cache file name of a Hugging Face Hub file: ``timm/convnext_atto.d2_in1k`` ->
    ``timm--convnext_atto.d2_in1k--model.safetensors``."""
    return f"{hub_repo.replace('/', '--')}--{file}"


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


def download_weights(
    name_or_url: str,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    timeout: float = 30,
    cache_dir: Path | None = None,
) -> Path:
    """Make sure the weights of a catalog model (or at a URL) are in the cache; return their path.

    A file already in the cache is returned as is, and so is the built-in offline model's file. Otherwise the file is streamed with urllib into
    a temporary file next to its final place, its SHA-256 is checked against the hash prefix of its
    name, and only then is it renamed into place. Raises ``WeightsError`` (``offline=True`` when the
    server cannot be reached), ``Cancelled`` when ``should_stop()`` turns true, and
    ``ModelError`` for an unknown model name. ``timeout`` is per network operation, in seconds.
    """
    model: str | None = None
    url = name_or_url
    if "://" not in name_or_url:
        info = get_model_info(name_or_url)
        if info.offline or not info.weights_url:  # built in: nothing to download
            return lite0.weights_file()
        url, model = info.weights_url, info.name
    folder = Path(cache_dir) if cache_dir is not None else weights_cache_dir()
    file_name = file_name_of(url)
    dest = folder / file_name
    if dest.is_file():
        logger.debug("%s is already cached at %s", file_name, dest)
        return dest
    what = f"the {model} weights ({file_name})" if model else file_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise WeightsError(
            f"Cannot write {what} to the cache folder {folder}: {_reason(exc)}", url=url, file_name=file_name
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, what, folder, on_progress, should_stop, timeout)
        expected = hash_prefix(file_name)
        if expected and not digest.startswith(expected):
            raise WeightsError(
                f"The download of {what} is corrupt: its SHA-256 starts with {digest[: len(expected)]}, "
                f"not {expected}. Try again, or fetch {url} elsewhere and import it with {IMPORT_HINT}",
                url=url,
                file_name=file_name,
            )
        if not expected:
            logger.warning("%s has no hash in its name; it was not verified", file_name)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("Downloaded %s to %s", url, dest)
    return dest


def _fetch(
    url: str,
    out: IO[bytes],
    what: str,
    folder: Path,
    on_progress: ProgressCallback | None,
    should_stop: StopCallback | None,
    timeout: float,
) -> str:
    """Stream ``url`` into ``out``; return the SHA-256 hex digest of what was written."""
    file_name = file_name_of(url)

    def failed(reason: str, offline: bool = False) -> WeightsError:
        return WeightsError(
            f"Cannot download {what}: {reason}. Fetch {url} on a machine with internet access, then "
            f"import it with {IMPORT_HINT}; the cache folder is {folder}",
            url=url,
            file_name=file_name,
            offline=offline,
        )

    def stop_requested() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(f"the download of {what} was cancelled")

    stop_requested()
    request = urllib.request.Request(url, headers={"User-Agent": "transfer-studio"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise failed(f"the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout
        host = urllib.parse.urlsplit(url).hostname or url
        raise failed(f"cannot reach {host} ({_reason(exc)})", offline=True) from None
    sha = hashlib.sha256()
    with response:
        total = _content_length(response)
        done = 0
        start = last_report = time.monotonic()
        if on_progress is not None:
            on_progress(0, total, 0.0)
        while True:
            stop_requested()
            try:
                chunk = response.read(CHUNK_SIZE)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                raise failed(f"the connection broke after {format_size(done)} ({_reason(exc)})") from None
            if not chunk:
                break
            sha.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise WeightsError(
                    f"Cannot write {what} to the cache folder {folder}: {_reason(exc)}",
                    url=url,
                    file_name=file_name,
                ) from None
            done += len(chunk)
            now = time.monotonic()
            if on_progress is not None and now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                on_progress(done, total, done / max(now - start, 1e-6))
        if total and done != total:
            raise failed(f"the connection broke after {format_size(done)} of {format_size(total)}")
        if on_progress is not None:
            on_progress(done, total or done, done / max(time.monotonic() - start, 1e-6))
    return sha.hexdigest()


def _content_length(response: Any) -> int:
    try:
        return max(int(response.headers.get("Content-Length") or 0), 0)
    except ValueError:
        return 0


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = (str(reason).strip().splitlines() or [""])[0] or type(exc).__name__
    return text[:200]


def import_weights(file: str | os.PathLike[str], name: str | None = None) -> Path:
    """Verify a weights file fetched elsewhere and copy it atomically into the cache; return its path.

    With ``name``, the file must be that catalog model's weights (its SHA-256 must start with the
    hash prefix of the expected file name), whatever the file is called. Without it, the file is
    matched to a catalog model by its name or, failing that, by its SHA-256; a file that matches no
    model but carries a hash in its own name is accepted under that name once the hash checks out.
    """
    source = Path(file).expanduser()
    if not source.is_file():
        raise WeightsError(f"{source} is not a file")
    folder = weights_cache_dir()
    expected: dict[str, str] = {}  # expected cache file name -> model name
    if name is not None:
        info = get_model_info(name)
        if info.offline or not info.weights_url:
            raise WeightsError(f"{info.name} has built-in weights: there is nothing to import")
        expected[file_name_of(info.weights_url)] = info.name
    else:
        expected = {file_name_of(i.weights_url): i.name for i in list_models() if i.weights_url}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise WeightsError(f"Cannot write to the cache folder {folder}: {_reason(exc)}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _copy_hashing(source, out, folder)
        target = _import_target(source, digest, expected, name)
        os.replace(tmp, folder / target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("Imported %s as %s", source, folder / target)
    return folder / target


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
    ``path``/``size`` are None unless the file is on this machine.
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
