"""The headless command line: the sub-commands of :data:`engine.core.commands.COMMANDS`. Never imports Qt.

Every failure the user can cause ends in one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from engine import __version__
from engine.core.commands import COMMANDS
from engine.core.config import (
    BALANCE,
    DEVICES,
    EARLY_STOPPING_METRICS,
    HEADS,
    INPUT_SIZE_AUTO,
    OPTIMIZERS,
    SCHEDULES,
    STRATEGIES,
    TTA_MODES,
)
from engine.core.errors import Cancelled, TransferStudioError
from engine.core.progress import CountBar, DownloadBar, bars_wanted, new_bar

PROG = "transfer-studio"
EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_CANCELLED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _input_size(text: str) -> int:
    """``--input-size``: ``auto``, ``model`` (the model's own: 0) or a number of pixels."""
    named = {"auto": INPUT_SIZE_AUTO, "model": 0}
    if text.lower() in named:
        return named[text.lower()]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, model or a number of pixels, not {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train image classifiers by transfer learning. Run with no arguments to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    scan = sub.add_parser("scan", help=COMMANDS["scan"])
    scan.add_argument("data", type=Path, metavar="DATA")
    scan.add_argument("--val-fraction", type=float, default=0.2, help="val share when there is no val/ split")
    scan.add_argument("--seed", type=int, default=0)
    scan.add_argument("--json", action="store_true", help="print the report as JSON")

    audit = sub.add_parser("audit", help=COMMANDS["audit"])
    audit.add_argument("data", type=Path, metavar="DATA")
    audit.add_argument(
        "--model", default="efficientnet_lite0", help="backbone for the embeddings (see `models`)"
    )
    audit.add_argument("--device", choices=DEVICES, default="auto")
    audit.add_argument("--seed", type=int, default=0, help="the automatic split's seed (as `train`)")
    audit.add_argument(
        "--val-fraction", type=float, default=0.2, help="val share when there is no val/ split"
    )
    audit.add_argument("--json", action="store_true", help="end with one JSON line of findings")

    models = sub.add_parser("models", help=COMMANDS["models"])
    models.add_argument("--json", action="store_true")

    train = sub.add_parser("train", help=COMMANDS["train"])
    train.add_argument("data", type=Path, nargs="?", metavar="DATA", help="dataset folder")
    train.add_argument("--model", default="efficientnet_lite0", help="model name (see `models`)")
    train.add_argument("--strategy", choices=list(STRATEGIES), default="feature-extract")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--no-augment", action="store_true", help="turn off random crops and flips")
    train.add_argument("--device", choices=DEVICES, default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workers", type=int, help="data-loading processes (default: automatic)")
    train.add_argument("--val-fraction", type=float, help="val share when there is no val/ split")
    train.add_argument(
        "--head",
        choices=HEADS,
        help="replace the classifier (default), append a layer after the pretrained 1000-way output, or mlp",
    )
    train.add_argument(
        "--head-hidden", type=int, metavar="N", help="the mlp head's hidden units (default 256)"
    )
    train.add_argument("--head-dropout", type=float, metavar="P", help="the mlp head's dropout (default 0.2)")
    train.add_argument(
        "--early-stopping",
        type=int,
        metavar="N",
        help="stop after N epochs without a better validation metric (default: off); the best epoch is kept",
    )
    train.add_argument(
        "--early-stopping-metric", choices=EARLY_STOPPING_METRICS, help="loss (default) or accuracy"
    )
    train.add_argument(
        "--label-smoothing", type=float, metavar="E", help="label smoothing in [0, 1) (default 0)"
    )
    train.add_argument(
        "--balance",
        choices=list(BALANCE),
        help="class imbalance: auto (default: weights when largest/smallest class > 3), none, weights, sampler",
    )
    recipe = train.add_argument_group("recipe (defaults per strategy; README: Models and strategies)")
    recipe.add_argument(
        "--input-size",
        type=_input_size,
        metavar="auto|model|N",
        help="input size in pixels: auto (feature-extract default: larger when the photos allow), "
        "model (the model's own), or N",
    )
    recipe.add_argument(
        "--tta", choices=TTA_MODES, help="test-time augmentation: flip (feature-extract default) or none"
    )
    recipe.add_argument(
        "--feature-views",
        type=int,
        metavar="N",
        help="cached augmented views per training photo (default: auto)",
    )
    recipe.add_argument(
        "--head-first",
        action=argparse.BooleanOptionalAction,
        help="fine-tune: fit the new head on frozen features before every layer trains (default: on)",
    )
    recipe.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        help="fine-tune: keep BatchNorm statistics frozen (default: on)",
    )
    recipe.add_argument(
        "--lr-decay-per-stage",
        type=float,
        metavar="F",
        help="fine-tune: each earlier stage's learning rate is F times the next one's (default 0.7; 1: none)",
    )
    recipe.add_argument(
        "--warmup-epochs", type=int, metavar="N", help="epochs of linear learning-rate warm-up (fine-tune: 1)"
    )
    train.add_argument(
        "--sync-bn", action="store_true", help="synchronise BatchNorm across GPUs (small per-GPU batches)"
    )
    train.add_argument("--out", type=Path, metavar="RUN_DIR", help="where to write the run")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
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
    for option in ("--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id", "--rdzv-backend", "--master-addr",
                   "--master-port"):  # fmt: skip
        launch.add_argument(option, metavar="VALUE", help=f"passed to torchrun ({option})")

    predict = sub.add_parser("predict", help=COMMANDS["predict"])
    predict.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    predict.add_argument("target", type=Path, metavar="IMAGE_OR_DIR")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--csv", type=Path, metavar="OUT", help="write one row per image")
    predict.add_argument("--device", choices=DEVICES, default="auto")
    predict.add_argument("--json", action="store_true")
    predict.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="label an image 'unsure' when its top probability is below P",
    )
    compare = sub.add_parser("compare", help=COMMANDS["compare"])
    compare.add_argument("data", type=Path, metavar="DATA", help="dataset folder")
    compare.add_argument("--models", metavar="A,B,...", help="models to try (default: what runs here now)")
    compare.add_argument(
        "--strategies", metavar="X,Y,...", help=f"strategies to try (default: {','.join(STRATEGIES)})"
    )
    compare.add_argument("--epochs", type=int, help="epochs per candidate (default: each strategy's)")
    compare.add_argument(
        "--budget-minutes", type=float, metavar="M", help="skip what would not fit in M minutes"
    )
    compare.add_argument("--device", choices=DEVICES, default="auto")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument(
        "--out", type=Path, metavar="DIR", help="bake-off folder (one run folder per candidate)"
    )
    compare.add_argument("--json", action="store_true", help="end with one JSON line: the leaderboard")
    runs = sub.add_parser("runs", help=COMMANDS["runs"])
    runs.add_argument("--root", type=Path, metavar="DIR", help="runs folder (default: where new runs go)")
    runs.add_argument("--json", action="store_true", help="print one JSON list of runs")
    report = sub.add_parser("report", help=COMMANDS["report"])
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder or a bake-off folder")
    report.add_argument("--out", type=Path, metavar="FILE", help="HTML file (default: RUN_DIR/report.html)")
    report.add_argument("--device", choices=DEVICES, default="auto", help="where the model is evaluated")
    _add_weights_and_doctor_parsers(sub)
    _add_evaluate_and_export_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a multi-process launch
    if args.command is None:
        parser.print_help()
        return 0
    from engine.core.logs import set_up_logging

    set_up_logging(logging.WARNING, f"{PROG}: %(levelname)s: %(message)s")
    from engine.core.allocator import tune_allocator

    tune_allocator()  # before torch allocates anything large (see BENCHMARKS.md, "CPU allocator")
    handlers = {"scan": _scan, "models": _models, "train": _train, "predict": _predict, "weights": _weights}
    handlers.update(doctor=_doctor, evaluate=_evaluate, export=_export, runs=_runs, compare=_compare)
    handlers.update(report=_report, audit=_audit)
    assert handlers.keys() == COMMANDS.keys(), "engine.core.commands.COMMANDS and the handlers differ"
    try:
        return handlers[args.command](args)
    except TransferStudioError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Cancelled as exc:  # a stop request that reached a step with nothing to save
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, default=str))


