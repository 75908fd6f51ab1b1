"""fit_linear_head: a deterministic multinomial logistic-regression head fitted with L-BFGS."""

from __future__ import annotations

import pytest
import torch

from engine.training.linear_head import fit_linear_head


def _blobs(n_per_class: int = 40, classes: int = 3, dim: int = 16, spread: float = 0.6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 2
    x = torch.cat([centres[c] + spread * torch.randn(n_per_class, dim, generator=g) for c in range(classes)])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return x, y


def test_separates_classes_and_gives_probabilities():
    x, y = _blobs()
    head = fit_linear_head(x, y)
    p = head.probabilities(x)
    assert p.shape == (120, 3)
    assert torch.allclose(p.sum(1), torch.ones(120), atol=1e-5)
    assert (p.argmax(1) == y).float().mean() > 0.95
    assert head.num_classes == 3 and head.iterations > 1 and head.loss > 0


def test_same_inputs_give_the_same_head():
    x, y = _blobs()
    a, b = fit_linear_head(x, y), fit_linear_head(x, y)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_weight_decay_shrinks_the_weights():
    x, y = _blobs()
    weak = fit_linear_head(x, y, weight_decay=1e-4)
    strong = fit_linear_head(x, y, weight_decay=1e-1)
    assert strong.weight.norm() < weak.weight.norm()


def test_raw_features_give_a_plain_linear_layer():
    x, y = _blobs()
    head = fit_linear_head(x, y, normalize=False)
    layer = head.to_linear()
    with torch.no_grad():
        assert torch.allclose(layer(x), head.logits(x), atol=1e-5)
    with pytest.raises(ValueError):
        fit_linear_head(x, y).to_linear()  # unit-norm features: not a plain nn.Linear


def test_normalised_head_ignores_feature_scale():
    x, y = _blobs()
    head = fit_linear_head(x, y)
    assert torch.allclose(head.probabilities(x), head.probabilities(x * 7.0), atol=1e-5)


def test_accepts_inference_mode_tensors_lists_and_missing_classes():
    x, y = _blobs(classes=2)
    with torch.inference_mode():
        frozen = x.clone()
    head = fit_linear_head(frozen, y.tolist(), num_classes=4)  # classes 2 and 3 have no sample
    p = head.probabilities(x)
    assert p.shape == (80, 4) and float(p[:, 2:].max()) < 0.1


def test_class_weights_favour_the_weighted_class():
    x, y = _blobs(classes=2, spread=3.0)  # overlapping classes: the weights decide the boundary
    plain = fit_linear_head(x, y)
    weighted = fit_linear_head(x, y, class_weights=torch.tensor([1.0, 5.0]))
    assert (weighted.probabilities(x).argmax(1) == 1).sum() > (plain.probabilities(x).argmax(1) == 1).sum()


def test_rejects_bad_input():
    x, y = _blobs()
    with pytest.raises(ValueError):
        fit_linear_head(x[0], y)
    with pytest.raises(ValueError):
        fit_linear_head(x, y[:-1])
    with pytest.raises(ValueError):
        fit_linear_head(x, y, num_classes=2)
    with pytest.raises(ValueError):
        fit_linear_head(x[:0], y[:0], num_classes=3)
