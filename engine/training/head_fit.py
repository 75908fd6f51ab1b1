"""Fine-tuning's head-first phase: the new head fitted on the frozen backbone before every layer trains.

A fresh head starts random, and while it is random its large, noisy gradients flow into the pretrained
backbone and distort the features it is about to be trained on. Fitting the head first on the frozen
backbone's features ("linear probing, then fine-tuning": Kumar et al. 2022; fastai's ``fine_tune``)
means the whole network then starts from a sensible classifier.

It costs one frozen forward pass over the training images (through the feature store, so a
feature-extraction run of the same model and settings shares it) and a second or two of fitting:

- a linear head (``replace``, and ``append``'s new layer) gets a multinomial logistic regression,
  solved by L-BFGS (:mod:`engine.training.linear_head`) on the features scaled to unit mean norm, with
  the weight decay chosen on held-out folds of the training images; the solution is copied into the
  head's ``nn.Linear`` with the scale folded in;
- any other head (the MLP) trains :data:`HEAD_EPOCHS` head-only epochs on the cached features.

It runs once, before epoch 1; a resumed run restores the weights it led to from its checkpoint. Models
whose head is followed by more layers (squeezenet) skip it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from engine.training.data_path import DataPath, feature_store, features_done, frozen_features, last_head
from engine.training.linear_head import choose_weight_decay, fit_linear_head
from engine.training.pipeline import FeatureBatches
from engine.training.state import Caller, TrainingState

log = logging.getLogger(__name__)

#: Feature views per training image for the head-first fit: the plain view.
HEAD_FIRST_VIEWS = 1
#: Head-only epochs for a head that is not a single linear layer.
HEAD_EPOCHS = 10


def head_first_applies(state: TrainingState) -> bool:
    """Whether this run fits its head first (fine-tuning with ``head_first``)."""
    return state.config.strategy == "fine-tune" and state.config.head_first


def fit_head_first(
    state: TrainingState, data: DataPath, caller: Caller, halve_inference_batch: Callable[[], int]
) -> None:
    """Fit the model's new head on the frozen backbone's features of the training images."""
    head_name = last_head(state)
    if head_name is None:
        caller.info(
            "head first: skipped (more layers follow this model's head); every layer trains from the start"
        )
        return
    started = time.perf_counter()
    store = feature_store(state, caller.dist)
    feats, labels = frozen_features(
        state, store, data.splits["train"], head_name, HEAD_FIRST_VIEWS, caller, halve_inference_batch
    )
    features_done(caller)
    head = state.model.get_submodule(head_name)
    y = torch.as_tensor(labels, dtype=torch.long, device=feats.device)
    weights = getattr(state.train_criterion, "weight", None)
    if isinstance(head, nn.Linear):
        how = _fit_linear(head, feats[0], y, len(state.classes), weights, state.config.seed)
    else:
        how = _train_head(state, head, feats, labels)
    with torch.no_grad():
        logits = head(feats[0].to(next(head.parameters()).device))
        accuracy = float((logits.argmax(1).to(y.device) == y).float().mean())
    caller.info(
        f"head first: the new head was fitted on the frozen backbone's features ({how}; training "
        f"accuracy {accuracy:.3f}) in {time.perf_counter() - started:.1f}s; now every layer trains"
    )
    caller.eta.restart_clock()  # the fit is done once: it is not the first training batch


def _fit_linear(
    head: nn.Linear,
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    class_weights: torch.Tensor | None,
    seed: int,
) -> str:
    """L-BFGS logistic regression, weight decay chosen on held-out training folds, copied into ``head``."""
    x = features.float()
    scale = x.norm(dim=1).mean().clamp_min(1e-12)
    x = x / scale
    weight_decay, _scores = choose_weight_decay(
        x, labels, num_classes, normalize=False, class_weights=class_weights, seed=seed
    )
    fitted = fit_linear_head(
        x, labels, num_classes, weight_decay=weight_decay, normalize=False, class_weights=class_weights
    )
    with torch.no_grad():
        head.weight.copy_((fitted.weight / scale).to(head.weight))
        if head.bias is not None:
            head.bias.copy_(fitted.bias.to(head.bias))
    return f"L-BFGS logistic regression, weight decay {weight_decay:g}"


def _train_head(state: TrainingState, head: nn.Module, features: torch.Tensor, labels: list[int]) -> str:
    """A few seeded head-only epochs on the cached features (AdamW at the run's learning rate)."""
    config = state.config
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    head.train()
    with torch.enable_grad():
        for _epoch in range(HEAD_EPOCHS):
            batches = FeatureBatches(
                features, labels, state.batch_size, state.device, train=True, generator=generator
            )
            for batch in batches:
                if batch is None:  # only validation batches of a multi-process run are ever empty
                    continue
                inputs, targets = batch
                loss = state.train_criterion(head(inputs), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    head.eval()
    return f"{HEAD_EPOCHS} head-only epochs"
