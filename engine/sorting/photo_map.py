"""A 2-D map of photos by their features, and suggested groups on it, for a cold start.

The map is an openTSNE embedding (BSD-3; Poličar et al.) of the features reduced to 50 dimensions by
PCA (scikit-learn, BSD-3): photos that look alike to the backbone land close together. openTSNE
reports progress and stops when asked; its Barnes-Hut gradients took 23 s on 10,000 photos' features
on a 2-core CPU, against 56 s for its FFT ones and 31 s for scikit-learn's t-SNE. Fewer than :data:`TSNE_FROM` photos are placed by PCA alone (t-SNE needs more points
than three times its perplexity). The suggested groups are k-means clusters of the same reduced
features (scikit-learn), with a count the user can change. Timings on 10,000 photos: BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.core.errors import Cancelled, StopCheck

#: Fewer photos than this are placed by PCA alone.
TSNE_FROM = 100
PCA_DIMENSIONS = 50
TSNE_ITERATIONS = (250, 500)  # openTSNE's defaults: early exaggeration, then the embedding


def _reduced(features: torch.Tensor, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = torch.nn.functional.normalize(features.float(), dim=1).numpy()
    dims = min(PCA_DIMENSIONS, x.shape[0], x.shape[1])
    return PCA(dims, random_state=seed).fit_transform(x).astype(np.float32)


def project(
    features: torch.Tensor,
    *,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: StopCheck | None = None,
) -> np.ndarray:
    """``[N, 2]`` map coordinates for ``features [N, D]`` (see the module docstring)."""
    n = features.shape[0]
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n < 3:
        return np.array([[float(i), 0.0] for i in range(n)], dtype=np.float32)
    reduced = _reduced(features, seed)
    if n < TSNE_FROM:
        return np.ascontiguousarray(reduced[:, :2])
    from openTSNE import TSNE

    total = sum(TSNE_ITERATIONS)
    done = [0]
    stopped = [False]

    def callback(iteration: int, _error: float, _embedding: object) -> bool:
        done[0] += 1
        if on_progress:
            on_progress(min(total, done[0] * 10), total)
        stopped[0] = bool(should_stop and should_stop())
        return stopped[0]

    embedding = TSNE(
        n_jobs=2, random_state=seed, verbose=False, callbacks=callback, callbacks_every_iters=10,
        negative_gradient_method="bh",
        early_exaggeration_iter=TSNE_ITERATIONS[0], n_iter=TSNE_ITERATIONS[1],
    ).fit(reduced)  # fmt: skip
    if stopped[0]:
        raise Cancelled("the photo map stopped")
    if on_progress:
        on_progress(total, total)
    return np.asarray(embedding, dtype=np.float32)


def suggest_groups(features: torch.Tensor, count: int, *, seed: int = 0) -> list[int]:
    """A group number (0..count-1) per photo: k-means on the reduced features."""
    from sklearn.cluster import KMeans

    n = features.shape[0]
    if n == 0:
        return []
    count = max(1, min(count, n))
    labels = KMeans(count, n_init=3, random_state=seed).fit_predict(_reduced(features, seed))
    return [int(v) for v in labels]
