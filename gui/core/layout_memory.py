"""Splitter positions and table column widths, remembered from one session to the next.

Every named ``QSplitter`` and the header of every named table or tree view below a window is saved
under ``layout/<names of its named ancestors>/<its name>`` when the window closes, and restored when
it opens. A state Qt cannot read (another version, a changed number of columns) is ignored.
"""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QSplitter, QTableView, QTreeView, QWidget

from gui.core.settings import Settings

PREFIX = "layout/"


def _key(widget: QWidget, root: QWidget) -> str | None:
    """The widget's place below ``root`` by object names, or None when it has no name of its own."""
    if not widget.objectName():
        return None
    names = []
    node: QWidget | None = widget
    while node is not None and node is not root:
        if node.objectName():
            names.append(node.objectName())
        node = node.parentWidget()
    return PREFIX + "/".join(reversed(names))


def _remembered(root: QWidget) -> list[tuple[str, QSplitter | QHeaderView]]:
    found: list[tuple[str, QSplitter | QHeaderView]] = []
    for splitter in root.findChildren(QSplitter):
        key = _key(splitter, root)
        if key is not None:
            found.append((key, splitter))
    for view in root.findChildren(QAbstractItemView):
        header = view.horizontalHeader() if isinstance(view, QTableView) else None
        if isinstance(view, QTreeView):
            header = view.header()
        key = _key(view, root)
        if header is not None and key is not None:
            found.append((key + "#columns", header))
    return found


def save_layout(root: QWidget, settings: Settings) -> None:
    """Store the state of every named splitter and view header below ``root``."""
    for key, widget in _remembered(root):
        settings.set(key, widget.saveState())


def restore_layout(root: QWidget, settings: Settings) -> set[str]:
    """Restore what :func:`save_layout` stored; returns the object names whose state was restored."""
    restored: set[str] = set()
    for key, widget in _remembered(root):
        state = settings.get_bytes(key)
        if state is not None and widget.restoreState(state):
            restored.add(key.rsplit("/", 1)[-1].removesuffix("#columns"))
    return restored