def _scan(args: argparse.Namespace) -> int:
    from engine.data.datasets import format_report, scan_dataset

    with CountBar("checking photos", unit="file", enabled=bars_wanted(json_output=args.json)) as bar:
        report = scan_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed, on_progress=bar)
    if args.json:
        _print_json(report.summary())
    else:
        print(format_report(report))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from engine.core.device import resolve_device
    from engine.experiments.audit import run_audit
    from engine.models.registry import get_model_info

    info = get_model_info(args.model)  # fail fast on an unknown name
    if not info.offline:
        _ensure_weights(args.model)
    bars = bars_wanted(json_output=args.json)
    stage_bar: dict[str, CountBar] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in stage_bar:
            for bar in stage_bar.values():
                bar.close()
            stage_bar[stage] = CountBar(stage, enabled=bars)
        stage_bar[stage](done, total)

    device = resolve_device(args.device).type
    try:
        report = run_audit(
            args.data,
            model=args.model,
            device=device,
            seed=args.seed,
            val_fraction=args.val_fraction,
            on_progress=progress,
            should_stop=_StopFlag(),
        )
    finally:
        for bar in stage_bar.values():
            bar.close()
    if args.json:
        _print_json(report.to_json())
    else:
        print(format_audit(report))
    return 0


def format_audit(report: Any, limit: int = 20) -> str:
    """The audit's findings as text, each list cut at ``limit`` lines."""
    findings = report.to_json()
    lines = [
        f"Audit of {report.root} ({report.model}, {len(report.images)} photos, {report.seconds:.1f} s; "
        f"{report.features_computed} backbone view(s) computed, {report.features_reused} from the cache)"
    ]

    def section(title: str, rows: list[str]) -> None:
        lines.append(f"{title} ({len(rows)})" + (":" if rows else ": none"))
        lines.extend(f"  {row}" for row in rows[:limit])
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more (--json lists all)")

    section("Leaks: the same photo in more than one split", [" = ".join(g) for g in findings["cross_split"]])
    section("The same photo under two labels", [" = ".join(g) for g in findings["conflicting_labels"]])
    section("Duplicates", [" = ".join(g) for g in findings["duplicates"]])
    section(
        "Likely wrong labels, most likely first",
        [f"{i['path']}: labelled {i['given']}, looks like {i['suggested']} ({i['confidence']:.2f})"
         for i in findings["label_issues"]],
    )  # fmt: skip
    section(
        "Photo quality",
        [f"{q['path']}: {q['issue']}" + (f" ({q['value']:.3g})" if isinstance(q["value"], float) else f" ({q['value']})")
         for q in findings["quality"]],
    )  # fmt: skip
    counts = ", ".join(
        f"{name} " + "/".join(str(n) for n in per_split.values()) for name, per_split in report.counts.items()
    )
    ratio = f"{report.imbalance:.2f}" if report.imbalance is not None else "a class has no training photos"
    lines.append(f"Classes ({'/'.join(next(iter(report.counts.values()), {}))}): {counts}; imbalance {ratio}")
    return "\n".join(lines)


