"""PITA on LJ-13 and DW-4: energy / distance / aligned W2 vs the held-out sets, evaluations, time.

For each target: the PITA ladder with the ``cpu`` preset (``--quick``: the ``quick`` preset), the
"score scaling" ablation (same ladder, FK weights off), and parallel tempering given the same
number of target energy evaluations as the PITA run. Also profiles one training step and one SMC
step (steps/s) of the preset's network. Writes ``benchmarks/results/bench_pita.json`` (rows).

    python benchmarks/bench_pita.py --quick [--targets lj13,dw4] [--methods pita,scaling,pt,profile]
        [--runs-dir DIR] [--out FILE]

``--methods`` picks what runs; the ablation and PT can run as separate processes once the PITA
run's stage 0 (ablation) or the whole run (PT: its evaluation budget) is complete in ``--runs-dir``.

The held-out sets in ../shared/holdout/ are used for evaluation only.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from boltzpath.config import to_dict
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import load_reference
from boltzpath.methods.pita import _network_model, run_pita
from boltzpath.methods.pita_cli import resolve_config
from boltzpath.metrics.suite import evaluate
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
HOLDOUT = ROOT.parent.parent / "shared" / "holdout"
METRICS = ("energy_w2", "distance_w2", "aligned_w2")


def _rows(method, target, evaluation, n_evals, wall, command, n):
    rows = []
    for name in METRICS:
        m = evaluation.get("metrics", {}).get(name)
        if m is None:
            continue
        floor = m.get("noise_floor") or {}
        rows.append({"benchmark": "pita", "method": method, "target": target, "metric": name,
                     "value": m["value"], "n": m.get("n", n), "noise_floor": floor.get("mean"),
                     "energy_evaluations": n_evals, "wall_time_s": wall, "machine": describe_machine(),
                     "command": command})
    return rows


def _pita(target, preset, ref_path, runs, use_weights, command):
    """Run (or resume, if its folder exists) one ladder. The ablation differs from the FK run only
    after stage 0, so it starts from a copy of the FK run's finished stage 0."""
    over = ("anneal.use_weights=false",) if not use_weights else ()
    cfg = resolve_config(target, preset, None, over + ("stage_plots=false",))
    cfg.reference = str(ref_path)
    folder = runs / f"{target}_{preset}_{'fk' if use_weights else 'scaling'}"
    stage0 = runs / f"{target}_{preset}_fk" / "stage_0"
    if not folder.exists() and not use_weights and (stage0 / "COMPLETE").is_file():
        shutil.copytree(stage0, folder / "stage_0")
    res = run_pita(cfg, folder, resume=folder.exists())
    ev = res.metrics["energy_evaluations"]["total"]
    method = "pita" if use_weights else "pita-score-scaling"
    return res, _rows(method, target, res.metrics["evaluation"], ev, res.metrics["wall_time_s"], command,
                      res.samples.n)


