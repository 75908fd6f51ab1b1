"""Multi-process training's building blocks (engine.training.distributed) and the torchrun launcher
(engine.core.launch).

The sharding, environment and launcher tests run in this process. The tests marked ``slow`` start real
process groups: 2 ranks on gloo over the loopback, under torchrun (through ``run_torchrun``) or as two
plain processes (what a rank on another machine sees: no torchrun agent to end it). Their programs
are in ``tests/distributed_scripts``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.core.errors import TransferStudioError
from engine.core.launch import (
    EXIT_CANCELLED,
    STOP_FILE_ENV,
    launch_environment,
    run_torchrun,
    split_launch_options,
    torchrun_command,
    under_torchrun,
)
from engine.training import distributed as D

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SCRIPT_ENV = {"PYTHONPATH": str(TESTS)}  # distributed_scripts.* importable in every rank


def ranks(world: int) -> list[D.Dist]:
    return [D.Dist(rank=r, local_rank=r, world_size=world, backend="gloo") for r in range(world)]


# -- sharding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 13, 16, 31, 64, 100])
@pytest.mark.parametrize("batch", [1, 2, 3, 8])
def test_shard_batches_give_every_rank_the_same_steps_and_cover_every_sample(world, n, batch):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    per_rank = [D.shard_batches(order, batch, d) for d in ranks(world)]
    steps = D.train_steps(n, batch, world)
    assert all(len(batches) == steps for batches in per_rank)
    for step in range(steps):  # equal batch sizes at every step: no rank takes a smaller one
        assert len({len(batches[step]) for batches in per_rank}) == 1
    taken = Counter(i for batches in per_rank for b in batches for i in b.tolist())
    assert set(taken) == set(range(n))  # nothing dropped
    padding = sum(taken.values()) - n
    assert 0 <= padding < world  # duplicates only from the documented wrap-around padding
    if n:
        assert max(taken.values()) <= 1 + -(-padding // n)  # each padded sample is one more use
    for step in range(steps - 1):  # only the last step is short
        assert all(len(batches[step]) == batch for batches in per_rank)
    if world == 1:  # exactly a single process's batches
        assert [b.tolist() for b in per_rank[0]] == [
            order[i : i + batch].tolist() for i in range(0, n, batch)
        ]


def test_shard_batches_pad_the_last_step_from_the_start_of_the_order():
    order = torch.tensor([10, 11, 12, 13, 14])
    rank0, rank1 = (D.shard_batches(order, 2, d) for d in ranks(2))
    assert [b.tolist() for b in rank0] == [[10, 11], [14]]
    assert [b.tolist() for b in rank1] == [[12, 13], [10]]  # 10 again: the one padded sample


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 9, 12, 100])
@pytest.mark.parametrize("batch", [1, 3, 32])
def test_eval_shards_are_disjoint_contiguous_blocks_walked_in_equal_batch_counts(world, n, batch):
    shards = [D.shard_for_eval(n, d) for d in ranks(world)]
    assert torch.cat([s.indices for s in shards]).tolist() == list(range(n))  # rank order = original order
    counts = {len(s.batches(batch)) for s in shards}
    assert counts == {D.eval_steps(n, batch, world)}
    for s in shards:
        assert (
            torch.cat(s.batches(batch) or [torch.empty(0, dtype=torch.long)]).tolist() == s.indices.tolist()
        )
        assert all(len(b) <= batch for b in s.batches(batch))


def test_train_and_eval_step_counts_match_a_single_process_for_one_rank():
    assert D.train_steps(10, 4, 1) == 3 and D.eval_steps(10, 4, 1) == 3
    assert D.train_steps(10, 4, 2) == 2 and D.eval_steps(10, 4, 2) == 2
    assert D.train_steps(0, 4, 2) == 0 and D.eval_steps(0, 4, 2) == 0


# -- one process: every helper is a local no-op ---------------------------------------------------


def test_single_process_helpers_need_no_process_group():
    d = D.Dist.single()
    assert d.is_main and not d.distributed and d.describe() == "1 process"
    assert D.agree_to_stop(True, d) and not D.agree_to_stop(False, d)
    assert D.agree_flags([True, False], d) == (True, False)
    assert D.agree_batch_size(7, d) == 7 and D.max_over_ranks(3, d) == 3
    assert D.all_reduce_sums([1.5, 2, 3], d).tolist() == [1.5, 2.0, 3.0]
    rows = torch.arange(6).view(2, 3)
    assert D.gather_rows(rows, d) is rows
    assert D.broadcast_object({"a": 1}, d) == {"a": 1}
    assert D.union_over_ranks([3, 1, 3], d) == {1, 3}
    assert D.run_on_main(lambda: 5, d, "x") == 5
    D.sync(d, "nothing to wait for")
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    assert D.wrap_ddp(model, d) is model and D.unwrap(model) is model
    assert D.sync_batchnorm(model, d) is model
    assert D.batch_halving_allowed(d, training=True)
    assert not torch.distributed.is_initialized()


def test_init_from_env_without_torchrun_is_a_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert D.init_from_env("cpu") == D.Dist.single()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert D.init_from_env("cpu") == D.Dist.single()
    assert not torch.distributed.is_initialized()


def test_init_from_env_explains_a_missing_or_wrong_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(TransferStudioError, match="MASTER_ADDR and MASTER_PORT not set"):
        D.init_from_env("cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(TransferStudioError, match="do not fit WORLD_SIZE 2"):
        D.init_from_env("cpu")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(TransferStudioError, match="RANK='x' is not a whole number"):
        D.init_from_env("cpu")
    assert not torch.distributed.is_initialized()


def test_backends_and_devices():
    assert D.backend_for("cpu") == "gloo"
    with pytest.raises(TransferStudioError, match="needs CUDA GPUs or the CPU"):
        D.backend_for("mps")
    d = D.Dist(rank=5, local_rank=1, world_size=8, backend="nccl")
    assert d.device("cuda") == torch.device("cuda", 1)  # LOCAL_RANK picks the GPU, not RANK
    assert d.device("cpu") == torch.device("cpu")
    assert not d.is_main and D.Dist(rank=0, local_rank=0, world_size=8).is_main
    assert D.Dist.single().device("cuda") == torch.device("cuda")


def test_training_cannot_halve_its_batch_with_several_processes():
    d = D.Dist(rank=1, local_rank=1, world_size=2, backend="nccl")
    assert not D.batch_halving_allowed(d, training=True)
    assert D.batch_halving_allowed(d, training=False)
    message = str(D.training_oom_error(d, 64))
    assert "process 1 (GPU 1)" in message and "--batch-size 32" in message


def test_stop_request_reads_the_stop_file_the_callback_and_sigint(tmp_path, monkeypatch):
    stop_file = tmp_path / "stop"
    monkeypatch.setenv(STOP_FILE_ENV, str(stop_file))
    request = D.StopRequest(poll_s=0)
    assert request.stop_file == stop_file and not request()
    stop_file.touch()
    assert request()

    asked = []
    by_callback = D.StopRequest(tmp_path / "never", also=lambda: bool(asked))
    assert not by_callback()
    asked.append(1)
    assert by_callback()

    previous = signal.getsignal(signal.SIGINT)
    try:
        by_signal = D.StopRequest(tmp_path / "never")
        assert by_signal.install_sigint()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # torchrun's agent forwards Ctrl+C again: still just a stop
        deadline = time.monotonic() + 5
        while not by_signal() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert by_signal()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_peer_lost_names_the_process_and_drops_the_source_location():
    d = D.Dist(rank=0, local_rank=0, world_size=2, backend="gloo", timeout_s=45)
    exc = RuntimeError("[/__w/pytorch/third_party/gloo/pair.cc:545] Read error: Connection reset by peer.")
    message = str(D.peer_lost(exc, d, "adding up the metrics"))
    assert message.startswith("adding up the metrics: process 0 of 2 lost the others")
    assert "within 45 s" in message and message.endswith("Read error: Connection reset by peer.")


# -- the launcher ---------------------------------------------------------------------------------


def test_split_launch_options_separates_torchrun_options_from_the_ranks_arguments():
    argv = ["train", "data", "--nproc-per-node", "4", "--epochs", "3", "--nnodes=2", "--rdzv_endpoint", "h:1"]
    rest, torchrun, nproc = split_launch_options(argv)
    assert rest == ["train", "data", "--epochs", "3"]
    assert torchrun == ["--nnodes", "2", "--rdzv-endpoint", "h:1"]
    assert nproc == 4
    assert split_launch_options(["train", "--standalone"]) == (["train"], ["--standalone"], None)
    assert split_launch_options(["train", "x"]) == (["train", "x"], [], None)
    with pytest.raises(TransferStudioError, match="at least 1"):
        split_launch_options(["train", "--nproc-per-node", "0"])
    with pytest.raises(TransferStudioError, match="needs a value"):
        split_launch_options(["train", "--nproc-per-node"])


def test_torchrun_command_runs_the_cli_module_on_a_loopback_rendezvous():
    command = torchrun_command(["train", "data", "--json"], 2)
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    assert command[-5:] == ["-m", "engine.cli", "train", "data", "--json"]
    options = dict(zip(command[5:-5:2], command[6:-5:2]))
    assert options["--rdzv-backend"] == "c10d"
    assert options["--rdzv-endpoint"] == "127.0.0.1:0"  # the agent picks a free port itself
    assert options["--local-addr"] == "127.0.0.1"
    # Several machines: torchrun's own rendezvous options replace ours.
    multi = torchrun_command(["train"], 4, ["--nnodes", "2", "--rdzv-endpoint", "host:29400"])
    assert "127.0.0.1:0" not in multi and multi[5:9] == ["--nnodes", "2", "--rdzv-endpoint", "host:29400"]
    parsed = _torchrun_parser().parse_args(command[3:])  # torchrun itself accepts it
    assert parsed.module and parsed.training_script == "engine.cli"
    assert parsed.training_script_args == ["train", "data", "--json"]
    with pytest.raises(TransferStudioError):
        torchrun_command(["train"], 0)


def _torchrun_parser():
    from torch.distributed.run import get_args_parser

    return get_args_parser()


def test_launch_environment_names_the_stop_file_and_this_engine(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = launch_environment(2, tmp_path / "stop", {"PYTHONPATH": "/x"})
    assert env[STOP_FILE_ENV] == str(tmp_path / "stop")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/x"]
    assert int(env["OMP_NUM_THREADS"]) == max(1, (os.cpu_count() or 1) // 2)
    assert under_torchrun({"WORLD_SIZE": "2"}) and not under_torchrun({})


# -- real process groups (2 gloo ranks on the loopback) -------------------------------------------


@pytest.fixture(scope="module")
def collectives(tmp_path_factory):
    """One torchrun launch of distributed_scripts.collectives; its two ranks' results and output."""
    out = tmp_path_factory.mktemp("collectives")
    started = time.monotonic()
    code, text = _run_quietly(out, [str(out)], module="distributed_scripts.collectives")
    seconds = time.monotonic() - started
    assert code == 0, text[-3000:]
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return results, text, seconds


