"""A finished run's calibration: the temperature and the "none of these" threshold, fitted on its
validation photos at the end of the run (:func:`calibrate_run`), for the bundle.

The logits are the run's validation logits at its best epoch (with its test-time augmentation), so the
calibrated model keeps the run's validation accuracy; the features are the head's input for each
photo's plain view, what :class:`~engine.inference.predict.Predictor` scores. On the feature path both
come from the cached features (no backbone pass); on the image path one pass over the training and
validation photos (without augmentation or gradients) gives them. A Stop on the image path skips that
pass: the stopped run's model is saved uncalibrated and says so.
"""

from __future__ import annotations

import logging

import torch

from engine.models.calibration import Calibration, fit_calibration
from engine.models.tta import tta_logits
from engine.training.checkpoints import load_weights_snapshot
from engine.training.data_path import DataPath, FeaturePath, last_head
from engine.training.pipeline import Normalizer, center_crop
from engine.training.state import Caller, TrainingState

log = logging.getLogger(__name__)


def calibrate_run(
    state: TrainingState, data: DataPath, caller: Caller, *, stopped: bool = False
) -> Calibration | None:
    """The best epoch's calibration (its weights are loaded into ``state.model``); None when no epoch
    finished, on every process but the first of a multi-process run, or after a Stop on the image path."""
    if state.best_state is None or not caller.dist.is_main:
        return None
    if stopped and not isinstance(data, FeaturePath):
        return None
    load_weights_snapshot(state.model, state.best_state, state.head_names, state.head_only)
    state.model.eval()
    train_features: torch.Tensor | None
    val_features: torch.Tensor | None
    if isinstance(data, FeaturePath):
        cached_train, train_list = data.features["train"]
        cached_val, val_list = data.features["val"]
        data.set_mode(training=False)
        with torch.no_grad(), state.autocast():  # every cached view of a photo: the run's TTA
            logits = data.forward(cached_val.permute(1, 0, 2).to(state.device)).float().cpu()
        train_features, train_labels = cached_train[0], torch.tensor(train_list)
        val_features, val_labels = cached_val[0], torch.tensor(val_list)
    else:
        caller.info("calibrating the model on the validation photos")
        head_name = last_head(state)
        _, train_labels, train_features = _image_pass(state, data, "train", head_name, caller)
        logits, val_labels, val_features = _image_pass(state, data, "val", head_name, caller)
    calibration = fit_calibration(logits, val_labels, val_features, train_features, train_labels)
    caller.info(
        f"calibrated: temperature {calibration.temperature:.2f}, expected calibration error "
        f"{calibration.ece_before:.3f} before and {calibration.ece_after:.3f} after"
    )
    return calibration


def _image_pass(
    state: TrainingState, data: DataPath, split: str, head_name: str | None, caller: Caller
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits (with the run's test-time augmentation), labels and plain-view head inputs of a split."""
    part = data.splits[split]
    normalize = Normalizer(state.preprocessing, state.device)
    head = state.model.get_submodule(head_name) if head_name else None
    seen: list[torch.Tensor] = []
    logits, labels, features = [], [], []
    size = state.inference_batch
    for start in range(0, len(part.labels), size):
        caller.check_stop()
        images, kept = part.cache.batch(range(start, min(start + size, len(part.labels))))
        if not kept:
            continue
        pixels = center_crop(images.to(state.device), state.preprocessing.crop_size)
        batch = normalize(pixels).contiguous(memory_format=torch.channels_last)
        handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) if head else None
        try:
            with torch.no_grad(), state.autocast():
                logits.append(tta_logits(state.model, batch, state.preprocessing.tta).float().cpu())
        finally:
            if handle is not None:
                handle.remove()
        if seen:
            features.append(seen[0].float().cpu())
        seen.clear()
        labels += [part.labels[i] for i in kept]
    feats = torch.cat(features) if features and len(features) == len(logits) else None
    return torch.cat(logits), torch.tensor(labels), feats