def _models(args: argparse.Namespace) -> int:
    from engine.models.registry import list_models
    from engine.models.weights import weights_status

    rows: list[dict[str, Any]] = []
    for info in list_models():
        rows.append(
            {
                "name": info.name,
                "family": info.family,
                "params": info.num_params,
                "input_size": info.input_size,
                "weights": weights_status(info.name),
            }
        )
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'model':<28} {'family':<22} {'params':>9} {'input':>5}  weights")
    for r in rows:
        print(
            f"{r['name']:<28} {r['family']:<22} {r['params'] / 1e6:>8.1f}M {r['input_size']:>5}  {r['weights']}"
        )
    return 0


def _config_from_args(args: argparse.Namespace) -> Any:
    """The TrainConfig a ``train`` command line asks for (``--config-json`` when given)."""
    from engine.core.config import TrainConfig
    from engine.models.registry import get_model_info

    if args.config_json is not None:  # the window's multi-process launch: every setting, as JSON
        config = TrainConfig.from_dict(json.loads(args.config_json.read_text(encoding="utf-8")))
    else:
        get_model_info(args.model)  # fail fast on an unknown model name, before scanning
        config = TrainConfig.for_strategy(
            args.strategy,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            schedule=args.schedule,
            weight_decay=args.weight_decay,
            augment=False if args.no_augment else None,
            device=args.device,
            seed=args.seed,
            workers=args.workers,
            val_fraction=args.val_fraction,
            balance=args.balance,
            head=args.head,
            head_hidden=args.head_hidden,
            head_dropout=args.head_dropout,
            early_stopping_patience=args.early_stopping,
            early_stopping_metric=args.early_stopping_metric,
            label_smoothing=args.label_smoothing,
            sync_batchnorm=True if args.sync_bn else None,
            input_size=args.input_size,
            tta=args.tta,
            feature_views=args.feature_views,
            head_first=args.head_first,
            freeze_bn=args.freeze_bn,
            lr_decay_per_stage=args.lr_decay_per_stage,
            warmup_epochs=args.warmup_epochs,
        )
    config.validate()
    return config


