"""One PITA step at matched energy evaluations: where do the weighted ladder's evaluations pay off?

Takes a finished stage of a PITA run (its trained model, ``stage_K/model.pt``) and anneals it once to
the next temperature T_{K+1} (γ = T_K/T_{K+1}, the run's own anneal settings for that stage, no
overshoot), ``n`` particles per anneal seed, two ways:

* ``weighted``: the FK-weighted population, then the true-energy bridge (``smc.bridge``) with
  ``moves`` MALA moves per level and ``cess`` as its level criterion, then ``relax`` steps of the
  stage's MALA relaxation;
* ``ablation``: the same anneal with the weights off (score scaling), then ``relax`` relaxation steps
  — or, with ``relax`` given as ``matched``, as many MALA steps as the weighted variant listed
  before it spent evaluations (its bridge and relaxation); the relaxation's repair of overlapping
  particles (steepest descent, ``smc.relax``) comes on top, counted, so the ablation never gets fewer
  evaluations than the weighted variant (``energy_evaluations`` is each variant's actual count).

Every variant of one anneal seed starts from the same two annealed populations (weighted and not),
so the variants differ only in how the counted evaluations after the anneal are spent. The result
is scored against certified references at T_{K+1} (``benchmarks/particle_references.py``): energy W2
and interatomic-distance W2, each the mean over 10 random reference subsets of the samples' size,
with the floor the same way (seed-1 file against seed-0 subsets; ``bench_pita._subset_scores``),
and the samples' mean E/kT next to the reference's.

    python benchmarks/pita_one_step.py --run RUN_DIR --stage 5 --references DIR \
        [--variants 'weighted:10:0.9:500,ablation:matched,weighted:100:0.97:500,ablation:matched'] \
        [--seeds 5,6] [--n 1000] [--out FILE]

Variant syntax: ``weighted:MOVES:CESS:RELAX`` or ``ablation:RELAX|matched``. Writes JSON rows (one
per variant and seed) to ``--out`` (default ``benchmarks/results/pita_one_step.json``) after each.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.smc.annealing import anneal
from boltzpath.smc.bridge import bridge, bridge_settings
from boltzpath.smc.relax import relax

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from bench_pita import _subset_scores  # noqa: E402
from pita_rung import load_rung  # noqa: E402

DESCRIPTION = ("One PITA step at matched energy evaluations (`benchmarks/pita_one_step.py`): a stage's model "
               "annealed once to the next temperature, the FK-weighted population through the true-energy "
               "bridge (moves per level x its cess criterion) and a MALA relaxation, against the unweighted "
               "(score-scaling) population relaxed for the same evaluations (`(matched)`; its repair of "
               "overlaps is counted on top). Same anneal seed, same two annealed populations for every "
               "variant of a seed; scored against the certified reference at that temperature.")
DEFAULT_VARIANTS = "weighted:10:0.9:500,ablation:matched,weighted:100:0.97:500,ablation:matched"


def parse_variants(text: str) -> list[dict]:
    """``weighted:MOVES:CESS:RELAX`` / ``ablation:RELAX|matched`` items, comma-separated; a
    ``matched`` ablation needs a weighted variant before it."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if parts[0] == "weighted" and len(parts) == 4:
                out.append({"kind": "weighted", "moves": int(parts[1]), "cess": float(parts[2]),
                            "relax": int(parts[3])})
                continue
            if parts[0] == "ablation" and len(parts) == 2:
                if parts[1] == "matched" and not any(v["kind"] == "weighted" for v in out):
                    raise BadInput(f"--variants: {item!r} has no weighted variant before it to match")
                relax_steps = parts[1] if parts[1] == "matched" else int(parts[1])
                out.append({"kind": "ablation", "relax": relax_steps})
                continue
        except ValueError:
            pass
        raise BadInput(f"--variants: {item!r} is not weighted:MOVES:CESS:RELAX or ablation:RELAX|matched")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a PITA run folder (config.yaml and stage_K/model.pt)")
    p.add_argument("--stage", type=int, required=True, help="K: its model anneals to T_{K+1}")
    p.add_argument("--references", required=True, help="folder of certified references per temperature")
    p.add_argument("--variants", default=DEFAULT_VARIANTS)
    p.add_argument("--seeds", default="5,6",
                   help="anneal seeds (one weighted and one unweighted anneal each)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "results" / "pita_one_step.json"))
    args = p.parse_args(argv)
    try:
        variants = parse_variants(args.variants)
        run = Path(args.run)
        rung = load_rung(run, args.stage)
        cfg, k, t_next = rung.cfg, rung.stage, rung.t_next
        refs = [Path(args.references) / f"{cfg.target}_T{t_next:g}_seed{s}.npy" for s in (0, 1)]
        if not refs[0].is_file():
            raise BadInput(f"--references: {refs[0]} not found")
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target, schedule, model = rung.target, rung.schedule, rung.model
    acfg = replace(rung.anneal, overshoot=1.0)  # the stage's anneal options, at T_{k+1} itself
    tk = target.at_temperature(t_next)
    r0 = torch.as_tensor(np.load(refs[0])).float()
    r1 = torch.as_tensor(np.load(refs[1])).float() if refs[1].is_file() else None
    ref_mean = float(tk.energy(r0.double()).double().mean())
    common = {"run": str(run), "stage": k, "temperature": t_next, "gamma": acfg.gamma, "n": args.n,
              "machine": describe_machine(), "command": "python benchmarks/pita_one_step.py "
              + " ".join(argv if argv is not None else sys.argv[1:])}
    rows: list[dict] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        pops = {w: anneal(model, args.n, schedule, replace(acfg, use_weights=w),
                          torch.Generator().manual_seed(seed), target.project) for w in (True, False)}
        anneal_s = time.perf_counter() - t0
        last_weighted = None
        for v in variants:
            t0, c0 = time.perf_counter(), tk.counter.count
            extra: dict = {}
            if v["kind"] == "weighted":
                st = replace(bridge_settings(acfg), moves=v["moves"], cess=v["cess"])
                x, _, idx, info = bridge(model, pops[True].x, pops[True].log_weights, tk, acfg.gamma, st,
                                         torch.Generator().manual_seed(seed + 100))
                extra = {"moves": v["moves"], "cess": v["cess"], "levels": len(info["betas"]),
                         "distinct_after_bridge": int(torch.unique(idx).numel()),
                         "bridge_evaluations": tk.counter.count - c0}
                steps = v["relax"]
                name = f"pita weighted, bridge {v['moves']}x{v['cess']:g} + relax {steps}"
            else:
                x = pops[False].x
                steps = v["relax"]
                name = "pita-score-scaling + relax {}"
                if steps == "matched":  # the evaluations the weighted variant spent, all on relaxation
                    steps = max(round(last_weighted["energy_evaluations"] / args.n) - 1, 0)
                    name += " (matched)"
                name = name.format(steps)
            if steps:  # relax evaluates the particles once, then once per MALA step
                x = relax(tk, x.detach(), torch.Generator().manual_seed(seed + 200),
                          replace(cfg.relax, n_steps=steps)).x
            else:
                tk.energy(x.detach())  # the buffer's true energies: what relax's first evaluation is
            evals = tk.counter.count - c0
            vals, floors = _subset_scores(x.detach().float(), tk, r0, r1, 1000)
            e = tk.energy(x.detach().double()).double()  # scoring, not counted below
            mean_e = float(e[torch.isfinite(e)].mean())
            base = {"benchmark": "pita_one_step", "method": name, "target": cfg.target, "n": args.n,
                    "energy_evaluations": evals, "wall_time_s": round(time.perf_counter() - t0, 1),
                    "seed": seed, "relax_steps": steps, "anneal_wall_time_s": round(anneal_s, 1),
                    **extra, **common}
            where = f"at T={t_next:g}, one step from stage {k}"
            for metric in ("energy_w2", "distance_w2"):
                rows.append({**base, "metric": f"{metric} {where} (mean of 10 reference subsets)",
                             "value": float(np.mean(vals[metric])),
                             "noise_floor": float(np.mean(floors[metric])) if floors[metric] else None})
            rows.append({**base, "metric": f"mean_energy {where}", "value": mean_e, "noise_floor": None,
                         "reference_mean_energy": ref_mean})
            if v["kind"] == "weighted":
                last_weighted = base
            print(f"seed {seed} {name}: evaluations {evals:,}, energy W2 {rows[-3]['value']:.3f}, "
                  f"distance W2 {rows[-2]['value']:.4f}, mean E/kT {mean_e:.2f} (reference {ref_mean:.2f})",
                  flush=True)
            atomic_write_json(Path(args.out), {"description": DESCRIPTION, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
