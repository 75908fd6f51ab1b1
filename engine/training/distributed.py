"""Training on several processes: the torch.distributed building blocks the trainer uses under torchrun.

A multi-process run is N copies of the same training command, started by torchrun
(:mod:`engine.core.launch`), each with RANK, LOCAL_RANK and WORLD_SIZE in its environment.
:func:`init_from_env` joins them into one process group (NCCL on CUDA, gloo on the CPU) and returns a
:class:`Dist`; everything else here takes that ``Dist`` and does nothing (no communication at all)
when the run has one process, so the trainer calls the same functions either way.

What every rank must do the same way, or the collectives pair up wrongly and the run hangs:

- Take the same number of steps. :func:`shard_batches` cuts one epoch's seeded order (identical on
  every rank) into equal steps: the global batch is ``batch_size * world_size`` and each rank takes
  ``batch_size`` of it. The last, partial step is shared out evenly and padded by wrapping round to the
  start of the order (as DistributedSampler does), so at most ``world_size - 1`` samples an epoch are
  trained on twice and nothing is dropped. With one process the batches are exactly
  ``order.split(batch_size)``.
- Evaluate exactly. :func:`shard_for_eval` gives each rank a contiguous block of the validation split
  (rank order), walked in the same number of batches on every rank; blocks never overlap and nothing
  is padded (a rank whose block is shorter gets short or empty batches, which it skips), so the sums of
  :func:`all_reduce_sums` equal a single process's: every sample counted exactly once.
- Decide together. A stop request (Ctrl+C, the window's Stop, the launcher's stop file) reaches each
  rank at a different moment; :func:`agree_to_stop` is called once per step on every rank and is true
  on all of them as soon as it is true on one, so all stop at the same step. Every other decision that
  changes control flow (best epoch, early stopping) must come from all-reduced values.

Only rank 0 (``Dist.is_main``) writes: the run folder, metrics, checkpoints, the bundle, the events the
CLI and the window show. :func:`run_on_main` runs such a step on rank 0 and hands its result (or its
error) to every rank, e.g. the path of the run folder rank 0 created.

Failures. torchrun ends every other process of a machine within a fraction of a second once one exits
non-zero. Across machines, or when a process hangs rather than dies, the collectives end it: gloo
reports a closed connection at once, and every collective gives up after ``timeout_s``
(:data:`DEFAULT_TIMEOUT_S`) with :class:`PeerLost`; NCCL's watchdog ends the process after the same
time. Phases whose length legitimately differs between ranks (scanning the dataset, building the model,
rank 0 writing a checkpoint) end in :func:`sync`, a barrier with its own, long timeout
(:data:`SYNC_TIMEOUT_S`) that names the ranks that did not arrive.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.core.errors import StopCheck, TransferStudioError
from engine.core.launch import LAUNCHER_PID_ENV, STOP_FILE_ENV, launcher_alive

log = logging.getLogger(__name__)

#: How long a collective waits for the other ranks before it fails (steady state: one step apart).
DEFAULT_TIMEOUT_S = 45.0
#: How long :func:`sync` waits: phases that may take much longer on one rank than on another.
SYNC_TIMEOUT_S = 1800.0
#: How often a rank looks for the launcher's stop file.
STOP_FILE_POLL_S = 0.25

T = TypeVar("T")
_SOURCE_LOCATION = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")


class PeerLost(TransferStudioError):
    """Another process of a multi-process run ended, or did not answer within the timeout."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: one process (the default), or rank ``rank`` of ``world_size``.

    ``rank`` is global (0 writes); ``local_rank`` is the index on this machine (it picks the GPU).
    ``control`` is a gloo group for CPU-side collectives when the training group is NCCL (None: the
    default group, which is then gloo).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    control: tdist.ProcessGroup | None = field(default=None, compare=False, repr=False)

    @classmethod
    def single(cls) -> Dist:
        """A run of one process: every helper is then a local no-op."""
        return cls()

    @property
    def is_main(self) -> bool:
        """Whether this process writes (the run folder, metrics, checkpoints, bundle, events)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device_type: str) -> torch.device:
        """The device this rank trains on: its own GPU (by LOCAL_RANK) on CUDA and XPU."""
        if self.distributed and device_type in ("cuda", "xpu"):
            return torch.device(device_type, self.local_rank)
        return torch.device(device_type)

    def describe(self) -> str:
        if not self.distributed:
            return "1 process"
        return f"process {self.rank} of {self.world_size} ({self.backend}, local rank {self.local_rank})"


# -- the process group ----------------------------------------------------------------------------


def backend_for(device_type: str) -> str:
    """The collective backend for a device type: NCCL on CUDA, gloo on the CPU (XCCL on Intel XPUs)."""
    if device_type == "cpu":
        return "gloo"
    if device_type == "cuda":
        if not tdist.is_nccl_available():
            raise TransferStudioError(
                "this PyTorch build has no NCCL: train on several GPUs with a CUDA build"
            )
        return "nccl"
    if device_type == "xpu" and getattr(tdist, "is_xccl_available", lambda: False)():
        return "xccl"
    raise TransferStudioError(
        f"training on several processes needs CUDA GPUs or the CPU, not {device_type!r}; use --device cpu"
    )


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise TransferStudioError(f"{name} is not set: start several training processes with torchrun")
    try:
        return int(value)
    except ValueError:
        raise TransferStudioError(f"{name}={value!r} is not a whole number") from None


def init_from_env(device_type: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """Join the run's process group from the environment torchrun sets; a single process without it.

    WORLD_SIZE absent or 1: :meth:`Dist.single`, no process group. Otherwise RANK, LOCAL_RANK,
    MASTER_ADDR and MASTER_PORT must be set; on CUDA this process's GPU becomes ``cuda:LOCAL_RANK``
    before the group starts. ``timeout_s`` bounds every collective (see the module's notes).
    """
    if "WORLD_SIZE" not in os.environ:
        return Dist.single()
    world = _env_int("WORLD_SIZE")
    if world < 1:
        raise TransferStudioError(f"WORLD_SIZE must be at least 1, not {world}")
    if world == 1:
        return Dist.single()
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world or local_rank < 0:
        raise TransferStudioError(f"RANK {rank} / LOCAL_RANK {local_rank} do not fit WORLD_SIZE {world}")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise TransferStudioError(
            f"{' and '.join(missing)} not set: start several training processes with torchrun"
        )
    if tdist.is_initialized():
        raise RuntimeError("the process group is already initialised")
    backend = backend_for(device_type)
    device_id = None
    if device_type in ("cuda", "xpu"):
        module = torch.cuda if device_type == "cuda" else torch.xpu
        count = module.device_count()
        if local_rank >= count:
            raise TransferStudioError(
                f"process {rank} has LOCAL_RANK {local_rank}, but this machine shows {count} {device_type} "
                f"device(s): start at most {count} process(es) per machine"
            )
        module.set_device(local_rank)
        device_id = torch.device(device_type, local_rank)
    timeout = timedelta(seconds=timeout_s)
    found = Dist(rank, local_rank, world, backend, timeout_s)
    where = f"joining the other processes at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    with _collective(found, where):
        tdist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world,
            timeout=timeout,
            device_id=device_id,
        )
        if backend != "gloo":  # CPU-side collectives (flags, sums, objects, features) never touch the GPU
            group = tdist.new_group(backend="gloo", timeout=timeout)
            assert isinstance(group, tdist.ProcessGroup)  # every rank is a member
            found = Dist(rank, local_rank, world, backend, timeout_s, group)
    log.info("joined the process group: %s", found.describe())
    return found


def shutdown(d: Dist, *, finished: bool = True) -> None:
    """Leave the process group (nothing for a single process).

    ``finished``: every process got here the normal way, so they first meet at a barrier. Without it,
    one process could tear its group down while another's last collective is still in flight, and
    gloo then occasionally aborts that process ("terminate called without an active exception", about
    one launch in 70 here). After a failure (``finished=False``) no process waits for the others.
    """
    if not (d.distributed and tdist.is_initialized()):
        return
    if finished:
        try:
            tdist.barrier(group=d.control)
        except Exception as exc:  # noqa: BLE001 - a peer that is gone: leave all the same
            log.warning("the processes did not meet before leaving the process group: %s", exc)
    tdist.destroy_process_group()


@contextmanager
def process_group(device_type: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Dist]:
    """:func:`init_from_env` ... :func:`shutdown`."""
    d = init_from_env(device_type, timeout_s)
    try:
        yield d
    except BaseException:
        shutdown(d, finished=False)
        raise
    shutdown(d)


@contextmanager
def _collective(d: Dist, what: str, timeout_s: float | None = None) -> Iterator[None]:
    """Turn a collective's failure (a peer that died or hangs) into :class:`PeerLost`."""
    try:
        yield
    except RuntimeError as exc:  # gloo and NCCL errors, DistBackendError and DistNetworkError included
        raise peer_lost(exc, d, what, timeout_s) from exc


def peer_lost(exc: BaseException, d: Dist, what: str, timeout_s: float | None = None) -> PeerLost:
    """A :class:`PeerLost` that says which process noticed, while doing what, and why.

    The trainer can wrap the errors of DDP's own collectives (in ``backward``) with it too.
    """
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    detail = _SOURCE_LOCATION.sub("", detail)  # "[/__w/pytorch/.../pair.cc:545] Read error ..."
    if len(detail) > 300:
        detail = detail[:300] + " …"
    waited = d.timeout_s if timeout_s is None else timeout_s
    return PeerLost(
        f"{what}: process {d.rank} of {d.world_size} lost the others (one ended, or did not answer "
        f"within {waited:g} s): {detail}"
    )


def sync(d: Dist, what: str, timeout_s: float = SYNC_TIMEOUT_S) -> None:
    """Wait until every rank got here (up to ``timeout_s``); PeerLost naming the missing ranks otherwise.

    Call it after a phase whose length may differ a lot between ranks, before the next collective.
    """
    if not d.distributed:
        return
    with _collective(d, what, timeout_s):
        tdist.monitored_barrier(group=d.control, timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)


# -- agreeing -------------------------------------------------------------------------------------


def _all_reduce_ints(values: Sequence[int], op: tdist.ReduceOp.RedOpType, d: Dist, what: str) -> list[int]:
    if not d.distributed:
        return [int(v) for v in values]
    tensor = torch.tensor([int(v) for v in values], dtype=torch.int64)
    with _collective(d, what):
        tdist.all_reduce(tensor, op=op, group=d.control)
    return [int(v) for v in tensor.tolist()]


def agree_flags(flags: Sequence[bool], d: Dist) -> tuple[bool, ...]:
    """Each flag true on every rank when it is true on any (one all-reduce for all of them)."""
    return tuple(
        bool(v)
        for v in _all_reduce_ints([int(f) for f in flags], tdist.ReduceOp.MAX, d, "agreeing on the next step")
    )


def agree_to_stop(local_stop: bool, d: Dist) -> bool:
    """True on every rank when any rank was asked to stop. Call it once per step, on every rank."""
    return agree_flags([local_stop], d)[0]


def min_over_ranks(value: int, d: Dist) -> int:
    return _all_reduce_ints([value], tdist.ReduceOp.MIN, d, "agreeing on a size")[0]


def max_over_ranks(value: int, d: Dist) -> int:
    return _all_reduce_ints([value], tdist.ReduceOp.MAX, d, "agreeing on a count")[0]


def agree_batch_size(size: int, d: Dist) -> int:
    """The smallest of the ranks' batch sizes: call it before a pass, after any rank may have halved its
    own (inference batches halve locally on out-of-memory; the next pass must use one size everywhere)."""
    return min_over_ranks(size, d)


def all_reduce_sums(values: torch.Tensor | Sequence[float], d: Dist) -> torch.Tensor:
    """The element-wise sums over ranks, as a new float64 CPU tensor (exact for counts below 2**53)."""
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().to("cpu", copy=True)
    if d.distributed:
        with _collective(d, "adding up the metrics"):
            tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM, group=d.control)
    return tensor


