"""Keyboard and help (issue 22): tabs by Ctrl+1…5, Ctrl+Tab and Alt+digit; every menu action reachable
by a mnemonic or a shortcut and listed in Help → Keyboard shortcuts; Help → Getting started."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QDialog, QTextBrowser

from gui.dialogs.help_pages import shortcuts_html


def _tab_name(window) -> str:
    return window.tabs.tabText(window.tabs.currentIndex()).split()[-1]


def test_ctrl_digits_and_ctrl_tab_switch_tabs(window, qtbot):
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.predict_tab
    for key, name in ((Qt.Key.Key_1, "Data"), (Qt.Key.Key_5, "Runs"), (Qt.Key.Key_4, "Evaluate")):
        qtbot.keyClick(window, key, Qt.KeyboardModifier.ControlModifier)
        assert _tab_name(window) == name
    qtbot.keyClick(window, Qt.Key.Key_Tab, Qt.KeyboardModifier.ControlModifier)
    assert _tab_name(window) == "Runs"
    qtbot.keyClick(window, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    assert _tab_name(window) == "Bake-off"
    qtbot.keyClick(window, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    assert _tab_name(window) == "Data"  # round the end
    qtbot.keyClick(window, Qt.Key.Key_PageUp, Qt.KeyboardModifier.ControlModifier)
    assert _tab_name(window) == "Bake-off"
    qtbot.keyClick(window, Qt.Key.Key_6, Qt.KeyboardModifier.ControlModifier)
    assert _tab_name(window) == "Bake-off"
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)  # the tab's own mnemonic
    assert window.tabs.currentWidget() is window.train_tab


def test_every_menu_action_has_a_mnemonic_or_a_shortcut_and_is_listed(window):
    actions = window.all_actions()
    assert len(actions) >= 15
    page = shortcuts_html(actions)
    for action in actions:
        text = action.text()
        assert "&" in text.replace("&&", "") or not action.shortcut().isEmpty(), text
        assert text.replace("&", "").rstrip("…") in page
        for sequence in action.shortcuts():
            assert sequence.toString(QKeySequence.SequenceFormat.NativeText) in page


def test_help_pages_open_with_their_text(window, qtbot):
    window.shortcuts_action.trigger()
    page = window.findChild(QDialog, "shortcutsPage")
    assert page is not None and page.isVisible()
    text = page.findChild(QTextBrowser).toPlainText()
    assert (
        "Predict" in text and QKeySequence("Ctrl+3").toString(QKeySequence.SequenceFormat.NativeText) in text
    )
    page.close()

    window.getting_started_action.trigger()
    guide = window.findChild(QDialog, "gettingStartedPage")
    assert guide is not None and guide.isVisible()
    browser = guide.findChild(QTextBrowser)
    text = browser.toPlainText()
    assert all(step in text for step in ("Data", "Train", "Predict", "Evaluate", "Runs", "hymenoptera"))
    assert "README" in text and browser.openExternalLinks()
    guide.close()


def test_keyboard_focus_is_drawn_around_the_focused_control(window, qtbot):
    """Tab puts a visible ring around the control it reached; a click hides it again."""
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    window.tabs.setCurrentWidget(window.data_tab)
    ring = window.focus_ring
    assert not ring.isVisible()
    qtbot.keyClick(window.tabs.tabBar(), Qt.Key.Key_Tab)
    focused = QApplication.focusWidget()
    assert focused is not None and focused is not window.tabs.tabBar()
    assert ring.isVisible() and ring.widget() is (focused.focusProxy() or focused)
    # The ring encloses the control, and the pixels there change when it is drawn.
    target = ring.widget()
    ring_box = QRect(ring.mapTo(window, QPoint(0, 0)), ring.size())
    assert ring_box.contains(QRect(target.mapTo(window, QPoint(0, 0)), target.size()))
    with_ring = window.grab(ring_box).toImage()
    ring.hide()
    without_ring = window.grab(ring_box).toImage()
    assert with_ring != without_ring
    ring.show()
    window.tabs.tabBar().setFocus(Qt.FocusReason.MouseFocusReason)  # what a click does
    assert not ring.isVisible()


def test_tab_moves_through_the_training_settings_as_they_read(window, qtbot):
    """Two columns of settings: Tab goes left to right, then down, never back up."""
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    window.tabs.setCurrentWidget(window.train_tab)
    form = window.train_tab.form
    form.controls["epochs"].widget.setFocus(Qt.FocusReason.TabFocusReason)
    visited = [QApplication.focusWidget()]
    for _ in range(6):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        visited.append(QApplication.focusWidget())
    spots = [(w.mapTo(form, QPoint(0, 0)).y(), w.mapTo(form, QPoint(0, 0)).x()) for w in visited]
    assert spots == sorted(spots), [w.objectName() for w in visited]
    assert visited[1] is form.controls["batch_size"].widget and visited[2] is form.controls["lr"].widget