def _train(args: argparse.Namespace) -> int:
    from engine.core.launch import under_torchrun

    if under_torchrun():
        return _train_rank(args)
    if args.nproc_per_node is not None or _has_launch_options(args.argv):
        return _launch_train(args)
    from engine.training.trainer import resume, train

    stop = _StopFlag()
    with _Progress(sys.stderr, json_output=args.json) as progress:
        if args.resume is not None:
            result = resume(args.resume, on_event=progress, should_stop=stop, epochs=args.epochs)
        else:
            if args.data is None:
                raise TransferStudioError("give a dataset folder (or --resume RUN_DIR)")
            config = _config_from_args(args)
            if config.pretrained:  # download now, with a progress bar, rather than silently inside train()
                _ensure_weights(config.model)
            result = train(config, args.data, run_dir=args.out, on_event=progress, should_stop=stop)
    _print_result(result, args.json)
    return EXIT_CANCELLED if result.cancelled else 0


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        payload = result.to_json()
        payload.pop("history", None)
        _print_json(payload)
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


def _launch_train(args: argparse.Namespace) -> int:
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
    if args.resume is None:
        if args.data is None:
            raise TransferStudioError("give a dataset folder (or --resume RUN_DIR)")
        if not args.data.is_dir():
            raise TransferStudioError(f"Dataset folder does not exist: {args.data}")
        config = _config_from_args(args)  # bad settings fail here, once, not in N processes
        if config.pretrained:
            _ensure_weights(config.model)  # one download, before N processes would each try
    say = lambda text: print(f"{PROG}: {text}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"starting {nproc} training process(es) per machine with torchrun")
    code = run_torchrun(rest, nproc, extra, say=say)
    if code not in (0, EXIT_CANCELLED):
        say(f"torchrun ended with exit code {code}: see the messages above (one process failed)")
        return EXIT_FAILURE
    return code


def _train_rank(args: argparse.Namespace) -> int:
    """One process of a torchrun launch: join the group; rank 0 alone writes and prints."""
    from engine.core.device import resolve_device
    from engine.training.distributed import StopRequest, process_group
    from engine.training.trainer import resume, train

    device_type = resolve_device(
        args.device if args.config_json is None else _config_from_args(args).device
    ).type
    with process_group(device_type) as dist:
        stop = StopRequest()
        stop.install_sigint()
        events = _EventsFile.from_environment() if dist.is_main else None
        with _Progress(sys.stderr, json_output=args.json) as progress:

            def on_event(event: Any) -> None:
                progress(event)
                if events is not None:
                    events(event)

            handler = on_event if dist.is_main else None
            if args.resume is not None:
                result = resume(
                    args.resume, on_event=handler, should_stop=stop, epochs=args.epochs, dist=dist
                )
            else:
                if args.data is None:
                    raise TransferStudioError("give a dataset folder (or --resume RUN_DIR)")
                config = _config_from_args(args)
                result = train(
                    config, args.data, run_dir=args.out, on_event=handler, should_stop=stop, dist=dist
                )
        if dist.is_main:
            _print_result(result, args.json)
    return 0  # a stopped run ended cleanly: torchrun reads any other code as a failed process


class _EventsFile:
    """Rank 0's events as JSON lines, appended to ``$TRANSFER_STUDIO_EVENTS_FILE`` (the window reads it)."""

    ENV = "TRANSFER_STUDIO_EVENTS_FILE"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_environment(cls) -> _EventsFile | None:
        value = os.environ.get(cls.ENV)
        return cls(Path(value)) if value else None

    def __call__(self, event: Any) -> None:
        from engine.training.events import to_json

        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(to_json(event)) + "\n")


