"""The report of a run or a bake-off: one self-contained HTML file that opens offline.

:func:`write_report` looks at the folder it is given. A folder with a ``leaderboard.json`` is a
bake-off (its runs are listed there); a folder with a run's ``config.json`` is a run. A run's report
holds the dataset summary, the settings, the loss and accuracy curves, the evaluation of its model on
the run's validation images (per-class metrics, the confusion matrix, the worst misclassified images
as thumbnails) and the environment the report was written on. A bake-off's report holds its
leaderboard, the runs' validation accuracy curves overlaid, the winner's evaluation, then a short
section per run. Evaluating is the slow part: it honours ``should_stop`` (raising
:class:`~engine.core.errors.Cancelled`) and reports ``on_progress(done, total)`` in images. When the
dataset folder is gone the report is written without the evaluation, and says so.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.errors import Cancelled, StopCheck, TransferStudioError, raise_if_stopped
from engine.core.files import atomic_write_text
from engine.core.rundir import BUNDLE_FILE, CONFIG_FILE, LEADERBOARD_FILE, RunDir
from engine.core.runs import RunSummary, summarize_run
from engine.data.outputs import check_output_file, run_dataset
from engine.experiments.bakeoff import Entry, read_leaderboard
from engine.reports import html as h

if TYPE_CHECKING:
    from engine.inference.evaluate import EvaluationReport

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
#: How many misclassified images the report shows (highest loss first).
MAX_THUMBNAILS = 12
#: The settings a bake-off's per-run sections show (the full config is in each run's own report).
BAKEOFF_SETTINGS = (
    "model",
    "strategy",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "augment",
    "seed",
)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class _Run:
    """What the report needs of one run folder (its small files only)."""

    summary: RunSummary
    config: dict[str, Any]
    data_root: Path
    history: list[dict[str, Any]]
    status: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.summary.path

    @property
    def bundle(self) -> Path:
        return self.path / BUNDLE_FILE

    @property
    def label(self) -> str:
        return f"{self.summary.model} · {self.summary.strategy}"


def write_report(
    path: str | Path,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    should_stop: StopCheck | None = None,
    on_progress: ProgressCallback | None = None,
    force: bool = False,
) -> Path:
    """Write the HTML report of the run or bake-off folder ``path``; returns the file written.

    ``out`` defaults to ``path/report.html`` (the report of the run, replaced when written again). Any
    other ``out`` is checked before any work (:func:`engine.data.outputs.check_output_file`): never in
    the run's dataset, never a bundle, a photo or a run's file; an existing file is replaced only with
    ``force``. ``device`` is where the model is evaluated.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise TransferStudioError(f"{folder}: no such folder")
    if (folder / LEADERBOARD_FILE).is_file():
        build = _bakeoff_page
    elif (folder / CONFIG_FILE).is_file():
        build = _run_page
    else:
        raise TransferStudioError(
            f"{folder} is neither a run folder (no {CONFIG_FILE}) nor a bake-off folder (no {LEADERBOARD_FILE})"
        )
    from engine.core.device import resolve_device

    target = Path(out).expanduser() if out is not None else folder / REPORT_FILE
    if target.is_dir():
        raise TransferStudioError(f"{target} is a folder; give a file name such as report.html")
    check_output_file(target, what="the report", datasets=run_dataset(folder),
                      force=force or out is None, replaceable=(".html", ".htm"))  # fmt: skip
    resolved = str(resolve_device(device))  # an unusable --device fails here, before any work
    document = build(folder, resolved, should_stop, on_progress)
    try:
        atomic_write_text(target, document)
    except OSError as exc:
        raise TransferStudioError(f"cannot write {target}: {exc.strerror or exc}") from None
    log.info("report written to %s", target)
    return target


# --- one run --------------------------------------------------------------------------------------------


def _read_run(path: Path) -> _Run:
    summary = summarize_run(path)
    run = RunDir(path)
    config, data_root = run.read_config()
    try:
        history = run.read_metrics()
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", run.metrics_path, exc)
        history = []
    return _Run(summary, config, data_root, history, run.read_status())


