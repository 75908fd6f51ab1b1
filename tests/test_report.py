"""The HTML report of a run and of a bake-off: one self-contained file, checked by parsing it.

One real short run (efficientnet_lite0 feature extraction, 2 epochs, CPU) on a synthetic two-class
folder with one mislabelled validation image, so there is always a misclassified image to show.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers_images import SMALL_INPUT, make_image_folder

from engine.cli import main
from engine.core.errors import Cancelled, TransferStudioError
from engine.core.rundir import RunDir
from engine.core.runs import set_note
from engine.models.bundle import load_bundle
from engine.reports.html import Series, line_chart, nice_ticks
from engine.reports.report import LEADERBOARD_FILE, REPORT_FILE, write_report

CLASSES = ["cats", "dogs"]


class Page(HTMLParser):
    """What a report holds: every tag with its attributes, the charts' series, tables' text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.series: dict[str, list[str]] = {}  # svg id -> the data-series of its <g class="series">
        self.tables: dict[str, list[list[str]]] = {}  # table id -> rows of cell texts
        self._svg: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "svg":
            self._svg = a.get("id", "")
            self.series.setdefault(self._svg, [])
        elif tag == "g" and self._svg is not None and "series" in a.get("class", "").split():
            self.series[self._svg].append(a.get("data-series", ""))
        elif tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def find(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]

    def column(self, table_id: str, index: int = 0) -> list[str]:
        return [row[index] for row in self.tables[table_id][1:] if len(row) > index]


def assert_self_contained(text: str) -> Page:
    """No network reference of any kind: everything inline, images as data: URIs."""
    assert "http://" not in text and "https://" not in text
    page = Page(text)
    assert not [a for a in page.find("script") if "src" in a]
    assert not [a for a in page.find("link") if "href" in a]
    for tag in ("img", "image", "source", "iframe", "embed", "object", "video", "audio"):
        for attrs in page.find(tag):
            for key in ("src", "href", "data", "srcset", "xlink:href"):
                if key in attrs:
                    assert attrs[key].startswith("data:"), f"<{tag} {key}={attrs[key][:60]!r}>"
    assert "url(" not in text  # no CSS reference to a file either
    return page


