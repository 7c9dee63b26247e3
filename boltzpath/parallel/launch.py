"""Start R local processes wired like ``torchrun`` would (tests, benchmarks, notebooks).

``spawn_local(fn, nprocs, *args)`` runs ``fn(*args)`` in ``nprocs`` fresh processes
(``torch.multiprocessing`` spawn) with ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/
``MASTER_PORT`` set and ``OMP_NUM_THREADS=1`` unless given, so ``dist.init_from_env()`` inside
``fn`` joins a gloo (CPU) or NCCL (CUDA) group. ``fn`` must be a module-level function; it reports
results through files (e.g. under a temporary folder).

As under ``torchrun``, the rendezvous store is hosted by the launching process, already listening
on a port the OS picked, before any worker starts (``TORCHELASTIC_USE_AGENT_STORE``: every rank is
a client). Letting rank 0 bind a port that was merely free a moment ago races with rank 1's
connection attempts (one retry can draw that port as its own source port on 127.0.0.1); that was
seen as an early SIGABRT of rank 0 about once in 20 runs under load.

Each worker also leaves with ``os._exit(0)`` once ``fn`` has returned and the process group is
destroyed, skipping interpreter finalisation. A rank-0 SIGABRT ("terminate called without an
active exception") was still seen once in CI with the store fix and could not be reproduced here
(0 in 30 runs of the test and 0 in 15 runs of the parallel test files, under load). That message is
what a C++ thread killed inside a noexcept frame during finalisation prints, so the exit path is
made deterministic; ``faulthandler`` prints every thread's Python stack if a worker still aborts.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from collections.abc import Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_interface() -> str | None:
    """The name of this machine's loopback interface ("lo" on Linux, "lo0" on macOS), if found."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        return None
    return next((n for n in ("lo", "lo0") if n in names), None)


def _entry(rank: int, fn: Callable, nprocs: int, port: int, threads: int, args: tuple) -> None:
    lo = loopback_interface()
    if lo is not None and "GLOO_SOCKET_IFNAME" not in os.environ:
        # gloo's pairs on the loopback too (by default gloo binds whatever the hostname resolves to,
        # which in a container can be an outside interface while the store is on 127.0.0.1)
        os.environ["GLOO_SOCKET_IFNAME"] = lo
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nprocs),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": str(threads)})
    import faulthandler

    import torch

    from boltzpath.parallel.dist import leave_process_group

    faulthandler.enable(all_threads=True)  # a worker that aborts in C++ still prints its Python stacks
    torch.set_num_threads(threads)
    fn(*args)
    # leave without interpreter finalisation (module docstring); fn's results are already in files.
    # An exception from fn never reaches this line and is reported by torch.multiprocessing as usual.
    leave_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn_local(fn: Callable, nprocs: int, *args, threads: int = 1, timeout_s: float = 600.0) -> None:
    """Run ``fn(*args)`` in ``nprocs`` processes forming one job; raises if any of them fails."""
    # port 0: the OS binds a free port and the store listens on it before the workers exist
    store = dist.TCPStore("127.0.0.1", 0, world_size=int(nprocs), is_master=True,
                          timeout=_dt.timedelta(seconds=timeout_s), wait_for_workers=False)
    mp.spawn(_entry, args=(fn, int(nprocs), store.port, int(threads), args), nprocs=int(nprocs), join=True)