def _split_names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _compare(args: argparse.Namespace) -> int:
    from engine.experiments import bakeoff

    if args.models is None and args.strategies is None:
        candidates = bakeoff.default_candidates(args.device)
    else:
        models = _split_names(args.models) or sorted(
            {c.model for c in bakeoff.default_candidates(args.device)}
        )
        strategies = _split_names(args.strategies) or list(STRATEGIES)
        candidates = bakeoff.candidates_from(models, strategies)
    progress = _Progress(sys.stderr, json_output=args.json)
    stop = _StopFlag()

    def on_event(event: Any) -> None:
        if isinstance(event, bakeoff.CandidateStarted):
            progress.say(
                f"[{event.index + 1}/{event.total}] {event.candidate.label}: run folder {event.run_dir}"
            )
        elif isinstance(event, bakeoff.CandidateEnded):
            entry = event.entry
            if entry.status == "finished":
                line = f"best val accuracy {entry.best_val_acc:.4f} at epoch {entry.best_epoch} ({entry.seconds:.1f}s)"
            else:
                line = f"{entry.status}: {entry.reason}"
            progress.say(f"  {entry.model} · {entry.strategy}: {line}")
        elif not isinstance(event, (bakeoff.BakeoffStarted, bakeoff.BakeoffFinished)):
            progress(event)

    with progress:
        result = bakeoff.run_bakeoff(
            args.data,
            candidates,
            epochs=args.epochs,
            budget_minutes=args.budget_minutes,
            device=args.device,
            seed=args.seed,
            out=args.out,
            on_event=on_event,
            should_stop=stop,
        )
    if args.json:
        payload = result.to_json()
        _print_json(
            {"leaderboard": payload["leaderboard"], "best": payload["best"], "skipped": payload["skipped"]}
        )
    else:
        print(
            f"{'rank':>4}  {'model':<24} {'strategy':<15} {'best val':>8} {'epoch':>5} {'seconds':>8}  bundle"
        )
        for n, e in enumerate(result.leaderboard, start=1):
            mark = "  <- best" if n == 1 else ""
            print(
                f"{n:>4}  {e.model:<24} {e.strategy:<15} {e.best_val_acc:>8.4f} {e.best_epoch:>5} "
                f"{e.seconds:>8.1f}  {e.bundle}{mark}"
            )
        for e in result.entries:
            if e.status != "finished":
                print(f"   -  {e.model:<24} {e.strategy:<15} {e.status}: {e.reason}")
        print(f"bake-off folder: {result.out}")
    return EXIT_CANCELLED if result.cancelled else 0


