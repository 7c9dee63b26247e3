"""DiGS against MALA, HMC and parallel tempering at equal energy evaluations (issue 3 benchmark).

Every method gets the same number of chains and the same per-chain budget of counted energy
evaluations (``n · evals_per_sample / chains``), spent 20 % on warm-up and 80 % on collection,
thinned to ``n / chains`` samples per chain. Targets and metrics:

* gmm40 (n = 10,000, 1,000 evaluations per sample = 1e7): relative error of E‖x‖² (exact value;
  published DiGS 0.0097, PT 0.111), MMD² and coordinate W2 on 2,000 points, mode coverage and
  mode-weight TVD on all n — DiGS, PT, MALA, HMC.
* manywell32 (n = 10,000, 500 per sample = 5e6): mode-weight TVD per well (mean
  |P̂(x₁ > 0) − P(x₁ > 0)|), coordinate W2 against the exact sampler, E‖x‖² error — DiGS, PT,
  MALA, HMC.
* dw4 (n = 2,000, 1,000 per sample = 2e6) and lj13 (n = 2,000, 500 per sample = 1e6; LJ-13
  forces cost ~0.1 ms per configuration here), 100 chains each (PT: the budget's count,
  ``compare.pt_chains_for_budget``: 8 on dw4, 4 on lj13), at kT = 1: energy W2 and
  interatomic-distance W2 against the held-out test sets in ../shared/holdout (evaluation only;
  skipped when absent) — DiGS, PT, MALA.

Every metric comes with its noise floor (reference vs reference at the same n: ``noise_floor``
is the mean over 3 repeats, ``noise_floor_std`` their spread — for the unbiased MMD² the mean is
≈ 0 and the spread is the scale to compare with). Method settings are fixed below (none tuned on
held-out data).

    python benchmarks/bench_digs.py --quick        # 1/20 of the budgets, ~2–3 min on 2 cores
    python benchmarks/bench_digs.py                # the full budgets above
Writes benchmarks/results/digs.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from boltzpath import make_target
from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.mcmc.registry import run_method
from boltzpath.methods.compare import pt_chains_for_budget
from boltzpath.metrics import distributions as dist
from boltzpath.metrics import evaluate, modes, noise_floor
from boltzpath.metrics.energies import uncounted_energy

RESULTS = Path(__file__).resolve().parent / "results" / "digs.json"
HOLDOUT = Path(__file__).resolve().parents[1] / ".." / "shared" / "holdout"

#: target → (n samples, evaluations per sample, chains, methods)
SETUPS = {
    "gmm40": (10_000, 1000, 1000, ("digs", "pt", "mala", "hmc")),
    "manywell32": (10_000, 500, 1000, ("digs", "pt", "mala", "hmc")),
    "dw4": (2_000, 1000, 100, ("digs", "pt", "mala")),
    "lj13": (2_000, 500, 100, ("digs", "pt", "mala")),
}
#: per-target method options beyond the budget (PT ladders chosen from the energy scales, untuned)
EXTRA = {
    ("gmm40", "pt"): {"t_max": 100.0, "n_replicas": 8},  # T = 100: mode std 13, crosses the box
    ("manywell32", "pt"): {"t_max": 10.0, "n_replicas": 8},  # 9 kT barrier → ~1 kT at the top
    ("dw4", "pt"): {"t_max": 5.0, "n_replicas": 6},
    ("lj13", "pt"): {"t_max": 3.0, "n_replicas": 6},
}
WARMUP_FRACTION = 0.2
#: targets whose PT chain count follows the budget (``compare.pt_chains_for_budget``: few, long chains;
#: 100 chains of ~1,500 steps starved PT on LJ-13, docs/pita.md "the PT baseline was starved")
PT_CHAINS_FROM_BUDGET = ("dw4", "lj13")


def method_options(method: str, target_name: str, n: int, evals_per_sample: int, chains: int) -> dict:
    """Chains/burn-in/thin so the method spends ≈ n · evals_per_sample counted evaluations.

    PT on the targets in ``PT_CHAINS_FROM_BUDGET`` replaces ``chains`` by the budget's chain count."""
    extra = dict(EXTRA.get((target_name, method), {}))
    if method == "pt" and target_name in PT_CHAINS_FROM_BUDGET:
        chains = pt_chains_for_budget(n * evals_per_sample, extra["n_replicas"])
    per_chain = n * evals_per_sample // chains
    samples_per_chain = math.ceil(n / chains)
    if method == "digs":
        unit = 1 + 4  # one proposal + mala_steps = 4 inner MALA steps per sweep
        extra["mala_steps"] = 4
    elif method == "hmc":
        unit = 10
        extra["n_leapfrog"] = 10
    elif method == "pt":
        unit = extra["n_replicas"]  # one MALA step in every replica per iteration
    else:
        unit = 1
    iterations = per_chain // unit
    thin = max(1, int((1 - WARMUP_FRACTION) * iterations) // samples_per_chain)
    burn_in = iterations - thin * samples_per_chain
    return {"chains": chains, "burn_in": burn_in, "thin": thin, **extra}


def load_holdout(name: str, target) -> torch.Tensor | None:
    path = HOLDOUT / f"{name}_test_10k.npy"
    if not path.is_file():
        return None
    return target.project(torch.from_numpy(np.load(path)).double())  # DW-4 set is not CoM-free


def toy_metrics(samples, target, gen) -> dict[str, tuple[float, int, float | None]]:
    """Metric → (value, n, noise floor). Full-n metrics here, 2,000-point OT/MMD via evaluate()."""
    x = samples.x.double()
    n = x.shape[0]
    exact = modes.exact_second_moment(target)

    def sampler(k, g):
        return target.exact_sample(k, g)

    def floor(metric, size):
        nf = noise_floor(metric, size, sampler=sampler, repeats=3, generator=gen)
        return nf["mean"], nf["std"]

    def rel_m2(a, b):
        return dist.relative_error_second_moment(a, exact)

    out = {
        "second_moment_rel_error": (rel_m2(x, None), n, floor(rel_m2, n)),
        "mode_coverage": (modes.mode_coverage(x, target), n,
                          floor(lambda a, b: modes.mode_coverage(a, target), n)),
        "mode_weight_tvd": (modes.mode_weight_tvd(x, target), n,
                            floor(lambda a, b: modes.mode_weight_tvd(a, target), n)),
    }
    rep = evaluate(samples, target, generator=gen, max_n=2000, noise_repeats=3)["metrics"]
    for name in ("coordinate_w2", "mmd", "energy_w2"):
        m = rep[name]
        nf = m["noise_floor"]
        out[name] = (m["value"], m["n"], (nf["mean"], nf["std"]) if nf else None)
    return out


def particle_metrics(samples, target, reference, gen) -> dict[str, tuple[float, int, float | None]]:
    rep = evaluate(samples, target, reference=reference, generator=gen, max_n=2000, noise_repeats=3,
                   reference_name="holdout test set")["metrics"]
    out = {}
    for name in ("energy_w2", "energy_w1", "distance_w2", "aligned_w2", "high_energy_fraction"):
        if name in rep:
            m = rep[name]
            nf = m["noise_floor"]
            out[name] = (m["value"], m["n"], (nf["mean"], nf["std"]) if nf else None)
    out["mean_energy"] = (float(samples.energy.double().mean()), samples.n, None)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/20 of every evaluation budget")
    parser.add_argument("--targets", default=",".join(SETUPS), help="comma-separated subset")
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods; rows of "
                        "other methods already in --out are kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_digs.py" + (" --quick" if args.quick else "")
    if args.targets != ",".join(SETUPS):
        command += f" --targets {args.targets}"
    if args.methods is not None:
        command += f" --methods {args.methods}"
    machine = describe_machine()
    only = None if args.methods is None else set(args.methods.split(","))
    rows = []
    if only is not None and Path(args.out).is_file():  # keep the other methods' rows
        old = json.loads(Path(args.out).read_text())["rows"]
        rows = [r for r in old if not (r["target"] in args.targets.split(",") and r["method"] in only)]
    for name in args.targets.split(","):
        n, per_sample, chains, methods = SETUPS[name]
        if args.quick:
            per_sample = max(per_sample // 20, 20)
        target = make_target(name)
        reference = None
        if target.is_particle_system:
            reference = load_holdout(name, target)
            if reference is None:
                print(f"{name}: ../shared/holdout absent, skipped", file=sys.stderr)
                continue
            e_ref = float(uncounted_energy(target, reference).mean())
            rows = [r for r in rows if not (r["target"] == name and r["method"] == "holdout test set")]
            rows.append({"benchmark": "digs", "method": "holdout test set", "target": name,
                         "metric": "mean_energy", "value": e_ref, "n": int(reference.shape[0]),
                         "noise_floor": None, "energy_evaluations": None, "wall_time_s": None,
                         "machine": machine, "command": command})
        for method in methods:
            if only is not None and method not in only:
                continue
            opts = method_options(method, name, n, per_sample, chains)
            gen = torch.Generator().manual_seed(args.seed)
            t0 = time.perf_counter()
            samples = run_method(method, target, n, gen, opts)
            wall = time.perf_counter() - t0
            evals = int(samples.info["energy_evaluations"])
            mgen = torch.Generator().manual_seed(args.seed + 1)
            if reference is None:
                metrics = toy_metrics(samples, target, mgen)
            else:
                metrics = particle_metrics(samples, target, reference, mgen)
            for metric, (value, m_n, floor_value) in metrics.items():
                rows.append({"benchmark": "digs", "method": method, "target": name, "metric": metric,
                             "value": float(value), "n": int(m_n),
                             "noise_floor": None if floor_value is None else floor_value[0],
                             "noise_floor_std": None if floor_value is None else floor_value[1],
                             "energy_evaluations": evals, "wall_time_s": round(wall, 2), "machine": machine,
                             "command": command, "options": opts})
            summary = ", ".join(f"{k}={v[0]:.4g} (floor {v[2] if v[2] is None else f'{v[2][0]:.3g}'})"
                                for k, v in metrics.items())
            print(f"{name:10s} {method:5s} evals={evals:.3e} wall={wall:6.1f}s  {summary}", file=sys.stderr)
            atomic_write_json(args.out, {"rows": rows})
    atomic_write_json(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
