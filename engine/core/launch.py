"""Starting a multi-process run under torchrun, and stopping it: ``train ... --nproc-per-node N``.

The CLI does not spread work over processes itself: it runs ``python -m torch.distributed.run`` (torchrun)
as a child process, which starts N copies of ``python -m engine.cli train ...`` (without the launch
options) with RANK, LOCAL_RANK and WORLD_SIZE set; each copy joins the process group through
:func:`engine.training.distributed.init_from_env`.

- Rendezvous. On one machine torchrun's c10d rendezvous listens on ``127.0.0.1:0``: the agent binds a
  free port itself, so there is no window between finding a port and using it. With any of torchrun's
  own rendezvous options (``--nnodes``, ``--rdzv-endpoint``, ``--master-addr``, ...) those are passed
  through unchanged instead; that is how several machines train together, each running the same
  command with its own ``--node-rank`` (static) or the same ``--rdzv-id`` (c10d).
- Stop. The child runs in its own session, so a terminal's Ctrl+C reaches this process only. The first
  Ctrl+C or SIGTERM (or ``should_stop()`` turning true, for the window) creates the *stop file* whose
  path every rank finds in :data:`STOP_FILE_ENV`; the ranks agree on it at their next step (one
  all-reduce), stop at the same step, rank 0 saves the best epoch, and every process exits 0. A second
  one ends the whole process group at once (SIGTERM, then SIGKILL). The ranks also stop when the
  launching process is gone (:data:`LAUNCHER_PID_ENV`), however it ended. torchrun's own tracebacks
  (when a rank fails, or when it is ended) go to the log file, not the terminal.
- A failed rank. torchrun ends the others as soon as one worker exits non-zero (it polls every 0.1 s and
  sends SIGTERM), then exits non-zero itself; :func:`run_torchrun` returns that code.

Standard library only: the launching process never needs torch.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from engine.core.errors import TransferStudioError

#: The environment variable that names the stop file of a launched run (read by every rank).
STOP_FILE_ENV = "TRANSFER_STUDIO_STOP_FILE"
#: The environment variable that holds the launching process's id: when it is gone, the ranks stop.
LAUNCHER_PID_ENV = "TRANSFER_STUDIO_LAUNCHER_PID"
#: The module each rank runs.
CLI_MODULE = "engine.cli"
#: torchrun's exit code is the launcher's; this one means "stopped on request" (the CLI's EXIT_CANCELLED).
EXIT_CANCELLED = 130
#: After a hard stop (SIGTERM to the group), how long before SIGKILL.
KILL_GRACE_S = 10.0

#: The options the launching command line passes to torchrun (not to the ranks), and whether each
#: takes a value. ``--nproc-per-node`` is the one that turns a launch on.
LAUNCH_OPTIONS: dict[str, bool] = {
    "--nproc-per-node": True,
    "--nnodes": True,
    "--node-rank": True,
    "--master-addr": True,
    "--master-port": True,
    "--rdzv-backend": True,
    "--rdzv-endpoint": True,
    "--rdzv-id": True,
    "--rdzv-conf": True,
    "--max-restarts": True,
    "--local-addr": True,
    "--standalone": False,
}
#: Options that choose the rendezvous themselves (then none is added).
_RENDEZVOUS_OPTIONS = frozenset(LAUNCH_OPTIONS) - {"--nproc-per-node", "--max-restarts"}

Say = Callable[[str], None]


def launcher_alive(pid: int) -> bool:
    """Whether the process that launched a run (:data:`LAUNCHER_PID_ENV`) is still there: the ranks stop
    when it is gone, however it ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a rank that torchrun (or another launcher setting WORLD_SIZE) started."""
    env = os.environ if environ is None else environ
    return "TORCHELASTIC_RUN_ID" in env or "WORLD_SIZE" in env


def split_launch_options(argv: Sequence[str]) -> tuple[list[str], list[str], int | None]:
    """Split a command line into (the ranks' arguments, torchrun's options, ``--nproc-per-node``).

    Accepts ``--opt value`` and ``--opt=value`` (and the underscore spellings torchrun also takes).
    The number of processes is None when ``--nproc-per-node`` is absent; TransferStudioError when it
    is not a whole number of at least 1.
    """
    rest: list[str] = []
    torchrun: list[str] = []
    nproc: int | None = None
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        name, eq, inline = arg.partition("=")
        name = name.replace("_", "-") if name.startswith("--") else name
        if arg == "--":  # everything after it belongs to the ranks
            rest.extend(items[i:])
            break
        if name not in LAUNCH_OPTIONS:
            rest.append(arg)
            i += 1
            continue
        if not LAUNCH_OPTIONS[name]:
            torchrun.append(name)
            i += 1
            continue
        if eq:
            value, i = inline, i + 1
        elif i + 1 < len(items):
            value, i = items[i + 1], i + 2
        else:
            raise TransferStudioError(f"{name} needs a value")
        if name == "--nproc-per-node":
            try:
                nproc = int(value)
            except ValueError:
                nproc = 0
            if nproc < 1:
                raise TransferStudioError(
                    f"--nproc-per-node must be a whole number of at least 1, not {value!r}"
                )
        else:
            torchrun.extend([name, value])
    return rest, torchrun, nproc


def torchrun_command(
    argv: Sequence[str],
    nproc_per_node: int,
    extra_torchrun_args: Sequence[str] = (),
    *,
    module: str = CLI_MODULE,
    python: str | None = None,
) -> list[str]:
    """``python -m torch.distributed.run --nproc-per-node N [rendezvous] [extra] -m MODULE *argv``.

    ``argv`` must not hold the launch options any more (:func:`split_launch_options`). Without any
    rendezvous option in ``extra_torchrun_args``, the run stays on this machine: c10d rendezvous on
    ``127.0.0.1:0`` (a free port chosen by torchrun's agent) and ranks that talk over the loopback.
    """
    if nproc_per_node < 1:
        raise TransferStudioError(f"--nproc-per-node must be at least 1, not {nproc_per_node}")
    if getattr(sys, "frozen", False):
        raise TransferStudioError(
            "the packaged app cannot start several training processes; install transfer-studio with pip "
            "to use --nproc-per-node"
        )
    extra = list(extra_torchrun_args)
    named = {arg.partition("=")[0].replace("_", "-") for arg in extra if arg.startswith("--")}
    rendezvous: list[str] = []
    if not named & _RENDEZVOUS_OPTIONS:
        rendezvous = [
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            "127.0.0.1:0",
            "--rdzv-id",
            uuid.uuid4().hex,
            "--local-addr",
            "127.0.0.1",
        ]
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc_per_node),
        *rendezvous,
        *extra,
        "-m",
        module,
        *argv,
    ]


def launch_environment(
    nproc_per_node: int, stop_file: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child's environment: ours plus ``overrides``, the stop file, this engine on PYTHONPATH (so every
    rank runs the same code as the launcher), and OMP_NUM_THREADS shared out over the processes
    (torchrun would otherwise set 1 and print a banner)."""
    env = dict(os.environ)
    env.update(overrides or {})
    env[STOP_FILE_ENV] = str(stop_file)
    env[LAUNCHER_PID_ENV] = str(os.getpid())
    source_root = str(Path(__file__).resolve().parents[2])  # the folder that holds engine/
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([source_root, *[p for p in paths if p != source_root]])
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc_per_node))
    return env


