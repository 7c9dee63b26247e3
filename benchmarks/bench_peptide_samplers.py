"""MALA, Langevin (BAOAB), parallel tempering and DiGS on ``aldp-fab`` at equal energy evaluations
(issue 11, part 3).

Every method runs its peptide defaults (``PeptideTarget.sampler_defaults``: step sizes, DiGS noise
levels; docs/molecules.md) with ``CHAINS`` chains from the target's chain start (initial structure
+ 0.005 nm noise) and spends ``--budget`` counted energy evaluations in all (Σ over chains and, for
PT, replicas): the first ``WARMUP_FRACTION`` of each chain's iterations are warm-up, the rest is
thinned evenly to ``N_SAMPLES / CHAINS`` samples per chain. One iteration costs 1 evaluation per
chain for MALA and Langevin, ``n_replicas`` (8) for PT and ``1 + mala_steps`` (11) for DiGS.

Metrics against the held-out 300 K set ``../shared/holdout/aldp_300K_fab_10k_xyz_nm.npy`` (evaluation
only; nothing here is tuned on it; skipped when absent), each with its noise floor (two disjoint
halves of the held-out set at the same n): Ramachandran KL, φ/ψ KL, torus W2, TICA-W2 and energy
W2 (``metrics.peptide_suite``); the basin fractions ``c7eq_c5`` and ``alpha_r``
(``metrics.peptides.basin_fractions``; reference value = the held-out set's); the fraction of
samples with E/kT > 1000; the mean E/kT.

    python benchmarks/bench_peptide_samplers.py --budget 20000     # smoke run, ~1 min
    python benchmarks/bench_peptide_samplers.py                    # 300,000 per method, ≲ 10 min
Writes benchmarks/results/peptide_samplers.json.
"""

from __future__ import annotations

import argparse
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
from boltzpath.mcmc.registry import method_config, run_method
from boltzpath.metrics.peptide_suite import peptide_metrics
from boltzpath.metrics.peptides import basin_fractions

RESULTS = Path(__file__).resolve().parent / "results" / "peptide_samplers.json"
HOLDOUT = Path(__file__).resolve().parents[1] / ".." / "shared" / "holdout" / "aldp_300K_fab_10k_xyz_nm.npy"
TARGET = "aldp-fab"
METHODS = ("mala", "langevin", "pt", "digs")
CHAINS = 16
N_SAMPLES = 1600
WARMUP_FRACTION = 0.5  # chains start in one corner of the Ramachandran plot: half the budget to spread
DEFAULT_BUDGET = 300_000
METRICS = ("ramachandran_kl", "kl_phi", "kl_psi", "torus_w2", "tica_w2", "energy_w2", "high_energy_fraction")


def cost_per_iteration(method: str, cfg, target) -> int:
    """Counted evaluations per chain per iteration (Gibbs sweep for DiGS, ladder step for PT: one
    gradient per replica for MALA moves, ``n_leapfrog`` for HMC moves, the peptide default)."""
    if method == "pt":
        per_replica = cfg.n_leapfrog if cfg.local == "hmc" else 1
        return len(cfg.ladder(target.temperature)) * per_replica
    if method == "digs":
        return 1 + cfg.mala_steps
    return 1


def method_options(method: str, target, budget: int, n: int, chains: int, extra: dict | None = None) -> dict:
    """The target's defaults for ``method`` (with ``extra`` options over them) and chains/burn_in/thin
    set to spend ≈ ``budget``."""
    extra = dict(extra or {})
    cfg = method_config(method, {**extra, "chains": chains}, target=target)
    iterations = max(budget // (chains * cost_per_iteration(method, cfg, target)), 2)
    per_chain = math.ceil(n / chains)
    thin = max(1, int((1 - WARMUP_FRACTION) * iterations) // per_chain)
    burn_in = max(iterations - thin * per_chain, 0)
    return {**extra, "chains": chains, "burn_in": burn_in, "thin": thin}


def run_at_budget(method: str, target, budget: int, n: int, seed: int, extra: dict | None = None,
                  chains: int = CHAINS):
    """``method`` with its peptide defaults (``extra`` options over them), ``chains`` chains,
    ≈ ``budget`` evaluations, n samples → (samples, options, wall seconds)."""
    opts = method_options(method, target, budget, n, chains, extra)
    cfg = method_config(method, opts, target=target)
    t0 = time.perf_counter()
    samples = run_method(method, target, n, torch.Generator().manual_seed(seed), cfg)
    return samples, opts, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                        help=f"counted energy evaluations per method (default {DEFAULT_BUDGET:,})")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if not HOLDOUT.is_file():
        print(f"{HOLDOUT} absent: nothing to compare with, skipped", file=sys.stderr)
        return 0
    command = "python benchmarks/bench_peptide_samplers.py"
    if args.budget != DEFAULT_BUDGET:
        command += f" --budget {args.budget}"
    if args.methods != ",".join(METHODS):
        command += f" --methods {args.methods}"
    machine = describe_machine()
    target = make_target(TARGET)
    reference = np.load(HOLDOUT).reshape(-1, target.dim)
    ref_basins = basin_fractions(reference, target.topology)
    rows = []

    def row(method, metric, value, n, floor=None, evals=None, wall=None, **extra):
        rows.append({"benchmark": "peptide_samplers", "method": method, "target": TARGET, "metric": metric,
                     "value": float(value), "n": int(n), "noise_floor": floor, "energy_evaluations": evals,
                     "wall_time_s": wall, "machine": machine, "command": command, **extra})

    for name, value in ref_basins.items():
        row("holdout test set", f"basin_{name}", value, reference.shape[0])
    for method in args.methods.split(","):
        samples, opts, wall = run_at_budget(method, target, args.budget, N_SAMPLES, args.seed)
        wall = round(wall, 2)
        evals = int(samples.info["energy_evaluations"])
        common = {"evals": evals, "wall": wall, "options": opts}
        energy = samples.energy.double()
        finite = bool(torch.isfinite(samples.x).all())
        if finite:
            mgen = torch.Generator().manual_seed(args.seed + 1)
            metrics = peptide_metrics(samples, target, reference, mgen)
            for metric in METRICS:
                if metric in metrics:
                    m = metrics[metric]
                    row(method, metric, m["value"], m["n"], m["noise_floor"], **common)
            for name, value in basin_fractions(samples.x.numpy(), target.topology).items():
                row(method, f"basin_{name}", value, samples.n, reference_value=ref_basins[name], **common)
        row(method, "mean_energy_kt", float(energy.mean()), samples.n, **common)
        row(method, "finite", float(finite), samples.n, **common)
        summary = ", ".join(f"{r['metric']}={r['value']:.4g}" for r in rows if r["method"] == method)
        print(f"{method:8s} evals={evals:.3e} wall={wall:6.1f}s {summary}", file=sys.stderr)
        atomic_write_json(args.out, {"rows": rows})
    atomic_write_json(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
