"""A reweight rung fed with exact samples: how good can the rung itself be, model aside?

``rung: reweight`` (``methods.pita._reweight_rung``, then ``_run_stage``'s relaxation) takes the
stage-(k−1) model's draws at T_{k−1}, relaxes them there, resamples them to T_k on the true energy,
and relaxes the result at T_k. Its output at T_k differs from exp(−E/kT_k) for two reasons: the model's
draws are not exactly exp(−E/kT_{k−1}) (model error), and even exact draws leave a finite pool with
duplicates after resampling that a short relaxation does not make independent (the rung's own
error). This script measures the second alone: the pool is drawn from the certified parallel-
tempering reference at T_{k−1} (seed 0, ``benchmarks/particle_references.py``), the rung is run with
the same code path (``smc.relax.relax``, ``reweight_log_weights``, ``systematic``), and the output is
scored against the *other* reference seed at T_k — energy W2 (E/kT_k) and interatomic-distance W2,
mean over 10 random reference subsets of the output's size — next to the floor: fresh
seed-0 samples of that size against the same subsets, i.e. what independent exact samples reach.

A rung whose exact-input output sits at the floor loses nothing of its own: a ladder's excess over
the floor there is the model's. One above the floor names the knob (pool size, relaxation length)
with ``--pool``/``--relax-steps`` variants, at their stated energy-evaluation cost.

    python benchmarks/pita_rung_oracle.py --target lj13 --references runs/references \
        --temperatures 4,3,2,1.75,1.5,1.2,1 [--pool 1000] [--buffer 1000] [--relax-steps 300] \
        [--adapt-steps 100] [--adapt shared,per_chain] [--repeats 3] [--stationarity 2000] \
        --out benchmarks/results/pita_rung_oracle.json

``--stationarity N`` first relaxes N reference samples at each temperature alone (no rung) and
reports the mean change of E/kT per chain: MALA keeps the target, so anything beyond the standard
error is the relaxation's own bias (``smc.relax``, ``adapt``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_pita import SUBSETS, _subset_scores

from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.methods.pita import reweight_log_weights
from boltzpath.smc.relax import ADAPT_MODES, RelaxConfig, relax
from boltzpath.smc.resample import systematic
from boltzpath.smc.weights import effective_sample_size
from boltzpath.targets.registry import make_target


def _floats(text: str, name: str) -> list[float]:
    try:
        out = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"--{name} {text!r}: expected comma-separated numbers") from None
    if not out:
        raise BadInput(f"--{name} {text!r}: empty")
    return out


def _reference(folder: Path, target_name: str, temp: float, seed: int) -> torch.Tensor:
    f = folder / f"{target_name}_T{temp:g}_seed{seed}.npy"
    if not f.is_file():
        raise BadInput(f"--references {folder}: no {f.name} (run benchmarks/particle_references.py "
                       f"--target {target_name} with T = {temp:g} among its saved temperatures)")
    return torch.as_tensor(np.load(f)).float()


def score(x: torch.Tensor, target_t, ref: torch.Tensor, base_seed: int) -> dict:
    """Energy W2 and distance W2 of ``x`` against ``SUBSETS`` random subsets (x's n) of ``ref``:
    the mean of ``bench_pita._subset_scores`` (the subsets every PITA score uses)."""
    vals, _ = _subset_scores(x, target_t, ref, None, base_seed)
    return {k: float(np.mean(v)) for k, v in vals.items()}


def run_rung(target, t_prev: float, t_next: float, pool: torch.Tensor, buffer: int,
             rcfg: RelaxConfig, seed: int) -> tuple[torch.Tensor, dict]:
    """The reweight rung on ``pool`` (samples at t_prev): relax at t_prev, resample to t_next on
    −(γ − 1)·E/kT_prev, relax at t_next. Returns (samples at t_next, info with evaluations)."""
    gen = torch.Generator().manual_seed(seed)
    tp, tn = target.at_temperature(t_prev), target.at_temperature(t_next)
    c0 = target.counter.count
    before = relax(tp, pool, gen, rcfg)
    log_w = reweight_log_weights(before.energy.detach().cpu(), t_prev / t_next)
    idx = systematic(torch.Generator().manual_seed(seed + 1), log_w, buffer)
    after = relax(tn, before.x.detach()[idx], gen, rcfg)
    info = {"ess_fraction": float(effective_sample_size(log_w)) / pool.shape[0],
            "distinct_after_resampling": int(torch.unique(idx).numel()),
            "energy_evaluations": int(target.counter.count - c0)}
    return after.x.detach(), info


def stationarity_rows(target, refs: Path, target_name: str, temps: list[float], n: int, steps: int,
                      adapt_steps: int, step_size: float, modes: list[str], command: str) -> list[dict]:
    """The relaxation alone on exact samples: ``n`` certified-reference samples at each temperature,
    relaxed (``steps`` MALA steps, ``adapt_steps`` adapting; "fixed": the shared mode's adapted step
    from the first step, no adaptation), mean change of E/kT per chain ± its
    standard error (paired: the same chains before and after). MALA keeps the target, so an unbiased
    relaxation changes nothing beyond noise."""
    rows = []
    for temp in temps:
        src = _reference(refs, target_name, temp, 0)
        tt = target.at_temperature(temp)
        x = src[torch.randperm(src.shape[0], generator=torch.Generator().manual_seed(0))[:n]]
        e0 = tt.energy(x).double()
        fixed = None  # the shared mode's adapted step, then held fixed from the first step: exact MALA
        for mode in [*modes, "fixed"]:
            if mode == "fixed" and fixed is None:
                continue
            t0, c0 = time.perf_counter(), target.counter.count
            rcfg = (RelaxConfig(n_steps=steps, adapt_steps=0, step_size=fixed) if mode == "fixed" else
                    RelaxConfig(n_steps=steps, adapt_steps=min(adapt_steps, steps), step_size=step_size,
                                adapt=mode))
            res = relax(tt, x, torch.Generator().manual_seed(1), rcfg)
            if mode == "shared":
                fixed = res.info["step_size_median"]
            d = res.energy.double() - e0
            rows.append({"benchmark": "pita_rung_oracle",
                         "method": f"relaxation of exact samples ({mode})",
                         "target": f"{target_name} T={temp:g}", "metric": "mean change of E/kT per chain",
                         "value": float(d.mean()), "standard_error": float(d.std() / math.sqrt(d.numel())),
                         "n": n, "noise_floor": None, "energy_evaluations": int(target.counter.count - c0),
                         "wall_time_s": round(time.perf_counter() - t0, 1), "relax_steps": steps,
                         "adapt_steps": rcfg.adapt_steps, "adapt": mode,
                         "step_size_range": [res.info["step_size_min"], res.info["step_size_max"]],
                         "machine": describe_machine(), "command": command})
            r = rows[-1]
            print(f"T={temp:g} {mode}: mean dE/kT {r['value']:+.3f} +/- {r['standard_error']:.3f} "
                  f"(steps {r['step_size_range'][0]:.2g}..{r['step_size_range'][1]:.2g})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=["lj13", "dw4"], required=True)
    p.add_argument("--references", required=True, help="benchmarks/particle_references.py --out-dir")
    p.add_argument("--temperatures", required=True, help="the ladder, hot to cold, e.g. 4,3,2,1.5,1.2,1")
    p.add_argument("--pool", default="1000", help="samples drawn at T_{k-1} (comma list: variants)")
    p.add_argument("--buffer", type=int, default=1000, help="samples resampled to T_k")
    p.add_argument("--relax-steps", default="300", help="MALA steps at each end (comma list: variants)")
    p.add_argument("--adapt-steps", type=int, default=100)
    p.add_argument("--step-size", type=float, default=1e-4)
    p.add_argument("--adapt", default="shared",
                   help="relax.adapt: shared or per_chain (comma list: variants)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stationarity", type=int, default=0, metavar="N",
                   help="also relax N exact samples at every temperature and report the mean change "
                        "of E/kT (0: skip)")
    p.add_argument("--input-noise", type=float, default=0.0, metavar="SIGMA",
                   help="add N(0, SIGMA^2) noise (CoM-free) to the exact pool, as a diffusion sampler that "
                        "stops at sigma_min leaves it (0: exact input)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    temps = _floats(args.temperatures, "temperatures")
    pools = [int(v) for v in _floats(args.pool, "pool")]
    steps = [int(v) for v in _floats(args.relax_steps, "relax-steps")]
    modes = [m.strip() for m in args.adapt.split(",") if m.strip()]
    if not modes or any(m not in ADAPT_MODES for m in modes):
        raise BadInput(f"--adapt {args.adapt!r}: expected a comma list of {', '.join(ADAPT_MODES)}")
    if len(temps) < 2 or any(b >= a for a, b in zip(temps, temps[1:], strict=False)):
        raise BadInput(f"--temperatures {args.temperatures!r}: need at least two, strictly decreasing")
    if not (args.input_noise >= 0 and math.isfinite(args.input_noise)):
        raise BadInput(f"--input-noise {args.input_noise}: must be a finite number >= 0")
    noise_label = f"exact input + noise {args.input_noise:g}" if args.input_noise else "exact input"
    if min(pools) < 1 or args.buffer < 1 or args.repeats < 2 or min(steps) < 0 or args.stationarity < 0:
        raise BadInput("--pool and --buffer must be >= 1, --repeats >= 2, --relax-steps and "
                       "--stationarity >= 0")
    refs = Path(args.references)
    if not refs.is_dir():
        raise BadInput(f"--references {refs}: not a folder")
    torch.set_num_threads(args.threads)
    target = make_target(args.target)
    command = "python benchmarks/pita_rung_oracle.py " + " ".join(argv if argv is not None else sys.argv[1:])
    description = ("A reweight rung fed exact samples (the certified PT reference at T_{k-1}, seed 0) "
                   "and scored against the other reference seed at T_k: energy / distance W2, mean over "
                   "repeats of the mean over reference subsets; floor: fresh seed-0 samples of the same "
                   "n. `relaxation of exact samples`: the MALA relaxation alone, mean change of E/kT "
                   "(0 if unbiased).")
    rows: list[dict] = []

    def save():
        atomic_write_json(args.out, {"description": description, "rows": rows})

    if args.stationarity:
        rows += stationarity_rows(target, refs, args.target, temps, args.stationarity, max(steps),
                                  args.adapt_steps, args.step_size, modes, command)
        save()
    for t_prev, t_next in zip(temps, temps[1:], strict=False):
        src = _reference(refs, args.target, t_prev, 0)
        fresh, score_ref = _reference(refs, args.target, t_next, 0), _reference(refs, args.target, t_next, 1)
        tn = target.at_temperature(t_next)
        base = int(round(1000 * t_next))
        floor = [score(fresh[torch.randperm(fresh.shape[0], generator=torch.Generator().manual_seed(
            7 + r))[:args.buffer]], tn, score_ref, base) for r in range(args.repeats)]
        for n_pool, n_steps, mode in [(a, b, c) for a in pools for b in steps for c in modes]:
            rcfg = RelaxConfig(n_steps=n_steps, adapt_steps=min(args.adapt_steps, n_steps),
                               step_size=args.step_size, adapt=mode)
            reps = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                g = torch.Generator().manual_seed(1000 * r + n_pool)
                pool = src[torch.randint(src.shape[0], (n_pool,), generator=g)]
                if args.input_noise:
                    pool = pool + args.input_noise * target.project(torch.randn(pool.shape, generator=g))
                x, info = run_rung(target, t_prev, t_next, pool, args.buffer, rcfg, 17 + r)
                reps.append({**score(x, tn, score_ref, base), **info,
                             "wall_time_s": time.perf_counter() - t0})
            common = {"benchmark": "pita_rung_oracle",
                      "method": f"reweight rung, {noise_label} (pool {n_pool}, relax {n_steps}, {mode})",
                      "input_noise": args.input_noise,
                      "target": f"{args.target} T={t_prev:g}->{t_next:g}", "n": args.buffer,
                      "energy_evaluations": int(np.mean([q["energy_evaluations"] for q in reps])),
                      "wall_time_s": round(float(np.mean([q["wall_time_s"] for q in reps])), 1),
                      "pool": n_pool, "relax_steps": n_steps, "adapt_steps": rcfg.adapt_steps, "adapt": mode,
                      "repeats": args.repeats, "subsets": SUBSETS,
                      "ess_fraction": float(np.mean([q["ess_fraction"] for q in reps])),
                      "distinct_after_resampling": float(np.mean([q["distinct_after_resampling"]
                                                                  for q in reps])),
                      "machine": describe_machine(), "command": command}
            for m in ("energy_w2", "distance_w2"):
                v, f = [q[m] for q in reps], [q[m] for q in floor]
                rows.append({**common, "metric": m, "value": float(np.mean(v)),
                             "sd_over_repeats": float(np.std(v, ddof=1)), "noise_floor": float(np.mean(f)),
                             "noise_floor_std": float(np.std(f, ddof=1))})
            e, d = rows[-2], rows[-1]
            print(f"{t_prev:g}->{t_next:g} pool {n_pool} relax {n_steps} {mode}: "
                  f"ESS {common['ess_fraction']:.1%} distinct {common['distinct_after_resampling']:.0f} | "
                  f"energy W2 {e['value']:.3f} +/- {e['sd_over_repeats']:.3f} "
                  f"(floor {e['noise_floor']:.3f}) | distance W2 {d['value']:.4f} +/- "
                  f"{d['sd_over_repeats']:.4f} (floor {d['noise_floor']:.4f}) | "
                  f"{common['energy_evaluations']:.3g} evals {common['wall_time_s']:.0f} s", flush=True)
            save()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
