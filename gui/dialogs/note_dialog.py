"""Rename / note a run: its name (empty: its folder's name) and a free-text note, kept in its note.json."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from engine.core.runs import RunSummary


class NoteDialog(QDialog):
    """Rename / note: the run's name (empty: its folder's name) and a free-text note."""

    def __init__(self, run: RunSummary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runNoteDialog")
        self.setWindowTitle("Rename run")
        self.path = run.path
        self.name_edit = QLineEdit(run.name if run.name != run.path.name else "")
        self.name_edit.setObjectName("runNameEdit")
        self.name_edit.setAccessibleName("Run name")
        self.name_edit.setPlaceholderText(run.path.name)
        self.note_edit = QPlainTextEdit(run.note)
        self.note_edit.setObjectName("runNoteEdit")
        self.note_edit.setAccessibleName("Run note")
        self.note_edit.setPlaceholderText("What was this run for? What did you learn?")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Name:", self.name_edit)
        form.addRow("Note:", self.note_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(str(run.path)))
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(460, 260)