# -- objects and tensors --------------------------------------------------------------------------


def broadcast_object(obj: T, d: Dist, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (any picklable object; other ranks' ``obj`` is ignored)."""
    if not d.distributed:
        return obj
    box: list[Any] = [obj if d.rank == src else None]
    with _collective(d, "sharing data between processes"):
        tdist.broadcast_object_list(box, src=src, group=d.control)
    result: T = box[0]
    return result


def run_on_main(fn: Callable[[], T], d: Dist, what: str, timeout_s: float = SYNC_TIMEOUT_S) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank.

    When ``fn`` raises, rank 0 re-raises it and every other rank raises a TransferStudioError with the
    same message, so all of them end the same way. The other ranks wait up to ``timeout_s``.
    """
    if not d.distributed:
        return fn()
    outcome: tuple[str, Any] = ("", None)
    error: Exception | None = None
    if d.is_main:
        try:
            outcome = ("ok", fn())
        except TransferStudioError as exc:
            outcome, error = ("error", str(exc)), exc
        except Exception as exc:
            outcome, error = ("failed", f"{type(exc).__name__}: {exc}"), exc
    sync(d, what, timeout_s)
    outcome = broadcast_object(outcome, d)
    if error is not None:
        raise error
    kind, value = outcome
    if kind == "error":
        raise TransferStudioError(value)
    if kind == "failed":
        raise TransferStudioError(f"{what} failed in process 0: {value}")
    result: T = value
    return result


def union_over_ranks(items: Iterable[T], d: Dist) -> set[T]:
    """The union of every rank's ``items`` on every rank (e.g. the images each rank failed to decode)."""
    own = set(items)
    if not d.distributed:
        return own
    parts: list[Any] = [None] * d.world_size
    with _collective(d, "gathering results"):
        tdist.all_gather_object(parts, own, group=d.control)
    union: set[T] = set()
    for part in parts:
        union |= part
    return union


def gather_rows(local: torch.Tensor, d: Dist, dim: int = 0) -> torch.Tensor:
    """Every rank's ``local`` concatenated along ``dim`` in rank order, on every rank (a CPU tensor).

    Ranks may hold different numbers of rows (zero included); the other dimensions must match among the
    ranks that hold rows (a rank without rows may pass any shape with the same number of dimensions,
    e.g. ``torch.empty(views, 0, 0)``). With :func:`shard_for_eval`'s contiguous blocks the result is
    in the original order.
    """
    if not d.distributed:
        return local
    meta: list[Any] = [None] * d.world_size
    with _collective(d, "gathering results"):
        tdist.all_gather_object(meta, (tuple(local.shape), local.dtype), group=d.control)
    counts = [int(shape[dim]) for shape, _dtype in meta]
    reference = next(((shape, dtype) for shape, dtype in meta if shape[dim] > 0), None)
    if reference is None:
        return local.cpu()
    shape, dtype = list(reference[0]), reference[1]
    axis = dim % len(shape)
    for other, _dtype in meta:
        if other[axis] > 0 and other[:axis] + other[axis + 1 :] != tuple(shape[:axis] + shape[axis + 1 :]):
            raise ValueError(f"gather_rows: shapes {shape} and {list(other)} differ beyond dimension {dim}")
    wire = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool
    shape[dim] = max(counts)
    buffer = torch.zeros(shape, dtype=wire)
    if local.shape[dim] > 0:
        buffer.narrow(dim, 0, local.shape[dim]).copy_(local.detach().cpu().to(wire))
    parts = [torch.empty_like(buffer) for _ in range(d.world_size)]
    with _collective(d, "gathering results"):
        tdist.all_gather(parts, buffer, group=d.control)
    gathered = torch.cat([part.narrow(dim, 0, n) for part, n in zip(parts, counts)], dim=dim)
    return gathered.to(dtype)


# -- sharding -------------------------------------------------------------------------------------


def train_steps(n: int, batch_size: int, world_size: int) -> int:
    """Steps of one training epoch of ``n`` samples (the same on every rank)."""
    return math.ceil(n / (batch_size * world_size)) if n else 0


def shard_batches(order: torch.Tensor, batch_size: int, d: Dist) -> list[torch.Tensor]:
    """This rank's batches of one training epoch, from the epoch's order (the same on every rank).

    Step ``s`` covers ``order[s*G : (s+1)*G]`` with ``G = batch_size * world_size``; rank ``r`` takes the
    ``r``-th block of ``batch_size``. The last step's ``m < G`` samples are shared out as
    ``ceil(m / world_size)`` each, the shortfall (< world_size) taken from the start of the order. Every
    rank gets :func:`train_steps` batches, of equal sizes step by step.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    n, world, rank = order.numel(), d.world_size, d.rank
    if n == 0:
        return []
    step = batch_size * world
    full = n // step
    batches = [order[s * step + rank * batch_size : s * step + (rank + 1) * batch_size] for s in range(full)]
    left = n - full * step
    if left:
        share = math.ceil(left / world)
        pad = share * world - left
        tail = (
            torch.cat([order[full * step :], order[torch.arange(pad) % n]]) if pad else order[full * step :]
        )
        batches.append(tail[rank * share : (rank + 1) * share])
    return batches


@dataclass(frozen=True)
class EvalShard:
    """This rank's contiguous block ``[start, stop)`` of a split; ``slots`` (the same on every rank) is
    the block length a rank would have if ``n`` divided evenly, and decides the batch count."""

    start: int
    stop: int
    slots: int

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def indices(self) -> torch.Tensor:
        return torch.arange(self.start, self.stop)

    def batches(self, batch_size: int) -> list[torch.Tensor]:
        """``ceil(slots / batch_size)`` index batches on every rank; the last ones may be short or empty."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        steps = math.ceil(self.slots / batch_size)
        return [
            torch.arange(
                min(self.start + i * batch_size, self.stop), min(self.start + (i + 1) * batch_size, self.stop)
            )
            for i in range(steps)
        ]


def shard_for_eval(n: int, d: Dist) -> EvalShard:
    """Rank ``r``'s block of ``n`` samples: ``[r*k, (r+1)*k)`` cut at ``n``, with ``k = ceil(n / world)``.

    Blocks are disjoint and cover ``0..n-1`` in rank order; nothing is padded.
    """
    slots = math.ceil(n / d.world_size) if n else 0
    start = min(d.rank * slots, n)
    return EvalShard(start=start, stop=min(start + slots, n), slots=slots)


def eval_steps(n: int, batch_size: int, world_size: int) -> int:
    """Batches of one evaluation pass over ``n`` samples (the same on every rank)."""
    return math.ceil(math.ceil(n / world_size) / batch_size) if n else 0


# -- stopping -------------------------------------------------------------------------------------


class StopRequest:
    """A rank's own ``should_stop``: Ctrl+C in this process, the launcher's stop file, or ``also()``.

    Pass its result to :func:`agree_to_stop` once per step. SIGINT only sets the flag, however often it
    comes (torchrun's agent forwards the terminal's Ctrl+C a second time); a hard stop is SIGTERM.
    """

    def __init__(
        self,
        stop_file: str | Path | None = None,
        *,
        also: StopCheck | None = None,
        poll_s: float = STOP_FILE_POLL_S,
    ) -> None:
        path = stop_file if stop_file is not None else os.environ.get(STOP_FILE_ENV)
        self.stop_file = Path(path) if path else None
        launcher = os.environ.get(LAUNCHER_PID_ENV, "")
        self.launcher_pid = int(launcher) if launcher.isdigit() else None
        self.also = also
        self.requested = False
        self._poll_s = poll_s
        self._next_poll = 0.0

    def install_sigint(self) -> bool:
        """Make Ctrl+C request a stop (main thread only); returns whether the handler was installed."""
        if threading.current_thread() is not threading.main_thread():
            return False
        signal.signal(signal.SIGINT, self._on_sigint)
        return True

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    def request(self) -> None:
        self.requested = True

    def __call__(self) -> bool:
        if not self.requested and self.also is not None and self.also():
            self.requested = True
        if not self.requested and (self.stop_file is not None or self.launcher_pid is not None):
            now = time.monotonic()
            if now >= self._next_poll:
                self._next_poll = now + self._poll_s
                self.requested = (self.stop_file is not None and self.stop_file.exists()) or (
                    self.launcher_pid is not None and not launcher_alive(self.launcher_pid)
                )
        return self.requested


# -- out of memory --------------------------------------------------------------------------------


def batch_halving_allowed(d: Dist, training: bool) -> bool:
    """Whether a rank may halve its batch on CUDA out-of-memory and go on.

    Training steps: not with several processes (the other ranks are already waiting in the gradient
    all-reduce of this step; splitting the batch would take extra steps they never take). Validation:
    yes, locally (its forward passes hold no collective); the next pass starts from
    :func:`agree_batch_size`. The feature pass, which agrees on Stop once per chunk, agrees on the
    out-of-memory too (:func:`agree_flags`), so every rank halves and retries together.
    """
    return not (training and d.distributed)


def training_oom_error(d: Dist, batch_size: int) -> TransferStudioError:
    """The error to raise when a training step runs out of GPU memory with several processes."""
    smaller = max(1, batch_size // 2)
    return TransferStudioError(
        f"out of GPU memory in process {d.rank} (GPU {d.local_rank}) with {batch_size} images per process; "
        f"with several processes the batch cannot shrink during a run (every process must take the same "
        f"steps): start again with --batch-size {smaller} (per process) or fewer processes"
    )


# -- models ---------------------------------------------------------------------------------------


def wrap_ddp(module: nn.Module, d: Dist, *, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` in DistributedDataParallel (gradients averaged over ranks at every backward).

    Unchanged for one process, or when nothing in it learns. DDP's constructor copies rank 0's weights
    and buffers to every rank; the ranks first :func:`sync`, since they may reach this point far apart.
    Keep the unwrapped module for saving, snapshots and evaluation (:func:`unwrap`).
    """
    if not d.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    sync(d, "building the model")
    device = next(module.parameters()).device
    device_ids = [device.index] if device.type in ("cuda", "xpu") and device.index is not None else None
    return DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or ``module`` itself)."""
    inner = module.module if isinstance(module, DistributedDataParallel) else module
    assert isinstance(inner, nn.Module)
    return inner


def sync_batchnorm(model: nn.Module, d: Dist) -> nn.Module:
    """Batch norms that compute their batch statistics over every rank's batch (before :func:`wrap_ddp`).

    Parameters and buffers keep their names, so snapshots, checkpoints and bundles load into the plain
    model. PyTorch's SyncBatchNorm runs on GPUs only: TransferStudioError on the CPU.
    """
    if not d.distributed:
        return model
    device = next(model.parameters()).device
    if device.type not in ("cuda", "xpu"):
        raise TransferStudioError(
            "synchronised batch norm needs GPUs (PyTorch's SyncBatchNorm does not run on the CPU); "
            "train without it"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
