"""Backbone features computed once, so feature extraction trains only the head on cached tensors.

With a frozen backbone in eval mode, the head's input for a given image view never changes, so it
is computed once per image and view (view 0 is the plain eval view; views 1.. are seeded random crops
and flips; with flip test-time augmentation the validation images also get the mirror image of their
plain view, view ``flip``) and every epoch then costs only the head. Features also persist on disk, keyed by the
model (fused for inference, :mod:`engine.models.fusion`), its weights, its preprocessing, every augmentation setting (:data:`AUGMENTATION`), the seed,
the compute precision and each file's path, size and modification time: changing any of those recomputes exactly the entries it affects.

This applies whenever the head's output *is* the model's output (true across the catalog except
squeezenet, whose head is followed by pooling); other models train on cached images instead.

"The head" is the trainable part (:mod:`engine.models.heads`): for the ``replace`` and ``mlp`` heads its
input is the backbone's pooled features, shared by both; for ``append`` it is the kept pretrained
1000-way layer's logits, so that frozen layer also runs only once per view. The store's key says which
(``head_input``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import torch
from torch import nn

from engine.core.errors import Cancelled
from engine.core.files import atomic_torch_save
from engine.core.locations import cache_root
from engine.data.datasets import Sample
from engine.models.build import head_is_last
from engine.models.fusion import fused_copy
from engine.models.preprocessing import Preprocessing
from engine.models.registry import ModelInfo
from engine.training.image_cache import DecodedImageCache
from engine.training.pipeline import (
    AUGMENTATION,
    HFLIP_PROBABILITY,
    Normalizer,
    augment,
    center_crop,
    crop_boxes,
)

__all__ = [
    "FeatureExtractor",
    "FeatureStore",
    "compute_features",
    "feature_labels",
    "head_is_last",
    "view_draw",
]

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 2  # 2: computed by the fused backbone (engine.models.fusion)


def default_cache_dir() -> Path:
    """``features`` in the app's cache folder (:func:`engine.core.locations.cache_root`)."""
    return cache_root() / "features"


class _HeadReached(Exception):
    """Raised by the pre-hook to stop the forward pass once the head's input is known."""


class FeatureExtractor:
    """Runs a model (in eval mode) up to its head and returns what the head would receive.

    It runs a fused copy of the model where one fuses (:mod:`engine.models.fusion`: the same answers,
    1.6x to 2x as fast on the built-in model); ``fused`` says whether it does.
    """

    def __init__(self, model: nn.Module, head_name: str) -> None:
        twin = fused_copy(model)
        self.fused = twin is not None
        self.model = twin if twin is not None else model
        self.head: nn.Module = dict(self.model.named_modules())[head_name]
        self._captured: torch.Tensor | None = None

    def _grab(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._captured = args[0]
        raise _HeadReached

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, *, keep_dtype: bool = False) -> torch.Tensor:
        """The head's input for ``batch``, as float32 (``keep_dtype``: in the dtype the network computed
        it in, e.g. bfloat16 under autocast, which the feature store keeps at half the memory)."""
        handle = self.head.register_forward_pre_hook(self._grab)
        try:
            self.model(batch)
        except _HeadReached:
            pass
        finally:
            handle.remove()
        captured, self._captured = self._captured, None
        if captured is None:
            raise RuntimeError("the model's head was never reached")
        return captured if keep_dtype else captured.float()


class FeatureStore:
    """A dict ``entry key -> feature tensor`` for one model/weights/preprocessing, saved on disk."""

    def __init__(
        self,
        info: ModelInfo,
        seed: int,
        cache_dir: Path | None = None,
        *,
        precision: str = "float32",
        head_input: str = "features",
        preprocessing: Preprocessing | None = None,
        writes: bool = True,
    ) -> None:
        # The run's preprocessing (another input size) or the model's; never its test-time
        # augmentation, which only adds entries of its own (view "flip").
        pre = (preprocessing or info.preprocessing).with_tta("none")
        spec: dict[str, object] = {
            "version": FEATURE_CACHE_VERSION,
            "model": info.name,
            "weights": info.weights_name or info.weights_url or "built-in",
            "preprocessing": pre.to_dict(),
            "augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENTATION.items()},
            "seed": seed,
            "precision": precision,  # the backbone's compute dtype (bf16/fp16 autocast on a GPU)
            "layout": "channels_last",  # the memory format the backbone runs in (changes the float sums)
        }
        if head_input != "features":  # the pretrained logits (append head); features keep their old key
            spec["head_input"] = head_input
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
        self.path = (cache_dir or default_cache_dir()) / f"{info.name}-{digest}.pt"
        self.entries: dict[str, torch.Tensor] = {}
        self.dirty = False
        self.writes = writes  # False on every process of a multi-process run but the first
        if self.path.exists():
            try:
                self.entries = dict(torch.load(self.path, map_location="cpu", weights_only=True))
            except Exception as exc:  # noqa: BLE001 - a damaged cache is simply rebuilt
                log.warning("ignoring unreadable feature cache %s: %s", self.path, exc)

    @staticmethod
    def key(path: Path, view: int | str) -> str:
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{view}"

    def save(self) -> None:
        if self.dirty and self.writes:
            try:
                atomic_torch_save(self.entries, self.path)
                self.dirty = False
            except OSError as exc:
                log.warning("could not save the feature cache %s: %s", self.path, exc)


