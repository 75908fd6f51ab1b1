"""Random-weights stand-ins for the Hub's timm weights files (the Hub is out of reach in tests).

:func:`put_random_weights` writes, where a download would put it, a ``model.safetensors`` laid out like
the Hub's (a vision transformer's without a classifier), so that building a model with
``pretrained=True`` goes through the real loading path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.models import timm_models
from engine.models.hub import hub_file_name
from engine.models.weights import weights_cache_dir


def random_hub_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The tensors of the Hub file of catalog model ``name``, with random values."""
    entry = timm_models.entry(name)
    assert entry is not None, name
    torch.manual_seed(seed)
    model = timm_models.build(entry, None)
    module = model.backbone if isinstance(model, timm_models.ClassTokenAndMeanPool) else model
    return {key: value.detach().clone().contiguous() for key, value in module.state_dict().items()}


def put_random_weights(name: str, seed: int = 0) -> Path:
    """Write random weights for ``name`` into the weights cache (point TORCH_HOME at a temporary
    folder first); returns the file."""
    entry = timm_models.entry(name)
    assert entry is not None, name
    path = weights_cache_dir() / hub_file_name(entry.hub_repo)
    # Never the user's cache: random weights there would pass for the real ones.
    assert path.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve()), path
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_hub_state(name, seed), str(path))
    return path
