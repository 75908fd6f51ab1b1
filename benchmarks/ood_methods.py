"""Which "none of these" score works: out-of-distribution methods on a model trained on hymenoptera.

Trains the default run of ``--strategy`` (feature-extract, or fine-tune for 2 epochs) on hymenoptera,
then scores three sets with each method: hymenoptera's training photos (the reference), its 153 val
photos and 48 photos of other kinds (scikit-image's 24 sample photos that ship in its wheel, 8
uniform-noise, 8 Gaussian-noise and 8 flat-colour images). Each method's threshold lets 95% of the
val photos through (what the app does); the table gives the share of val photos and of other kinds
flagged "unknown", and what the bundle must carry.

Methods: max softmax probability (1 - p_top), energy (-logsumexp of the logits), cosine distance to
the nearest class mean of the training features (the app's), cosine distance to the k-th nearest
training photo (k = 1, 5, 10), and Mahalanobis distance to the nearest class mean in a PCA space of 32,
64 or 128 dimensions with a shared covariance.

    .venv/bin/python benchmarks/ood_methods.py ../shared/data/hymenoptera [--strategy fine-tune]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def outputs(predictor, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Head inputs (plain view) and logits of ``paths``."""
    head = predictor._feature_head
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach().float().flatten(1)))
    feats, logits = [], []
    try:
        for i in range(0, len(paths), 32):
            batch = torch.stack([predictor.preprocessed(p) for p in paths[i : i + 32]])
            seen.clear()
            logits.append(predictor.logits(batch))
            feats.append(seen[0])
    finally:
        handle.remove()
    return torch.cat(feats), torch.cat(logits)


def methods(train_feats: torch.Tensor, train_labels: torch.Tensor) -> dict[str, tuple[object, str]]:
    n = lambda x: F.normalize(x, dim=1)  # noqa: E731
    classes = int(train_labels.max()) + 1
    means = torch.stack([n(train_feats)[train_labels == c].mean(0) for c in range(classes)])
    dim = train_feats.shape[1]

    def knn(k: int):
        return lambda L, X: 1 - (n(X) @ n(train_feats).T).topk(k, 1).values[:, -1]

    def mahalanobis(q: int):
        x = n(train_feats)
        centre = x.mean(0)
        _, _, v = torch.pca_lowrank(x - centre, q=q, center=False)
        z = (x - centre) @ v
        cls = torch.stack([z[train_labels == c].mean(0) for c in range(classes)])
        residual = torch.cat([z[train_labels == c] - cls[c] for c in range(classes)])
        inverse = torch.linalg.inv(residual.T @ residual / len(residual) + 1e-4 * torch.eye(q))

        def score(L, X):
            d = ((n(X) - centre) @ v)[:, None, :] - cls[None]
            return torch.einsum("ncd,de,nce->nc", d, inverse, d).min(1).values

        return score

    size = lambda numbers: f"{numbers * 4 / 1e6:.2f} MB"  # noqa: E731 - float32
    return {
        "max softmax probability": (lambda L, X: 1 - torch.softmax(L, 1).max(1).values, "nothing"),
        "energy": (lambda L, X: -torch.logsumexp(L, 1), "nothing"),
        "cosine to the nearest class mean (the app's)": (
            lambda L, X: 1 - (n(X) @ n(means).T).max(1).values, f"{size(classes * dim)} ({classes} x {dim})"),
        **{f"cosine to the k-th nearest training photo, k = {k}": (knn(k), f"{size(len(train_feats) * dim)}, grows with the photos")
           for k in (1, 5, 10)},
        **{f"Mahalanobis, PCA {q}": (mahalanobis(q), size(dim * q + q * q + classes * q)) for q in (32, 64, 128)},
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("--strategy", default="feature-extract", choices=["feature-extract", "fine-tune"])
    args = parser.parse_args()
    from test_honest_hymenoptera import other_kinds

    from engine.core.config import TrainConfig
    from engine.data.datasets import scan_dataset
    from engine.inference.predict import Predictor, list_images
    from engine.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        extra = {"epochs": 2} if args.strategy == "fine-tune" else {}
        result = train(
            TrainConfig.for_strategy(args.strategy, device="cpu", **extra),
            args.data,
            run_dir=Path(tmp) / "run",
        )
        predictor = Predictor.from_bundle(result.bundle_path, "cpu")
        report = scan_dataset(args.data, verify=False)
        others = list_images(_others(Path(tmp) / "others", other_kinds))
        train_feats, _ = outputs(predictor, [s.path for s in report.splits["train"]])
        train_labels = torch.tensor([s.label for s in report.splits["train"]])
        val_feats, val_logits = outputs(predictor, [s.path for s in report.splits["val"]])
        other_feats, other_logits = outputs(predictor, others)
    print(f"| method ({args.strategy}, val accuracy {result.best_val_acc:.3f}) | val photos flagged | "
          f"other kinds flagged ({len(others)}) | the bundle carries |")  # fmt: skip
    print("|---|---|---|---|")
    for name, (score, carried) in methods(train_feats, train_labels).items():
        val, other = score(val_logits, val_feats), score(other_logits, other_feats)
        threshold = torch.quantile(val, 0.95)
        print(f"| {name} | {float((val > threshold).float().mean()):.1%} | "
              f"{float((other > threshold).float().mean()):.1%} | {carried} |")  # fmt: skip
    return 0


def _others(folder: Path, make) -> Path:
    import pytest  # other_kinds skips without scikit-image

    try:
        return make(folder)
    except pytest.skip.Exception:
        raise SystemExit("needs scikit-image: pip install scikit-image") from None


if __name__ == "__main__":
    sys.exit(main())