def view_draw(sample_key: str, view: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The crop box and flip of augmented ``view`` of one image: fixed by the seed and the file."""
    digest = hashlib.sha256(f"{seed}|{view}|{sample_key}".encode("utf-8", "surrogateescape")).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return crop_boxes(1, generator)[0], torch.rand(1, generator=generator)[0] < HFLIP_PROBABILITY


def feature_labels(views: int, flipped: bool) -> list[int | str]:
    """The store's view labels of an image's features: ``0..views-1``, then ``"flip"`` if wanted."""
    return [*range(views), *(["flip"] if flipped else [])]


def compute_features(
    extractor: FeatureExtractor,
    cache: DecodedImageCache,
    store: FeatureStore,
    views: int,
    seed: int,
    device: torch.device,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    flipped: bool = False,
    indices: Sequence[int] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Features ``[views, N_ok, D]`` for the decodable samples of ``cache``, and their indices.

    With ``flipped``, one more view comes last: the mirror image of the plain view (flip test-time
    augmentation). With ``indices``, only those samples (one process's share of a multi-process run).
    Entries already in ``store`` are reused; missing ones are computed in batches and added.
    """
    samples: Sequence[Sample] = cache.samples
    labels = feature_labels(views, flipped)
    wanted = range(len(samples)) if indices is None else indices
    key_of: dict[int, list[str]] = {}
    todo: list[int] = []
    for i in wanted:
        try:
            key_of[i] = [FeatureStore.key(samples[i].path, v) for v in labels]
        except OSError:
            todo.append(i)  # vanished file: decoding will fail and report it
            continue
        if any(x not in store.entries for x in key_of[i]):
            todo.append(i)
    normalize = Normalizer(cache.pre, device)
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    # The next batch decodes while this one runs through the network.
    with closing(cache.batches(chunks)) as decoded:
        for n, (images, kept) in enumerate(decoded, start=1):
            if should_stop and should_stop():
                store.save()  # keep what was computed: the next run starts from there
                raise Cancelled("the feature pass stopped")
            if kept:
                pixels = images.to(device)
                _store_views(
                    extractor, store, pixels, kept, key_of, labels, normalize, cache.pre.crop_size, seed
                )
            if on_batch:
                on_batch(n, len(chunks))
    store.save()
    ok = [i for i in wanted if i in key_of and i not in cache.failed and key_of[i][0] in store.entries]
    if not ok:
        return torch.empty(len(labels), 0, 0), []
    stacked = torch.stack(
        [_stacked_float([store.entries[key_of[i][v]] for i in ok]) for v in range(len(labels))]
    )
    return stacked, ok


def _store_views(
    extractor: FeatureExtractor,
    store: FeatureStore,
    images: torch.Tensor,
    kept: list[int],
    key_of: dict[int, list[str]],
    labels: list[int | str],
    normalize: Normalizer,
    crop_size: int,
    seed: int,
) -> None:
    """Compute the views of one decoded batch that ``store`` misses, and add them to it."""
    for view, label in enumerate(labels):
        # Only the views each photo misses (an audit may have cached view 0 alone); a file that could
        # not be stat'ed has no key, so nothing of it could be stored.
        rows = [r for r, i in enumerate(kept) if i in key_of and key_of[i][view] not in store.entries]
        if not rows:
            continue
        some = images[rows] if len(rows) < len(kept) else images
        if label == "flip":
            pixels = center_crop(some, crop_size).flip(-1)
        elif view == 0:
            pixels = center_crop(some, crop_size)
        else:
            draws = [view_draw(key_of[kept[r]][0], view, seed) for r in rows]
            boxes = torch.stack([d[0] for d in draws])
            flips = torch.stack([d[1] for d in draws])
            pixels = augment(some, crop_size, boxes, flips)
        batch = normalize(pixels).contiguous(memory_format=torch.channels_last)  # as the model
        # Kept as computed (bfloat16 under bf16 autocast: no rounding, half the memory of float32), one
        # block per batch with each entry a row of it: tens of thousands of small tensors of their own
        # fragment the heap between the batches' large buffers (+1 GB at 20,000 photos).
        block = extractor(batch, keep_dtype=True).flatten(1).cpu().clone()
        for row, r in enumerate(rows):
            store.entries[key_of[kept[r]][view]] = block[row]
        store.dirty = True


def _stacked_float(rows: list[torch.Tensor]) -> torch.Tensor:
    """``rows`` stacked as float32 (a store may hold float32 entries beside bfloat16 ones)."""
    if len({row.dtype for row in rows}) == 1:
        return torch.stack(rows).float()
    return torch.stack([row.float() for row in rows])
