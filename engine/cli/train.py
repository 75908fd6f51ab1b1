"""``transfer-studio train``: a new run or a resumed one, in this process or in several (torchrun).

Every training setting is an option generated from its declaration in :mod:`engine.core.config`.
One path, :func:`run_training`, starts or resumes a run for a single process and for each process of
a multi-process run alike.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILURE,
    StopFlag,
    add_setting_option,
    ensure_weights,
    print_json,
    say,
)
from engine.cli.train_progress import TrainingProgress
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.errors import StopCheck, TransferStudioError
from engine.core.small_files import read_json

#: torchrun's options that the launch passes on as they are.
TORCHRUN_OPTIONS = ("--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id", "--rdzv-backend",
                    "--master-addr", "--master-port")  # fmt: skip


def add_parser(sub: Any) -> None:
    train = sub.add_parser("train", help=COMMANDS["train"])
    train.add_argument("data", type=Path, nargs="?", metavar="DATA", help="dataset folder")
    add_config_options(train)
    train.add_argument("--out", type=Path, metavar="RUN_DIR", help="where to write the run")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument(
        "--allow-changed-data",
        action="store_true",
        help="--resume even though the dataset's photos changed since the run started (the change is recorded)",
    )
    train.add_argument("--json", action="store_true", help="end with one JSON line of results")
    train.add_argument(
        "--config-json", type=Path, help=argparse.SUPPRESS
    )  # every setting (the window's launch)
    launch = train.add_argument_group(
        "more than one process (DistributedDataParallel through torchrun; README: More than one GPU)"
    )
    launch.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="train with N processes on this machine (e.g. one per GPU)",
    )
    for option in TORCHRUN_OPTIONS:
        launch.add_argument(option, metavar="VALUE", help=f"passed to torchrun ({option})")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, from its declaration: the basic ones, then the advanced ones.

    Every default is None (not given), so the strategy's defaults apply (``TrainConfig.for_strategy``);
    the strategy itself defaults to feature extraction.
    """
    basic = parser.add_argument_group("settings (defaults per strategy; README: Models and strategies)")
    advanced = parser.add_argument_group("advanced settings")
    for item in TrainConfig.settings():
        group = advanced if item.setting.group == "advanced" else basic
        default = "feature-extract" if item.name == "strategy" else None
        add_setting_option(group, item, default=default, check_range=False)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig a ``train`` command line asks for (``--config-json``: every setting as JSON)."""
    from engine.models.registry import get_model_info

    if args.config_json is not None:  # the window's multi-process launch
        return TrainConfig.from_dict(read_json(args.config_json, dict[str, Any]))
    values = {
        item.name: getattr(args, item.name) for item in TrainConfig.settings() if item.name != "strategy"
    }
    if values["model"] is not None:
        get_model_info(values["model"])  # fail fast on an unknown model name, before scanning
    return TrainConfig.for_strategy(args.strategy, **values)


def run(args: argparse.Namespace) -> int:
    from engine.core.launch import under_torchrun

    if under_torchrun():
        return _run_rank(args)
    if args.nproc_per_node is not None or _has_launch_options(args.argv):
        return _launch(args)
    stop = StopFlag()
    with TrainingProgress(sys.stderr, json_output=args.json) as progress:
        result = run_training(args, progress, stop, download=True)
    print_result(result, args.json)
    return EXIT_CANCELLED if result.cancelled else 0


def _threads_as_measured(args: argparse.Namespace) -> None:
    """A run on the CPU uses the thread count this machine's sweep measured fastest
    (:func:`engine.core.machine.use_measured_threads`); ``OMP_NUM_THREADS`` wins."""
    device = getattr(args, "device", None)
    if os.environ.get("OMP_NUM_THREADS") or device not in (None, "auto", "cpu"):
        return
    from engine.core.device import resolve_device

    if resolve_device(device or "auto").type == "cpu":
        from engine.core.machine import use_measured_threads

        use_measured_threads()


def run_training(
    args: argparse.Namespace, on_event: Any, should_stop: StopCheck, *, download: bool, dist: Any = None
) -> Any:
    """Resume ``--resume RUN_DIR``, or start a new run of DATA with the settings asked for.

    ``download``: fetch missing pretrained weights first, with a bar (one process of several never
    downloads: the launch did). ``dist``: this process's place in a multi-process run.
    """
    if args.resume is None and args.data is not None:
        # A folder that is no dataset is answered before torch loads (a few seconds). The trainer's scan
        # (which also checks each photo, so it can only find fewer) raises the very same errors; the
        # split's share and seed change none of them.
        from engine.data.datasets import scan_dataset

        scan_dataset(args.data, verify=False)
    if dist is None:  # one process: the threads this machine measured fastest (torchrun sets its own)
        _threads_as_measured(args)
    from engine.training.trainer import resume, train

    if args.resume is not None:
        return resume(args.resume, on_event=on_event, should_stop=should_stop, epochs=args.epochs, dist=dist,
                      allow_changed_data=args.allow_changed_data)  # fmt: skip
    if args.data is None:
        raise TransferStudioError("give a dataset folder (or --resume RUN_DIR)")
    config = config_from_args(args)
    if download and config.pretrained:  # now, with a progress bar, rather than silently inside train()
        ensure_weights(config.model)
    return train(config, args.data, run_dir=args.out, on_event=on_event, should_stop=should_stop, dist=dist)


def print_result(result: Any, as_json: bool) -> None:
    if as_json:
        payload = result.to_json()
        payload.pop("history", None)
        print_json(payload)
        return
    state = "stopped" if result.cancelled else "finished"
    if result.stopped_early:
        state = f"finished early after {result.epochs_completed} epoch(s) (early stopping)"
    processes = f", {result.world_size} processes" if getattr(result, "world_size", 1) > 1 else ""
    print(
        f"{state}: best val accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch} "
        f"({result.seconds:.1f}s on {result.device}{processes})"
    )
    if result.bundle_path:
        print(f"model saved to {result.bundle_path}")


def _has_launch_options(argv: Sequence[str]) -> bool:
    from engine.core.launch import LAUNCH_OPTIONS

    names = {arg.split("=", 1)[0].replace("_", "-") for arg in argv}
    return bool(names & set(LAUNCH_OPTIONS))


def _launch(args: argparse.Namespace) -> int:
    """``train ... --nproc-per-node N``: run torchrun with N copies of this command (without the launch
    options); each joins the process group. Ctrl+C stops every process at the same step."""
    from engine.core.launch import run_torchrun, split_launch_options

    rest, extra, nproc = split_launch_options(args.argv)
    if nproc is None:
        raise TransferStudioError(
            "torchrun's options (--nnodes, --rdzv-endpoint, ...) need --nproc-per-node N"
        )
    if nproc < 1:
        raise TransferStudioError(f"--nproc-per-node must be at least 1, got {nproc}")
    _check_processes(nproc, args.device or "auto", extra)
    if args.resume is None:
        if args.data is None:
            raise TransferStudioError("give a dataset folder (or --resume RUN_DIR)")
        if not args.data.is_dir():
            raise TransferStudioError(f"Dataset folder does not exist: {args.data}")
        config = config_from_args(args)  # bad settings fail here, once, not in N processes
        if config.pretrained:
            ensure_weights(config.model)  # one download, before N processes would each try
    say(f"starting {nproc} training process(es) per machine with torchrun")
    code = run_torchrun(rest, nproc, extra, say=say)
    if code not in (0, EXIT_CANCELLED):
        say(f"torchrun ended with exit code {code}: see the messages above (one process failed)")
        return EXIT_FAILURE
    return code


def _check_processes(nproc: int, device: str, torchrun_options: list[str]) -> None:
    """Refuse more processes per machine than it has GPUs (on CUDA) or CPU cores (on the CPU)."""
    if any(option.startswith(("--nnodes", "--rdzv", "--master")) for option in torchrun_options):
        return  # several machines: each counts its own
    import torch

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") and torch.cuda.is_available() else 0
    if gpus:
        if nproc > gpus:
            raise TransferStudioError(
                f"--nproc-per-node {nproc} asks for more processes than this machine's {gpus} GPU(s)"
            )
        return
    if device == "cuda":
        raise TransferStudioError("--device cuda was asked for, but this machine has no usable CUDA GPU")
    cores = os.cpu_count() or 1
    if nproc > cores:
        raise TransferStudioError(
            f"--nproc-per-node {nproc} asks for more processes than this machine's {cores} CPU core(s)"
        )


def _run_rank(args: argparse.Namespace) -> int:
    """One process of a torchrun launch: join the group; rank 0 alone writes and prints."""
    from engine.core.device import resolve_device
    from engine.training.distributed import StopRequest, process_group
    from engine.training.events_file import EventsWriter

    device = args.device if args.config_json is None else config_from_args(args).device
    with process_group(resolve_device(device or "auto").type) as dist:
        stop = StopRequest()
        stop.install_sigint()
        events = EventsWriter.from_environment() if dist.is_main else None
        with TrainingProgress(sys.stderr, json_output=args.json) as progress:

            def on_event(event: Any) -> None:
                progress(event)
                if events is not None:
                    events(event)

            result = run_training(args, on_event if dist.is_main else None, stop, download=False, dist=dist)
        if dist.is_main:
            print_result(result, args.json)
    return 0  # a stopped run ended cleanly: torchrun reads any other code as a failed process
