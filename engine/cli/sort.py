"""``transfer-studio sort``: proposals for the photos to sort, accepting them into class folders, undo."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli.common import StopFlag, add_shared_option, bounded_number, ensure_weights, print_json
from engine.core.commands import COMMANDS
from engine.core.config import TrainConfig
from engine.core.errors import TransferStudioError
from engine.core.progress import CountBar, bars_wanted

#: Proposals the text output lists (``--json`` lists all).
SHOWN = 25


def add_parser(sub: Any) -> None:
    sort = sub.add_parser(
        "sort",
        help=COMMANDS["sort"],
        description="Propose a class for each photo to sort (DATA/unlabeled/, or --unlabeled DIR), review "
        "first the photos that teach the model most; accept proposals into class folders; undo.",
    )
    sort.add_argument("data", type=Path, metavar="DATA")
    sort.add_argument(
        "--unlabeled", type=Path, metavar="DIR", help="the photos to sort (default: DATA/unlabeled/)"
    )
    source = sort.add_mutually_exclusive_group()
    source.add_argument(
        "--model", type=Path, metavar="BUNDLE", help="propose with this trained model (model.pt)"
    )
    source.add_argument(
        "--backbone", default=TrainConfig.model, metavar="NAME",
        help="propose with a head fitted on this backbone's features of the labelled photos (default: %(default)s)",
    )  # fmt: skip
    action = sort.add_mutually_exclusive_group()
    action.add_argument(
        "--accept", type=Path, metavar="FILE.csv", help="move the photos listed (columns path,class)"
    )
    action.add_argument(
        "--accept-sure", type=bounded_number(float, 0.0, 1.0), metavar="P",
        help="move every photo whose suggestion has a confidence of at least P",
    )  # fmt: skip
    action.add_argument("--undo", action="store_true", help="put back the last batch of accepted photos")
    add_shared_option(sort, "device", default=TrainConfig.device)
    add_shared_option(sort, "seed", default=TrainConfig.seed)
    add_shared_option(sort, "val_fraction", default=TrainConfig.val_fraction)
    sort.add_argument("--json", action="store_true", help="end with one JSON line")


def run(args: argparse.Namespace) -> int:
    from engine.data.datasets import scan_dataset
    from engine.sorting.journal import accept, undo_last

    if args.undo:
        batch = undo_last(args.data)
        if args.json:
            print_json({"undone": batch.number if batch else None,
                        "moves": [{"from": str(m.destination), "to": str(m.source)} for m in batch.moves] if batch else []})  # fmt: skip
        elif batch is None:
            print("Nothing to undo: no photos were accepted in this dataset (or all were put back).")
        else:
            print(f"Put back {len(batch.moves)} photo(s) of batch {batch.number} ({batch.time}).")
        return 0
    bars = bars_wanted(json_output=args.json)
    if args.accept is not None:
        report = scan_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed, verify=False,
                              unlabeled=args.unlabeled, list_unlabeled=True)  # fmt: skip
        rows = _accept_rows(args.accept, report.root, set(report.unlabeled))
        batch = accept(report.root, rows)
        return _print_batch(batch, args.json, report.root)
    with CountBar("checking photos", unit="file", enabled=bars) as bar:
        report = scan_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed, on_progress=bar,
                              unlabeled=args.unlabeled, list_unlabeled=True)  # fmt: skip
    if report.unlabeled_root is None:
        raise TransferStudioError(
            f"{report.root} has no photos to sort: put them in {report.root / 'unlabeled'}/ or pass --unlabeled DIR"
        )
    proposals = _proposals(args, report, bars)
    if args.accept_sure is not None:
        from engine.sorting.proposals import expected_mistakes

        sure = proposals.sure(args.accept_sure)
        if not sure:
            print(f"No suggestion reaches {args.accept_sure:g}; nothing was moved.")
            if args.json:
                print_json({"batch": None, "accepted": 0, "expected_mistakes": 0.0, "moves": []})
            return 0
        if not args.json:
            print(f"Accepting {len(sure)} photo(s) at confidence >= {args.accept_sure:g}; "
                  f"about {expected_mistakes(sure):.1f} of them may be wrong.")  # fmt: skip
        batch = accept(report.root, [(p.path, p.suggested) for p in sure])
        return _print_batch(batch, args.json, report.root, expected_mistakes(sure))
    if args.json:
        print_json(proposals.to_json(report.root))
    else:
        print(format_proposals(proposals, report.root))
    return 0


def _proposals(args: argparse.Namespace, report: Any, bars: bool) -> Any:
    with CountBar("proposing", unit="photo", enabled=bars) as bar:
        if args.model is not None:
            from engine.models.bundle_file import bundle_file
            from engine.sorting.proposals import bundle_proposals

            return bundle_proposals(bundle_file(args.model), report, device=args.device, on_progress=bar,
                                    should_stop=StopFlag())  # fmt: skip
        from engine.models.registry import get_model_info
        from engine.sorting.features import photo_features
        from engine.sorting.proposals import fit_proposals

        if not get_model_info(args.backbone).offline:
            ensure_weights(args.backbone)
        features = photo_features(report, backbone=args.backbone, device=args.device, on_progress=bar,
                                  should_stop=StopFlag())  # fmt: skip
    return fit_proposals(features, seed=args.seed)


def _accept_rows(csv_path: Path, root: Path, to_sort: set[Path]) -> list[tuple[Path, str]]:
    from engine.sorting.proposals import read_accept_csv

    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TransferStudioError(f"cannot read {csv_path}: {exc.strerror or exc}") from None
    rows = []
    for name, class_name in read_accept_csv(text):
        path = Path(name).expanduser()
        path = (path if path.is_absolute() else root / path).resolve()
        if path not in to_sort:
            raise TransferStudioError(f"{name} is not one of the photos to sort; nothing was moved")
        rows.append((path, class_name))
    return rows


def _print_batch(batch: Any, as_json: bool, root: Path, mistakes: float | None = None) -> int:
    from engine.sorting.proposals import shown_path

    if as_json:
        payload: dict[str, Any] = {
            "batch": batch.number, "accepted": len(batch.moves),
            "moves": [{"path": shown_path(m.source, root), "class": m.class_name, "to": shown_path(m.destination, root)}
                      for m in batch.moves],
        }  # fmt: skip
        if mistakes is not None:
            payload["expected_mistakes"] = round(mistakes, 3)
        print_json(payload)
    else:
        print(f"Moved {len(batch.moves)} photo(s) into their class folders (batch {batch.number}); "
              f"`transfer-studio sort {root} --undo` puts them back.")  # fmt: skip
    return 0


def format_proposals(proposals: Any, root: Path, limit: int = SHOWN) -> str:
    """The proposals in review order as text, cut at ``limit`` lines."""
    from engine.sorting.proposals import DEFAULT_SURE, expected_mistakes, shown_path

    ordered = proposals.in_review_order()
    accuracy = "unknown" if proposals.estimated_accuracy is None else f"{proposals.estimated_accuracy:.1%}"
    sure = proposals.sure(DEFAULT_SURE)
    lines = [
        f"{len(ordered)} photo(s) to sort, {proposals.labeled} labelled; suggestions from {proposals.source} "
        f"(estimated accuracy {accuracy})",
        f"Sure (confidence >= {DEFAULT_SURE}): {len(sure)}, about {expected_mistakes(sure):.1f} of them wrong "
        f"(`--accept-sure {DEFAULT_SURE}` moves them)",
    ]
    if proposals.classes_without_photos:
        lines.append(
            "No suggestions yet for " + ", ".join(proposals.classes_without_photos) + " (no labelled photo)"
        )
    lines.append("Review first (rank, suggestion, confidence, photo):")
    width = max([len(p.suggested) for p in ordered[:limit]] + [5])
    lines += [f"  {p.review_rank:>5}  {p.suggested.ljust(width)}  {p.confidence:.2f}  {shown_path(p.path, root)}"
              for p in ordered[:limit]]  # fmt: skip
    if len(ordered) > limit:
        lines.append(f"  ... and {len(ordered) - limit} more (--json lists all)")
    if proposals.skipped:
        lines.append(f"Skipped ({len(proposals.skipped)}):")
        lines += [f"  {shown_path(s.path, root)}: {s.reason}" for s in proposals.skipped]
    return "\n".join(lines)
