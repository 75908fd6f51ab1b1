"""What the command line's quick start (issue 26) keeps off its path, checked by structure, not by time.

Parsing a command line loads no torch at all; ``predict`` (and every ``get_model_info`` of the built-in or
a timm model) never imports torchvision, whose import pulls in torch._dynamo (about 1 s on a 2-core
CPU); the training entry point never imports timm, scipy, scikit-learn or matplotlib; and a training
run's two questions "is this head the model's last layer?" cost one forward pass, not two. Timings
belong to ``benchmarks/quick_start.py``.

The eval transform that made torchvision unnecessary for ``predict`` gives exactly torchvision's tensor.
The tests that start a Python process are marked ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_images import make_image
from PIL import Image
from torch import nn
from torchvision import transforms as T

from engine.models.build import build_model, head_is_last
from engine.models.bundle import Bundle, save_bundle
from engine.models.preprocessing import Preprocessing, eval_transform, interpolation_mode
from engine.models.registry import get_model_info

ROOT = Path(__file__).resolve().parents[1]

#: Never loaded by the command line before a command runs, nor by the training entry point.
NEVER_FOR_TRAINING = ("timm", "scipy", "sklearn", "matplotlib", "onnx", "onnxruntime", "openTSNE")
#: Never loaded by ``predict`` (torchvision imports torch._dynamo).
NEVER_FOR_PREDICT = ("torchvision", "torch._dynamo", *NEVER_FOR_TRAINING)


def _loaded_after(code: str) -> list[str]:
    """The modules a fresh Python process has loaded after running ``code``."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def _among(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == name or m.startswith(name + ".") for name in names)]


# -- structure: what each path imports (one Python process each) ---------------------------------------


@pytest.mark.slow
def test_the_command_line_parses_a_train_command_without_torch():
    loaded = _loaded_after(
        """
        import engine.cli, engine.cli.train
        args = engine.cli.build_parser().parse_args(["train", "DATA", "--epochs", "1", "--device", "cpu"])
        assert engine.cli.HANDLERS[args.command] is engine.cli.train.run
        """
    )
    assert not _among(loaded, ("torch", "torchvision", *NEVER_FOR_TRAINING))


@pytest.mark.slow
def test_the_training_entry_point_leaves_the_heavy_optional_modules_out():
    loaded = _loaded_after("import engine.cli.train, engine.training.trainer")
    assert not _among(loaded, NEVER_FOR_TRAINING)


@pytest.mark.slow
def test_the_built_in_and_timm_models_are_described_without_torchvision():
    loaded = _loaded_after(
        """
        from engine.models.registry import get_model_info
        from engine.models.timm_models import CURATED
        get_model_info("efficientnet_lite0")
        for entry in CURATED:
            get_model_info(entry.name)
        """
    )
    assert not _among(loaded, NEVER_FOR_PREDICT)


@pytest.mark.slow
def test_predict_of_one_photo_never_imports_torchvision(tmp_path):
    model, _ = build_model("efficientnet_lite0", 2, pretrained=False)
    pre = get_model_info("efficientnet_lite0").preprocessing.with_input_size(64)
    bundle = save_bundle(
        tmp_path / "model.pt",
        Bundle(architecture="efficientnet_lite0", class_names=["a", "b"], state_dict=model.state_dict(),
               preprocessing=pre),
    )  # fmt: skip
    photo = tmp_path / "photo.jpg"
    make_image((200, 40, 40), (80, 60)).save(photo)
    loaded = _loaded_after(
        f"""
        from engine.cli import main
        assert main(["predict", {str(bundle)!r}, {str(photo)!r}, "--device", "cpu", "--json"]) == 0
        """
    )
    assert "torch" in loaded  # it did classify the photo
    assert not _among(loaded, NEVER_FOR_PREDICT)


# -- the eval transform without torchvision -------------------------------------------------------------


def _torchvision_eval(pre: Preprocessing):
    """What eval_transform was before: torchvision's transforms."""
    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=interpolation_mode(pre), antialias=True),
            T.CenterCrop(pre.resize_size),
            T.CenterCrop(pre.crop_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_the_eval_transform_gives_exactly_torchvisions_tensor(interpolation):
    rng = np.random.default_rng(26)
    for _ in range(40):
        width, height = (int(n) for n in rng.integers(1, 520, size=2))
        photo = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        crop = int(rng.integers(8, 300))
        pre = Preprocessing(crop + int(rng.integers(0, 60)), crop, (0.485, 0.456, 0.406),
                            (0.229, 0.224, 0.225), interpolation)  # fmt: skip
        ours, theirs = eval_transform(pre)(photo), _torchvision_eval(pre)(photo)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(ours, theirs), (width, height, pre)


def test_the_eval_transform_of_a_photo_already_at_size_and_of_other_inputs():
    pre = get_model_info("efficientnet_lite0").preprocessing
    exact = make_image((40, 180, 60), (pre.resize_size, pre.resize_size + 31))  # no resize at all
    assert torch.equal(eval_transform(pre)(exact), _torchvision_eval(pre)(exact))
    grey = exact.convert("L")  # another colour mode goes through torchvision's own transforms (and fails)
    with pytest.raises(RuntimeError, match="broadcast shape"):
        _torchvision_eval(pre)(grey)
    with pytest.raises(RuntimeError, match="broadcast shape"):
        eval_transform(pre)(grey)
    larger_crop = Preprocessing(100, 120, pre.mean, pre.std)  # a crop beyond the resize pads
    assert torch.equal(eval_transform(larger_crop)(exact), _torchvision_eval(larger_crop)(exact))


# -- one probe pass per model ---------------------------------------------------------------------------


def _counted(model: nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    return calls


def test_head_is_last_runs_the_model_once_while_its_modules_stay_the_same():
    model, heads = build_model("efficientnet_lite0", 2, pretrained=False)
    calls = _counted(model)
    assert head_is_last(model, heads[0], 64) and head_is_last(model, heads[0], 64)
    assert len(calls) == 1
    assert head_is_last(model, heads[0], 96)  # another input size asks the model again
    assert len(calls) == 2
    old_head = model.get_submodule(heads[0])
    setattr(model, heads[0], nn.Linear(old_head.in_features, 2))  # another module: asked again
    assert head_is_last(model, heads[0], 64)
    assert len(calls) == 3
    squeeze, squeeze_heads = build_model("squeezenet1_1", 2, pretrained=False)
    assert not head_is_last(squeeze, squeeze_heads[0], 64)  # pooling follows its head
    assert not head_is_last(squeeze, squeeze_heads[0], 64)


def test_head_is_last_forgets_a_model_that_is_gone():
    import gc

    from engine.models import build

    model, heads = build_model("efficientnet_lite0", 2, pretrained=False)
    head_is_last(model, heads[0], 64)
    assert model in build._LAST_HEAD_ANSWERS
    before = len(build._LAST_HEAD_ANSWERS)
    del model
    gc.collect()
    assert len(build._LAST_HEAD_ANSWERS) == before - 1


# -- the exit ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rank", [False, True])
def test_a_command_leaves_without_the_final_collection_except_in_a_torchrun_rank(rank, monkeypatch):
    if rank:
        monkeypatch.setenv("WORLD_SIZE", "1")
    proc = subprocess.run(
        [sys.executable, "-c", "import gc, engine.cli\nengine.cli.skip_final_collection()\nprint(gc.get_freeze_count())"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (int(proc.stdout) == 0) == rank
