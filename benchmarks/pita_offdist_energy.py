"""Does a PITA stage's energy model rank the model's own bad samples above its training data?

The quality gate (``diffusion.quality``) reads U_η(·, σ_min) on held-out *buffer* samples: valid
molecules at T_k. The Feynman–Kac weights, however, act on what the score network's annealing
produces, which on peptides includes configurations the buffer never holds (cis amides, mirror
images, clashes). If U_η puts those too low, the weights select them, whatever the held-out
correlation. For stage K of each run this script draws ``--n`` samples from the stage's model at
T_K (γ = 1, no weights: the gate's model check, ``methods.pita._model_check``), and reports, against
the stage's held-out buffer split (the gate's), per group — buffer, model samples with all amides
trans, model samples with a cis amide — the mean true E/kT_K and the mean U_η(·, σ_min), each minus
the buffer's mean. A group whose ΔU is far below its ΔE is favoured by the weights. It then anneals
the rung to T_{K+1} with the run's settings (weights on, ``--n`` particles) and reports the cis
fraction of the population at t = 0 and its FK-weighted fraction.

    .venv/bin/python benchmarks/pita_offdist_energy.py --run base=DIR --run pair=DIR2 [--stage 0]
        [--run swapped=DIR+DIR2] [--n 256] [--threads 2] [--out JSON]

``LABEL=DIR+DIR2``: DIR's score network with DIR2's energy network (same stage) — PITA's drift is
γ(Δh/2)(s_θ − ∇U_η), half of it from the energy network, so this tells which network makes the samples.

Peptide runs only (cis amides need a topology). Counted: 2·n true-energy evaluations per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pita_rung import load_rung

from boltzpath.diffusion.quality import split_holdout
from boltzpath.diffusion.train import load_models
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.methods.pita import _generator, _network_model, model_check_anneal
from boltzpath.metrics.amides import cis_bonds
from boltzpath.smc.annealing import anneal


def _peptide(cfg, target) -> None:
    if not getattr(target, "is_peptide", False):
        raise BadInput(f"{cfg.target} is not a peptide: this check counts cis amides")


def _group(mask, e, u, e_ref, u_ref) -> dict:
    m = mask & np.isfinite(e)
    if not m.any():
        return {"n": 0}
    return {"n": int(m.sum()), "delta_energy_mean": float(e[m].mean() - e_ref),
            "delta_energy_median": float(np.median(e[m]) - e_ref),
            "delta_u_mean": float(u[m].mean() - u_ref), "delta_u_median": float(np.median(u[m]) - u_ref)}


def measure(run: Path, stage: int, n: int, seed: int, energy_from: Path | None = None) -> dict:
    """The report of the module docstring for stage ``stage`` of ``run``; ``energy_from``: another
    run's stage-``stage`` checkpoint whose *energy* network replaces the run's own (the score network
    stays): which of the two networks makes the samples."""
    rung = load_rung(run, stage, require=_peptide)
    cfg, target, schedule, model = rung.cfg, rung.target, rung.schedule, rung.model
    if energy_from is not None:
        other = Path(energy_from) / f"stage_{stage}" / "model.pt"
        if not other.is_file():
            raise BadInput(f"--energy-from {energy_from}: no stage_{stage}/model.pt")
        score, _ = load_models(rung.model_file, target)
        _, energy = load_models(other, target)
        model = _network_model(score, energy, target, schedule, score_from=rung.anneal.score_from)
    temp = cfg.temperatures[stage]
    target_k = target.at_temperature(temp)
    buf = np.load(Path(run) / f"stage_{stage}" / "buffer.npz")
    xb = torch.as_tensor(buf["x"], dtype=torch.float32)
    eb = torch.as_tensor(buf["energy"], dtype=torch.float64)
    _, hold = split_holdout(len(xb), cfg.gate.holdout_fraction, _generator(cfg.seed, stage, "holdout"))
    xb, eb = xb[hold], eb[hold]
    sig = float(cfg.schedule.sigma_min)

    def u_of(x):
        with torch.no_grad():
            return model.energy_net(x, torch.full((x.shape[0],), sig)).double().numpy()

    plain = model_check_anneal(cfg.anneal)  # exactly the gate's model check
    xm = anneal(model, n, schedule, plain, torch.Generator().manual_seed(seed), target.project).x.detach()
    with torch.no_grad():
        em = target_k.energy(xm.double()).double().numpy()
    cis = cis_bonds(xm.numpy(), target.topology).any(axis=1)
    ub, um = u_of(xb), u_of(xm)
    e_ref, u_ref = float(eb.mean()), float(ub.mean())
    keep = np.isfinite(em) & (em <= 1000.0)
    e_all = np.concatenate([eb.numpy(), em[keep]])
    u_all = np.concatenate([ub, um[keep]])
    out = {
        "run": str(run), "energy_from": None if energy_from is None else str(energy_from), "stage": stage,
        "temperature": temp, "t_next": rung.t_next, "n_model": n,
        "n_buffer_holdout": int(len(xb)), "sigma_min": sig,
        "buffer": _group(np.ones(len(xb), bool), eb.numpy(), ub, e_ref, u_ref),
        "model_trans": _group(~cis, em, um, e_ref, u_ref),
        "model_cis": _group(cis, em, um, e_ref, u_ref),
        "model_cis_fraction": float(cis.mean()),
        "corr_buffer_and_model": float(np.corrcoef(u_all, e_all)[0, 1]),
        "corr_buffer_only": float(np.corrcoef(ub, eb.numpy())[0, 1]),
    }
    res = anneal(model, n, schedule, rung.anneal, torch.Generator().manual_seed(seed + 1), target.project)
    x1 = res.x.detach().numpy()
    cis1 = cis_bonds(x1, target.topology).any(axis=1)
    w = torch.softmax(res.log_weights.double(), 0).numpy()
    out["rung"] = {"gamma": float(rung.anneal.gamma), "cis_fraction_t0": float(cis1.mean()),
                   "cis_fraction_t0_weighted": float((w * cis1).sum()),
                   "ess_fraction_t0": float(res.ess) / n}
    out["evaluations"] = int(len(xm))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=DIR[+ENERGY_DIR]",
                    help="a run; with +ENERGY_DIR, ENERGY_DIR's energy network replaces the run's own")
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.n < 8:
        raise BadInput(f"--n {args.n}: need at least 8 samples")
    runs = []
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise BadInput(f"--run {item!r}: expected LABEL=DIR")
        path, _, energy_dir = path.partition("+")
        runs.append((label, Path(path), Path(energy_dir) if energy_dir else None))
    torch.set_num_threads(args.threads)
    rows = []
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/pita_offdist_energy.py", *given])
    for label, path, energy_dir in runs:
        t0 = time.perf_counter()
        m = measure(path, args.stage, args.n, args.seed, energy_dir)
        print(json.dumps({"label": label, **m}))
        rows += rows_of(label, m, command, args.threads, time.perf_counter() - t0)
    if args.out:
        atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    return 0


DESCRIPTION = ("A PITA stage's energy model on the model's own samples "
               "(`benchmarks/pita_offdist_energy.py`): "
               "stage K's model sampled at T_K (γ = 1, no weights), split into all-trans and cis-amide "
               "samples, against the stage's held-out buffer split: mean true E/kT_K and mean U_η(σ_min), "
               "each minus the buffer's mean (a group whose ΔU is far below its ΔE is favoured by the FK "
               "weights); corr(U_η, E/kT) on buffer + model samples; the cis fraction of the rung's "
               "weighted SMC population at t = 0.")


def rows_of(label: str, m: dict, command: str, threads: int, wall: float) -> list[dict]:
    """BENCHMARKS rows (benchmarks/render.py) of one ``measure`` result."""
    common = {"benchmark": "pita_offdist_energy", "target": "aldp-fab", "machine": describe_machine(),
              "threads": threads, "command": command, "run": m["run"], "energy_from": m["energy_from"],
              "stage": m["stage"],
              "temperature": m["temperature"], "energy_evaluations": 2 * m["n_model"],
              "wall_time_s": round(wall, 1), "noise_floor": None}
    out = []
    for group in ("buffer", "model_trans", "model_cis"):
        g = m[group]
        for metric in ("delta_energy_mean", "delta_energy_median", "delta_u_mean", "delta_u_median"):
            if metric in g:
                out.append({**common, "method": f"{label}: {group.replace('_', ' ')}", "metric": metric,
                            "value": g[metric], "n": g["n"]})
    for metric in ("model_cis_fraction", "corr_buffer_and_model", "corr_buffer_only"):
        out.append({**common, "method": label, "metric": metric, "value": m[metric],
                    "n": m["n_model"] + m["n_buffer_holdout"] if metric.startswith("corr_buffer_and")
                    else (m["n_buffer_holdout"] if metric == "corr_buffer_only" else m["n_model"])})
    for metric in ("cis_fraction_t0", "cis_fraction_t0_weighted"):
        out.append({**common, "method": f"{label}: rung {m['temperature']:g} → {m['t_next']:g} K",
                    "metric": metric,
                    "value": m["rung"][metric], "n": m["n_model"], "gamma": m["rung"]["gamma"]})
    return out


if __name__ == "__main__":
    sys.exit(run_cli(main))
