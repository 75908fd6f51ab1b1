"""“Recommended for your photos”: the one or two models most likely to do best within a few minutes.

From the number of photos, their typical size and this machine's speed (the factor of
:mod:`engine.models.costs`), each catalog model that could be tried (the built-in one, the curated timm
models, torchvision models already downloaded) is priced as a feature-extract run
(:mod:`engine.experiments.estimates`). Among those that fit in :data:`RECOMMEND_MINUTES`, the first
recommendation is the strongest: self-supervised features first (DINOv2's frozen features, learnt
without labels, beat a supervised ResNet-50's on Flowers-102, 99.6 vs 94.7, Pets, 95.1 vs 91.5, and
Food-101, 89.1 vs 72.3, and even a fully fine-tuned ResNet-50 on five of seven such sets: DINOv2 paper,
Table 8), then by the published ImageNet figure (features that classify ImageNet better transfer
better, Kornblith et al. 2019); when it needs a download, the second is the strongest already on this
computer, so there is always one that runs offline. Each comes with its reason in words.
No Qt here: the window's model picker shows what :func:`recommend_models` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.core.sizes import format_size
from engine.data.datasets import DatasetReport
from engine.experiments.estimates import (
    DatasetSize,
    dataset_size,
    describe_seconds,
    download_seconds,
    feature_extract_seconds,
)
from engine.models.costs import model_cost, speed_factor
from engine.models.registry import ModelInfo, list_models

#: "Within a few minutes": the time a recommended model's first run (feature-extract) should fit in.
RECOMMEND_MINUTES = 3.0
BUILT_IN_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class Recommendation:
    """A model to try, the strategy to start with, its estimated seconds and why, in words."""

    model: str
    strategy: str
    seconds: float
    download_bytes: int | None  # None when its weights are on this computer
    reason: str

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "strategy": self.strategy,
            "seconds": round(self.seconds, 1),
            "download_bytes": self.download_bytes,
            "reason": self.reason,
        }


def display_name(info: ModelInfo) -> str:
    """E.g. ``DINOv2 vit_small_patch14_dinov2`` or ``efficientnet_lite0 (built in)``."""
    if info.source == "built-in":
        return f"{info.name} (built in)"
    if info.source == "timm":
        arch = info.name.removeprefix("timm:").split(".", 1)[0]
        return f"{info.family} {arch}"
    return info.name


def _candidates(weights_status: Callable[[str], str]) -> list[tuple[ModelInfo, str]]:
    out = []
    for info in list_models():
        status = weights_status(info.name)
        if info.source in ("built-in", "timm") or status == "cached":
            out.append((info, status))
    return out


def recommend_models(
    train_photos: int,
    val_photos: int,
    *,
    typical_side: float | None = None,
    speed: float = 1.0,
    minutes: float = RECOMMEND_MINUTES,
    weights_status: Callable[[str], str] | None = None,
) -> list[Recommendation]:
    """One or two recommendations for a dataset of ``train_photos`` + ``val_photos`` photos whose
    typical shorter side is ``typical_side`` pixels, on a machine ``speed`` times slower than the one
    measured (:func:`engine.models.costs.speed_factor`). ``weights_status(name)`` says "offline",
    "cached" or "download" (default: :func:`engine.models.weights.weights_status`). The built-in model
    is recommended when nothing else fits."""
    if weights_status is None:
        from engine.models.weights import weights_status as status_of

        weights_status = status_of
    data = DatasetSize(max(train_photos, 0), max(val_photos, 0), typical_side)
    budget = minutes * 60
    priced = []
    for info, status in _candidates(weights_status):
        seconds = feature_extract_seconds(model_cost(info.name).scaled(speed), data)
        priced.append((info, status, seconds))
    fits = [p for p in priced if p[2] <= budget and p[0].published_top1 is not None]
    fits.sort(key=lambda p: (not p[0].self_supervised, -(p[0].published_top1 or 0.0), p[2]))
    chosen: list[tuple[ModelInfo, str, float, str]] = []
    if fits:
        info, status, seconds = fits[0]
        chosen.append((info, status, seconds, "strongest"))
        if status == "download":
            local = [p for p in fits if p[1] != "download"]
            if local:
                chosen.append((*local[0], "offline"))
    if not chosen:  # nothing fits: the cheapest model, the built-in one
        built_in = next(p for p in priced if p[0].name == BUILT_IN_MODEL)
        chosen.append((*built_in, "fastest"))
    return [
        _recommendation(info, status, seconds, why, data, minutes) for info, status, seconds, why in chosen
    ]


def _recommendation(
    info: ModelInfo, status: str, seconds: float, why: str, data: DatasetSize, minutes: float
) -> Recommendation:
    photos = f"your {data.photos} photos"
    if data.typical_side:
        photos += f" (about {data.typical_side:.0f} px)"
    took = describe_seconds(seconds)
    budget = describe_seconds(minutes * 60)
    if why == "strongest":
        kind = (
            "features learnt without labels, the best for photos of any kind"
            if info.self_supervised
            else "the strongest features"
        )
        head = f"{kind} whose first run fits in {budget} here: about {took} for {photos}"
    elif why == "offline":
        head = f"the strongest already on this computer: about {took} for {photos}"
    else:
        head = f"nothing stronger fits in {budget} here; this one takes about {took} for {photos}"
    size = info.download_bytes if status == "download" else None
    if size:
        tail = f"; a {format_size(size)} download (about {describe_seconds(download_seconds(size))})"
    elif status == "offline":
        tail = "; built in, no download"
    else:
        tail = "; already downloaded"
    published = (
        f" Published ImageNet top-1: {info.published_top1:.1f}%." if info.published_top1 is not None else ""
    )
    return Recommendation(
        model=info.name,
        strategy="feature-extract",
        seconds=seconds,
        download_bytes=size,
        reason=f"{display_name(info)}: {head}{tail}.{published}",
    )


def recommend_for_dataset(report: DatasetReport, device: str = "auto") -> list[Recommendation]:
    """:func:`recommend_models` for a scanned dataset on this machine's ``device`` (times the speed
    probe once per process, about a second on a CPU: call it off the GUI thread)."""
    from engine.core.device import resolve_device

    data = dataset_size(report)
    speed = speed_factor(resolve_device(device))
    return recommend_models(data.train, data.val, typical_side=data.typical_side, speed=speed)
