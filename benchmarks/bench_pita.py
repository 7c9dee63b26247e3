"""PITA on LJ-13 and DW-4: energy / distance / aligned W2 vs the held-out sets, evaluations, time.

For each target and seed: the PITA ladder with the ``cpu`` preset (``--quick``: the ``quick``
preset), the "score scaling" ablation (same ladder, FK weights off; by default its MALA relaxation is
lengthened until it spends the weighted run's energy evaluations, ``--ablation-budget matched``), and
parallel tempering given the same number of target energy evaluations as the PITA run. Also profiles
one training step and one SMC step (steps/s) of the preset's network. Writes
``benchmarks/results/bench_pita.json`` (rows).

    python benchmarks/bench_pita.py --quick [--targets lj13,dw4] [--methods pita,scaling,pt,profile]
        [--seeds 0,1,2] [--set key=value ...] [--references runs/references] [--runs-dir DIR] [--out FILE]
        [--ablation-budget matched|preset]

With ``--references`` (the folder written by ``benchmarks/particle_references.py``), every stage's
samples are also compared with the certified PT reference at the stage's own temperature
(``stage`` rows: energy W2 and distance W2, noise floor = seed-0 vs seed-1 reference at the same n;
DW-4 also the macrostate fractions), and the final samples with the T = 1 reference.

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

import numpy as np
import torch

from boltzpath.config import to_dict
from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import load_reference
from boltzpath.methods.pita import _network_model, run_pita
from boltzpath.methods.pita_config import resolve_config
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


def _folder(runs, target, preset, seed, use_weights, matched=False):
    kind = "fk" if use_weights else ("scaling_matched" if matched else "scaling")
    return runs / f"{target}_{preset}_s{seed}_{kind}"


def _method(use_weights: bool, matched: bool) -> str:
    return "pita" if use_weights else ("pita-score-scaling-matched" if matched else "pita-score-scaling")


def matched_relax_steps(fk_metrics: dict, relax_steps: int, buffer_size: int) -> int:
    """Relaxation steps per stage that give the ablation the weighted run's evaluation budget.

    The ablation spends what the weighted ladder spends except its tail correction
    (``final_reweighting``: the bridge's MALA moves or the one true-energy evaluation); that many
    evaluations go instead into longer MALA relaxation, spread evenly over the annealed stages."""
    annealed = [s for s in fk_metrics["stages"] if s["stage"] > 0]
    extra = sum(int(s["energy_evaluations"].get("final_reweighting", 0)) for s in annealed)
    return relax_steps + math.ceil(extra / (len(annealed) * buffer_size))


def _pita(target, preset, ref_path, runs, use_weights, command, seed=0, sets=(), matched=False):
    """Run (or resume, if its folder exists) one ladder. The ablation differs from the FK run only
    after stage 0, so it starts from a copy of the FK run's finished stage 0. ``matched``: the
    ablation's relaxation is lengthened to the finished FK run's evaluation budget."""
    over = ("anneal.use_weights=false",) if not use_weights else ()
    cfg = resolve_config(target, preset, seed, over + ("stage_plots=false",) + tuple(sets))
    if matched and not use_weights:
        fk = json.loads((_folder(runs, target, preset, seed, True) / "metrics.json").read_text())
        cfg.relax.n_steps = matched_relax_steps(fk, cfg.relax.n_steps, cfg.buffer_size)
    if cfg.temperatures[-1] == 1.0:  # the held-out / certified final sets are at T = 1; a ladder cut
        cfg.reference = str(ref_path)  # short of it (diagnosis runs) must not score its last stage on them
    folder = _folder(runs, target, preset, seed, use_weights, matched)
    stage0 = _folder(runs, target, preset, seed, True) / "stage_0"
    if not folder.exists() and not use_weights and (stage0 / "COMPLETE").is_file():
        shutil.copytree(stage0, folder / "stage_0")
    res = run_pita(cfg, folder, resume=folder.exists())
    ev = res.metrics["energy_evaluations"]["total"]
    method = _method(use_weights, matched)
    rows = _rows(method, target, res.metrics["evaluation"], ev, res.metrics["wall_time_s"], command,
                 res.samples.n)
    return res, [{**r, "seed": seed} for r in rows]


def _same_budget(info: dict, budget: int) -> bool:
    """Whether kept PT samples were drawn for ``budget`` evaluations: the recorded request, or (files
    kept before it was recorded) a spend within the budget and within 1 % of it (PT stops short of
    the budget by less than one sweep of its chains)."""
    if "budget" in info:
        return int(info["budget"]) == int(budget)
    spent = int(info["energy_evaluations"])
    return spent <= budget and spent >= 0.99 * budget


def _pt_same_budget(target_name, budget, n, ref, command, seed=0, save: Path | None = None):
    """PT given ``budget`` evaluations; its samples (with evaluations and wall time) are kept in
    ``save`` (an .npz) and reused from there when present, so a rerun rescores without resampling."""
    from boltzpath.io.samples import Samples
    from boltzpath.methods.compare import pt_at_budget

    target = make_target(target_name)
    kept = Samples.load(save) if save is not None and save.is_file() else None
    if kept is not None and not _same_budget(kept.info, budget):
        print(f"[bench_pita] {save}: kept PT samples were drawn for another budget "
              f"({kept.info.get('budget', kept.info['energy_evaluations'])} vs {budget}); resampling")
        kept = None
    if kept is not None:
        s = kept
        spent, wall = int(s.info["energy_evaluations"]), float(s.info["wall_time_s"])
    else:
        t0 = time.perf_counter()
        s, _ = pt_at_budget(target, budget, n, seed, t_max=4.0)
        wall = time.perf_counter() - t0
        spent = target.counter.count
        if save is not None:
            s.info.update(energy_evaluations=int(spent), wall_time_s=wall, budget=int(budget))
            save.parent.mkdir(parents=True, exist_ok=True)
            s.save(save)
    ev = evaluate(s, target, reference=ref, generator=torch.Generator().manual_seed(1), max_n=2000)
    rows = _rows("pt-same-budget", target_name, ev, spent, wall, command, s.n)
    return [{**r, "seed": seed} for r in rows], s


def _certified_rows(method, target_name, samples, cert, n_evals, wall, command, seed):
    """The final rows again, against the certified PT reference ``cert`` (none when it is absent)."""
    if cert is None or not cert.is_file():
        return []
    ev = evaluate(samples, make_target(target_name), reference=load_reference(cert),
                  generator=torch.Generator().manual_seed(1), max_n=2000)
    return [{**x, "method": f"{method} vs certified PT", "seed": seed}
            for x in _rows(method, target_name, ev, n_evals, wall, command, samples.n)]


SUBSETS = 10


def _subset_scores(x, target, r0, r1, base_seed: int) -> tuple[dict, dict]:
    """Energy W2 (E/kT of ``target``) and distance W2 of ``x`` against ``SUBSETS`` random subsets of
    the reference ``r0`` (``x``'s n each), and the floor the same way: subsets of ``r1`` (another
    reference run) against those of ``r0``. Random subsets: PT files are chain-interleaved."""
    from boltzpath.metrics.distributions import energy_w
    from boltzpath.metrics.particles import distance_w2

    n = x.shape[0]
    e = target.energy(x).double()
    vals = {"energy_w2": [], "distance_w2": []}
    floors = {"energy_w2": [], "distance_w2": []}
    for k in range(SUBSETS):
        gen = torch.Generator().manual_seed(base_seed + k)
        a = r0[torch.randperm(r0.shape[0], generator=gen)[:n]]
        ea = target.energy(a).double()
        vals["energy_w2"].append(energy_w(e, ea, 2))
        vals["distance_w2"].append(distance_w2(x, a, target))
        if r1 is not None:
            b = r1[torch.randperm(r1.shape[0], generator=gen)[:n]]
            floors["energy_w2"].append(energy_w(target.energy(b).double(), ea, 2))
            floors["distance_w2"].append(distance_w2(b, a, target))
    return vals, floors


def _subset_rows(method, target_name, samples, references: Path, n_evals, wall, command, seed):
    """Energy and distance W2 of the final samples against ``SUBSETS`` random subsets (the samples'
    n) of the certified T = 1 reference, as mean ± s.d.; the floor the same way, seed-1 subsets
    against seed-0 subsets. One subset draw moves distance W2 on DW-4 by several times its floor
    (0.015-0.108 for one sample set, 2026-12-04), so rankings use these rows."""
    f0, f1 = (references / f"{target_name}_T1_seed{s}.npy" for s in (0, 1))
    if not f0.is_file():
        return []
    target = make_target(target_name)  # evaluation only
    x = samples.x.float()
    r0 = torch.as_tensor(np.load(f0)).float()
    r1 = torch.as_tensor(np.load(f1)).float() if f1.is_file() else None
    vals, floors = _subset_scores(x, target, r0, r1, 1000)
    rows = []
    for metric, v in vals.items():
        fl = floors[metric]
        rows.append({"benchmark": "pita", "method": f"{method} vs certified PT", "target": target_name,
                     "metric": f"{metric} (mean of {SUBSETS} reference subsets)", "value": float(np.mean(v)),
                     "std_over_subsets": float(np.std(v, ddof=1)), "n": x.shape[0],
                     "noise_floor": float(np.mean(fl)) if fl else None,
                     "noise_floor_std": float(np.std(fl, ddof=1)) if fl else None,
                     "energy_evaluations": n_evals, "wall_time_s": wall, "machine": describe_machine(),
                     "command": command, "seed": seed})
    return rows


def _stage_rows(method, target_name, folder, temperatures, references: Path, seed, command):
    """Each stage's samples vs the certified reference at its own temperature (``references``):
    energy and distance W2 as the mean over ``SUBSETS`` reference subsets (``_subset_scores``)."""
    from boltzpath.io.samples import Samples

    sys.path.insert(0, str(ROOT))
    from particle_references import macrostates

    target = make_target(target_name)  # evaluation only: its counter is not the run's
    rows = []
    for k, temp in enumerate(temperatures):
        f0, f1 = (references / f"{target_name}_T{temp:g}_seed{s}.npy" for s in (0, 1))
        if not f0.is_file() or not (folder / f"stage_{k}" / "samples.npz").is_file():
            continue
        samples = Samples.load(folder / f"stage_{k}" / "samples.npz")
        x = samples.x.float()
        n = x.shape[0]
        r0 = torch.as_tensor(np.load(f0)).float()
        r1 = torch.as_tensor(np.load(f1)).float() if f1.is_file() else None
        vals, floors = _subset_scores(x, target.at_temperature(temp), r0, r1, 100 * k)
        for metric, v in vals.items():
            fl = floors[metric]
            rows.append({"benchmark": "pita-stage", "method": method, "target": target_name,
                         "metric": f"stage {k} (T={temp:g}) {metric} vs certified PT "
                                   f"(mean of {SUBSETS} subsets)",
                         "value": float(np.mean(v)), "std_over_subsets": float(np.std(v, ddof=1)), "n": n,
                         "noise_floor": float(np.mean(fl)) if fl else None, "energy_evaluations": None,
                         "wall_time_s": None, "machine": describe_machine(), "command": command,
                         "seed": seed})
        if target_name == "dw4":
            ms, mr = macrostates(x.numpy(), target), macrostates(r0.numpy(), target)
            rows.append({"benchmark": "pita-stage", "method": method, "target": target_name,
                         "metric": f"stage {k} (T={temp:g}) two-short/four-short fraction (ref "
                                   f"{mr['two_short']:.2f}/{mr['four_short']:.2f})",
                         "value": [ms["two_short"], ms["four_short"]], "n": n, "noise_floor": None,
                         "energy_evaluations": None, "wall_time_s": None, "machine": describe_machine(),
                         "command": command, "seed": seed})
    return rows


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


def _describe(preset: str, methods: str, seeds, sets) -> str:
    extra = f" with overrides {', '.join(sets)}" if sets else ""
    return (f"PITA with the `{preset}` preset{extra}, seeds {seeds}, against the held-out sets "
            f"({methods}): `pita` is the FK-weighted ladder, `pita-score-scaling` the same ladder without "
            "weights (reusing its stage 0), `pt-same-budget` parallel tempering given the PITA run's total "
            "energy evaluations; rows `... vs certified PT` use the project's certified PT reference "
            "instead of the held-out set, and those `(mean of 10 reference subsets)` average over 10 random "
            "subsets of it (s.d. in `std_over_subsets`; floor: seed-1 subsets against seed-0 subsets); "
            "`pita-stage` rows compare each stage with the certified "
            "reference at its own temperature; `-mean` rows are mean ± s.d. over seeds; `pita-profile` "
            "rows are steps/s of one training step and one SMC step.")


def _summary(rows):
    """Mean and s.d. over seeds of every (method, target, metric) measured on more than one seed."""
    groups: dict = {}
    for r in rows:
        if r.get("seed") is None or not isinstance(r["value"], float):
            continue
        groups.setdefault((r["benchmark"], r["method"], r["target"], r["metric"]), []).append(r)
    out = []
    for (bench, *_), rs in groups.items():
        if len(rs) < 2:
            continue
        v = np.array([r["value"] for r in rs])
        floors = [r["noise_floor"] for r in rs if isinstance(r["noise_floor"], float)]
        evals = [r["energy_evaluations"] for r in rs if r["energy_evaluations"] is not None]
        walls = [r["wall_time_s"] for r in rs if r["wall_time_s"] is not None]
        out.append({**rs[0], "benchmark": f"{bench}-mean", "seed": [r["seed"] for r in rs],
                    "value": {"mean": float(v.mean()), "std": float(v.std(ddof=1))},
                    "noise_floor": float(np.mean(floors)) if floors else None,
                    "energy_evaluations": int(np.mean(evals)) if evals else None,
                    "wall_time_s": float(np.mean(walls)) if walls else None})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the quick preset instead of cpu")
    p.add_argument("--targets", default="lj13,dw4")
    p.add_argument("--methods", default="profile,pita,scaling,pt",
                   help="comma list of profile, pita, scaling (the ablation), pt")
    p.add_argument("--seeds", default="0", help="comma list of seeds (each a full ladder)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="preset override key=value")
    p.add_argument("--references", default=None, help="folder of certified references (per temperature)")
    p.add_argument("--runs-dir", default=None, help="where run folders go (default: a temporary folder)")
    p.add_argument("--out", default=str(ROOT / "results" / "bench_pita.json"))
    p.add_argument("--ablation-budget", choices=("preset", "matched"), default="matched",
                   help="matched (default): the ablation relaxes longer until it spends the weighted "
                        "run's evaluations; preset: the preset's relaxation as it is")
    args = p.parse_args(argv)
    matched = args.ablation_budget == "matched"
    command = "python benchmarks/bench_pita.py " + " ".join(argv if argv is not None else sys.argv[1:])
    preset = "quick" if args.quick else "cpu"
    methods = set(args.methods.split(","))
    if unknown := methods - {"profile", "pita", "scaling", "pt"}:
        p.error(f"unknown --methods {sorted(unknown)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    # a bad --set fails here, before any run (exit 2 via run_cli); the ladders are read from these
    ladders = {t: resolve_config(t, preset, None, tuple(args.sets)).temperatures
               for t in args.targets.split(",")}
    refs = Path(args.references) if args.references else None
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="bench_pita_"))
    rows = []

    def save():
        out = rows + _summary(rows)
        atomic_write_json(args.out, {"description": _describe(preset, args.methods, seeds, args.sets),
                                     "rows": out})
        return out

    for target in args.targets.split(","):
        ref_path = HOLDOUT / f"{target}_test_10k.npy"
        if not ref_path.is_file():
            print(f"skipping {target}: {ref_path} not found (held-out sets live in ../shared/holdout)")
            continue
        ref = load_reference(ref_path)
        cert = refs / f"{target}_T1_seed0.npy" if refs else None
        temps = ladders[target]
        if "profile" in methods:
            rows += _profile(target, preset, command)
        for seed in seeds:
            for use_weights, name in ((True, "pita"), (False, "scaling")):
                if name not in methods:
                    continue
                stage0 = _folder(runs, target, preset, seed, True) / "stage_0" / "COMPLETE"
                if not use_weights and "pita" not in methods and not stage0.is_file():
                    p.error(f"the ablation reuses the PITA run's stage 0: {stage0} not found")
                if not use_weights and matched and not (_folder(runs, target, preset, seed, True)
                                                        / "COMPLETE").is_file():
                    p.error("--ablation-budget matched needs the finished weighted run of seed "
                            f"{seed} in --runs-dir (run --methods pita first, or with it)")
                res, r = _pita(target, preset, ref_path, runs, use_weights, command, seed, args.sets,
                               matched)
                rows += r
                method = _method(use_weights, matched)
                m = res.metrics
                rows += _certified_rows(method, target, res.samples, cert, m["energy_evaluations"]["total"],
                                        m["wall_time_s"], command, seed)
                if refs is not None:
                    rows += _subset_rows(method, target, res.samples, refs, m["energy_evaluations"]["total"],
                                         m["wall_time_s"], command, seed)
                    rows += _stage_rows(method, target, _folder(runs, target, preset, seed, use_weights,
                                                                matched),
                                        temps, refs, seed, command)
                save()
            if "pt" in methods:
                done = _folder(runs, target, preset, seed, True) / "metrics.json"
                if not (done.parent / "COMPLETE").is_file():
                    p.error(f"PT at the same budget needs the finished PITA run: {done.parent} is incomplete")
                fk = json.loads(done.read_text())
                r, s = _pt_same_budget(target, fk["energy_evaluations"]["total"], fk["n"], ref, command, seed,
                                       save=runs / f"{target}_{preset}_s{seed}_pt" / "samples.npz")
                rows += r
                rows += _certified_rows("pt-same-budget", target, s, cert, r[0]["energy_evaluations"],
                                        r[0]["wall_time_s"], command, seed)
                if refs is not None:
                    rows += _subset_rows("pt-same-budget", target, s, refs, r[0]["energy_evaluations"],
                                         r[0]["wall_time_s"], command, seed)
                save()
    for r in save():
        print(f"{r['target']:6s} {r['method']:32s} {r['metric']:45s} {r['value']} (n={r['n']}, "
              f"floor={r['noise_floor']}, evals={r['energy_evaluations']}, seed={r.get('seed')})")


if __name__ == "__main__":
    sys.exit(run_cli(main))
