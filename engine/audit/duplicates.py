"""Duplicate photos for the dataset audit: exact copies and near copies, linked into groups.

Two photos are linked when any of these holds (the thresholds and the evidence behind them are in
:mod:`engine.audit.run`'s docstring):

- **exact**: the same decoded pixels and the same full size (:attr:`ImageStats.pixel_hash`);
- **near**: perceptual hashes (64-bit pHash) at most :data:`NEAR_PHASH` bits apart: the same photo
  resized, recompressed, re-encoded in another format, recoloured slightly or blurred;
- **cropped**: backbone embeddings with cosine similarity at least :data:`CROP_COSINE`, and at least
  :data:`CROP_MARGIN` above each photo's background similarity (the mean of its
  :data:`BACKGROUND_NEIGHBOURS` highest similarities to other photos), *and* pHashes at most
  :data:`CROP_PHASH` bits apart: the same photo lightly cropped. A crop moves the pHash too far for the
  near rule, and a fixed cosine threshold alone is not specific: in a set of look-alike photos (one
  product on white, microscope slides) every pair is similar to the backbone, and the margin over the
  background keeps those apart.

Nearly uniform photos (no content to hash) are linked only by the exact rule. Links are joined into
groups (connected components); the pairs are compared in row blocks, so memory stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.audit.images import ImageStats

NEAR_PHASH = 8
CROP_COSINE = 0.84
CROP_MARGIN = 0.05
CROP_PHASH = 24
BACKGROUND_NEIGHBOURS = 20
_BLOCK = 512  # rows compared at once: memory stays at a few [512, N] matrices


@dataclass(frozen=True)
class Link:
    """Why two photos (indices into the measured list) were judged duplicates."""

    a: int
    b: int
    rule: str  # "exact" | "near" | "cropped"
    cosine: float  # cosine similarity of their embeddings (nan without them)
    phash_distance: int  # differing bits of their 64-bit pHashes


def hash_bits(values: Sequence[int]) -> torch.Tensor:
    """64-bit hashes as a ``[N, 64]`` float tensor of +1/-1 (for Hamming distances by matrix product)."""
    shifts = torch.arange(63, -1, -1, dtype=torch.int64)
    packed = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values], dtype=torch.int64)
    bits = (packed[:, None] >> shifts) & 1
    return bits.float() * 2 - 1


def find_links(
    stats: Sequence[ImageStats], embeddings: torch.Tensor | None, uniform: Sequence[bool]
) -> list[Link]:
    """Every duplicate link among the photos, each pair once (``a < b``), sorted by ``(a, b)``."""
    n = len(stats)
    links: dict[tuple[int, int], Link] = {}
    by_pixels: dict[str, int] = {}
    for i, s in enumerate(stats):
        first = by_pixels.setdefault(s.pixel_hash, i)
        if first != i:
            links[(first, i)] = Link(first, i, "exact", float("nan"), 0)
    if n < 2:
        return list(links.values())
    bits = hash_bits([s.phash for s in stats])
    unit = F.normalize(embeddings.float(), dim=1) if embeddings is not None else None
    content = ~torch.tensor(list(uniform), dtype=torch.bool)
    background = torch.full((n,), math.inf)
    candidates: list[tuple[int, int, int, float]] = []  # (i, j, pHash distance, cosine)
    neighbours = min(BACKGROUND_NEIGHBOURS, n - 1)
    for start in range(0, n, _BLOCK):
        rows = slice(start, min(n, start + _BLOCK))
        index = torch.arange(rows.start, rows.stop)[:, None]
        distance = ((64 - bits[rows] @ bits.T) / 2).round().to(torch.int64)
        if unit is not None:
            cosine = unit[rows] @ unit.T
            others = cosine.clone()
            others[torch.arange(others.shape[0]), index[:, 0]] = -math.inf  # not itself
            background[rows] = others.topk(neighbours, dim=1).values.mean(dim=1)
        else:
            cosine = torch.full(distance.shape, math.nan)
        linked = (distance <= NEAR_PHASH) | ((cosine >= CROP_COSINE) & (distance <= CROP_PHASH))
        linked &= torch.arange(n)[None, :] > index  # each pair once, never a photo with itself
        linked &= content[rows, None] & content[None, :]
        for r, j in linked.nonzero().tolist():
            candidates.append((rows.start + r, j, int(distance[r, j]), float(cosine[r, j])))
    for i, j, d, c in candidates:
        if (i, j) in links:
            continue
        if d <= NEAR_PHASH:
            links[(i, j)] = Link(i, j, "near", c, d)
        elif c - max(float(background[i]), float(background[j])) >= CROP_MARGIN:
            links[(i, j)] = Link(i, j, "cropped", c, d)
    for (i, j), link in list(links.items()):
        if link.rule == "exact" and unit is not None:  # record how alike the copies' embeddings are
            links[(i, j)] = Link(i, j, "exact", float(unit[i] @ unit[j]), 0)
    return [links[k] for k in sorted(links)]


def group_links(n: int, links: Sequence[Link]) -> list[list[int]]:
    """Connected components of the links with two or more members, each sorted, ordered by first member."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for link in links:
        ra, rb = root(link.a), root(link.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
