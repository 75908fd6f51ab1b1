"""Decoded images kept in memory, so only the first epoch pays for JPEG decoding and resizing.

Each image is decoded once (``open_image``: EXIF, colour modes), its shorter side resized to the model's
``resize_size`` with the model's interpolation (exactly as the eval transform does), centre-cropped
to a ``resize_size`` square and stored as a uint8 CHW tensor. The eval view is the centre
``crop_size`` square of that, so the cached path gives the same pixels as ``eval_transform``.
Images beyond the memory budget are decoded again each time they are needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from engine.core.errors import UnreadableImageError
from engine.data.datasets import Sample
from engine.data.images import open_image
from engine.models.preprocessing import Preprocessing, center_crop, resize_shorter_side

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 2 * 1024**3


class DecodedImageCache:
    """uint8 ``[3, S, S]`` tensors (S = ``resize_size``) for a list of samples, within a byte budget."""

    def __init__(
        self,
        samples: Sequence[Sample],
        preprocessing: Preprocessing,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        threads: int = 2,
    ) -> None:
        self.samples = list(samples)
        self.pre = preprocessing
        self.size = preprocessing.resize_size
        self.budget_bytes = budget_bytes
        self.image_bytes = 3 * self.size * self.size
        self._cache: dict[int, torch.Tensor] = {}
        self.failed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode")

    @property
    def nbytes(self) -> int:
        """Bytes held by cached images."""
        return len(self._cache) * self.image_bytes

    def __len__(self) -> int:
        return len(self.samples)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def decode(self, index: int) -> torch.Tensor | None:
        """The image as uint8 ``[3, S, S]``, or None when it cannot be decoded (remembered)."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        if index in self.failed:
            return None
        path = self.samples[index].path
        try:
            img = open_image(path, min_size=self.size)  # the same decode as Predictor.load
            img = resize_shorter_side(img, self.size, self.pre.interpolation)  # as torchvision's resize
            img = center_crop(img, self.size)
            tensor = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        except UnreadableImageError as exc:
            with self._lock:
                self.failed[index] = str(exc)
            log.warning("skipping %s", exc)
            return None
        tensor = tensor.contiguous()
        with self._lock:
            if self.nbytes + self.image_bytes <= self.budget_bytes:
                self._cache[index] = tensor
        return tensor

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
        """Stack the decodable images among ``indices``; returns (uint8 [B,3,S,S], the indices kept)."""
        return self._stacked(indices, list(self._pool.map(self.decode, indices)))

    def batches(
        self, chunks: Sequence[Sequence[int]]
    ) -> Generator[tuple[torch.Tensor, list[int]], None, None]:
        """:meth:`batch` of each chunk in turn; the next chunk decodes while the caller uses this one
        (so at most two batches of photos are decoded at a time)."""
        ahead = [self._pool.submit(self.decode, i) for i in chunks[0]] if chunks else []
        try:
            for n, chunk in enumerate(chunks):
                current = ahead
                ahead = (
                    [self._pool.submit(self.decode, i) for i in chunks[n + 1]] if n + 1 < len(chunks) else []
                )
                yield self._stacked(chunk, [future.result() for future in current])
        finally:  # stopped early (or failed): what was not started yet is not decoded
            for future in ahead:
                future.cancel()

    def _stacked(
        self, indices: Sequence[int], images: Sequence[torch.Tensor | None]
    ) -> tuple[torch.Tensor, list[int]]:
        kept = [i for i, img in zip(indices, images, strict=True) if img is not None]
        stacked = [img for img in images if img is not None]
        if not stacked:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8), []
        return torch.stack(stacked), kept
