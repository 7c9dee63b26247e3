"""Baseline samplers' quality against energy evaluations on gmm40 and manywell32 (issue 2, item 7).

Methods: MALA, HMC (5 leapfrog steps), underdamped Langevin (BAOAB, unadjusted, fixed step),
parallel tempering (8 replicas, MALA moves). Budgets: 1e5, 1e6, 1e7 counted energy evaluations;
every run returns n = 10,000 samples from 1,000 chains (MALA/HMC/Langevin: 10 samples per chain;
PT: 125 chains per replica × 8 replicas, 80 samples per T₀ chain). Each chain's budget, after
its initial evaluation, is split 20 % warm-up / 80 % collection, and the collection is thinned
evenly to the samples it must return (the ``burn_in`` and ``thin`` of each run are in its row).
Chains start from the target's broad prior (gmm40: uniform over the box of the means;
manywell32: N(0, 4I)). Settings are fixed below, not tuned to the metrics.

Metrics against the exact sampler, each with its noise floor (exact vs exact at the same n,
mean of 3 repeats): mode coverage (modes with ≥ 1 % of their mass; per well and side for
manywell32), mode-weight TVD, relative error of E‖x‖² (|Ê − E|/E against the exact value),
and coordinate W2 (POT, √ of the OT cost) on 2,000 samples vs 2,000 exact samples.

    python benchmarks/bench_baselines.py --quick     # budgets 1e5 and 1e6 only
    python benchmarks/bench_baselines.py             # 1e5, 1e6, 1e7
Writes benchmarks/results/baselines.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from boltzpath import make_target
from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.mcmc.registry import run_method
from boltzpath.metrics import distributions as dist
from boltzpath.metrics import modes, noise_floor

RESULTS = Path(__file__).resolve().parent / "results" / "baselines.json"
N_SAMPLES = 10_000
CHAINS = 1_000
W2_N = 2_000
WARMUP_FRACTION = 0.2
METHODS = ("mala", "hmc", "langevin", "pt")
TARGETS = ("gmm40", "manywell32")
#: fixed per-target settings (Langevin step from the stiffest well curvature; PT ladder from the
#: barrier heights: gmm40 at T = 100 has mode std 13, manywell's ~9 kT barrier is ~1 kT at T = 10)
SETTINGS = {
    ("gmm40", "langevin"): {"step_size": 0.5, "friction": 1.0},
    ("manywell32", "langevin"): {"step_size": 0.05, "friction": 1.0},
    ("gmm40", "pt"): {"n_replicas": 8, "t_max": 100.0},
    ("manywell32", "pt"): {"n_replicas": 8, "t_max": 10.0},
    ("gmm40", "hmc"): {"n_leapfrog": 5},
    ("manywell32", "hmc"): {"n_leapfrog": 5},
}


def budget_options(method: str, target_name: str, budget: int) -> dict:
    """chains, burn_in, thin so the run spends ≤ ``budget`` counted evaluations (see module doc)."""
    extra = dict(SETTINGS.get((target_name, method), {}))
    per_step = extra.get("n_leapfrog", 1)  # evaluations per chain per iteration
    chains = CHAINS
    if method == "pt":
        chains = CHAINS // extra["n_replicas"]  # chains per replica; all replicas step together
    samples_per_chain = math.ceil(N_SAMPLES / chains)
    total_chains = chains * extra.get("n_replicas", 1)
    iterations = (budget // total_chains - 1) // per_step  # minus the initial evaluation
    thin = max(1, int((1 - WARMUP_FRACTION) * iterations) // samples_per_chain)
    burn_in = iterations - thin * samples_per_chain
    if burn_in < 0:
        raise ValueError(f"{method}: budget {budget:g} too small for {samples_per_chain} samples per chain")
    return {"chains": chains, "burn_in": burn_in, "thin": thin, **extra}


def exact_floors(target, generator: torch.Generator) -> dict[str, float]:
    """Noise floors of every metric: exact sampler vs exact sampler at the metric's n."""
    exact_m2 = modes.exact_second_moment(target)

    def sampler(k, g):
        return target.exact_sample(k, g)

    def floor(metric, n):
        return noise_floor(metric, n, sampler=sampler, repeats=3, generator=generator)["mean"]

    def rel_m2(a, b):
        return dist.relative_error_second_moment(a, exact_m2)

    return {
        "mode_coverage": floor(lambda a, b: modes.mode_coverage(a, target), N_SAMPLES),
        "mode_weight_tvd": floor(lambda a, b: modes.mode_weight_tvd(a, target), N_SAMPLES),
        "second_moment_rel_error": floor(rel_m2, N_SAMPLES),
        "coordinate_w2": floor(dist.coordinate_w2, W2_N),
    }


def sample_metrics(x: torch.Tensor, target, generator: torch.Generator) -> dict[str, tuple[float, int]]:
    """Metric → (value, n used)."""
    x = x.double()
    ref = target.exact_sample(W2_N, generator)
    idx = torch.randperm(x.shape[0], generator=generator)[:W2_N]
    return {
        "mode_coverage": (modes.mode_coverage(x, target), x.shape[0]),
        "mode_weight_tvd": (modes.mode_weight_tvd(x, target), x.shape[0]),
        "second_moment_rel_error": (
            dist.relative_error_second_moment(x, modes.exact_second_moment(target)), x.shape[0]
        ),
        "coordinate_w2": (dist.coordinate_w2(x[idx], ref), W2_N),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="budgets 1e5 and 1e6 only")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    budgets = (10**5, 10**6) if args.quick else (10**5, 10**6, 10**7)
    command = "python benchmarks/bench_baselines.py" + (" --quick" if args.quick else "")
    for flag in ("targets", "methods"):
        value = getattr(args, flag)
        if value != ",".join(TARGETS if flag == "targets" else METHODS):
            command += f" --{flag} {value}"
    machine = describe_machine()
    rows = []
    for name in args.targets.split(","):
        target = make_target(name)
        floors = exact_floors(target, torch.Generator().manual_seed(args.seed + 100))
        for budget in budgets:
            for method in args.methods.split(","):
                opts = budget_options(method, name, budget)
                gen = torch.Generator().manual_seed(args.seed)
                t0 = time.perf_counter()
                samples = run_method(method, target, N_SAMPLES, gen, opts)
                wall = time.perf_counter() - t0
                evals = int(samples.info["energy_evaluations"])
                metrics = sample_metrics(samples.x, target, torch.Generator().manual_seed(args.seed + 1))
                for metric, (value, n_used) in metrics.items():
                    rows.append({
                        "benchmark": "baselines", "method": method, "target": name, "metric": metric,
                        "value": float(value), "n": int(n_used), "noise_floor": floors[metric],
                        "energy_evaluations": evals, "wall_time_s": round(wall, 2), "machine": machine,
                        "command": command, "budget": budget, "options": opts,
                        "acceptance": samples.info.get("acceptance"),
                        "swap_acceptance": samples.info.get("swap_acceptance"),
                    })
                summary = ", ".join(f"{k}={v[0]:.4g}" for k, v in metrics.items())
                print(f"{name:10s} {method:8s} budget={budget:.0e} evals={evals:.3e} wall={wall:6.1f}s "
                      f"{summary}", file=sys.stderr)
                atomic_write_json(args.out, {"rows": rows})
        print(f"{name} noise floors: {floors}", file=sys.stderr)
    atomic_write_json(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
