"""Where does a peptide PITA rung lose a basin: in the annealing, the tail's final resampling, or the
relaxation?

Takes a trained stage of a peptide PITA run (``stage_K/model.pt``) and redoes the step to T_{K+1}
exactly as ``run_pita`` does it (the run's anneal settings for that rung, its tail correction and
final systematic resampling through ``parallel.PitaParallel``, the chirality fix, then the run's
MALA relaxation at T_{K+1}), recording the backbone basin fractions (``metrics.peptides``:
C7eq/C5, αR, φ > 0) of the population at each point:

* ``annealed, unweighted`` — the particles at t = 0, each counted once;
* ``annealed, FK-weighted`` — the same, weighted by their log-weights at t = 0 (with the
  ``released`` tail these are the weights frozen at ``stop_resampling_t``);
* ``after tail correction, weighted`` — weighted by the tail's final log-weights (``released``:
  −E/kT + γU_η(σ_stop), clamped; ``true_energy``: the FK weights corrected on the true energy);
* ``after final resampling`` — the equal-weight population the rung hands on;
* ``after relaxation`` — after the chirality fix and ``relax.n_steps`` MALA steps at T_{K+1}: what the
  stage's samples are.

A basin that the annealed population holds but the tail's weights remove points at the tail; one
that is already missing at t = 0 points at the model and the SMC; ``--no-weights`` (the score-scaling
ablation: no weights, no resampling) separates the two. ``--gamma-one`` asks the model alone: it is
sampled at its own temperature T_K (γ = 1, no weights, the gate's model check,
``methods.pita.model_check_anneal``) and relaxed at T_K, to be compared with the basins of the buffer
it was trained on (``stage_K/buffer.npz``; printed first). ``--gamma G`` anneals to T_K/G instead of
T_{K+1} (a finer or coarser rung from the same model; the rung's other options unchanged).
``--reweight-true`` tries the rung without the tempered drift: the model sampled at T_K (γ = 1, no
weights), relaxed at T_K, importance-resampled to T_{K+1} on the true energy (log w = −(γ − 1)·E/kT_K,
γ = T_K/T_{K+1}; no extra evaluations) and relaxed at T_{K+1}.
Every target energy evaluation is counted (the tail's and the relaxation's). One seed per call;
compare with the run's own stage ``K+1`` samples, which came from another random stream.

    python benchmarks/pita_stage_basins.py --run RUN --stage K [--n 1000] [--seed 0] [--threads 2] \
        [--gamma G | --gamma-one] [--no-weights] [--out FILE]

Writes ``benchmarks/results/pita_stage_basins.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from pita_rung import load_rung

from boltzpath.diffusion.buffer import TrainingBuffer
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.methods.pita import (
    _chirality_fix,
    backbone_strata_log_weights,
    model_check_anneal,
    reweight_log_weights,
)
from boltzpath.metrics.peptides import backbone_dihedrals, basin_masks
from boltzpath.parallel.dist import DistContext
from boltzpath.parallel.pita_parallel import PitaParallel
from boltzpath.smc.annealing import anneal
from boltzpath.smc.resample import systematic
from boltzpath.smc.weights import effective_sample_size

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("Where a peptide PITA rung loses a basin (`benchmarks/pita_stage_basins.py`): backbone basin "
               "fractions of one rung's population at t = 0 (unweighted and FK-weighted), after the tail "
               "correction, after the final resampling and after the relaxation, redone as run_pita does it")


def weighted_basins(x: np.ndarray, topology, log_w: torch.Tensor | None = None) -> dict[str, float]:
    """Basin fractions of the first residue of x (n, dim), each sample weighted by softmax(log_w)
    (equal weights if None), and the weights' ESS fraction."""
    phi, psi = backbone_dihedrals(x, topology)
    n = x.shape[0]
    log_w = torch.zeros(n, dtype=torch.float64) if log_w is None else log_w.double()
    w = torch.softmax(log_w, 0).numpy()
    out = {name: float(w @ mask) for name, mask in basin_masks(phi[:, 0], psi[:, 0]).items()}
    out["ess_fraction"] = effective_sample_size(log_w) / n
    return out