@pytest.mark.slow
def test_run_torchrun_starts_every_rank(collectives):
    results, output, seconds = collectives
    assert "rank 0 of 2" in output and "rank 1 of 2" in output
    assert [r["rank"] for r in results] == [0, 1] and {r["world_size"] for r in results} == {2}
    assert {r["backend"] for r in results} == {"gloo"}
    assert seconds < 60


@pytest.mark.slow
def test_eval_sums_over_two_ranks_equal_a_single_process_exactly(collectives):
    results, _output, _seconds = collectives
    for r in results:
        assert r["eval"]["reduced"] == r["eval"]["single"]  # every sample counted exactly once
    assert results[0]["eval"]["steps"] == results[1]["eval"]["steps"]
    assert results[0]["eval"]["local"][1] == results[1]["eval"]["local"][0]


@pytest.mark.slow
def test_training_shards_over_two_ranks_cover_the_epoch_in_equal_steps(collectives):
    results, _output, _seconds = collectives
    a, b = (r["train"] for r in results)
    assert len(a) == len(b) and [len(x) for x in a] == [len(x) for x in b]
    assert set(sum(a, []) + sum(b, [])) == set(range(13))


@pytest.mark.slow
def test_a_stop_on_rank_1_stops_both_ranks_at_the_same_step(collectives):
    results, _output, _seconds = collectives
    assert [r["stop_step"] for r in results] == [7, 7]