def _pt_same_budget(target_name, budget, n, ref, command):
    from boltzpath.mcmc.registry import run_method

    target = make_target(target_name)
    chains, replicas = 64, 8
    steps = max(20, budget // (chains * replicas))
    burn = steps // 2
    per_chain = math.ceil(n / chains)
    thin = max(1, (steps - burn) // per_chain)
    opts = {"chains": chains, "n_replicas": replicas, "burn_in": burn, "thin": thin, "t_max": 4.0}
    t0 = time.perf_counter()
    s = run_method("pt", target, n, torch.Generator().manual_seed(0), opts)
    wall = time.perf_counter() - t0
    ev = evaluate(s, target, reference=ref, generator=torch.Generator().manual_seed(1), max_n=2000)
    return _rows("pt-same-budget", target_name, ev, target.counter.count, wall, command, s.n)


def _profile(target_name, preset, command):
    from boltzpath.diffusion.buffer import TrainingBuffer
    from boltzpath.diffusion.schedule import KarrasSchedule
    from boltzpath.diffusion.train import Models, build_models, train
    from boltzpath.smc.annealing import AnnealConfig, AnnealState, fk_step

    cfg = resolve_config(target_name, preset, None, ())
    target = make_target(target_name)
    g = torch.Generator().manual_seed(0)
    x = target.project(torch.randn(cfg.train.batch_size * 2, target.dim, generator=g))
    buf = TrainingBuffer.from_target(target, x)
    score, energy = build_models(target, cfg.net)
    tcfg = type(cfg.train)(**{**to_dict(cfg.train), "steps": 10, "log_every": 10})
    train(Models(score, energy, cfg.net), buf, tcfg, g)  # warm-up
    tcfg.steps = 20
    t0 = time.perf_counter()
    train(Models(score, energy, cfg.net), buf, tcfg, g)
    train_sps = 20 / (time.perf_counter() - t0)
    sch = KarrasSchedule(cfg.schedule.sigma_min, cfg.schedule.sigma_max, cfg.schedule.rho)
    model = _network_model(score, energy, target, sch)
    acfg = AnnealConfig(**{**to_dict(cfg.anneal), "gamma": 1.25})
    st = AnnealState(target.project(torch.randn(cfg.n_particles, target.dim, generator=g)),
                     torch.zeros(cfg.n_particles, dtype=torch.float64))
    t0 = time.perf_counter()
    for _ in range(3):
        st, _ = fk_step(model, st, 0.5, 0.49, sch, acfg, g, target.project)
    smc_sps = 3 / (time.perf_counter() - t0)
    base = {"benchmark": "pita-profile", "method": "pita", "target": target_name, "noise_floor": None,
            "energy_evaluations": None, "wall_time_s": None, "machine": describe_machine(),
            "command": command}
    return [{**base, "metric": f"train_steps_per_s (batch {cfg.train.batch_size}, {cfg.net.hidden}x"
             f"{cfg.net.layers})", "value": train_sps, "n": 20},
            {**base, "metric": f"smc_steps_per_s ({cfg.n_particles} particles, {cfg.anneal.divergence})",
             "value": smc_sps, "n": 3}]


def _describe(preset: str, methods: str) -> str:
    return (f"PITA with the `{preset}` preset against the held-out sets ({methods}): `pita` is the "
            "FK-weighted ladder, `pita-score-scaling` the same ladder without weights (reusing its stage 0), "
            "`pt-same-budget` parallel tempering given the PITA run's total energy evaluations; "
            "`pita-profile` rows are steps/s of one training step and one SMC step.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the quick preset instead of cpu")
    p.add_argument("--targets", default="lj13,dw4")
    p.add_argument("--methods", default="profile,pita,scaling,pt",
                   help="comma list of profile, pita, scaling (the ablation), pt")
    p.add_argument("--runs-dir", default=None, help="where run folders go (default: a temporary folder)")
    p.add_argument("--out", default=str(ROOT / "results" / "bench_pita.json"))
    args = p.parse_args(argv)
    command = "python benchmarks/bench_pita.py " + " ".join(argv if argv is not None else sys.argv[1:])
    preset = "quick" if args.quick else "cpu"
    methods = set(args.methods.split(","))
    if unknown := methods - {"profile", "pita", "scaling", "pt"}:
        p.error(f"unknown --methods {sorted(unknown)}")
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="bench_pita_"))
    rows = []
    for target in args.targets.split(","):
        ref_path = HOLDOUT / f"{target}_test_10k.npy"
        if not ref_path.is_file():
            print(f"skipping {target}: {ref_path} not found (held-out sets live in ../shared/holdout)")
            continue
        ref = load_reference(ref_path)
        if "profile" in methods:
            rows += _profile(target, preset, command)
        if "pita" in methods:
            _, r = _pita(target, preset, ref_path, runs, True, command)
            rows += r
            print(json.dumps(r, indent=1))
        if "scaling" in methods:
            stage0 = runs / f"{target}_{preset}_fk" / "stage_0" / "COMPLETE"
            if "pita" not in methods and not stage0.is_file():
                p.error(f"the ablation reuses the PITA run's stage 0: {stage0} not found")
            rows += _pita(target, preset, ref_path, runs, False, command)[1]
        if "pt" in methods:
            done = runs / f"{target}_{preset}_fk" / "metrics.json"
            if not (done.parent / "COMPLETE").is_file():
                p.error(f"PT at the same budget needs the finished PITA run: {done.parent} is not complete")
            fk = json.loads(done.read_text())
            rows += _pt_same_budget(target, fk["energy_evaluations"]["total"], fk["n"], ref, command)
        atomic_write_json(args.out, {"description": _describe(preset, args.methods), "rows": rows})
    atomic_write_json(args.out, {"description": _describe(preset, args.methods), "rows": rows})
    for r in rows:
        print(f"{r['target']:6s} {r['method']:20s} {r['metric']:45s} {r['value']:.4g} (n={r['n']}, "
              f"floor={r['noise_floor']}, evals={r['energy_evaluations']})")


if __name__ == "__main__":
    main()
