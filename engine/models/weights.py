"""Pretrained weights files: downloading them into torch's hub cache, importing them, listing them.

The public API for the catalog's weights: where they are cached (:func:`weights_cache_dir`,
:func:`cached_weights_path`, :func:`weights_status`, :func:`weights_table`), fetching a model's file
(:func:`download_weights`) and importing one fetched elsewhere (:func:`import_weights`,
:func:`import_hint`). The resumable, verified, atomic download itself is
:mod:`engine.models.downloads` (which owns :class:`WeightsError`, re-exported here); the Hugging Face
Hub's addresses, API and tensor check are :mod:`engine.models.hub`.

torchvision looks for a model's ImageNet weights in ``torch.hub.get_dir()/checkpoints/<file>``, where
``<file>`` is the last part of the weights URL, e.g. ``resnet18-f37072fd.pth``. The part matched by
``torch.hub.HASH_REGEX`` (``f37072fd``) is a prefix of the file's SHA-256 hex digest.

The curated timm models' weights are ``model.safetensors`` in their Hugging Face Hub repository
(``timm/<architecture>.<tag>``), cached in the same folder as ``timm--<architecture>.<tag>--model.safetensors``
(:func:`~engine.models.hub.hub_file_name`), fetched with the same downloader after the Hub's
model-info API gives the commit and the file's size and SHA-256.

Every file placed in the cache here is verified first (against the hash prefix of a torchvision
file's name, or the Hub's SHA-256; an imported timm file by its tensors' names and shapes) and
appears there only by an atomic rename of a fully written file in the same file system. A broken
download keeps what it got and the next one resumes it; Cancel deletes it.

The functions are plain and blocking, meant to run on a worker thread: ``download_weights`` reports
progress through ``on_progress(bytes_done, bytes_total, bytes_per_s)`` (``bytes_total`` is 0 when the
server does not say) and stops, raising :class:`~engine.core.errors.Cancelled`, soon after ``should_stop()`` is true.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import torch

from engine.core.errors import ModelError
from engine.models import lite0
from engine.models.downloads import (
    ProgressCallback,
    StopCallback,
    WeightsError,
    _Download,
    _download_verified,
    _file_size,
    _raise_if_stopped,
    _reason,
)
from engine.models.hub import HUB_WEIGHTS_FILE, check_hub_tensors, hub_file_info, hub_file_name, hub_file_url
from engine.models.registry import ModelInfo, get_model_info, list_models

__all__ = [
    "IMPORT_HINT",
    "WeightsError",
    "cached_weights_path",
    "download_weights",
    "file_name_of",
    "hash_prefix",
    "import_hint",
    "import_weights",
    "weights_cache_dir",
    "weights_status",
    "weights_table",
]

logger = logging.getLogger(__name__)

IMPORT_HINT = "`transfer-studio weights import FILE` (or Import weights file… in the app)"


def import_hint(model: str | None = None) -> str:
    """How to import a file fetched elsewhere, naming the model when known."""
    if not model:
        return IMPORT_HINT
    return f"`transfer-studio weights import FILE --model {model}` (or Import weights file… in the app)"


def weights_cache_dir() -> Path:
    """Where torch hub keeps downloaded weights (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


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
                "import it with Import weights file… in the app, which asks for the model"
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