def jpeg_thumbnails(page: Page) -> list[str]:
    return [a["src"] for a in page.find("img") if a.get("src", "").startswith("data:image/jpeg;base64,")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run on cats/dogs whose val/dogs holds one red (cat) image."""
    from engine.core.config import TrainConfig
    from engine.training.trainer import train

    data = make_image_folder(tmp_path_factory.mktemp("data") / "pets", {"cats": 8, "dogs": 8})
    shutil.move(data / "val" / "cats" / "cats_000.jpg", data / "val" / "dogs" / "really_a_cat.jpg")
    config = TrainConfig.for_strategy(
        "feature-extract", epochs=2, batch_size=8, lr=1e-2, device="cpu", workers=0, input_size=SMALL_INPUT
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
        result = train(config, data, run_dir=tmp_path_factory.mktemp("runs") / "run")
    assert result.bundle_path is not None
    return result.run_dir


def _copy_run(run_dir: Path, target: Path, **config_changes: Any) -> Path:
    shutil.copytree(run_dir, target)
    path = target / "config.json"
    payload = json.loads(path.read_text())
    payload["config"].update(config_changes)
    path.write_text(json.dumps(payload))
    (target / REPORT_FILE).unlink(missing_ok=True)
    return target


def test_run_report_is_self_contained_and_complete(run_dir, tmp_path):
    progress: list[tuple[int, int]] = []
    out = write_report(
        run_dir, tmp_path / "out" / "r.html", device="cpu", on_progress=lambda d, t: progress.append((d, t))
    )
    assert out == tmp_path / "out" / "r.html" and out.is_file()
    text = out.read_text(encoding="utf-8")
    page = assert_self_contained(text)

    # curves: one chart per metric, each with a train and a val series
    assert page.series["chart-loss"] == ["train loss", "val loss"]
    assert page.series["chart-accuracy"] == ["train accuracy", "val accuracy"]
    # the confusion matrix names the classes in its header and its rows, and counts every val image
    matrix = page.tables["confusion-matrix"]
    assert matrix[0][1:] == CLASSES and page.column("confusion-matrix") == CLASSES
    assert sum(int(v) for row in matrix[1:] for v in row[1:]) == 16
    # per-class metrics
    assert page.column("per-class-metrics")[:2] == CLASSES
    assert page.column("per-class-metrics", 4)[:2] == ["7", "9"]  # images per true class (one moved)
    # how sure the model is (issue 24): the reliability diagram, the calibration error, coverage, rejections
    assert page.series["reliability"] == ["before calibration", "calibrated"]
    ece = re.search(
        r"Expected calibration error \(15 bins\) <b>([\d.]+)</b> before calibration, <b>([\d.]+)</b> after",
        text,
    )
    assert ece, "no calibration error before and after"
    calibration = load_bundle(run_dir / "model.pt").calibration  # measured on the same photos by the run
    assert float(ece[1]) == pytest.approx(calibration.ece_before, abs=2e-3)
    assert float(ece[2]) == pytest.approx(calibration.ece_after, abs=2e-3)
    assert page.column("coverage") == ["0.5", "0.7", "0.8", "0.9", "0.95", "0.99"]
    assert "validation photos would be answered unknown at the threshold" in text
    # the mislabelled image is misclassified: at least one small JPEG thumbnail
    assert jpeg_thumbnails(page)
    # dataset summary, settings and environment
    assert page.column("dataset-counts")[:2] == CLASSES
    settings = dict(row for row in page.tables["settings-table"][1:] + page.tables["settings-table-2"][1:])
    assert settings["model"] == "efficientnet_lite0" and settings["strategy"] == "feature-extract"
    environment = dict(page.tables["environment"][1:])
    assert {"Python", "torch", "torchvision", "operating system", "evaluation device"} <= environment.keys()
    assert progress and progress[-1] == (16, 16)


def test_thumbnails_are_small_jpegs(run_dir, tmp_path):
    import base64
    import io

    from PIL import Image

    page = Page(write_report(run_dir, tmp_path / "r.html", device="cpu").read_text(encoding="utf-8"))
    for uri in jpeg_thumbnails(page):
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert image.format == "JPEG" and max(image.size) <= 96


def test_user_strings_are_escaped(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    set_note(run, name='<script>alert("x")</script> & co', note="<img src=x onerror=alert(1)>")
    text = write_report(run, device="cpu").read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;" in text and "&amp; co" in text
    assert_self_contained(text)


def test_cli_writes_the_default_file_and_prints_its_path(run_dir, tmp_path, capsys):
    run = _copy_run(run_dir, tmp_path / "run")
    assert main(["report", str(run), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(run / REPORT_FILE)
    assert_self_contained((run / REPORT_FILE).read_text(encoding="utf-8"))
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(run), "--out", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.is_file()


@pytest.mark.parametrize("make", ["missing", "not_a_run", "damaged_leaderboard", "out_is_folder"])
def test_bad_input_is_one_line(make, run_dir, tmp_path, capsys):
    args = ["report", str(tmp_path / "nope")]
    if make == "not_a_run":
        args[1] = str(tmp_path)
    elif make == "damaged_leaderboard":
        (tmp_path / LEADERBOARD_FILE).write_text("{not json")
        args[1] = str(tmp_path)
    elif make == "out_is_folder":
        args = ["report", str(run_dir), "--out", str(tmp_path), "--device", "cpu"]
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("transfer-studio: error: "), err


def test_a_run_whose_dataset_is_gone_still_gets_a_report(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    config_path = run / "config.json"
    payload = json.loads(config_path.read_text())
    payload["data_root"] = str(tmp_path / "deleted-dataset")
    config_path.write_text(json.dumps(payload))

    text = write_report(run, device="cpu").read_text(encoding="utf-8")
    page = assert_self_contained(text)
    assert "no longer exists" in text
    assert "confusion-matrix" not in page.tables and "per-class-metrics" not in page.tables
    assert not jpeg_thumbnails(page)
    assert page.series["chart-accuracy"] == ["train accuracy", "val accuracy"]  # curves are still there
    assert "cats, dogs" in text  # the classes, from the model


def test_a_model_made_before_calibration_is_reported_uncalibrated(run_dir, tmp_path):
    """Issue 24: a bundle without a calibration gets one reliability series, as trained, and no rejections."""
    import torch

    run = _copy_run(run_dir, tmp_path / "run")
    raw = torch.load(run / "model.pt", weights_only=True)
    del raw["calibration"]
    torch.save(raw, run / "model.pt")

    text = write_report(run, device="cpu").read_text(encoding="utf-8")
    page = assert_self_contained(text)
    assert "uncalibrated (trained before calibration)" in text
    assert page.series["reliability"] == ["as trained (uncalibrated)"]
    assert page.column("coverage") == ["0.5", "0.7", "0.8", "0.9", "0.95", "0.99"]
    assert "cannot say “none of these” (trained before calibration)" in text and "id='rejected'" not in text


def test_should_stop_cancels_the_evaluation(run_dir, tmp_path):
    """Stop pressed once the evaluation has started: Cancelled, and no file is written."""
    started: list[int] = []
    with pytest.raises(Cancelled):
        write_report(
            run_dir,
            tmp_path / "r.html",
            device="cpu",
            on_progress=lambda done, total: started.append(done),
            should_stop=lambda: bool(started),
        )
    assert started == [0] and not (tmp_path / "r.html").exists()


def _fake_bakeoff(run_dir: Path, folder: Path) -> Path:
    """Two runs (the copy named 'scratch' ranked second) and the leaderboard.json the bake-off writes."""
    folder.mkdir()
    first = _copy_run(run_dir, folder / "efficientnet_lite0-feature-extract")
    second = _copy_run(run_dir, folder / "efficientnet_lite0-scratch", strategy="scratch")
    rows = RunDir(second).read_metrics()
    RunDir(second).write_metrics([{**row, "val_acc": row["val_acc"] / 2} for row in rows])
    entries = [
        {
            "model": "efficientnet_lite0",
            "strategy": "feature-extract",
            "best_val_acc": 0.9,
            "best_epoch": 2,
            "seconds": 12.5,
            "run_dir": str(first),  # absolute
            "bundle": str(first / "model.pt"),
        },
        {
            "model": "efficientnet_lite0",
            "strategy": "scratch",
            "best_val_acc": 0.45,
            "best_epoch": 1,
            "seconds": 30.0,
            "run_dir": second.name,  # relative to the bake-off folder
            "bundle": str(second / "model.pt"),
        },
    ]
    payload = {"leaderboard": entries, "best": entries[0]}
    (folder / LEADERBOARD_FILE).write_text(json.dumps(payload))
    return folder


def test_bakeoff_report_has_the_leaderboard_in_order_and_overlaid_curves(run_dir, tmp_path, capsys):
    folder = _fake_bakeoff(run_dir, tmp_path / "bakeoff")
    assert main(["report", str(folder), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(folder / REPORT_FILE)
    text = (folder / REPORT_FILE).read_text(encoding="utf-8")
    page = assert_self_contained(text)

    board = page.tables["leaderboard"]
    assert [row[1:3] for row in board[1:]] == [
        ["efficientnet_lite0", "feature-extract"],
        ["efficientnet_lite0", "scratch"],
    ]
    assert board[1][0].startswith("1") and "★" in board[1][0] and board[1][3] == "90.0%"
    assert page.series["bakeoff-val-accuracy"] == [
        "efficientnet_lite0 · feature-extract",
        "efficientnet_lite0 · scratch",
    ]
    # a section per run with its curves, and the winner's evaluation
    assert (
        page.series["run-1-accuracy"] == page.series["run-2-accuracy"] == ["train accuracy", "val accuracy"]
    )
    assert page.tables["confusion-matrix"][0][1:] == CLASSES
    assert page.column("per-class-metrics")[:2] == CLASSES
    assert "Winner: " in text


def test_bakeoff_with_a_missing_run_folder_still_reports(run_dir, tmp_path):
    folder = _fake_bakeoff(run_dir, tmp_path / "bakeoff")
    shutil.rmtree(folder / "efficientnet_lite0-scratch")
    page = assert_self_contained(write_report(folder, device="cpu").read_text(encoding="utf-8"))
    assert len(page.tables["leaderboard"]) == 3
    assert page.series["bakeoff-val-accuracy"] == ["efficientnet_lite0 · feature-extract"]


def test_write_report_refuses_a_folder_that_is_neither(tmp_path):
    with pytest.raises(TransferStudioError, match="neither a run folder"):
        write_report(tmp_path)


# --- the chart ------------------------------------------------------------------------------------


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0.72, 0.96) == [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    flat = nice_ticks(0.5, 0.5)
    assert flat[0] < 0.5 < flat[-1]


def test_a_one_epoch_series_is_a_dot_and_accuracy_stays_in_the_unit_interval():
    svg = line_chart(
        [Series("val accuracy", ((1.0, 0.99),))], chart_id="c", title="t", y_label="acc", unit_interval=True
    )
    page = Page(svg)
    assert page.series["c"] == ["val accuracy"]
    assert not page.find("polyline") and len(page.find("circle")) == 1
    labels = [float(t) for t in _tick_labels(svg)]
    assert min(labels) >= 0.0 and max(labels) <= 1.0


def _tick_labels(svg: str) -> list[str]:
    import re

    return re.findall(r'text-anchor="end">([0-9.]+)<', svg)