def _run_page(
    folder: Path, device: str, should_stop: StopCheck | None, on_progress: ProgressCallback | None
) -> str:
    run = _read_run(folder)
    raise_if_stopped(should_stop, "report")
    evaluation_html, classes = _evaluation_sections(run, device, should_stop, on_progress)
    s = run.summary
    title = f"{run.label} on {run.data_root.name or run.data_root}"
    if s.name != run.path.name:  # the name the user gave the run
        title = f"{s.name}: {title}"
    body = [
        f"<h1>{h.esc(title)}</h1>",
        f'<p class="subtitle">Run folder <code>{h.esc(run.path)}</code> · {h.esc(_started(s))}</p>',
        h.facts(_headline(run)),
    ]
    if s.note:
        body.append(f"<p>{h.esc(s.note)}</p>")
    body.append(_dataset_section(run, classes))
    body.append(h.section("Settings", _settings(run), "settings"))
    body.append(h.section("Training curves", _curves(run, "chart"), "curves"))
    body.extend(evaluation_html)
    body.append(_environment_section(device))
    return h.page(f"Transfer Studio report: {title}", "\n".join(body))


def _headline(run: _Run) -> list[tuple[str, str]]:
    s = run.summary
    best = f"epoch {s.best_epoch}" if s.best_epoch else "no epoch finished"
    return [
        ("best val accuracy", h.percent(s.best_val_acc)),
        ("best epoch", best),
        ("epochs done / planned", f"{s.epochs_done} / {s.epochs_planned}"),
        ("training time", h.duration(s.seconds)),
        ("status", s.status + (f": {s.message}" if s.message else "")),
    ]


def _started(s: RunSummary) -> str:
    return f"started {s.started[:19].replace('T', ' ')}" if s.started else "start time not recorded"


def _settings(run: _Run) -> str:
    pairs = [("dataset", str(run.data_root)), *sorted(run.config.items())]
    return h.key_values(pairs, table_id="settings-table")


def _curves(run: _Run, prefix: str) -> str:
    if not run.history:
        return h.note("No epoch finished, so there are no curves.")
    loss = [
        h.series_from_history(run.history, "train_loss", "train loss", dashed=True),
        h.series_from_history(run.history, "val_loss", "val loss"),
    ]
    acc = [
        h.series_from_history(run.history, "train_acc", "train accuracy", dashed=True),
        h.series_from_history(run.history, "val_acc", "val accuracy"),
    ]
    return (
        '<div class="charts">'
        + h.line_chart(loss, chart_id=f"{prefix}-loss", title="Loss", y_label="loss")
        + h.line_chart(
            acc, chart_id=f"{prefix}-accuracy", title="Accuracy", y_label="accuracy", unit_interval=True
        )
        + "</div>"
    )


def _dataset_section(run: _Run, classes: Sequence[str] | None) -> str:
    """Classes and images per split from a fresh scan, else the model's classes."""
    from engine.data.datasets import scan_dataset

    root = run.data_root
    if root.is_dir():
        try:
            report = scan_dataset(
                root,
                val_fraction=float(run.config.get("val_fraction", 0.2)),
                seed=int(run.config.get("seed", 0)),
                verify=False,
            )
        except TransferStudioError as exc:
            return h.section(
                "Dataset", h.note(f"{root} can no longer be read as a dataset: {exc}"), "dataset"
            )
        splits = list(report.splits)
        counts = report.counts()
        rows = [
            [name, *(counts[name][sp] for sp in splits), sum(counts[name].values())]
            for name in report.classes
        ]
        rows.append(
            ["total", *(len(report.splits[sp]) for sp in splits), sum(len(v) for v in report.splits.values())]
        )
        numeric = range(1, len(splits) + 2)
        parts = [
            f"<p><code>{h.esc(root)}</code>: {len(report.classes)} classes"
            + (
                ", validation images set aside by a seeded split (no val/ folder)"
                if report.auto_split
                else ""
            )
            + "</p>",
            h.table(["class", *splits, "all"], rows, table_id="dataset-counts", numeric=list(numeric)),
        ]
        parts.extend(f"<p class='muted'>{h.esc(w)}</p>" for w in report.warnings)
        return h.section("Dataset", "\n".join(parts), "dataset")
    text = f"The dataset folder {root} no longer exists."
    if classes:
        listed = ", ".join(classes)
        return h.section(
            "Dataset",
            h.note(text) + f"<p>The model knows {len(classes)} classes: {h.esc(listed)}.</p>",
            "dataset",
        )
    return h.section("Dataset", h.note(text), "dataset")


