"""The engine's layers hold at run time, not only in the import contracts: predicting from a bundle
through the CLI loads no module of the training layer. Starts a Python process: marked ``slow``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers_images import make_image_folder

from engine.models.build import build_model
from engine.models.bundle import Bundle, save_bundle
from engine.models.registry import get_model_info

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cli_predict_loads_no_training_module(tmp_path):
    torch.manual_seed(0)
    model, _heads = build_model("efficientnet_lite0", 2, pretrained=False)
    bundle_path = save_bundle(
        tmp_path / "model.pt",
        Bundle(
            architecture="efficientnet_lite0",
            class_names=["green", "red"],
            state_dict=model.state_dict(),
            preprocessing=get_model_info("efficientnet_lite0").preprocessing,
        ),
    )
    images = make_image_folder(tmp_path / "data", {"red": 2, "green": 1}, splits=None) / "red"
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from engine.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["predict", {str(bundle_path)!r}, {str(images)!r}, "--json", "--device", "cpu"])
        loaded = sorted(m for m in sys.modules if m == "engine.training" or m.startswith("engine.training."))
        print(json.dumps({{"code": code, "rows": len(json.loads(out.getvalue())["predictions"]), "training": loaded}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["rows"] == 2
    assert result["training"] == []
