"""Run by torchrun with 2 ranks: exercises every collective helper; writes ``OUT/rank<R>.json``.

Usage: ``python -m distributed_scripts.collectives OUT``. Prints ``rank R of W`` first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from engine.core.errors import TransferStudioError
from engine.training import distributed as D

STOP_AT = 7
EVAL_N = 11
EVAL_BATCH = 2
TRAIN_N = 13
TRAIN_BATCH = 2
GATHER_N = 7


def sample_loss(i: int) -> float:
    return 0.25 * i  # dyadic: sums are exact in any order


def eval_sums(d: D.Dist) -> dict[str, object]:
    shard = D.shard_for_eval(EVAL_N, d)
    loss, correct, seen, steps = 0.0, 0, 0, 0
    for batch in shard.batches(EVAL_BATCH):
        steps += 1
        D.agree_to_stop(False, d)  # a collective per batch: fails if the ranks' batch counts differ
        for i in batch.tolist():
            loss += sample_loss(i)
            correct += i % 3 == 0
            seen += 1
    total = D.all_reduce_sums([loss, correct, seen], d).tolist()
    single = [sum(sample_loss(i) for i in range(EVAL_N)), sum(i % 3 == 0 for i in range(EVAL_N)), EVAL_N]
    return {"reduced": total, "single": single, "steps": steps, "local": [shard.start, shard.stop]}


def train_batches(d: D.Dist) -> list[list[int]]:
    order = torch.randperm(TRAIN_N, generator=torch.Generator().manual_seed(5))
    batches = D.shard_batches(order, TRAIN_BATCH, d)
    for _ in batches:
        D.agree_to_stop(False, d)
    return [b.tolist() for b in batches]


def stop_step(d: D.Dist) -> int:
    for step in range(100):
        if D.agree_to_stop(d.rank == 1 and step == STOP_AT, d):
            return step
    return -1


def gathers(d: D.Dist) -> dict[str, object]:
    shard = D.shard_for_eval(GATHER_N, d)
    idx = shard.indices.to(torch.float32)
    feats = torch.stack([idx[:, None] * 10 + torch.arange(3) + 100 * v for v in range(2)])  # [views, k, 3]
    full = D.gather_rows(feats, d, dim=1)
    empty_local = feats if d.rank == 0 else torch.empty(2, 0, 0)
    partial = D.gather_rows(empty_local, d, dim=1)
    ok = D.gather_rows(shard.indices % 2 == 0, d)
    kept = D.gather_rows(shard.indices[shard.indices % 2 == 1], d)
    return {
        "full": full.tolist(),
        "partial_shape": list(partial.shape),
        "ok": ok.tolist(),
        "ok_dtype": str(ok.dtype),
        "kept": kept.tolist(),
    }


def objects(d: D.Dist) -> dict[str, object]:
    shared = D.broadcast_object({"run_dir": f"/runs/from-rank-{d.rank}"}, d)
    value = D.run_on_main(lambda: f"made by rank {d.rank}", d, "making the run folder")

    def refuse() -> str:
        raise TransferStudioError("the folder already holds a run")

    try:
        D.run_on_main(refuse, d, "making the run folder")
        error = None
    except TransferStudioError as exc:
        error = str(exc)
    D.sync(d, "the test's barrier", timeout_s=20)
    return {
        "shared": shared,
        "value": value,
        "error": error,
        "min": D.min_over_ranks(d.rank + 3, d),
        "max": D.max_over_ranks(d.rank + 3, d),
        "flags": list(D.agree_flags([d.rank == 0, False, d.rank == 1], d)),
        "union": sorted(D.union_over_ranks({d.rank, 10 + d.rank, 99}, d)),
    }


def ddp(d: D.Dist) -> dict[str, object]:
    torch.manual_seed(d.rank)  # different weights per rank: DDP must copy rank 0's
    model = nn.Linear(3, 2)
    wrapped = D.wrap_ddp(model, d)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def data(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(100 + rank)
        return torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g)

    inputs, labels = data(d.rank)
    nn.functional.cross_entropy(wrapped(inputs), labels).backward()
    optimizer.step()
    # The same step on one process: the mean of the ranks' gradients.
    reference = nn.Linear(3, 2)
    with torch.no_grad():
        for p, s in zip(reference.parameters(), start):
            p.copy_(s)
    grads = []
    for rank in range(d.world_size):
        reference.zero_grad()
        x, y = data(rank)
        nn.functional.cross_entropy(reference(x), y).backward()
        grads.append([p.grad.clone() for p in reference.parameters()])  # type: ignore[union-attr]
    with torch.no_grad():
        for i, p in enumerate(reference.parameters()):
            p.copy_(start[i] - 0.5 * sum(g[i] for g in grads) / d.world_size)
    matches = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), reference.parameters()))
    try:
        D.sync_batchnorm(nn.Sequential(nn.BatchNorm2d(2)), d)
        sync_bn = None
    except TransferStudioError as exc:
        sync_bn = str(exc)
    return {
        "wrapped": type(wrapped).__name__,
        "unwrapped_is_model": D.unwrap(wrapped) is model,
        "params": [p.detach().flatten().tolist() for p in model.parameters()],
        "matches_single_process": matches,
        "sync_bn": sync_bn,
    }


def main() -> int:
    out = Path(sys.argv[1])
    with D.process_group("cpu", timeout_s=20) as d:  # the ranks meet before they leave the group
        print(f"rank {d.rank} of {d.world_size}", flush=True)
        result = {
            "rank": d.rank,
            "world_size": d.world_size,
            "backend": d.backend,
            "eval": eval_sums(d),
            "train": train_batches(d),
            "stop_step": stop_step(d),
            "gather": gathers(d),
            "objects": objects(d),
            "ddp": ddp(d),
        }
        (out / f"rank{d.rank}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
