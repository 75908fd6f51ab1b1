"""The headless command line: the sub-commands of :data:`engine.core.commands.COMMANDS`. Never imports Qt.

Every failure the user can cause ends in one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from engine import __version__
from engine.core.commands import COMMANDS
from engine.core.config import BALANCE, DEVICES, OPTIMIZERS, SCHEDULES, STRATEGIES
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
        "--balance",
        choices=list(BALANCE),
        help="class imbalance: auto (default: weights when largest/smallest class > 3), none, weights, sampler",
    )
    train.add_argument("--out", type=Path, metavar="RUN_DIR", help="where to write the run")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--json", action="store_true", help="end with one JSON line of results")

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
    if args.command is None:
        parser.print_help()
        return 0
    from engine.core.logs import set_up_logging

    set_up_logging(logging.WARNING, f"{PROG}: %(levelname)s: %(message)s")
    from engine.core.allocator import tune_allocator

    tune_allocator()  # before torch allocates anything large (see BENCHMARKS.md, "CPU allocator")
    handlers = {"scan": _scan, "models": _models, "train": _train, "predict": _predict, "weights": _weights}
    handlers.update(doctor=_doctor, evaluate=_evaluate, export=_export, runs=_runs, compare=_compare)
    handlers.update(report=_report)
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


def _train(args: argparse.Namespace) -> int:
    from engine.core.config import TrainConfig
    from engine.models.registry import get_model_info
    from engine.training.trainer import resume, train

    stop = _StopFlag()
    with _Progress(sys.stderr, json_output=args.json) as progress:
        if args.resume is not None:
            result = resume(args.resume, on_event=progress, should_stop=stop, epochs=args.epochs)
        else:
            if args.data is None:
                raise TransferStudioError("give a dataset folder (or --resume RUN_DIR)")
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
            )
            if config.pretrained:  # download now, with a progress bar, rather than silently inside train()
                config.validate()
                _ensure_weights(config.model)
            result = train(config, args.data, run_dir=args.out, on_event=progress, should_stop=stop)
    if args.json:
        payload = result.to_json()
        payload.pop("history", None)
        _print_json(payload)
    else:
        state = "stopped" if result.cancelled else "finished"
        print(
            f"{state}: best val accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch} "
            f"({result.seconds:.1f}s on {result.device})"
        )
        if result.bundle_path:
            print(f"model saved to {result.bundle_path}")
    return EXIT_CANCELLED if result.cancelled else 0


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