def _runs(args: argparse.Namespace) -> int:
    from engine.core.locations import runs_roots
    from engine.core.runs import list_runs

    if args.root is not None and not args.root.is_dir():
        raise TransferStudioError(f"{args.root}: no such folder")
    roots = [args.root] if args.root is not None else runs_roots()  # the default: old runs' folder too
    runs = list_runs(*(root for root in roots if root.is_dir()))
    if args.json:
        _print_json([r.to_json() for r in runs])
        return 0
    if not runs:
        print(f"no runs under {' or '.join(str(root) for root in roots)}")
        return 0
    print(f"{'started':<19} {'model':<22} {'strategy':<15} {'epochs':>7} {'best val':>9}  {'status':<11} run")
    for r in runs:
        best = f"{r.best_val_acc:.4f}" if r.best_val_acc is not None else "-"
        started = (r.started or "")[:19].replace("T", " ")
        epochs = f"{r.epochs_done}/{r.epochs_planned}"
        status = r.status + ("*" if r.resumable else "")
        print(f"{started:<19} {r.model:<22} {r.strategy:<15} {epochs:>7} {best:>9}  {status:<11} {r.path}")
    if any(r.resumable for r in runs):
        print("* resumable: transfer-studio train --resume RUN_DIR")
    return 0


def _report(args: argparse.Namespace) -> int:
    from engine.experiments.report import write_report

    path = write_report(args.run_dir, args.out, device=args.device)
    print(path)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from engine.inference.predict import Predictor, list_images, write_predictions_csv

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise TransferStudioError(f"--threshold must be between 0 and 1, got {args.threshold}")
    predictor = Predictor.from_bundle(args.bundle, device=args.device)
    paths = list_images(args.target)
    if not paths:
        raise TransferStudioError(f"{args.target} holds no image files")
    with CountBar("classifying", enabled=bars_wanted(json_output=args.json)) as bar:
        predictions = predictor.predict_paths(paths, top_k=args.top_k, on_progress=bar)
    if args.csv:
        write_predictions_csv(predictions, args.csv, top_k=args.top_k, threshold=args.threshold)
    if args.json:
        rows = [
            {"path": str(p.path), "label": p.label_at(args.threshold), "top": [list(t) for t in p.top]}
            | {"error": p.error}
            for p in predictions
        ]
        _print_json(rows)
    else:
        for p in predictions:
            if p.error:
                print(f"{p.path}\tunreadable: {p.error}")
            else:
                ranked = ", ".join(f"{label} {prob:.3f}" for label, prob in p.top)
                unsure = f"{p.label_at(args.threshold)}: " if p.label_at(args.threshold) != p.label else ""
                print(f"{p.path}\t{unsure}{ranked}")
    failed = sum(1 for p in predictions if p.error)
    if failed:
        print(f"{PROG}: {failed} of {len(predictions)} image(s) could not be read", file=sys.stderr)
    if args.csv:
        print(f"wrote {len(predictions)} rows to {args.csv}", file=sys.stderr)
    return 0


class _StopFlag:
    """should_stop for the trainer; Ctrl+C sets it so the run ends cleanly after the current batch."""

    def __init__(self) -> None:
        self.stop = False
        import signal

        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (tests calling main() from a worker thread)
            pass

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print(f"\n{PROG}: stopping after this batch (Ctrl+C again to abort)", file=sys.stderr)

    def __call__(self) -> bool:
        return self.stop


