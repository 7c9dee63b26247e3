"""A finished run against parallel tempering given the same energy evaluations.

``compare_with_pt(run_dir)`` reads a finished run folder (config.yaml, samples.npz, metrics.json),
runs parallel tempering on the same target with the run's total energy-evaluation budget, evaluates
both sample sets with the same metrics against the same reference (the run's final reference file,
else the target's exact sampler, else the certified reference shipped for lj13/dw4 at T = 1), and
writes ``comparison.json`` into the run folder. This is the question a user of a neural sampler asks
first — would plain MCMC have done as well for the same cost? — answered in the same run.

PT budget: ``chains`` chains × ``n_replicas`` replicas; every replica of every chain costs one
evaluation per MALA step, so the number of steps is budget / (chains · replicas); half is burn-in
and the rest is thinned to the run's sample count (burn-in takes what the thinning leaves, so
the steps add up to the budget). The chain count follows the budget (``chains=None``): as many
chains as leave each one ``PT_STEPS_PER_CHAIN`` steps, between 4 and 64. A fixed 64 chains starved
every chain at small budgets: on LJ-13 at 7.3e5 evaluations (n = 500, 8 replicas up to T = 4,
energy W2 against the certified T = 1 reference) 64 chains (1,426 steps each) gave 11.9, 16 chains
1.9, 8 chains 0.85 / 0.77 / 1.38 (seeds 1–3) and 4 chains (22,800 steps) 0.61 / 0.75; at 2.5e6
(n = 1000) 64 chains 0.81, 16 chains 0.73 / 0.89 (seeds 0/1), 8 chains (39,000 steps) 0.27
(docs/pita.md, "the PT baseline was starved"). The replica ladder spans the run's own
temperature range (top = the PITA ladder's first temperature over its last, ≥ 2), so PT gets the
same high-temperature help that PITA's ladder has.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.samples import Samples
from boltzpath.sampling import reference_or_bundled

METRICS = ("energy_w2", "distance_w2", "aligned_w2", "coordinate_w2", "mode_weight_tvd", "mode_coverage",
           "second_moment_rel_error", "high_energy_fraction")


PT_STEPS_PER_CHAIN = 40_000  # MALA steps per chain that the automatic chain count aims for (module docstring)


def pt_chains_for_budget(budget: int, n_replicas: int = 8) -> int:
    """Chains that leave each ``PT_STEPS_PER_CHAIN`` steps of ``budget``, clipped to 4..64."""
    return int(min(64, max(4, budget // (n_replicas * PT_STEPS_PER_CHAIN))))


def pt_at_budget(target, budget: int, n: int, seed: int = 0, t_max: float = 4.0, chains: int | None = None,
                 n_replicas: int = 8) -> tuple[Samples, dict[str, Any]]:
    """Parallel tempering that spends about ``budget`` evaluations of ``target`` for ``n`` samples.

    ``chains=None`` picks the chain count from the budget (``pt_chains_for_budget``). Returns the
    samples and the options used; ``target.counter`` counts what it really spent."""
    from boltzpath.mcmc.registry import run_method

    if chains is None:
        chains = pt_chains_for_budget(budget, n_replicas)

    steps = max(20, budget // (chains * n_replicas))  # PT evaluates once at the start, then per step
    per_chain = math.ceil(n / chains)
    thin = max(1, (steps - steps // 2) // per_chain)
    burn = max(0, steps - 1 - thin * per_chain)
    opts = {"chains": chains, "n_replicas": n_replicas, "burn_in": burn, "thin": thin, "t_max": t_max}
    return run_method("pt", target, n, torch.Generator().manual_seed(seed), opts), opts


def _values(evaluation: dict) -> dict[str, dict]:
    out = {}
    for name in METRICS:
        m = evaluation.get("metrics", {}).get(name)
        if m is not None and isinstance(m.get("value"), (int, float)):
            floor = (m.get("noise_floor") or {}).get("mean")
            out[name] = {"value": float(m["value"]), "noise_floor": floor, "n": m.get("n")}
    return out


def compare_with_pt(run_dir: str | Path, seed: int = 0, max_n: int = 2000) -> dict[str, Any]:
    """Compare the finished run in ``run_dir`` with PT at its energy-evaluation budget (see module)."""
    import json

    import yaml

    from boltzpath.metrics.suite import evaluate, exact_sampler
    from boltzpath.targets.registry import make_target

    rd = Path(run_dir)
    for name in ("config.yaml", "samples.npz", "metrics.json"):
        if not (rd / name).is_file():
            raise BadInput(f"{rd} is not a finished run folder: {name} is missing")
    cfg = yaml.safe_load((rd / "config.yaml").read_text())
    metrics = json.loads((rd / "metrics.json").read_text())
    temps = cfg.get("temperatures") or [1.0]
    if "target" not in cfg or not isinstance(cfg["target"], str):
        raise BadInput(f"{rd / 'config.yaml'} names no registered target to compare on")
    target = make_target(cfg["target"], **(cfg.get("target_options") or {})).at_temperature(float(temps[-1]))
    samples = Samples.load(rd / "samples.npz")
    budget = int(metrics["energy_evaluations"]["total"])
    if not cfg.get("reference") and exact_sampler(target) is not None:
        reference, ref_name = None, "exact sampler"
    else:  # the run's own reference, else the certified set shipped for the target
        reference, ref_name = reference_or_bundled(cfg.get("reference"), target)
    if ref_name is None:
        raise BadInput(f"no reference to compare on for {cfg['target']} at T = {temps[-1]:g}: "
                       "set reference=PATH in the run's config (--set reference=...)")
    t_max = max(2.0, float(temps[0]) / float(temps[-1]))
    target.counter.reset()
    t0 = time.perf_counter()
    pt, opts = pt_at_budget(target, budget, samples.n, seed, t_max=t_max)
    pt_wall = time.perf_counter() - t0
    pt_evals = int(target.counter.count)
    evals = {}
    for name, s in (("run", samples), ("pt", pt)):
        ev = evaluate(s, target, reference=reference, generator=torch.Generator().manual_seed(1),
                      max_n=max_n)
        evals[name] = _values(ev)
    result = {
        "reference": ref_name, "budget": budget,
        "run": {"method": metrics.get("method", "run"), "energy_evaluations": budget,
                "wall_time_s": metrics.get("wall_time_s"), "metrics": evals["run"]},
        "pt": {"energy_evaluations": pt_evals, "wall_time_s": pt_wall, "options": opts, "seed": seed,
               "metrics": evals["pt"]},
    }
    atomic_write_json(rd / "comparison.json", result)
    return result


def format_comparison(result: dict[str, Any]) -> str:
    """A small table: metric, the run, PT at equal evaluations, noise floor (reference vs reference)."""
    run, pt = result["run"], result["pt"]
    lines = [f"{run['method']} vs parallel tempering with the same energy evaluations "
             f"({run['energy_evaluations']:,} vs {pt['energy_evaluations']:,})",
             f"reference: {result['reference']}",
             f"{'metric':22s} {run['method']:>12s} {'PT':>12s} {'noise floor':>12s}"]
    for name, m in run["metrics"].items():
        if name not in pt["metrics"]:
            continue
        floor = m["noise_floor"]
        lines.append(f"{name:22s} {m['value']:12.4g} {pt['metrics'][name]['value']:12.4g} "
                     f"{'–' if floor is None else format(floor, '.3g'):>12s}")
    return "\n".join(lines)

