"""Issue 26's precision and memory: ``--precision auto|fp32|bf16`` resolved on a device, the CPU's
bfloat16 confirmed by a timing cached once per machine, the fallback to float32 (and ``doctor``'s reason),
the run's precision in its checkpoint and bundle, inference in the bundle's precision; feature extraction
keeping no decoded photos, and the automatic decoded-image cache sized from free memory."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from helpers_images import make_image_folder

from engine.core import machine
from engine.core.allocator import release_memory
from engine.core.config import IMAGE_CACHE_AUTO, TrainConfig
from engine.core.errors import BundleError, TransferStudioError
from engine.core.precision import for_bundle, resolve_precision
from engine.models.bundle import check_bundle, load_bundle
from engine.training import data_path
from engine.training.recipe import run_precision

CPU = torch.device("cpu")


@pytest.fixture
def new_machine(tmp_path, monkeypatch):
    """An empty data folder (no measurement yet) and no choice remembered in this process."""
    monkeypatch.setenv("TRANSFER_STUDIO_DATA", str(tmp_path / "data-folder"))
    machine.forget_choices()
    yield
    machine.forget_choices()


def _timing(monkeypatch, fp32_ms: float, bf16_ms: float) -> list[int]:
    calls: list[int] = []

    def timed() -> dict[str, float]:
        calls.append(1)
        return {"fp32_ms": fp32_ms, "bf16_ms": bf16_ms}

    monkeypatch.setattr(machine, "time_bf16_against_fp32", timed)
    return calls


def test_without_native_bf16_auto_is_float32_and_doctor_says_why(new_machine, monkeypatch, tmp_path):
    from engine.doctor import environment_report, format_environment
    from engine.training.trainer import train

    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: False)
    calls = _timing(monkeypatch, 20.0, 8.0)
    chosen = resolve_precision("auto", CPU)
    assert chosen.dtype is None and chosen.name == "float32"
    assert "no native bfloat16" in chosen.reason
    assert calls == []  # nothing to time: the hardware said no

    report = environment_report()
    assert report["precision"]["auto"] == "float32" and report["precision"]["cpu_native_bf16"] is False
    line = next(line for line in format_environment(report).splitlines() if line.startswith("Precision"))
    assert "float32" in line and "no native bfloat16" in line

    data = make_image_folder(tmp_path / "data")
    config = TrainConfig.for_strategy("feature-extract", epochs=1, device="cpu", input_size=64)
    assert config.precision == "auto"
    result = train(config, data, run_dir=tmp_path / "run")
    assert load_bundle(result.bundle_path).precision == "float32"


def test_native_bf16_is_confirmed_by_a_timing_measured_once_per_machine(new_machine, monkeypatch):
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: True)
    calls = _timing(monkeypatch, 20.0, 8.0)
    chosen = resolve_precision("auto", CPU)
    assert chosen.dtype == torch.bfloat16 and "2.5x" in chosen.reason
    machine.forget_choices()  # as a new process would: it reads the cached measurement
    assert resolve_precision("auto", CPU).dtype == torch.bfloat16
    assert calls == [1]
    saved = json.loads(machine.machine_file().read_text())
    assert saved[machine.machine_key()]["bf16"] == {"fp32_ms": 20.0, "bf16_ms": 8.0}


def test_native_bf16_that_measures_no_faster_stays_float32(new_machine, monkeypatch):
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: True)
    _timing(monkeypatch, 10.0, 9.5)
    chosen = resolve_precision("auto", CPU)
    assert chosen.dtype is None and "only 1.05x" in chosen.reason


def test_the_real_timing_measures_both_precisions():
    timing = machine.time_bf16_against_fp32()
    assert set(timing) == {"fp32_ms", "bf16_ms"} and all(v > 0 for v in timing.values())


def test_fp32_and_bf16_are_what_they_say_on_a_cpu(new_machine, monkeypatch):
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("fp32", CPU).dtype is None
    assert resolve_precision("bf16", CPU).dtype == torch.bfloat16  # emulated without native support
    with pytest.raises(TransferStudioError, match="unknown precision"):
        resolve_precision("int8", CPU)
    with pytest.raises(Exception, match="precision"):
        TrainConfig.for_strategy("feature-extract", precision="fp8")


def test_a_bundle_is_run_in_its_own_precision_where_the_device_can():
    assert for_bundle("bfloat16", CPU).dtype == torch.bfloat16
    assert for_bundle("float32", CPU).dtype is None
    assert for_bundle("float16", CPU).dtype is None  # a GPU's float16 run: float32 on a CPU


def test_a_resumed_run_keeps_the_precision_it_began_with():
    bf16 = TrainConfig.for_strategy("feature-extract", precision="bf16")
    assert run_precision(bf16, CPU, None).dtype == torch.bfloat16
    assert run_precision(bf16, CPU, {"precision": "float32"}).dtype is None
    auto = TrainConfig.for_strategy("feature-extract")
    assert run_precision(auto, CPU, {"precision": "bfloat16"}).dtype == torch.bfloat16
    began_before = run_precision(auto, CPU, {"epoch": 1})  # a checkpoint from before precisions
    assert began_before.dtype is None and "before precisions were recorded" in began_before.reason


def test_a_bf16_run_records_its_precision_and_inference_uses_it(tmp_path, capsys):
    from engine.cli import main
    from engine.inference.predict import Predictor

    data = make_image_folder(tmp_path / "data", {"cats": 8, "dogs": 8})
    out = tmp_path / "run"
    args = [
        "train",
        str(data),
        "--epochs",
        "2",
        "--input-size",
        "64",
        "--precision",
        "bf16",
        "--device",
        "cpu",
    ]
    assert main([*args, "--out", str(out), "--json"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    bundle = load_bundle(done["bundle"])
    assert bundle.precision == "bfloat16"
    assert torch.load(out / "checkpoint.pt", weights_only=False)["precision"] == "bfloat16"
    assert Predictor(bundle, "cpu").precision.dtype == torch.bfloat16
    assert main(["evaluate", done["bundle"], str(data), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["accuracy"] == pytest.approx(bundle.metrics["best_val_acc"], abs=1e-9)


def test_a_bundle_with_an_unknown_precision_is_refused(tmp_path):
    from engine.models.bundle import Bundle

    data = make_image_folder(tmp_path / "data")
    from engine.training.trainer import train

    config = TrainConfig.for_strategy("feature-extract", epochs=1, device="cpu", input_size=64)
    bundle: Bundle = load_bundle(train(config, data, run_dir=tmp_path / "run").bundle_path)
    bundle.precision = "float8"
    with pytest.raises(BundleError, match="precision"):
        check_bundle(bundle, "model.pt")


# -- memory -------------------------------------------------------------------------------------------


def _cache_budgets(monkeypatch) -> list[int]:
    budgets: list[int] = []
    real = data_path.DecodedImageCache

    def recording(samples, pre, budget_bytes, threads):
        budgets.append(budget_bytes)
        return real(samples, pre, budget_bytes, threads)

    monkeypatch.setattr(data_path, "DecodedImageCache", recording)
    return budgets


def test_feature_extraction_keeps_no_decoded_photos(tmp_path, monkeypatch):
    from engine.training.trainer import train

    budgets = _cache_budgets(monkeypatch)
    data = make_image_folder(tmp_path / "data")
    config = TrainConfig.for_strategy("feature-extract", epochs=1, device="cpu", input_size=64)
    assert config.image_cache_mb == IMAGE_CACHE_AUTO
    train(config, data, run_dir=tmp_path / "run")
    assert budgets and set(budgets) == {0}


def test_the_automatic_image_cache_is_a_share_of_the_free_memory(tmp_path, monkeypatch):
    from engine.core import memory
    from engine.training.trainer import train

    budgets = _cache_budgets(monkeypatch)
    monkeypatch.setattr(memory, "available_bytes", lambda: 400 * 2**20)  # 400 MB free: 100 MB for photos
    data = make_image_folder(tmp_path / "data", {"cats": 6, "dogs": 6})
    config = TrainConfig.for_strategy("scratch", epochs=1, device="cpu", input_size=64, model="resnet18")
    train(config, data, run_dir=tmp_path / "run")
    side = 73  # resnet18's resize size for a 64 px crop (64 / 0.875, rounded)
    needed = 3 * side * side * 24
    assert budgets and all(b <= needed // 2 + 1 for b in budgets) and sum(budgets) >= needed - 2
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * 2**20)  # 4 MB free: 1 MB of photos
    assert memory.image_cache_bytes(10**9) == 2**20
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # not known: none kept
    assert memory.image_cache_bytes(10**9) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_memory_is_given_back_after_a_pass():
    assert release_memory() is True


def test_the_batch_and_threads_sweep_runs_once_and_doctor_shows_it(new_machine, monkeypatch):
    from engine.doctor import environment_report, format_environment
    from engine.training.recipe import inference_batch_size

    machine.forget_choices()
    per_photo = {8: 10.0, 16: 6.0, 32: 5.9}  # 16 is within 5% of 32: the smaller batch is kept
    calls: list[int] = []

    def best_ms(_model, batch, _dtype, repeats=3):
        calls.append(1)
        return per_photo.get(batch.shape[0], 5.9) * batch.shape[0] * (1 if torch.get_num_threads() > 1 else 2)

    monkeypatch.setattr(machine, "_best_ms", best_ms)
    try:
        assert inference_batch_size(32, CPU) == 16
        measured_calls = len(calls)
        machine.forget_choices()  # a new process reads the cached sweep
        assert inference_batch_size(32, CPU) == 16 and len(calls) == measured_calls
        line = next(
            line
            for line in format_environment(environment_report()).splitlines()
            if line.startswith("CPU batch")
        )
        assert "batch 16" in line and "measured once" in line
    finally:
        machine.forget_choices()


def test_auto_trains_a_whole_network_in_float32_on_a_cpu(new_machine, monkeypatch):
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: True)
    _timing(monkeypatch, 20.0, 8.0)
    fine_tune = TrainConfig.for_strategy("fine-tune")
    assert run_precision(fine_tune, CPU, None).dtype is None
    assert "slower" in run_precision(fine_tune, CPU, None).reason
    assert run_precision(TrainConfig.for_strategy("feature-extract"), CPU, None).dtype == torch.bfloat16
    assert run_precision(fine_tune.replace(precision="bf16"), CPU, None).dtype == torch.bfloat16  # asked for


def test_a_cpu_train_command_uses_the_measured_thread_count(new_machine, monkeypatch):
    import argparse

    from engine.cli.train import _threads_as_measured

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "cpu_inference_choice", lambda: {"batch": 16, "threads": 1})
    before = torch.get_num_threads()
    try:
        _threads_as_measured(argparse.Namespace(device="cpu"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        monkeypatch.setenv("OMP_NUM_THREADS", str(before))  # the user's choice wins
        _threads_as_measured(argparse.Namespace(device="cpu"))
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
