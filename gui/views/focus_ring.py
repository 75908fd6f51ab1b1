"""A visible focus ring: where the keyboard is, drawn around the focused control in the window.

Qt's Fusion style marks keyboard focus faintly or not at all (a button's border changes by a shade, a
checkbox not at all), so a person using Tab cannot tell where they are. :class:`FocusRing` follows
keyboard focus inside one window: when a control gets focus from the keyboard (Tab, Shift+Tab, a
mnemonic or a shortcut) a 2-px frame in the palette's highlight colour is drawn around it, on top of
its neighbours (a :class:`~PySide6.QtWidgets.QFocusFrame`, which paints outside the control's own
area and follows it when it moves or resizes). A mouse click hides it: the pointer already says where.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFocusEvent, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QApplication, QFocusFrame, QWidget

KEYBOARD_REASONS = (
    Qt.FocusReason.TabFocusReason,
    Qt.FocusReason.BacktabFocusReason,
    Qt.FocusReason.ShortcutFocusReason,
)
RING_PX = 2


class FocusRing(QFocusFrame):
    """The frame around the keyboard-focused control of ``window`` (hidden when focus came by mouse)."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setObjectName("focusRing")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.window_ = window
        self.hide()
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if (
            event.type() == QEvent.Type.FocusIn
            and isinstance(watched, QWidget)
            and watched.window() is self.window_
        ):
            self._follow(watched, event.reason() if isinstance(event, QFocusEvent) else None)
        return super().eventFilter(watched, event)

    def _follow(self, widget: QWidget, reason: Qt.FocusReason | None) -> None:
        if reason in KEYBOARD_REASONS and widget.isVisible():
            target = widget.focusProxy() or widget
            self.setWidget(target)
            self.show()
            self.raise_()
        elif reason == Qt.FocusReason.MouseFocusReason:
            self.setWidget(None)  # type: ignore[arg-type]  # Qt takes nullptr: follow nothing
            self.hide()

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        pen = QPen(self.palette().color(QPalette.ColorRole.Highlight), RING_PX)
        pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
        painter.setPen(pen)
        half = RING_PX / 2
        painter.drawRect(self.rect().toRectF().adjusted(half, half, -half, -half))
        painter.end()
