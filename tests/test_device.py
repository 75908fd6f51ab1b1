"""Device choice: auto through torch.accelerator, explicit devices with one-line reasons, doctor."""

from __future__ import annotations

import types

import pytest
import torch

from engine.cli import main
from engine.core import device as device_mod
from engine.core.config import ConfigError
from engine.core.device import resolve_device, unavailable_reason, usable_devices


def _fake_accelerator(kind: str | None, available: bool = True) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        is_available=lambda: available,
        current_accelerator=lambda: torch.device(kind) if kind else None,
    )


@pytest.mark.parametrize("kind", ["mps", "xpu", "cuda"])
def test_auto_takes_the_accelerator_torch_reports(monkeypatch, kind):
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator(kind), raising=False)
    assert resolve_device("auto") == torch.device(kind)


def test_auto_ignores_an_accelerator_the_engine_does_not_train_on(monkeypatch):
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator("mtia"), raising=False)
    monkeypatch.setattr(device_mod, "cuda_unavailable_reason", lambda: "no NVIDIA GPU or driver was found")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_without_the_accelerator_api_falls_back_to_cuda_then_cpu(monkeypatch):
    monkeypatch.delattr(torch, "accelerator", raising=False)
    monkeypatch.setattr(device_mod, "cuda_unavailable_reason", lambda: None)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(device_mod, "cuda_unavailable_reason", lambda: "no NVIDIA GPU or driver was found")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_with_no_usable_accelerator_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator("cuda", available=False), raising=False)
    monkeypatch.setattr(device_mod, "cuda_unavailable_reason", lambda: "no NVIDIA GPU or driver was found")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_asking_for_mps_without_one_says_why():
    with pytest.raises(ConfigError, match=r"^--device mps was asked for, but .*MPS"):
        resolve_device("mps")
    assert unavailable_reason("mps")


def test_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_usable_devices_names_each_kind_with_a_reason():
    devices = usable_devices()
    assert list(devices) == ["cpu", "cuda", "mps", "xpu"] and devices["cpu"] is None
    for kind, reason in devices.items():
        usable = kind == "cpu" or resolve_device_ok(kind)
        assert (reason is None) == usable, kind


def resolve_device_ok(kind: str) -> bool:
    try:
        resolve_device(kind)
    except ConfigError:
        return False
    return True


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_cli_train_on_mps_without_one_is_one_line(tmp_path, capsys):
    from helpers_images import make_image_folder

    data = make_image_folder(tmp_path / "data", {"a": 3, "b": 3})
    code = main(["train", str(data), "--device", "mps", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("transfer-studio: error: --device mps was asked for, but ")


def test_doctor_reports_every_device(capsys):
    import json

    assert main(["doctor", "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert set(report["devices"]) == {"cpu", "cuda", "mps", "xpu"}
    assert report["devices"]["cpu"] == {"usable": True, "reason": None}