class _Progress:
    """Turns trainer events into tqdm bars (terminals only) and one stdout line per epoch."""

    PHASES = {"features": "features", "train": "training", "val": "validation"}

    def __init__(self, stream: TextIO, *, json_output: bool = False) -> None:
        self.stream = stream
        self.enabled = bars_wanted(stream, json_output=json_output)
        self.bar: Any = None
        self.key: tuple[int, str] | None = None
        self.scan = CountBar("checking photos", unit="file", enabled=self.enabled)

    def __call__(self, event: Any) -> None:
        from engine.training import events as ev

        if isinstance(event, ev.ScanProgress):
            self.scan(event.done, event.total)
            if event.done >= event.total:
                self.scan.close()
        elif isinstance(event, ev.RunStarted):
            self.say(
                f"training on {event.device}: {event.num_train} train / {event.num_val} val images, "
                f"{len(event.classes)} classes; run folder {event.run_dir}"
            )
        elif isinstance(event, ev.BatchProgress):
            self._draw(event)
        elif isinstance(event, ev.EpochEnd):
            self.close()
            best = "  *best" if event.is_best else ""
            print(
                f"epoch {event.epoch}/{event.epochs}  train loss {event.train_loss:.4f} "
                f"acc {event.train_acc:.4f} | val loss {event.val_loss:.4f} acc {event.val_acc:.4f} "
                f"| lr {event.lr:.2e} | {event.seconds:.1f}s{best}",
                flush=True,
            )
        elif isinstance(event, ev.Message):
            self.say(f"{PROG}: {event.level}: {event.text}")
        elif isinstance(event, (ev.RunFinished, ev.RunFailed)):
            self.close()

    def _draw(self, event: Any) -> None:
        key = (event.epoch, event.phase)
        if self.bar is None or key != self.key:
            self.close()
            phase = self.PHASES.get(event.phase, event.phase)
            what = phase if event.phase == "features" else f"epoch {event.epoch} {phase}"
            self.bar = new_bar(what, event.batches, unit="batch", enabled=self.enabled)
            self.key = key
        self.bar.update(event.batch - self.bar.n)
        eta = time.strftime("%M:%S", time.gmtime(event.eta_s)) if event.eta_s < 3600 else ">1h"
        loss = f"{event.loss:.4f}" if event.loss == event.loss else "-"  # nan: a batch of unreadable images
        self.bar.set_postfix_str(f"loss {loss}, run ETA {eta}", refresh=False)

    def say(self, text: str) -> None:
        """A line on standard error that does not tear a bar."""
        if self.bar is not None:
            self.bar.clear()
        print(text, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        self.scan.close()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.key = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- evaluate and export ------------------------------------------------------------------------


def _add_evaluate_and_export_parsers(sub: Any) -> None:
    evaluate = sub.add_parser("evaluate", help=COMMANDS["evaluate"])
    evaluate.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    evaluate.add_argument(
        "data", type=Path, metavar="DATA", help="labelled folder (its val/ split if it has one)"
    )
    evaluate.add_argument(
        "--split",
        choices=("val", "train", "test", "all"),
        help="which images (default: val/ when DATA has one, else all; a flat folder's val is the run's val share)",
    )
    evaluate.add_argument("--top-k", type=int, default=5, metavar="K", help="also report top-K accuracy")
    evaluate.add_argument("--device", choices=DEVICES, default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")

    export = sub.add_parser("export", help=COMMANDS["export"])
    export.add_argument("bundle", type=Path, metavar="BUNDLE", help="model.pt from a run")
    export.add_argument("--format", dest="fmt", choices=("onnx", "torchscript"), required=True)
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the exported model file")
    export.add_argument(
        "--parity-data",
        type=Path,
        metavar="DATA",
        help="images for the parity check (default: the run's val)",
    )
    export.add_argument("--no-parity", action="store_true", help="skip the parity check")
    export.add_argument("--json", action="store_true")


def _evaluate(args: argparse.Namespace) -> int:
    from engine.inference.evaluate import evaluate, format_evaluation

    if args.top_k < 1:
        raise TransferStudioError(f"--top-k must be at least 1, got {args.top_k}")
    with CountBar("evaluating", enabled=bars_wanted(json_output=args.json)) as bar:
        report = evaluate(
            args.bundle, args.data, split=args.split, device=args.device, top_k=args.top_k, on_progress=bar
        )
    if args.json:
        _print_json(report.to_json())
    else:
        print(format_evaluation(report))
    return 0


def _export(args: argparse.Namespace) -> int:
    from engine.core.rundir import CONFIG_FILE, RunDir
    from engine.inference.export import export_bundle, parity_check, parity_images
    from engine.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    result = export_bundle(bundle, args.fmt, args.out)
    payload: dict[str, Any] = {"export": result.to_json(), "parity": None}
    if not args.json:
        print(
            f"exported {bundle.architecture} to {result.path} ({result.exporter}); metadata in {result.sidecar}"
        )
    data = args.parity_data
    if data is not None and not data.exists():
        raise TransferStudioError(f"--parity-data {data}: no such file or folder")
    run_dir = args.bundle if args.bundle.is_dir() else args.bundle.parent
    if data is None and not args.no_parity and (run_dir / CONFIG_FILE).is_file():
        data = RunDir(run_dir).read_config()[1]  # the run's dataset; its val/ images
    if args.no_parity or data is None or not Path(data).exists():
        reason = (
            "skipped" if args.no_parity else "skipped: no validation images found (give --parity-data DATA)"
        )
        payload["parity"] = {"available": False, "reason": reason}
        if args.json:
            _print_json(payload)
        else:
            print(f"parity check {reason}")
        return 0
    with CountBar("checking parity", enabled=bars_wanted(json_output=args.json)) as bar:
        parity = parity_check(bundle, result.path, parity_images(data), fmt=args.fmt, on_progress=bar)
    payload["parity"] = parity.to_json()
    if args.json:
        _print_json(payload)
    elif not parity.available:
        print(f"parity check unavailable: {parity.reason}")
    else:
        print(
            f"parity on {parity.n_images} images: label agreement {parity.label_agreement:.4f}, "
            f"largest probability difference {parity.max_prob_diff:.2e}"
        )
    if parity.available and not parity.passed():
        print(f"{PROG}: error: the exported model does not match the in-app model", file=sys.stderr)
        return EXIT_FAILURE
    return 0


# --- weights and doctor --------------------------------------------------------------------------


def _add_weights_and_doctor_parsers(sub: Any) -> None:
    weights = sub.add_parser("weights", help=COMMANDS["weights"])
    actions = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each model's weights: offline (built in), cached or download")
    listing.add_argument("--json", action="store_true")
    download = actions.add_parser("download", help="download models' weights into the cache")
    download.add_argument("models", nargs="+", metavar="NAME")
    imports = actions.add_parser("import", help="verify a weights file from elsewhere; put it in the cache")
    imports.add_argument("file", type=Path, metavar="FILE")
    imports.add_argument("--model", metavar="NAME", help="the model it is for (default: found from the file)")
    doctor = sub.add_parser("doctor", help=COMMANDS["doctor"])
    doctor.add_argument("--json", action="store_true")


_WEIGHTS_TEXT = {"offline": "offline (built in)", "cached": "cached", "download": "needs download"}


def _weights(args: argparse.Namespace) -> int:
    from engine.core.sizes import format_size
    from engine.models import weights

    if args.weights_command == "import":
        path = weights.import_weights(args.file, args.model)
        print(f"imported {args.file} as {path}")
        return 0
    if args.weights_command == "download":
        for name in args.models:
            print(f"{name}: {_ensure_weights(name)}")
        return 0
    rows = weights.weights_table()
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'model':<28} {'weights':<19} {'size':>9}  file")
    for r in rows:
        size = format_size(r["size"]) if r["size"] is not None else ""
        status = _WEIGHTS_TEXT.get(r["status"], r["status"])
        print(f"{r['name']:<28} {status:<19} {size:>9}  {r['file'] or ''}")
    print(f"cache folder: {weights.weights_cache_dir()}")
    return 0


def _ensure_weights(name: str) -> Path:
    """The model's weights file, downloaded first (with a progress bar on a terminal) if needed."""
    from engine.models.weights import download_weights

    with DownloadBar(name, enabled=bars_wanted()) as bar:
        return download_weights(name, on_progress=bar)


def _doctor(args: argparse.Namespace) -> int:
    from engine.doctor import environment_report, format_environment

    report = environment_report()
    if args.json:
        _print_json(report)
    else:
        print(format_environment(report))
    problems = []
    if not report["runs"].get("writable"):
        problems.append("the runs folder is not writable")
    if not report["offline_model"].get("present"):
        problems.append("the built-in offline model is missing")
    if problems:
        print(f"{PROG}: problem: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
