"""Reliability of the engine and CLI: hostile data, bad model files, faults during training, kill + resume."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_hostile import make_hostile_dataset
from helpers_images import SMALL_INPUT, make_image, make_image_folder

from engine.cli import main
from engine.core.config import TrainConfig
from engine.core.errors import BundleError, TransferStudioError, UnreadableImageError
from engine.core.rundir import RunDir
from engine.data.datasets import scan_dataset
from engine.data.images import open_image
from engine.inference.predict import Predictor
from engine.models.build import build_model
from engine.models.bundle import Bundle, load_bundle, save_bundle
from engine.models.registry import get_model_info
from engine.training import events as ev
from engine.training.trainer import resume, train

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "model": "mobilenet_v3_small",
    "batch_size": 8,
    "device": "cpu",
    "workers": 1,
    "input_size": SMALL_INPUT,
}


def _scratch(**changes) -> TrainConfig:
    return TrainConfig.for_strategy("scratch", **(SMALL | {"epochs": 2} | changes))


@pytest.fixture
def hostile(tmp_path):
    cases, skipped = make_hostile_dataset(tmp_path / "hostile")
    return tmp_path / "hostile", cases, skipped


# -- bad data -------------------------------------------------------------------------------------
def test_scan_reports_every_bad_file_with_a_reason_and_keeps_the_awkward_good_ones(hostile):
    root, cases, expected_skipped = hostile
    report = scan_dataset(root)
    skipped = {s.path: s.reason for s in report.skipped}
    assert set(skipped) == expected_skipped
    assert all(reason for reason in skipped.values())
    assert "decompression" in skipped[cases["bomb"]] or "too large" in skipped[cases["bomb"]]
    assert "empty" in skipped[cases["zero-byte"]]
    assert "not an image" in skipped[cases["text-as-jpeg"]]
    used = {s.path for split in report.splits.values() for s in split}
    for case in ("16-bit", "cmyk", "palette", "rgba", "exif-rotated", "space-and-unicode", "gif", "nested"):
        assert cases[case] in used, case
    assert cases["file-link"] in used
    assert not any(p.name.startswith(".") or p.name == "Thumbs.db" for p in used)
    assert any("empty_class" in w for w in report.warnings)
    assert report.classes == ["ants", "bees"]


def test_awkward_images_all_decode_to_rgb(hostile):
    _, cases, _ = hostile
    for case in ("16-bit", "cmyk", "palette", "rgba", "exif-rotated", "gif", "space-and-unicode"):
        img = open_image(cases[case])
        assert img.mode == "RGB", case
    assert open_image(cases["exif-rotated"]).size == (32, 64)  # stored 64x32, EXIF says rotate


def test_training_runs_on_the_good_images_of_a_hostile_folder(hostile, tmp_path):
    root, _, expected = hostile
    events: list = []
    result = train(_scratch(epochs=1), root, run_dir=tmp_path / "run", on_event=events.append)
    assert result.epochs_completed == 1 and result.bundle_path.is_file()
    # Training used exactly the files `scan` keeps, and reported each skipped one once.
    report = scan_dataset(root)
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert (started.num_train, started.num_val) == (len(report.splits["train"]), len(report.splits["val"]))
    text = "\n".join(e.text for e in events if isinstance(e, ev.Message))
    for path in expected:
        assert text.count(f"{path.relative_to(report.root)}: ") == 1, path
    assert "could not be decoded" not in text  # nothing bad reached the training loop
    scans = [e for e in events if isinstance(e, ev.ScanProgress)]
    assert scans and scans[-1].done == scans[-1].total


def test_cli_trains_a_hostile_folder_reporting_each_bad_file_once(hostile, tmp_path, capsys):
    """The acceptance case: a link loop, a zero-byte file, a truncated JPEG, a text file named .png and
    a real 40000x40000 PNG (and more) next to good photos; `train` finishes on the good ones."""
    root, cases, expected = hostile
    for case in ("file-link-loop", "zero-byte", "truncated-jpeg", "text-as-png", "huge-png"):
        assert cases[case] in expected
    args = ["train", str(root), "--model", "mobilenet_v3_small", "--strategy", "scratch", "--epochs", "1"]
    code = main([*args, "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "run"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["epochs"] == 1
    assert "\r" not in captured.err  # no progress bar when the output is not a terminal
    for path in expected:
        assert captured.err.count(f"{path.relative_to(root.resolve())}: ") == 1, path
    assert RunDir(tmp_path / "run").bundle_path.is_file()


def test_cli_scan_of_hostile_folder_lists_problems(hostile, capsys):
    root, _, expected = hostile
    assert main(["scan", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["skipped"]) == len(expected)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the damage it survives
def test_fuzzed_image_files_only_raise_unreadable_image_error(tmp_path):
    rng = random.Random(1234)
    seeds = []
    for fmt, ext in (
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tif"),
    ):
        path = tmp_path / f"seed.{ext}"
        make_image((200, 30, 30), (32, 24), seed=1).save(path, format=fmt)
        seeds.append(path.read_bytes())
    outcomes = {"ok": 0, "unreadable": 0}
    for n in range(300):
        data = bytearray(rng.choice(seeds))
        mode = n % 4
        if mode == 0:  # flip random bytes
            for _ in range(rng.randint(1, 40)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif mode == 1:  # truncate
            data = data[: rng.randrange(1, len(data))]
        elif mode == 2:  # splice random garbage into the middle
            at = rng.randrange(len(data))
            data[at:at] = os.urandom(rng.randint(1, 200))
        else:  # pure noise with a plausible extension
            data = bytearray(os.urandom(rng.randint(0, 2000)))
        path = tmp_path / f"fuzz_{n}.{rng.choice(['jpg', 'png', 'gif', 'webp', 'bmp', 'tif'])}"
        path.write_bytes(bytes(data))
        try:
            img = open_image(path)
            assert img.mode == "RGB"
            outcomes["ok"] += 1
        except UnreadableImageError:
            outcomes["unreadable"] += 1
    assert outcomes["ok"] + outcomes["unreadable"] == 300
    assert outcomes["unreadable"] > 50  # the fuzzing really produced broken files


# -- bad model files --------------------------------------------------------------------------------
def _bundle(tmp_path, arch="mobilenet_v3_small", classes=("a", "b")) -> Path:
    model, _ = build_model(arch, len(classes), pretrained=False)
    bundle = Bundle(arch, list(classes), model.state_dict(), get_model_info(arch).preprocessing)
    return save_bundle(tmp_path / f"{arch}-{len(classes)}.pt", bundle)


def test_bundle_claiming_another_architecture_is_a_clear_error(tmp_path):
    path = _bundle(tmp_path)
    raw = torch.load(path, weights_only=True)
    raw["architecture"] = "resnet18"
    torch.save(raw, tmp_path / "lying.pt")
    with pytest.raises(BundleError, match="do not fit a resnet18"):
        Predictor.from_bundle(tmp_path / "lying.pt", device="cpu")
    raw["architecture"], raw["class_names"] = "mobilenet_v3_small", ["a", "b", "c"]
    torch.save(raw, tmp_path / "wrong_classes.pt")
    with pytest.raises(BundleError, match="3 classes"):
        Predictor.from_bundle(tmp_path / "wrong_classes.pt", device="cpu")


def test_truncated_bundle_and_onnx_file_are_clear_errors(tmp_path):
    path = _bundle(tmp_path)
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="not a Transfer Studio model bundle"):
        load_bundle(tmp_path / "truncated.pt")
    # The first bytes of a real ONNX protobuf (ir_version, producer_name "pytorch").
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x052.6.0" + os.urandom(200))
    with pytest.raises(BundleError):
        load_bundle(tmp_path / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["truncated.pt", "model.onnx", "lying.pt"])
def test_cli_predict_with_bad_bundle_is_one_line(tmp_path, name):
    path = _bundle(tmp_path)
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 3])
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08\x12\x07pytorch" + os.urandom(100))
    raw = torch.load(path, weights_only=True)
    raw["architecture"] = "resnet18"
    torch.save(raw, tmp_path / "lying.pt")
    image = tmp_path / "x.jpg"
    make_image((1, 2, 3)).save(image)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "predict", str(tmp_path / name), str(image)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- faults during training ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        # What torch.save itself raises when the disk fills up mid-write.
        RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: PytorchStreamWriter failed writing file"
        ),
    ],
    ids=["oserror", "pytorch-stream-writer"],
)
def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, error):
    data = make_image_folder(tmp_path / "d", {"a": 6, "b": 6})

    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        if str(f).find("checkpoint") >= 0:
            calls["n"] += 1
            if calls["n"] == 2:
                Path(f).write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)  # what engine.core.files saves with
    events: list = []
    result = train(_scratch(epochs=2), data, run_dir=tmp_path / "run", on_event=events.append)
    assert result.epochs_completed == 2 and result.bundle_path.is_file()
    assert any(isinstance(e, ev.Message) and "previous one is kept" in e.text for e in events)
    checkpoint = RunDir(tmp_path / "run").load_checkpoint()
    assert checkpoint["epoch"] == 1  # epoch 2's write failed; epoch 1's survived intact
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_file_deleted_mid_run_is_skipped_and_counted(tmp_path):
    data = make_image_folder(tmp_path / "d", {"a": 6, "b": 6})
    victim = sorted((data / "train" / "a").iterdir())[0]
    events: list = []

    def on_event(event):
        events.append(event)
        if isinstance(event, ev.EpochEnd) and event.epoch == 1:
            victim.unlink()

    config = _scratch(epochs=2, image_cache_mb=0)  # no in-memory copy: epoch 2 must read the disk again
    result = train(config, data, run_dir=tmp_path / "run", on_event=on_event)
    assert result.epochs_completed == 2
    assert any(isinstance(e, ev.Message) and "could not be decoded" in e.text for e in events)


def test_resume_with_damaged_config_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    with pytest.raises(TransferStudioError, match="damaged"):
        resume(run)
    with pytest.raises(TransferStudioError, match="not a run directory"):
        resume(tmp_path / "nothing-here")


def test_damaged_feature_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path / "cache"))
    data = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    config = TrainConfig.for_strategy("feature-extract", epochs=1, batch_size=4, device="cpu")
    first = train(config, data, run_dir=tmp_path / "r1")
    for cached in (tmp_path / "cache" / "features").glob("*.pt"):
        cached.write_bytes(b"garbage")
    second = train(config, data, run_dir=tmp_path / "r2")
    assert second.history[0]["val_acc"] == first.history[0]["val_acc"]


def _cli_train(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, capsys, monkeypatch):
    data = make_image_folder(tmp_path / "d", {"a": 16, "b": 16}, size=(64, 64))
    env = {"TRANSFER_STUDIO_CACHE": str(tmp_path / "cache")}
    common = ["--model", "mobilenet_v3_small", "--strategy", "scratch", "--epochs", "4", "--batch-size", "8",
              "--input-size", "64", "--device", "cpu", "--seed", "5", "--json"]  # fmt: skip

    # The uninterrupted run, through the command line in this process; the killed one is a process.
    monkeypatch.setenv("TRANSFER_STUDIO_CACHE", env["TRANSFER_STUDIO_CACHE"])
    assert main(["train", str(data), "--out", str(tmp_path / "full"), *common]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    victim = _cli_train(str(data), "--out", str(tmp_path / "killed"), *common, env=env)
    for line in victim.stdout:
        if line.startswith("epoch 2/4"):
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    time.sleep(0.1)
    done = RunDir(tmp_path / "killed").load_checkpoint()["epoch"]
    assert done in (1, 2)  # epoch 2's checkpoint may or may not have reached the disk

    resumed = subprocess.run(
        [sys.executable, "-m", "engine.cli", "train", "--resume", str(tmp_path / "killed"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert got["epochs"] == 4
    assert got["best_val_acc"] == expected["best_val_acc"]
    assert got["best_epoch"] == expected["best_epoch"]
    full_rows = RunDir(tmp_path / "full").read_metrics()
    resumed_rows = RunDir(tmp_path / "killed").read_metrics()

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(resumed_rows) == strip(full_rows)
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # a write cut off by the kill was cleaned up


def test_unreadable_file_is_skipped_with_permission_reason(tmp_path, monkeypatch):
    """Tests run as root, where chmod cannot deny a read, so the denial is simulated at open()."""
    data = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    secret = data / "train" / "a" / "secret.jpg"
    make_image((9, 9, 9)).save(secret)
    import PIL.Image

    real_open = PIL.Image.open

    def guarded_open(fp, *args, **kwargs):
        if str(fp).endswith("secret.jpg"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", guarded_open)
    report = scan_dataset(data)
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert "permission denied" in reasons["secret.jpg"]
    with pytest.raises(UnreadableImageError, match="permission denied"):
        open_image(secret)