@pytest.mark.slow
def test_gather_rows_restores_the_original_order(collectives):
    results, _output, _seconds = collectives
    expected = [[[i * 10 + c + 100 * v for c in range(3)] for i in range(7)] for v in range(2)]
    for r in results:
        g = r["gather"]
        assert g["full"] == expected
        assert g["partial_shape"] == [2, 4, 3]  # rank 1 had no rows (an all-failed shard)
        assert g["ok"] == [i % 2 == 0 for i in range(7)] and g["ok_dtype"] == "torch.bool"
        assert g["kept"] == [1, 3, 5]


@pytest.mark.slow
def test_objects_errors_and_agreement_reach_every_rank(collectives):
    results, _output, _seconds = collectives
    for r in results:
        o = r["objects"]
        assert o["shared"] == {"run_dir": "/runs/from-rank-0"}
        assert o["value"] == "made by rank 0"
        assert o["error"] == "the folder already holds a run"
        assert (o["min"], o["max"]) == (3, 4)
        assert o["flags"] == [True, False, True]
        assert o["union"] == [0, 1, 10, 11, 99]


@pytest.mark.slow
def test_ddp_averages_gradients_like_one_process_and_refuses_sync_bn_on_the_cpu(collectives):
    results, _output, _seconds = collectives
    assert results[0]["ddp"]["params"] == results[1]["ddp"]["params"]
    for r in results:
        assert r["ddp"]["wrapped"] == "DistributedDataParallel" and r["ddp"]["unwrapped_is_model"]
        assert r["ddp"]["matches_single_process"]
        assert "needs GPUs" in r["ddp"]["sync_bn"]