def _evaluation_sections(
    run: _Run,
    device: str,
    should_stop: StopCheck | None,
    on_progress: ProgressCallback | None,
    prefix: str = "",
) -> tuple[list[str], list[str] | None]:
    """The evaluation's sections (or one that says why there is none) and the model's classes.

    ``prefix`` starts each section title (a bake-off's "Winner: ").
    """
    from engine.inference.evaluate import evaluate
    from engine.models.bundle import load_bundle

    title = f"{prefix}Evaluation"
    if not run.bundle.is_file():
        return [
            h.section(
                title, h.note("This run has no model (model.pt), so it was not evaluated."), "evaluation"
            )
        ], None
    if not run.data_root.is_dir():
        try:
            classes = load_bundle(run.bundle).class_names
        except TransferStudioError:
            classes = None
        text = (
            f"The dataset folder {run.data_root} no longer exists, so the model was not evaluated: "
            "this report has no per-class metrics, confusion matrix or misclassified images."
        )
        return [h.section(title, h.note(text), "evaluation")], classes
    try:
        report = evaluate(
            run.bundle,
            run.data_root,
            split="val",
            device=device,
            on_progress=on_progress,
            should_stop=should_stop,
        )
    except Cancelled:
        raise
    except TransferStudioError as exc:
        return [h.section(title, h.note(f"The model could not be evaluated: {exc}"), "evaluation")], None
    return _evaluation_html(report, should_stop, prefix), list(report.class_names)


def _evaluation_html(report: EvaluationReport, should_stop: StopCheck | None, prefix: str) -> list[str]:
    """Per-class metrics, the confusion matrix and the worst errors of an ``EvaluationReport``."""
    macro = report.macro_average()
    intro = (
        f"<p>The model (its best epoch) on the run's {report.n_images} validation images: accuracy "
        f"<b>{h.percent(report.accuracy)}</b>, "
        + (
            f"top-{report.top_k} accuracy {h.percent(report.top_k_accuracy)}, "
            if report.top_k < len(report.class_names)
            else ""
        )
        + f"mean loss {report.mean_loss:.4f}.</p>"
    )
    rows = [
        (m.name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support))
        for m in report.per_class
    ]
    rows.append(
        ("macro average", f"{macro['precision']:.3f}", f"{macro['recall']:.3f}", f"{macro['f1']:.3f}", "")
    )
    metrics = h.table(
        ("class", "precision", "recall", "F1", "images"),
        rows,
        table_id="per-class-metrics",
        numeric=(1, 2, 3, 4),
    )
    if report.unreadable:
        intro += f"<p class='muted'>{len(report.unreadable)} image(s) could not be read and were skipped.</p>"
    matrix = h.confusion_table(report.class_names, report.confusion_matrix)
    columns = (
        f'<div class="columns"><div><h3>Per-class metrics</h3>{metrics}</div>'
        f"<div><h3>Confusion matrix</h3>{matrix}<p class='muted'>Rows are the true class, columns the "
        "predicted one; the diagonal is right.</p></div></div>"
    )
    return [
        h.section(f"{prefix}Evaluation on the validation images", intro + columns, "evaluation"),
        h.section(f"{prefix}How sure the model is", _honesty_html(report), "calibration"),
        h.section(f"{prefix}Misclassified images", _thumbnails(report, should_stop), "misclassified"),
    ]


