"""Process groups from torchrun's environment, and the few collectives boltzpath needs.

``init_from_env(device)`` reads what ``torchrun`` exports (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and, when ``WORLD_SIZE > 1``, joins the default
process group: **gloo** for CPU tensors, **NCCL** for CUDA tensors. Without those variables it
returns the one-process context and every helper below is the identity, so library code calls
them unconditionally.

Collectives (all ranks must call them, in the same order):

* ``all_reduce_sum`` / ``all_reduce_mean`` / ``all_reduce_max``: elementwise over ranks (in place,
  returns the tensor);
* ``all_gather_cat(t)``: concatenation over ranks along dim 0, rank order, sizes may differ;
* ``sum_int(n)``: Σ_r n_r as a Python int (exact: int64);
* ``broadcast_object(obj)`` / ``all_gather_json(obj)``: JSON-like values (sent as UTF-8 bytes, no pickle);
* ``average_gradients(params)``: ∇ ← (1/R) Σ_r ∇_r in one flat buffer (missing grads count 0).

``shard(n, ctx)`` splits n items as evenly as possible (the first n mod R ranks get one more).
Only the main rank (rank 0) writes files: ``ctx.is_main``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from boltzpath.errors import BadInput
from boltzpath.parallel.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size, local rank, compute device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.distributed and dist.is_initialized() else None

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "device": str(self.device)}


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) when absent."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise BadInput(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise BadInput(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def init_from_env(device: str | torch.device | None = "auto", timeout_s: float = 600.0) -> DistContext:
    """Join torchrun's process group (if any) and return this process's ``DistContext``."""
    rank, world, local = env_world()
    dev = resolve_device(device, local_rank=local)
    if world == 1:
        return DistContext(0, 1, 0, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                timeout=_dt.timedelta(seconds=timeout_s))
    return DistContext(rank, world, local, dev)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (call once at the end of a torchrun job)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shard(n: int, ctx: DistContext) -> tuple[int, int]:
    """(offset, count) of this rank's share of n items; shares differ by at most one."""
    base, extra = divmod(int(n), ctx.world_size)
    count = base + (1 if ctx.rank < extra else 0)
    offset = ctx.rank * base + min(ctx.rank, extra)
    return offset, count


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(ctx.world_size)
    return t


def all_reduce_max(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def sum_int(n: int, ctx: DistContext) -> int:
    """Σ over ranks of an integer (energy-evaluation counts), exact in int64."""
    if not ctx.distributed:
        return int(n)
    t = torch.tensor([int(n)], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def all_gather_cat(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0 in rank order (leading sizes may differ)."""
    if not ctx.distributed:
        return t
    t = t.contiguous()
    sizes = torch.zeros(ctx.world_size, dtype=torch.int64, device=t.device)
    sizes[ctx.rank] = t.shape[0]
    dist.all_reduce(sizes, op=dist.ReduceOp.SUM)
    top = int(sizes.max())
    padded = t.new_zeros((top, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes.tolist(), strict=True)])


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's JSON-serialisable ``obj`` on every rank (sent as UTF-8 bytes, no pickle)."""
    if not ctx.distributed:
        return obj
    data = json.dumps(obj).encode() if ctx.is_main else b""
    n = torch.tensor([len(data)], dtype=torch.int64, device=ctx.device)
    dist.broadcast(n, 0)
    buf = torch.zeros(int(n), dtype=torch.uint8, device=ctx.device)
    if ctx.is_main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


def broadcast_tensor(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Overwrite ``t`` (same shape on every rank) with rank 0's values."""
    if ctx.distributed:
        dist.broadcast(t, 0)
    return t


def broadcast_parameters(modules: Iterable[torch.nn.Module], ctx: DistContext) -> None:
    """Give every rank rank 0's parameters and buffers (identical starting points)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t.data, 0)


def average_gradients(params: Iterable[torch.nn.Parameter], ctx: DistContext) -> None:
    """∇θ ← (1/R) Σ_r ∇θ_r: one flat all-reduce after ``backward()`` (a missing grad counts as 0).

    With equal per-rank batch sizes this is exactly the gradient of the mean loss over the union
    batch, so the optimiser step matches one process training on that batch (up to float summation
    order).
    """
    if not ctx.distributed:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(ctx.world_size)
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset: offset + n].view_as(p.grad))
        offset += n


def all_gather_json(obj, ctx: DistContext) -> list:
    """Every rank's JSON-serialisable ``obj``, in rank order, on every rank (UTF-8 bytes, no pickle)."""
    if not ctx.distributed:
        return [obj]
    data = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).to(ctx.device)
    sizes = torch.zeros(ctx.world_size, dtype=torch.int64, device=ctx.device)
    sizes[ctx.rank] = data.numel()
    dist.all_reduce(sizes, op=dist.ReduceOp.SUM)
    flat = all_gather_cat(data, ctx).cpu()
    out, start = [], 0
    for s in sizes.tolist():
        out.append(json.loads(bytes(flat[start: start + int(s)].tolist()).decode()))
        start += int(s)
    return out


def leave_process_group() -> None:
    """Destroy the default process group if this process joined one (call once before exiting:
    a process that exits with gloo's threads still running aborts with "terminate called …")."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
