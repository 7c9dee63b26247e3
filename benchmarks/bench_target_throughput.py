"""Energy+force throughput of every target: counted evaluations per second (issue 2, item 7).

For each target and batch size (1,024 and 16,384 configurations) one call is
``target.energy_and_grad(x)`` (energy and dE/dx, autograd unless the target has an analytic
path); the figure is batch / (median wall time of ``repeats`` calls after one warm-up call).
Positions are a broad draw (``target.prior_sample``) — the cost does not depend on them. Float32,
the samplers' default; torch threads as in ``machine``. Up to ``repeats`` calls, at least 2,
stopping after ``--max-seconds`` (20) per target and batch; ``n`` in a row is the calls timed.
Peptide targets are included when ``make_target`` can build them (OpenMM installed and the
peptide targets landed), else skipped with a note on stderr.

    python benchmarks/bench_target_throughput.py --quick   # 3 repeats, batch 1,024 only
    python benchmarks/bench_target_throughput.py           # 7 repeats, batches 1,024 and 16,384
Writes benchmarks/results/target_throughput.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from boltzpath import make_target
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine

RESULTS = Path(__file__).resolve().parent / "results" / "target_throughput.json"
TARGETS = ("gmm40", "manywell32", "dw4", "lj13", "lj55", "aldp-fab", "aldp-pita", "al3")


def time_calls(target, batch: int, repeats: int, generator: torch.Generator, max_s: float) -> list[float]:
    """Wall seconds of up to ``repeats`` energy_and_grad calls on one batch, after a warm-up call;
    stops early (at ≥ 2 calls) once ``max_s`` seconds are spent, so slow targets stay affordable."""
    x = target.prior_sample(batch, generator, dtype=torch.float32)
    target.energy_and_grad(x)
    times: list[float] = []
    while len(times) < repeats and (len(times) < 2 or sum(times) < max_s):
        t0 = time.perf_counter()
        target.energy_and_grad(x)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats at batch 1,024 only")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time cap per target and batch")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    batches = (1024,) if args.quick else (1024, 16384)
    repeats = 3 if args.quick else 7
    command = "python benchmarks/bench_target_throughput.py" + (" --quick" if args.quick else "")
    if args.targets != ",".join(TARGETS):
        command += f" --targets {args.targets}"
    machine = describe_machine()
    rows = []
    for name in args.targets.split(","):
        try:
            target = make_target(name)
        except (BadInput, ImportError, NotImplementedError) as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        for batch in batches:
            gen = torch.Generator().manual_seed(0)
            before = target.counter.count
            times = time_calls(target, batch, repeats, gen, args.max_seconds)
            evals = target.counter.count - before
            assert evals == batch * (len(times) + 1), "each configuration must be counted once per call"
            median = statistics.median(times)
            rows.append({
                "benchmark": "target_throughput", "method": "energy_and_grad", "target": name,
                "metric": f"evaluations_per_s_batch_{batch}", "value": batch / median, "n": len(times),
                "noise_floor": None, "energy_evaluations": evals, "wall_time_s": round(sum(times), 4),
                "machine": machine, "command": command, "batch": batch, "dim": target.dim,
                "median_call_s": median, "min_call_s": min(times), "max_call_s": max(times),
            })
            print(f"{name:11s} batch {batch:6d}: {batch / median:12.4g} evals/s "
                  f"(median {median * 1e3:.2f} ms of {len(times)})", file=sys.stderr)
        atomic_write_json(args.out, {"rows": rows})
    atomic_write_json(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