def _tempered_rung(cfg, k, model, n, schedule, acfg, target, target_k, par, gen):
    """The rung as run_pita does it → ([(label, x, log-weights or None)], final resampling indices)."""
    res, lw, idx, x_eq = par.anneal_population(model, n, schedule, acfg, gen, target.project, None, target_k)
    # all-D particles reflected to L for the classification (as the run's chirality fix does next)
    x_t0, _, keep0, _ = _chirality_fix(cfg, k + 1, res.x.detach(), target)
    stages = [("annealed, unweighted", x_t0, None), ("annealed, FK-weighted", x_t0, res.log_weights[keep0]),
              ("after tail correction, weighted", x_t0, lw[keep0])]
    x_fix, _, _, _ = _chirality_fix(cfg, k + 1, x_eq.detach(), target)
    stages.append(("after final resampling", x_fix, None))
    rx, _, _, _ = par.relax(target_k, x_fix, gen, cfg.relax, callback=None)
    rx, _, _, _ = _chirality_fix(cfg, k + 1, rx, target, torch.zeros_like(rx))
    stages.append(("after relaxation", rx, None))
    return stages, idx


def _reweight_true_rung(cfg, k, rung, model, n, schedule, target, t_next, par, gen, strata_x=None):
    """``--reweight-true``: the model at T_K (γ = 1, no weights), relaxed at T_K, resampled to T_{K+1}
    by log w = −(γ − 1)·E/kT_K (the relaxation's own energies), relaxed at T_{K+1}. ``strata_x`` (the
    stage-K buffer, ``--strata``): the weights also carry ``methods.pita.backbone_strata_log_weights``
    against it, as ``rung_strata: backbone`` does."""
    t_k = cfg.temperatures[k]
    acfg = model_check_anneal(rung.anneal)
    res = anneal(model, n, schedule, acfg, gen, target.project)
    x0, _, _, _ = _chirality_fix(cfg, k, res.x.detach(), target)
    rx, e_k, _, _ = par.relax(target.at_temperature(t_k), x0, gen, cfg.relax, callback=None)
    rx, _, _, _ = _chirality_fix(cfg, k, rx, target, torch.zeros_like(rx))
    log_w = reweight_log_weights(e_k.cpu(), t_k / t_next)
    if strata_x is not None:
        log_w = log_w + backbone_strata_log_weights(rx, strata_x, target.topology)[0]
    idx = systematic(gen, log_w, len(log_w))
    x_rs = rx[idx.to(rx.device)]
    rx2, _, _, _ = par.relax(target.at_temperature(t_next), x_rs, gen, cfg.relax, callback=None)
    rx2, _, _, _ = _chirality_fix(cfg, k + 1, rx2, target, torch.zeros_like(rx2))
    return [("model at T_K, unweighted", x0, None), ("after relaxation at T_K", rx, None),
            ("reweighted to T_K+1 on E", rx, log_w), ("after resampling", x_rs, None),
            ("after relaxation at T_K+1", rx2, None)], idx, acfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--stage", type=int, required=True, help="the stage whose model anneals to the next T")
    ap.add_argument("--n", type=int, default=None, help="particles (default: the run's n_particles)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-weights", action="store_true",
                    help="the score-scaling ablation (use_weights=false: no FK weights, no resampling)")
    ap.add_argument("--gamma", type=float, default=None,
                    help="anneal to T_K/gamma instead of T_K+1 (gamma > 1)")
    ap.add_argument("--reweight-true", action="store_true",
                    help="model at T_K, relaxed, resampled to T_K+1 on the true energy, relaxed again")
    ap.add_argument("--strata", action="store_true",
                    help="with --reweight-true: also weight the backbone basins to the stage's buffer "
                         "(rung_strata: backbone)")
    ap.add_argument("--gamma-one", action="store_true",
                    help="the model at its own temperature (γ = 1, no weights) against its buffer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "pita_stage_basins.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gamma is not None and (not args.gamma > 1 or args.gamma_one):
        raise BadInput(f"--gamma {args.gamma}: needs a value > 1 (and not with --gamma-one)")
    if args.strata and not args.reweight_true:
        raise BadInput("--strata: only with --reweight-true")
    if args.reweight_true and (args.gamma_one or args.no_weights):
        raise BadInput("--reweight-true: not with --gamma-one or --no-weights (it is its own rung)")

    def peptide_only(cfg, target):
        if not getattr(target, "is_peptide", False):
            raise BadInput(f"--run {args.run}: target {cfg.target} is not a peptide (no backbone basins)")

    rung = load_rung(args.run, args.stage, require=peptide_only)
    cfg, k, target, schedule, model = rung.cfg, rung.stage, rung.target, rung.schedule, rung.model
    n = args.n or cfg.n_particles
    t_next = rung.t_next
    target_k = target.at_temperature(t_next)
    acfg = rung.anneal
    if args.gamma is not None:
        t_next = cfg.temperatures[k] / args.gamma
        target_k = target.at_temperature(t_next)
        acfg = replace(acfg, gamma=args.gamma)
    acfg = replace(acfg, gamma=acfg.gamma * (acfg.overshoot if acfg.reweights_on_true_energy else 1.0))
    if args.no_weights:
        acfg = replace(acfg, use_weights=False)
    buffer_x = None
    if args.gamma_one:  # the model alone at T_K: the gate's model check, relaxed at T_K
        acfg, t_next = model_check_anneal(rung.anneal), cfg.temperatures[k]
        target_k = target.at_temperature(t_next)
        buffer_x = TrainingBuffer.load(Path(args.run) / f"stage_{k}" / "buffer.npz").x
    if acfg.divergence == "auto":
        raise BadInput("anneal.divergence 'auto': this diagnostic takes the run's resolved choice only; "
                       "pass the run's recorded estimator with a copy of its config")
    par = PitaParallel(DistContext())
    gen = torch.Generator().manual_seed(args.seed)
    c0, t0 = target.counter.count, time.perf_counter()
    top = target.topology
    if args.reweight_true:
        strata_x = (TrainingBuffer.load(Path(args.run) / f"stage_{k}" / "buffer.npz").x
                    if args.strata else None)
        stages, idx, acfg = _reweight_true_rung(cfg, k, rung, model, n, schedule, target, t_next, par, gen,
                                                strata_x)
    else:
        stages, idx = _tempered_rung(cfg, k, model, n, schedule, acfg, target, target_k, par, gen)
    if buffer_x is not None:
        stages.insert(0, ("buffer the model was trained on", buffer_x, None))
    common = {"benchmark": "pita_stage_basins", "target": cfg.target, "run": str(args.run),
              "rung": f"{cfg.temperatures[k]:g} → {t_next:g} K", "tail": acfg.tail,
              "gamma": cfg.temperatures[k] / t_next if args.reweight_true else acfg.gamma,
              "use_weights": acfg.use_weights, "gamma_one": bool(args.gamma_one),
              "reweight_true": bool(args.reweight_true), "strata": bool(args.strata),
              "n": n, "seed": args.seed, "energy_evaluations": target.counter.count - c0,
              "wall_time_s": round(time.perf_counter() - t0, 1), "machine": describe_machine(),
              "threads": args.threads, "distinct_after_final_resampling": int(torch.unique(idx).numel()),
              "command": "python benchmarks/pita_stage_basins.py "
                         + " ".join(argv if argv is not None else sys.argv[1:])}
    rows = []
    for label, x, w in stages:
        b = weighted_basins(x.detach().float().cpu().numpy(), top, w)
        for name, v in b.items():
            rows.append({**common, "method": label, "metric": f"basin_{name}" if name != "ess_fraction"
                         else "ess_fraction", "value": v})
        print(f"{label:34s} " + "  ".join(f"{a} {v:.3f}" for a, v in b.items()), flush=True)
    atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
