"""The dataset audit's findings: :class:`AuditReport` and the records it holds, and its JSON form.

:meth:`AuditReport.to_json` is the compact summary (paths relative to the data root); the dataclasses
keep the evidence a window needs to show and sort the findings (splits, similarities, probabilities,
every measurement). :func:`engine.audit.run.run_audit` makes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.audit.duplicates import Link
from engine.audit.images import ImageStats


@dataclass(frozen=True)
class AuditedImage:
    """One photo the audit read."""

    path: str  # relative to the data root, with "/" separators
    split: str
    label: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that are copies of one another; ``links`` say which pairs matched and how."""

    members: tuple[AuditedImage, ...]
    links: tuple[Link, ...]  # indices into ``members``

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]

    @property
    def cross_split(self) -> bool:
        """Copies in more than one split: a leak that inflates validation scores."""
        return len({m.split for m in self.members}) > 1

    @property
    def conflicting_labels(self) -> bool:
        """The same photo under more than one class."""
        return len({m.label for m in self.members}) > 1

    @property
    def exact(self) -> bool:
        """Every link is an exact pixel copy."""
        return all(link.rule == "exact" for link in self.links)

    @property
    def similarity(self) -> float:
        """The lowest embedding cosine similarity among the links (nan when none was measured)."""
        values = [link.cosine for link in self.links if not math.isnan(link.cosine)]
        return min(values) if values else math.nan


@dataclass(frozen=True)
class LabelIssue:
    """A photo whose label confident learning doubts."""

    path: str
    split: str
    given: str
    suggested: str
    confidence: float  # out-of-fold probability of ``suggested``
    given_probability: float  # out-of-fold probability of ``given``


@dataclass(frozen=True)
class QualityIssue:
    """A photo-quality flag; ``value`` is the measurement (the reason, for "unreadable")."""

    path: str
    split: str
    issue: str
    value: float | str


@dataclass
class AuditReport:
    """Everything :func:`run_audit` found; :meth:`to_json` is the compact form."""

    root: Path
    model: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # {class: {split: readable photos}}: what `scan` counts
    imbalance: float | None  # largest / smallest training class; None when one class has none
    auto_split: bool
    images: list[AuditedImage]
    duplicates: list[DuplicateGroup]
    label_issues: list[LabelIssue]
    quality: list[QualityIssue]
    stats: dict[str, ImageStats]  # by relative path, for every readable photo
    skipped: list[tuple[str, str]]  # files the scan skipped: (path, reason)
    features_computed: int  # image views the backbone ran on (0: all came from the cache)
    features_reused: int  # image views found in the feature cache
    training_views: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The findings as JSON-able data, paths relative to the data root.

        Every duplicate group is listed once under ``duplicates`` (one class, one split), or under
        ``cross_split`` and/or ``conflicting_labels``; label issues most likely first; quality flags by
        issue, then path (``value`` is the measurement; for "unreadable", the reason), then the files the
        scan skipped as `scan` does (issue "skipped", ``value`` the reason); ``classes``:
        ``{"counts": {class: {split: n}}, "totals": {split: n}, "imbalance": largest/smallest train
        class or null}``.
        """
        return {
            "duplicates": [g.paths for g in self.duplicates if not (g.cross_split or g.conflicting_labels)],
            "cross_split": [g.paths for g in self.duplicates if g.cross_split],
            "conflicting_labels": [g.paths for g in self.duplicates if g.conflicting_labels],
            "label_issues": [
                {
                    "path": i.path,
                    "given": i.given,
                    "suggested": i.suggested,
                    "confidence": round(i.confidence, 4),
                }
                for i in self.label_issues
            ],
            "quality": [{"path": q.path, "issue": q.issue, "value": q.value} for q in self.quality]
            + [{"path": path, "issue": "skipped", "value": reason} for path, reason in self.skipped],
            "classes": {
                "counts": self.counts,
                "totals": {
                    split: sum(c.get(split, 0) for c in self.counts.values())
                    for split in next(iter(self.counts.values()), {})
                },
                "imbalance": self.imbalance,
            },
        }
