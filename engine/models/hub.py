"""The Hugging Face Hub: where the curated timm models' weights come from, and how a file is known
to hold them.

Owns the Hub's addresses (:func:`hub_endpoint`, :func:`hub_info_url`, :func:`hub_file_url`), the
cache file name of a Hub file (:func:`hub_file_name`: ``timm/<architecture>.<tag>`` ->
``timm--<architecture>.<tag>--model.safetensors``), the model-info API's answer
(:func:`hub_file_info`, read with msgspec into :class:`HubFile`: the commit, and the file's size and
SHA-256) and the offline check that a safetensors file holds a curated timm model's tensors
(:func:`check_hub_tensors`).

Everything is plain urllib, not ``huggingface_hub``: first the model-info API
(``{endpoint}/api/models/{repo}/revision/main?blobs=true``), then
``{endpoint}/{repo}/resolve/{commit}/model.safetensors`` is downloaded by
:mod:`engine.models.downloads`. The endpoint is ``https://huggingface.co``, or the standard
``HF_ENDPOINT`` variable.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import msgspec
import torch

from engine.core.small_files import DamagedFile, decode_json
from engine.models import timm_models
from engine.models.downloads import WeightsError, _Download, _reason

logger = logging.getLogger(__name__)

#: The file a timm model's weights are in, in its Hub repository.
HUB_WEIGHTS_FILE = "model.safetensors"
#: The Hugging Face Hub, unless the standard ``HF_ENDPOINT`` environment variable names a mirror.
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
HUB_ENDPOINT_ENV = "HF_ENDPOINT"
#: The largest model-info answer read from the Hub (a timm repository's is a few kB).
MAX_HUB_INFO_BYTES = 4 * 1024 * 1024


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
    folder: Path,
    hint: str,
    timeout: float = 30,
    what: str | None = None,
) -> HubFile:
    """Ask the Hub's model-info API for ``file`` of ``hub_repo`` on its main branch: the commit, and
    the file's size and SHA-256 (WeightsError, ``offline=True`` when the Hub cannot be reached).

    ``folder`` (the cache folder) and ``hint`` (how to import the file by hand) go into the error."""
    api = hub_info_url(hub_repo)
    job = _Download(
        url=api,
        what=what or f"{file} of {hub_repo}",
        file_name=hub_file_name(hub_repo, file),
        folder=folder,
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
