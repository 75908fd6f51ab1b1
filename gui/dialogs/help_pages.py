"""Help → Keyboard shortcuts and Help → Getting started: two read-only pages of the window.

The shortcuts page is built from the window's own actions (their text, mnemonic and shortcut as
the platform shows them: Ctrl on Windows and Linux, Cmd on macOS), so it cannot drift from what the
keys do. The getting-started page is the README's steps, in short, with a link to the docs.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

#: The README beside the package (a source checkout or an unpacked source release).
README = Path(__file__).resolve().parents[2] / "README.md"


def docs_link() -> str:
    """A link to the documentation: the README on this computer when there is one."""
    if README.is_file():
        return f'the <a href="{QUrl.fromLocalFile(str(README)).toString()}">README</a>'
    return "the README of the source distribution (<tt>pip download transfer-studio --no-binary :all:</tt>)"


def getting_started_html() -> str:
    """The Getting started page."""
    return GETTING_STARTED_HTML.replace("{docs}", docs_link())


GETTING_STARTED_HTML = """
<h2>Getting started</h2>
<p>Transfer Studio trains an image classifier on your own photos, on this computer. Five steps,
one tab each (Ctrl+1 to Ctrl+5 switch tabs):</p>
<ol>
<li><b>Data</b>: open a folder with one sub-folder per class (<tt>ants/</tt>, <tt>bees/</tt>…),
optionally split into <tt>train/</tt> and <tt>val/</tt>. Drag it onto the window or use
File → Open dataset. The table counts the photos of each class; the Dataset doctor finds
duplicates, leaks between train and val and photos that look mislabeled.</li>
<li><b>Train</b>: keep the built-in model and <i>feature extraction</i> for a first try (seconds to
a minute on a laptop) and press Start training. Watch loss and accuracy per epoch; Stop keeps the
best epoch. The <b>Bake-off</b> tab (Ctrl+6) tries several models and strategies and ranks them.</li>
<li><b>Predict</b>: drop photos or a folder on the tab: each gets its classes with
probabilities.</li>
<li><b>Evaluate</b>: the validation photos' accuracy per class, the confusion matrix and the photos
the model got wrong, with where it looked (Grad-CAM).</li>
<li><b>Runs</b>: every run you trained, to compare, resume, report or export
(File → Export model).</li>
</ol>
<p><b>A sample dataset</b>: the ants-and-bees photos of PyTorch's transfer-learning tutorial
(<tt>hymenoptera_data</tt>, 245 training and 153 validation photos) already have this layout:
open the folder and train.</p>
<p>Everything stays on this computer: photos are never uploaded, and nothing you have is ever
deleted or overwritten (excluded photos are listed outside the dataset).</p>
<p>More in {docs}: the command line, the data layout, troubleshooting.</p>
"""


def shortcuts_html(actions: Iterable[QAction]) -> str:
    """A table of the actions that have a shortcut or a mnemonic, in the platform's notation."""
    rows = []
    for action in actions:
        text = action.text()
        if not text or action.isSeparator():
            continue
        keys = [seq.toString(QKeySequence.SequenceFormat.NativeText) for seq in action.shortcuts()]
        mnemonic = _mnemonic(text)
        if not keys and not mnemonic:
            continue
        where = " or ".join(keys) if keys else f"Alt+{mnemonic} in its menu"
        name = text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…")
        rows.append(f"<tr><td>{html.escape(name)}</td><td><b>{html.escape(where)}</b></td></tr>")
    return (
        "<h2>Keyboard shortcuts</h2><table cellpadding='4'>" + "".join(rows) + "</table>"
        "<p>Tab and Shift+Tab move between controls, in reading order; a ring in the highlight colour "
        "shows which one has the keyboard. In a menu, the underlined letter chooses an entry.</p>"
    )


def _mnemonic(text: str) -> str:
    """The letter after a single ``&`` in an action's text, upper-case, or ''."""
    i = text.replace("&&", "\0\0").find("&")
    return text[i + 1].upper() if 0 <= i < len(text) - 1 else ""


class HelpPage(QDialog):
    """A rich-text page (links open in the browser) with a Close button."""

    def __init__(self, title: str, body_html: str, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setWindowTitle(title)
        self.resize(560, 520)
        self.browser = QTextBrowser()
        self.browser.setObjectName(f"{name}Text")
        self.browser.setOpenExternalLinks(True)
        self.browser.setHtml(body_html)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