class _TracebackFilter:
    """Forwards torchrun's standard error line by line, keeping Python tracebacks (torchrun's own, when a
    rank fails or the run is ended) out of it: they go to the log file, and one line says so."""

    def __init__(self, source: IO[bytes], sink: IO[Any] | None, say: Say) -> None:
        self.source, self.sink, self.say = source, sink, say
        self.thread = threading.Thread(target=self._pump, name="torchrun-stderr", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        import logging

        log = logging.getLogger(__name__)
        in_traceback = noted = False
        for raw in iter(self.source.readline, b""):
            line = raw.decode("utf-8", "replace")
            if line.startswith("Traceback (most recent call last):"):
                in_traceback = True
            if in_traceback:
                log.warning("torchrun: %s", line.rstrip())
                if not line.startswith((" ", "\t", "Traceback")) and line.strip():
                    in_traceback = False  # the exception's own line ends the block
                    if not noted:
                        noted = True
                        self.say("torchrun's details are in the log file (transfer-studio doctor names it)")
                continue
            self._write(line)

    def _write(self, line: str) -> None:
        sink = self.sink if self.sink is not None else sys.stderr
        try:
            sink.write(line)
            sink.flush()
        except (OSError, ValueError):
            pass

    def join(self) -> None:
        self.thread.join(timeout=5)


class _Child:
    """The torchrun process, in a session (process group) of its own."""

    def __init__(
        self, command: list[str], env: dict[str, str], stop_file: Path, say: Say, output: dict[str, Any]
    ) -> None:
        self.stop_file = stop_file
        self.say = say
        self.stop_requested = False
        self.killed = False
        self.kill_deadline: float | None = None
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        self.popen = subprocess.Popen(command, env=env, **output, **kwargs)

    def request_stop(self, why: str) -> None:
        if self.stop_requested:
            return
        self.stop_requested = True
        self.stop_file.touch()
        self.say(f"{why}: every process stops after its current step (Ctrl+C again to abort)")

    def terminate(self) -> None:
        """Ask the whole group to end now (torchrun's agent and every rank); :meth:`check` escalates."""
        if self.popen.poll() is not None:
            return
        self.killed = True
        if self.kill_deadline is None:
            self.kill_deadline = time.monotonic() + KILL_GRACE_S
        self._signal_group(hard=False)

    def check(self) -> None:
        """Kill the group when it outlived the grace after :meth:`terminate`."""
        if self.kill_deadline is not None and time.monotonic() > self.kill_deadline:
            self._signal_group(hard=True)

    def kill(self) -> None:
        """:meth:`terminate`, wait for the grace, then kill (never from a signal handler)."""
        self.terminate()
        try:
            self.popen.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal_group(hard=True)
            self.popen.wait()

    def _signal_group(self, hard: bool) -> None:
        try:
            if sys.platform == "win32":
                if hard:
                    self.popen.kill()
                else:
                    self.popen.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                os.killpg(self.popen.pid, signal.SIGKILL if hard else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested:
            self.say("aborting every process")
            self.terminate()
        else:
            self.request_stop("stopping")

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM asks as Ctrl+C does: every rank stops at its next step (a second one ends them now)."""
        self.on_sigint(signum, frame)


def run_torchrun(
    argv: Sequence[str],
    nproc_per_node: int,
    extra_torchrun_args: Sequence[str] = (),
    *,
    module: str = CLI_MODULE,
    env: Mapping[str, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_abort: Callable[[], bool] | None = None,
    say: Say | None = None,
    poll_s: float = 0.2,
    cancelled_exit_code: int = EXIT_CANCELLED,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
) -> int:
    """Run :func:`torchrun_command` as a child process and wait for it; returns its exit code.

    Ctrl+C (SIGINT, when called from the main thread) or ``should_stop()`` turning true (polled every
    ``poll_s``; the window's Stop) asks every rank to stop at the same step through the stop file; a
    second Ctrl+C ends the group at once, as do SIGTERM to this process and ``should_abort()`` turning
    true (the window closing). A run that ended cleanly after a stop request, or was ended, returns
    ``cancelled_exit_code``. ``say`` receives the one-line notices (the CLI
    prints them to stderr). ``stdout``/``stderr`` go to the child as to :class:`subprocess.Popen`
    (default: this process's; every rank writes to them).
    """
    command = torchrun_command(argv, nproc_per_node, extra_torchrun_args, module=module)
    notify: Say = say or (lambda _text: None)
    stop_dir = Path(tempfile.mkdtemp(prefix="transfer-studio-launch-"))
    child: _Child | None = None
    pump: _TracebackFilter | None = None
    previous: dict[int, Any] = {}
    try:
        environment = launch_environment(nproc_per_node, stop_dir / "stop", env)
        filtered = not isinstance(stderr, int)  # a stream or ours: pumped through the filter
        output = {"stdout": stdout, "stderr": subprocess.PIPE if filtered else stderr}
        child = _Child(command, environment, stop_dir / "stop", notify, output)
        if filtered and child.popen.stderr is not None:
            pump = _TracebackFilter(
                child.popen.stderr, stderr if not isinstance(stderr, int) else None, notify
            )
        if threading.current_thread() is threading.main_thread():
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, child.on_sigint)
            if sys.platform != "win32":
                previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, child.on_sigterm)
        while True:
            try:
                code = child.popen.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            child.check()
            if should_abort is not None and not child.killed and should_abort():
                notify("aborting every process")
                child.terminate()
            if should_stop is not None and not child.stop_requested and should_stop():
                child.request_stop("stop requested")
        if pump is not None:
            pump.join()
        if child.killed or (child.stop_requested and code == 0):
            return cancelled_exit_code
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.popen.poll() is None:  # we are unwinding on an error: leave nothing
            child.kill()
        shutil.rmtree(stop_dir, ignore_errors=True)