def _honesty_html(report: EvaluationReport) -> str:
    """The reliability diagram, the calibration error before and after, accuracy and coverage at
    thresholds, and the validation photos "none of these" would reject."""
    honesty = report.honesty
    if not honesty:
        return h.note("No calibration figures.")
    if honesty["calibrated"]:
        text = (
            f"<p>Expected calibration error (15 bins) <b>{honesty['ece_before']:.3f}</b> before calibration, "
            f"<b>{honesty['ece_after']:.3f}</b> after (temperature {honesty['temperature']:.3g}): every "
            "probability the app shows is the calibrated one.</p>"
        )
        chart = h.reliability_chart(honesty["reliability_before"], honesty["reliability_after"])
    else:
        text = (
            "<p>This model is <b>uncalibrated (trained before calibration)</b>: its probabilities are as "
            f"trained, with an expected calibration error of {honesty['ece_before']:.3f}.</p>"
        )
        chart = h.reliability_chart(
            honesty["reliability_before"], None, before_label="as trained (uncalibrated)"
        )
    rows = [
        (f"{c['threshold']:g}", str(c["kept"]), h.percent(c["coverage"]),
         "–" if c["accuracy"] is None else h.percent(c["accuracy"]))
        for c in honesty["coverage"]
    ]  # fmt: skip
    coverage = h.table(("accept at ≥", "photos kept", "coverage", "accuracy"), rows, table_id="coverage",
                       numeric=(0, 1, 2, 3))  # fmt: skip
    if honesty["unknown_threshold"] is None:
        why = "" if honesty["calibrated"] else " (trained before calibration)"
        rejected = f"<p class='muted'>This model cannot say “none of these”{why}.</p>"
    else:
        from engine.models.calibration import OOD_PASS_RATE

        rejected = (
            f"<p id='rejected'>“None of these”: <b>{honesty['rejected']}</b> of the {report.n_images} validation "
            f"photos would be answered unknown at the threshold {honesty['unknown_threshold']:.3f} (set to let "
            f"{OOD_PASS_RATE:.0%} of the run's validation photos through).</p>"
        )
    return (
        text
        + f'<div class="columns"><div>{chart}</div><div><h3>If only answers at or above a confidence are '
        f"accepted</h3>{coverage}{rejected}</div></div>"
    )


def _thumbnails(report: EvaluationReport, should_stop: StopCheck | None) -> str:
    wrong = report.misclassified
    if not wrong:
        return "<p>None: every validation image was classified correctly.</p>"
    names = report.class_names
    figures = []
    for result in wrong[:MAX_THUMBNAILS]:
        raise_if_stopped(should_stop, "report")
        if result.path is None:
            continue
        uri = h.thumbnail_data_uri(result.path)
        if uri is None:
            continue
        p = result.probabilities
        caption = (
            f"{names[result.true_index]} taken for {names[result.predicted_index]} "
            f"({p[result.predicted_index]:.0%})"
        )
        figures.append(h.thumbnail_figure(uri, caption, f"{result.path} · loss {result.loss:.3f}"))
    shown = f"the {len(figures)} worst, " if len(wrong) > len(figures) else ""
    intro = f"<p>{len(wrong)} of {report.n_images} images were misclassified ({shown}highest loss first).</p>"
    return intro + f'<div class="thumbs" id="misclassified-thumbs">{"".join(figures)}</div>'


