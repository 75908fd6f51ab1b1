"""Waiting with pytest-qt on a signal that a worker thread emits: the segfault after the GUI tests.

pytest-qt's blockers (``qtbot.waitSignal``/``waitSignals``/``waitCallback``) connect a plain Python
callable, which PySide6 calls in the emitting thread. For a worker on a QThread, the blocker then
stops its timeout QTimer from that thread, which Qt refuses ("QObject::killTimer: Timers cannot be
stopped from another thread"): the timer stays armed. When that thread also drops the blocker's last
reference (a race with the GUI thread leaving the ``with`` block), the blocker's QEventLoop and its
armed timer are destroyed there ("QObject::~QObject: Timers cannot be stopped from another thread")
and the GUI thread's event dispatcher keeps the freed timer: when its timeout is due, the next
``processEvents()`` (pytest-qt's, after every test, typically after the next long engine test)
delivers a timer event to freed memory and segfaults.

The tests wait on ``on_gui_thread(signal)`` (tests/conftest.py) instead, and the GUI-test guard
fails any test whose blocker was triggered on another thread (unregistering its timer on the GUI
thread) or during which Qt complained about another thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractEventDispatcher

from gui.background.jobs import FunctionWorker, ThreadRunner

CONFTEST = Path(__file__).with_name("conftest.py")


def test_a_worker_signal_relayed_to_the_gui_thread_disarms_the_blocker(qtbot, on_gui_thread):
    worker = FunctionWorker(lambda _w: None, imports_torch=False)
    runner = ThreadRunner()
    with qtbot.waitSignal(on_gui_thread(worker.done), timeout=60_000) as blocker:
        runner.start(worker, "relayed")
    assert runner.wait_all(10)
    assert blocker.signal_triggered
    # Stopped on the GUI thread when the relayed signal came. (After a stop refused on another thread,
    # isActive() is False too, but the timer is still registered with the GUI thread's event loop.)
    assert QAbstractEventDispatcher.instance().registeredTimers(blocker._timer) == []


def test_the_gui_guard_fails_a_test_that_waits_on_a_worker_signal_itself(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_inner="""
        from gui.background.jobs import FunctionWorker, ThreadRunner

        def wait_for_done(qtbot, relay):
            worker = FunctionWorker(lambda _w: None, imports_torch=False)
            runner = ThreadRunner()
            with qtbot.waitSignal(relay(worker.done), timeout=60_000) as blocker:
                runner.start(worker, "inner")
            assert runner.wait_all(10)
            return blocker  # held here until the worker thread is gone: released on the GUI thread

        def test_waits_on_the_worker_thread_signal(qtbot):
            assert wait_for_done(qtbot, lambda signal: signal).signal_triggered

        def test_waits_on_the_relayed_signal(qtbot, on_gui_thread):
            assert wait_for_done(qtbot, on_gui_thread).signal_triggered
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_waits_on_the_worker_thread_signal*",
         "*1 qtbot.waitSignal/waitSignals/waitCallback blocker(s) got their signal on another thread*"]
    )  # fmt: skip
