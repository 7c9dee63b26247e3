"""Start R local processes wired like ``torchrun`` would (tests, benchmarks, notebooks).

``spawn_local(fn, nprocs, *args)`` runs ``fn(*args)`` in ``nprocs`` fresh processes
(``torch.multiprocessing`` spawn) with ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/
``MASTER_PORT`` set (a free local port) and ``OMP_NUM_THREADS=1`` unless given, so
``dist.init_from_env()`` inside ``fn`` joins a gloo (CPU) or NCCL (CUDA) group. ``fn`` must be a
module-level function; it reports results through files (e.g. under a temporary folder).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, fn: Callable, nprocs: int, port: int, threads: int, args: tuple) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nprocs),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "OMP_NUM_THREADS": str(threads)})
    import torch

    torch.set_num_threads(threads)
    fn(*args)


def spawn_local(fn: Callable, nprocs: int, *args, threads: int = 1) -> None:
    """Run ``fn(*args)`` in ``nprocs`` processes forming one job; raises if any of them fails."""
    mp.spawn(_entry, args=(fn, int(nprocs), free_port(), int(threads), args), nprocs=int(nprocs), join=True)