@pytest.mark.slow
def test_under_torchrun_a_dead_rank_ends_the_run_quickly(tmp_path):
    started = time.monotonic()
    code, output = _run_quietly(
        tmp_path, ["exit", "20", str(tmp_path)], module="distributed_scripts.peer_failure"
    )
    assert code != 0, output[-2000:]
    assert time.monotonic() - started < 60
    assert "exitcode  : 7" in output  # torchrun's report names the rank that died


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plain_ranks(tmp_path: Path, mode: str, timeout_s: float) -> tuple[dict, float, str]:
    """Two ranks without torchrun (as on two machines): nothing but the collectives ends rank 0."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "WORLD_SIZE": "2"}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "distributed_scripts.peer_failure", mode, str(timeout_s), str(tmp_path)]
    procs = [
        subprocess.Popen(
            command,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    try:
        out0, _ = procs[0].communicate(timeout=90)
        code0 = procs[0].returncode
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert code0 == 3, out0[-2000:]
    report = json.loads((tmp_path / "rank0.json").read_text())
    return report, report["seconds"], out0


@pytest.mark.slow
def test_without_torchrun_a_dead_peer_surfaces_as_peer_lost_at_once(tmp_path):
    report, seconds, _output = _plain_ranks(tmp_path, "exit", 20)
    assert report["step"] == 3
    assert seconds < 10
    assert "process 0 of 2 lost the others" in report["error"]


@pytest.mark.slow
def test_without_torchrun_a_hung_peer_surfaces_as_peer_lost_after_the_timeout(tmp_path):
    report, seconds, _output = _plain_ranks(tmp_path, "hang", 4)
    assert report["step"] == 3
    assert 3 < seconds < 30
    assert "did not answer within 4 s" in report["error"]


def _run_quietly(tmp_path: Path, argv: list[str], **kwargs) -> tuple[int, str]:
    """run_torchrun with 2 ranks, their output (and torchrun's) in a file; (exit code, output)."""
    log = tmp_path / "log.txt"
    with open(log, "w") as stream:
        code = run_torchrun(argv, 2, env=SCRIPT_ENV, stdout=stream, stderr=subprocess.STDOUT, **kwargs)
    return code, log.read_text()


@pytest.mark.slow
def test_should_stop_stops_every_rank_at_the_same_step(tmp_path):
    running = tmp_path / "running"
    code, output = _run_quietly(
        tmp_path, [str(tmp_path)], module="distributed_scripts.stop_loop", should_stop=running.exists
    )
    assert code == EXIT_CANCELLED, output[-2000:]
    stopped = [json.loads((tmp_path / f"rank{r}.json").read_text())["stopped_at"] for r in range(2)]
    assert stopped[0] == stopped[1] > 5


def _launcher(tmp_path: Path, *script_args: str) -> subprocess.Popen:
    """A process that runs run_torchrun as the CLI would (Ctrl+C reaches it, not the ranks)."""
    code = (
        "import sys\n"
        "from engine.core.launch import run_torchrun\n"
        f"sys.exit(run_torchrun({[str(tmp_path), *script_args]!r}, 2, module='distributed_scripts.stop_loop', "
        f"env={SCRIPT_ENV!r}, say=lambda t: print(t, file=sys.stderr, flush=True)))\n"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "running").exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.05)
    if not (tmp_path / "running").exists():
        launcher.kill()
        pytest.fail(f"the ranks never started: {launcher.communicate()[0][-2000:]}")
    return launcher


def _finish(launcher: subprocess.Popen, timeout_s: float) -> str:
    try:
        return launcher.communicate(timeout=timeout_s)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie whose parent is gone counts as ended


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_stops_every_rank_at_the_same_step(tmp_path):
    launcher = _launcher(tmp_path)
    launcher.send_signal(signal.SIGINT)  # what a terminal's Ctrl+C does to the launcher
    output = _finish(launcher, 60)
    assert launcher.returncode == EXIT_CANCELLED, output[-2000:]
    assert "every process stops after its current step" in output
    stopped = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert stopped[0]["stopped_at"] == stopped[1]["stopped_at"] > 5


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_second_ctrl_c_ends_every_process_at_once(tmp_path):
    launcher = _launcher(tmp_path, "ignore")  # ranks that never stop by themselves
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    launcher.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    launcher.send_signal(signal.SIGINT)
    output = _finish(launcher, 60)
    assert launcher.returncode == EXIT_CANCELLED, output[-2000:]
    assert "aborting every process" in output
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "rank0.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_should_abort_ends_every_process_at_once(tmp_path):
    running = tmp_path / "running"
    started = time.monotonic()
    code, output = _run_quietly(
        tmp_path,
        [str(tmp_path), "ignore"],
        module="distributed_scripts.stop_loop",
        should_abort=running.exists,
    )
    assert code == EXIT_CANCELLED, output[-2000:]
    assert time.monotonic() - started < 40
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(2)]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