def _environment_section(device: str) -> str:
    import numpy
    import PIL
    import torch
    import torchvision

    from engine import __version__
    from engine.core.device import describe_device

    pairs: list[tuple[str, Any]] = [
        ("Transfer Studio", __version__),
        ("evaluation device", describe_device(torch.device(device))),
        ("Python", platform.python_version()),
        ("torch", torch.__version__ + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else "")),
        ("torchvision", torchvision.__version__),
        ("Pillow", PIL.__version__),
        ("numpy", numpy.__version__),
        ("operating system", platform.platform()),
        ("report written", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    return h.section(
        "Environment", h.key_values(pairs, table_id="environment", header=("", "")), "environment"
    )


# --- a bake-off -----------------------------------------------------------------------------------------


def _find_run(folder: Path, value: Any) -> Path | None:
    """A leaderboard entry's run folder: as written, relative to the bake-off, or by name inside it."""
    if not value:
        return None
    given = Path(str(value))
    for candidate in (given if given.is_absolute() else folder / given, folder / given.name):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def _bakeoff_page(
    folder: Path, device: str, should_stop: StopCheck | None, on_progress: ProgressCallback | None
) -> str:
    entries = read_leaderboard(folder).leaderboard
    runs: list[_Run | None] = []
    for entry in entries:
        found = _find_run(folder, entry.run_dir)
        try:
            runs.append(_read_run(found) if found is not None else None)
        except TransferStudioError as exc:
            log.warning("leaving out a bake-off run: %s", exc)
            runs.append(None)
    raise_if_stopped(should_stop, "report")
    winner_index = 0 if entries else None  # the leaderboard is best first
    winner = runs[winner_index] if winner_index is not None else None
    runs_text = f"{len(entries)} run{'s' if len(entries) != 1 else ''}"
    title = (
        f"Bake-off on {winner.data_root.name or winner.data_root}: {runs_text}"
        if winner
        else f"Bake-off: {runs_text}"
    )
    body = [
        f"<h1>{h.esc(title)}</h1>",
        f'<p class="subtitle">Bake-off folder <code>{h.esc(folder)}</code></p>',
    ]
    if winner_index is not None:
        e = entries[winner_index]
        body.append(
            h.facts(
                [
                    ("winner", f"{e.model} · {e.strategy}"),
                    ("best val accuracy", h.percent(e.best_val_acc)),
                    ("runs", str(len(entries))),
                    ("total time", h.duration(sum(_number(x.seconds) for x in entries))),
                ]
            )
        )
    body.append(h.section("Leaderboard", _leaderboard(entries, runs, winner_index), "leaderboard-section"))
    series = [
        h.series_from_history(r.history, "val_acc", r.label) for r in runs if r is not None and r.history
    ]
    if series:
        chart = h.line_chart(
            series,
            chart_id="bakeoff-val-accuracy",
            title="Validation accuracy of every run",
            y_label="val accuracy",
            unit_interval=True,
            width=760,
            height=340,
        )
        body.append(h.section("Validation accuracy", chart, "bakeoff-curves"))
    if winner is not None:
        body.append(_dataset_section(winner, None))
        evaluation, _ = _evaluation_sections(winner, device, should_stop, on_progress, "Winner: ")
        body.extend(evaluation)
    else:
        body.append(h.section("Evaluation", h.note("The winner's run folder was not found."), "evaluation"))
    for n, (entry, run) in enumerate(zip(entries, runs), 1):
        body.append(_bakeoff_run_section(n, entry, run))
    body.append(_environment_section(device))
    return h.page(f"Transfer Studio report: {title}", "\n".join(body))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _leaderboard(entries: list[Entry], runs: list[_Run | None], winner: int | None) -> str:
    if not entries:
        return h.note("The leaderboard is empty: no run finished.")
    rows = []
    for n, (entry, run) in enumerate(zip(entries, runs), 1):
        size = "–"
        bundle = run.bundle if run is not None else None
        if bundle is not None and bundle.is_file():
            from engine.core.sizes import format_size

            size = format_size(bundle.stat().st_size)
        rows.append(
            (
                f"{n}{' ★' if n - 1 == winner else ''}",
                entry.model,
                entry.strategy,
                h.percent(entry.best_val_acc),
                entry.best_epoch or "–",
                h.duration(entry.seconds),
                size,
            )
        )
    classes = ["winner" if n == winner else "" for n in range(len(entries))]
    return h.table(
        ("rank", "model", "strategy", "best val accuracy", "best epoch", "time", "model size"),
        rows,
        table_id="leaderboard",
        numeric=(3, 4, 5, 6),
        row_classes=classes,
    )


def _bakeoff_run_section(n: int, entry: Entry, run: _Run | None) -> str:
    title = f"{n}. {entry.model} · {entry.strategy}"
    if run is None:
        return h.section(title, h.note(f"The run folder {entry.run_dir} was not found."), f"run-{n}")
    settings = [(key, run.config[key]) for key in BAKEOFF_SETTINGS if key in run.config]
    body = (
        f"<p>Run folder <code>{h.esc(run.path)}</code> · best val accuracy "
        f"{h.percent(run.summary.best_val_acc)} at epoch {run.summary.best_epoch or '–'} · "
        f"{h.esc(run.summary.status)}</p>" + h.key_values(settings, split_over=5) + _curves(run, f"run-{n}")
    )
    return h.section(title, body, f"run-{n}")
