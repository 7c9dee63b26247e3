"""Which term of the FK weights makes a PITA stage's population collapse?

Takes a trained stage of a PITA run (``stage_K/model.pt``, or ``--model`` for a checkpoint copied
elsewhere) and anneals it to T_{K+1} with the run's own anneal settings for that stage
(``cfg.anneal_for(K+1)``, no overshoot), ``--n`` particles, in two parts:

* **terms** — one population moved by the annealed SDE *without* resampling (the proposal of every
  weighted step), and along it, per particle, the three parts of each step's log-weight increment
  (``smc.annealing.fk_increment``): ``du_dt`` = γ ∂_tU_η ds, ``divergence`` = γ(Δh/2)∇·s with the
  exact trace, ``inner`` = −γ²(Δh/2)⟨∇U_η, s⟩ — and ``probe_noise`` = γ(Δh/2)(Hutchinson − exact),
  the noise that ``n_probes`` Rademacher probes add. Summed over the weighted steps (those that end
  at t ≥ ``weights_stop_t``), each part's variance across particles (nats²) and the ESS fraction of
  exp(sum) say which one spreads the weights; cross terms are in ``total``. One seed, the exact
  trace costs d vector–Jacobian products per step.
* **anneal** — the weighted SMC itself (``smc.annealing.anneal``, with resampling) once per
  ``--divergence`` variant (``hutchinson:P`` or ``exact``): resampling events, the lowest ESS
  fraction, and the number of distinct ancestors is not tracked by ``anneal``, so it is not reported.

* **exact references** (``--gaussian-std``) — the same two parts for an exact model: an isotropic
  Gaussian N(0, std² I) in the target's dimension, noised in closed form (``smc.exact``). Its
  log-weights still spread, because the score-scaled SDE's marginals are not the tempered p_t^γ
  (that is what the weights correct): a spread of this size is the ladder's, not the network's,
  and only a smaller γ per rung (``--gamma`` tries one) or better moves reduce it. For a Gaussian
  the spread grows linearly with the dimension and does not depend on std while std lies well
  inside [σ_min, σ_max]; the std only sets where in t the annealing happens. (CoM projections of
  particle targets are not applied to the Gaussian: it has d, not d − 3, degrees of freedom.)

No target energy is evaluated (the model's terms only), so the rows have ``energy_evaluations`` 0.

    python benchmarks/pita_weight_terms.py --run RUN --stage 0 [--model PATH] [--n 256] [--seed 0] \
        [--divergence hutchinson:1,exact] [--gamma G] [--gaussian-std 0.03,0.3] [--skip-model] \
        [--skip-anneal] [--threads 2] [--out FILE]

Writes ``benchmarks/results/pita_weight_terms.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from pita_rung import load_rung

from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.smc.annealing import anneal
from boltzpath.smc.exact import GaussianMixtureVE
from boltzpath.smc.weights import effective_sample_size

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("Which term of the FK weights spreads a PITA stage's log-weights "
               "(`benchmarks/pita_weight_terms.py`): per-particle sums over the weighted steps of γ∂tU, "
               "γ(Δh/2)∇·s (exact), −γ²(Δh/2)⟨∇U,s⟩ and the Hutchinson probe noise along one unresampled "
               "population, and the weighted SMC's resampling counts per divergence estimator")
PARTS = ("du_dt", "divergence", "inner", "probe_noise")


def parse_variants(spec: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if item == "exact":
            out.append(("exact", 1))
        elif item.startswith("hutchinson:") and item[11:].isdigit() and int(item[11:]) > 0:
            out.append(("hutchinson", int(item[11:])))
        else:
            raise BadInput(f"--divergence: {item!r} is neither 'exact' nor 'hutchinson:P' with P >= 1")
    if not out:
        raise BadInput("--divergence: no variant given")
    return out


def term_sums(model, acfg, schedule, n: int, gen: torch.Generator, project, n_probes: int,
              probe_gen: torch.Generator):
    """Per-particle sums over the weighted steps of each increment part (module docstring), along one
    population moved without resampling. Returns ({part: (n,) float64}, per-step variances).

    The prior and the SDE noise are drawn from ``gen`` in the order ``smc.annealing.anneal`` draws
    them (the exact trace draws nothing) and the probes from ``probe_gen``, so with the same seed
    and no resampling ``anneal``'s log-weights equal the sum of the three exact parts (tested)."""
    gamma = acfg.gamma
    x = schedule.sigma_max / math.sqrt(gamma) * project(torch.randn(n, model.dim, generator=gen,
                                                                      dtype=acfg.torch_dtype))
    grid = schedule.time_grid(acfg.n_steps).tolist()
    sums = {p: torch.zeros(n, dtype=torch.float64) for p in PARTS}
    per_step = []
    for k in range(acfg.n_steps):
        t_now, t_next = grid[k], grid[k + 1]
        dh = float(schedule.sigma(t_now) ** 2 - schedule.sigma(t_next) ** 2)
        g2 = float(schedule.g2(t_now))
        terms = model.terms(x, t_now, "exact", gen)
        hutch = model.divergence(x, t_now, "hutchinson", probe_gen, n_probes).detach()
        div = terms.div_score.to(torch.float64)
        inner = (terms.grad_energy.to(torch.float64) * terms.score.to(torch.float64)).sum(-1)
        parts = {"du_dt": gamma * terms.du_dt.to(torch.float64) * (dh / g2),
                 "divergence": gamma * 0.5 * dh * div,
                 "inner": -(gamma ** 2) * 0.5 * dh * inner,
                 "probe_noise": gamma * 0.5 * dh * (hutch.to(torch.float64) - div)}
        weighted = t_next >= acfg.weights_stop_t
        if weighted:
            for p in PARTS:
                sums[p] += parts[p]
        per_step.append({"t": t_now, "sigma": float(schedule.sigma(t_now)), "weighted": weighted,
                         **{f"var_{p}": float(parts[p].var()) for p in PARTS}})
        drift = project((0.5 * gamma * dh) * (terms.score - terms.grad_energy).to(x.dtype))
        x = (x + drift + math.sqrt(dh) * project(torch.randn(x.shape, generator=gen, dtype=x.dtype))).detach()
    return sums, per_step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--stage", type=int, required=True, help="the stage whose model anneals to the next T")
    ap.add_argument("--model", type=Path, default=None, help="a checkpoint instead of stage_K/model.pt")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--divergence", default="hutchinson:1,exact")
    ap.add_argument("--skip-anneal", action="store_true", help="only the term decomposition")
    ap.add_argument("--skip-model", action="store_true", help="only the --gaussian-std references")
    ap.add_argument("--gamma", type=float, default=None,
                    help="anneal by this factor instead of the run's T_K/T_{K+1} (e.g. a finer ladder's)")
    ap.add_argument("--gaussian-std", default="",
                    help="comma list of stds: the same anneal on an exact isotropic Gaussian in the target's "
                         "dimension (smc.exact), the spread of the weights that an exact model still has")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "pita_weight_terms.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = parse_variants(args.divergence)
    try:
        stds = [float(v) for v in args.gaussian_std.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"--gaussian-std {args.gaussian_std!r}: a comma list of numbers") from None
    if any(not v > 0 for v in stds) or (args.gamma is not None and not args.gamma >= 1):
        raise BadInput("--gaussian-std values must be > 0 and --gamma >= 1")
    if args.n < 2:
        raise BadInput(f"--n must be >= 2, got {args.n}")
    rung = load_rung(args.run, args.stage, args.model)
    cfg, k, target, schedule = rung.cfg, rung.stage, rung.target, rung.schedule
    acfg = replace(rung.anneal, overshoot=1.0)
    if args.gamma is not None:
        acfg.gamma = args.gamma
    common = {"benchmark": "pita_weight_terms", "target": cfg.target, "run": str(args.run), "stage": k,
              "model": str(rung.model_file), "temperature": rung.t_next, "gamma": acfg.gamma,
              "n_steps": acfg.n_steps, "weights_stop_t": acfg.weights_stop_t, "n": args.n,
              "energy_evaluations": 0, "machine": describe_machine(), "threads": args.threads,
              "command": "python benchmarks/pita_weight_terms.py "
                         + " ".join(argv if argv is not None else sys.argv[1:])}
    rows: list[dict] = []
    per_step_by: dict[str, list] = {}  # per label: each step's variances (kept out of the table's rows)

    def save():
        atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows, "per_step": per_step_by})

    probes = next((p for m, p in variants if m == "hutchinson"), 1)

    def report(label: str, mdl, project, anneal_variants, source: str) -> None:
        base = {**common, "model": source}
        t0 = time.perf_counter()
        sums, per_step = term_sums(mdl, acfg, schedule, args.n, torch.Generator().manual_seed(args.seed),
                                   project, probes, torch.Generator().manual_seed(args.seed + 1))
        wall = time.perf_counter() - t0
        exact_total = sums["du_dt"] + sums["divergence"] + sums["inner"]
        totals = (("total_exact", exact_total), ("total_with_probes", exact_total + sums["probe_noise"]))
        for name, v in (*sums.items(), *totals):
            rows.append({**base, "method": f"{label}: terms ({probes} probe{'s' if probes > 1 else ''} "
                                             "for probe_noise)",
                         "metric": f"log_weight_var_{name}", "value": float(v.var()),
                         "ess_fraction": effective_sample_size(v) / args.n, "wall_time_s": round(wall, 1)})
            print(f"{label:24s} {name:18s} var {float(v.var()):10.4g}  ESS fraction "
                  f"{rows[-1]['ess_fraction']:.3f}", flush=True)
        per_step_by[label] = per_step
        save()
        for method, p in anneal_variants:
            cfg_v = replace(acfg, divergence=method, n_probes=p)
            t0 = time.perf_counter()
            res = anneal(mdl, args.n, schedule, cfg_v, torch.Generator().manual_seed(args.seed), project)
            summ = res.info.summary(args.n)
            name = "exact" if method == "exact" else f"hutchinson:{p}"
            rows.append({**base, "method": f"{label}: weighted SMC, divergence {name}",
                         "metric": "n_resampling_events", "value": summ["n_resampling_events"],
                         "min_ess_fraction": summ["min_ess_fraction"], "final_ess_fraction": res.ess / args.n,
                         "wall_time_s": round(time.perf_counter() - t0, 1)})
            print(f"{label:24s} anneal {name:14s} resamplings {summ['n_resampling_events']:3d}  min ESS "
                  f"{summ['min_ess_fraction']:.3f}  final ESS {res.ess / args.n:.3f}  "
                  f"{rows[-1]['wall_time_s']} s", flush=True)
            save()

    if not args.skip_model:
        report("model", rung.model, target.project, [] if args.skip_anneal else variants,
               str(rung.model_file))
    for std in stds:  # the same anneal on an exact model: the weights' spread that no training removes
        gauss = GaussianMixtureVE([1.0], torch.zeros(1, target.dim), [std], schedule)
        report(f"exact Gaussian, std {std:g}", gauss, lambda v: v, [] if args.skip_anneal else [("exact", 1)],
               f"smc.exact.GaussianMixtureVE, one component, d = {target.dim}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
