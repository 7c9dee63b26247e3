"""Which ingredients make PITA's FK-weighted ladder work? DW-4 or LJ-13 `quick`, per variant and seed.

Each variant is the `quick` preset plus the overrides below; the final samples (T = 1) are compared
with the certified PT reference (``benchmarks/particle_references.py``; seed-0 file, a random
subset) by interatomic-distance W2 and energy W2 — for DW-4 also by the macrostate fractions (pairs
of particles closer than 4: "two short" / "four short"; reference 0.52/0.40), for LJ-13 also at
the stage T = 1.5 (the first temperature below LJ-13's solid–liquid transition, where the weighted
ladder breaks) with the mean E/kT of the samples next to the reference's. Complete run folders are
reused, so the script can be resumed or rerun for evaluation only.

    python benchmarks/bench_pita_variants.py [--target dw4|lj13] [--runs-dir DIR] [--variants a,b]
        [--seeds 0,1,2] [--references runs/references] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.metrics.distributions import energy_w
from boltzpath.metrics.particles import distance_w2
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from particle_references import macrostates  # noqa: E402

PIN = ["train.pin=1", "finetune.pin=1"]
GATE4 = ["gate.max_factor=4", "gate.min_reweight_ess=0.5", "gate.min_corr=0.95"]
VARIANTS = {  # name → (--set overrides, what it tests)
    "base": (["train.pin=0", "finetune.pin=0", "anneal.tail=fk"],
             "the ladder before this work: no pinning, FK increments to t = 0"),
    "pin_te": ([*PIN, "anneal.tail=true_energy"], "pinning per dimension, exact true-energy tail"),
    "pin_teE": ([*PIN, "anneal.tail=true_energy", "anneal.score_from=energy"],
                "as pin_te with s = -grad U (score and energy consistent)"),
    "pin_te_g4": ([*PIN, "anneal.tail=true_energy", *GATE4], "as pin_te, training extended by the gate"),
    "pin_rel": ([*PIN, "anneal.tail=released"], "pinning + the released end-of-trajectory protocol"),
    "pin_released": ([*PIN, "anneal.tail=released", "anneal.ess_threshold=1.0",
                      "anneal.clamp_quantile=0.9"],
                     "as pin_rel, resampling every step and clamping increments at their 90 % quantile"),
    "pin_rel_g4": ([*PIN, "anneal.tail=released", *GATE4], "as pin_rel, training extended by the gate"),
    "pin_rel_all": ([*PIN, "anneal.tail=released", "train_on_all_buffers=true",
                     "net.temperature_conditioned=true"],
                    "as pin_rel, one temperature-conditioned model over all buffers"),
    "pin_abl": ([*PIN, "anneal.use_weights=false"], "the score-scaling ablation (no weights) with pinning"),
    "pin_abl_g4": ([*PIN, "anneal.use_weights=false", *GATE4], "as pin_abl, training extended by the gate"),
}


ST200 = ["anneal.n_steps=200"]
LJ13_VARIANTS = {  # the quick preset already pins (weight 1) and uses the released tail
    "released": ([], "the quick preset: pinning 1, released tail, 40 SMC steps"),
    "pin10_rel": (["train.pin=10", "finetune.pin=10"], "pinning ×10"),
    "pin10_te": (["train.pin=10", "finetune.pin=10", "anneal.tail=true_energy"],
                 "pinning ×10 and the exact true-energy tail"),
    "st200": (ST200, "200 SMC steps instead of 40"),
    "all": (["train_on_all_buffers=true", "net.temperature_conditioned=true"],
            "one temperature-conditioned model over all buffers"),
    "all_st200": (["train_on_all_buffers=true", "net.temperature_conditioned=true", *ST200],
                  "one temperature-conditioned model over all buffers, 200 SMC steps"),
    "dense_st200": ([*ST200, "temperatures=[4.0,3.0,2.0,1.75,1.5,1.2,1.0]"],
                    "200 SMC steps and an extra rung T = 1.75 across the transition"),
    "bridge_st200": ([*ST200, "anneal.tail=bridge", "anneal.bridge_moves=10", "anneal.bridge_step_size=1e-3",
                      "relax.n_steps=300"],
                     "200 SMC steps, the tempered bridge tail (10 MALA moves per level) and 300 relaxation "
                     "steps instead of 500"),
    "abl_st200": ([*ST200, "anneal.use_weights=false"], "the score-scaling ablation with 200 SMC steps"),
}
TARGET_VARIANTS = {"dw4": VARIANTS, "lj13": LJ13_VARIANTS}


def run_variant(name: str, seed: int, runs: Path, target: str = "dw4") -> Path:
    out = runs / f"{name}-s{seed}"
    if (out / "COMPLETE").is_file():
        return out
    sets = [a for kv in [f"seed={seed}", "stage_plots=false", *TARGET_VARIANTS[target][name][0]]
            for a in ("--set", kv)]
    cmd = [sys.executable, "-c", "from boltzpath.cli import main; main()", "run", "pita", "--target", target,
           "--preset", "quick", "--out", str(out), "--overwrite", "--quiet", *sets]
    subprocess.run(cmd, check=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="dw4", choices=sorted(TARGET_VARIANTS))
    p.add_argument("--runs-dir", default=None, help="default runs/pita_variants (dw4), runs/lj13_var (lj13)")
    p.add_argument("--variants", default=None, help="comma list (default: all of the target's)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--references", default="runs/references")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    variants = args.variants.split(",") if args.variants else list(TARGET_VARIANTS[args.target])
    if args.target == "lj13":
        return _lj13(args, variants, argv)
    args.runs_dir = args.runs_dir or "runs/pita_variants"
    args.out = args.out or str(ROOT / "results" / "bench_pita_variants.json")
    target = make_target("dw4")
    # random subsets (rows are chain-interleaved: the first rows of a PT file are the first few,
    # correlated, draws of each chain)
    gen = torch.Generator().manual_seed(0)
    ref_all = torch.as_tensor(np.load(Path(args.references) / "dw4_T1_seed0.npy"))
    ref = ref_all[torch.randperm(ref_all.shape[0], generator=gen)[:2000]]
    ref_b_all = torch.as_tensor(np.load(Path(args.references) / "dw4_T1_seed1.npy"))
    ref_b = ref_b_all[torch.randperm(ref_b_all.shape[0], generator=gen)[:1000]]
    e_ref = target.energy(ref).double()
    floors = {"distance_w2": distance_w2(ref_b, ref, target),
              "energy_w2": energy_w(target.energy(ref_b).double(), e_ref, 2)}
    args_text = " ".join(argv if argv is not None else sys.argv[1:])
    command = f"python benchmarks/bench_pita_variants.py {args_text}"
    rows = []
    for name in variants:
        values = {"distance_w2": [], "energy_w2": [], "two_short": [], "four_short": []}
        evals = walls = None
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = run_variant(name, seed, Path(args.runs_dir))
            with np.load(folder / "samples.npz") as data:
                x = torch.as_tensor(data["x"])
            values["distance_w2"].append(distance_w2(x, ref, target))
            values["energy_w2"].append(energy_w(target.energy(x).double(), e_ref, 2))
            ms = macrostates(x.numpy(), target)
            values["two_short"].append(ms["two_short"])
            values["four_short"].append(ms["four_short"])
            m = json.loads((folder / "metrics.json").read_text())
            evals, walls = m["energy_evaluations"]["total"], m["wall_time_s"]
        for metric in ("distance_w2", "energy_w2"):
            v = np.array(values[metric])
            rows.append({"benchmark": "pita-variants", "method": f"pita[{name}]", "target": "dw4",
                         "metric": f"{metric} vs certified PT (seeds: {', '.join(f'{a:.3f}' for a in v)})",
                         "value": {"mean": float(v.mean()), "std": float(v.std(ddof=1))},
                         "n": int(x.shape[0]),
                         "noise_floor": floors[metric], "energy_evaluations": evals, "wall_time_s": walls,
                         "machine": describe_machine(), "command": command, "overrides": VARIANTS[name][0],
                         "what": VARIANTS[name][1]})
        rows.append({"benchmark": "pita-variants", "method": f"pita[{name}]", "target": "dw4",
                     "metric": "two-short / four-short fraction (reference 0.52/0.40)",
                     "value": [float(np.mean(values["two_short"])), float(np.mean(values["four_short"]))],
                     "n": int(x.shape[0]), "noise_floor": None, "energy_evaluations": evals,
                     "wall_time_s": walls,
                     "machine": describe_machine(), "command": command, "overrides": VARIANTS[name][0],
                     "what": VARIANTS[name][1]})
        print(rows[-3]["method"], rows[-3]["value"], rows[-2]["value"], rows[-1]["value"])
    desc = __doc__.split("\n\n")[0] + " " + "; ".join(f"`{k}`: {v[1]}" for k, v in VARIANTS.items())
    atomic_write_json(args.out, {"description": desc, "rows": rows})
    return 0


def _subset(path: Path, n: int, seed: int) -> torch.Tensor:
    r = torch.as_tensor(np.load(path)).float()  # PT files are chain-interleaved: a random subset
    return r[torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]


def _lj13(args, variants, argv) -> int:
    """LJ-13 rows: final (T = 1) and at T = 1.5 against the certified references, per variant."""
    import yaml

    runs = Path(args.runs_dir or "runs/lj13_var")
    out = args.out or str(ROOT / "results" / "bench_pita_variants_lj13.json")
    target = make_target("lj13")
    refs = Path(args.references)
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/bench_pita_variants.py " + " ".join(given)
    rows = []
    for name in variants:
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = run_variant(name, seed, runs, "lj13")
            temps = yaml.safe_load((folder / "config.yaml").read_text())["temperatures"]
            m = json.loads((folder / "metrics.json").read_text())
            evals, wall = m["energy_evaluations"]["total"], m["wall_time_s"]
            for temp in (1.5, 1.0):
                k = temps.index(temp)
                with np.load(folder / f"stage_{k}" / "samples.npz") as data:
                    x = torch.as_tensor(data["x"]).float()
                n = x.shape[0]
                tk = target.at_temperature(temp)
                ref = _subset(refs / f"lj13_T{temp:g}_seed0.npy", n, k)
                ref_b = _subset(refs / f"lj13_T{temp:g}_seed1.npy", n, k + 100)
                e, e_ref, e_b = (tk.energy(a).double() for a in (x, ref, ref_b))
                where = "final (T=1)" if temp == 1.0 else "stage T=1.5"
                values = {"energy_w2": (energy_w(e, e_ref, 2), energy_w(e_b, e_ref, 2)),
                          "distance_w2": (distance_w2(x, ref, target), distance_w2(ref_b, ref, target)),
                          f"mean E/kT (reference {float(e_ref.mean()):.1f})": (float(e.mean()), None)}
                for metric, (v, floor) in values.items():
                    rows.append({"benchmark": "pita-variants", "method": f"pita[{name}]", "target": "lj13",
                                 "metric": f"{where} {metric} vs certified PT", "value": v, "n": n,
                                 "noise_floor": floor, "energy_evaluations": evals, "wall_time_s": wall,
                                 "seed": seed, "machine": describe_machine(), "command": command,
                                 "overrides": LJ13_VARIANTS[name][0], "what": LJ13_VARIANTS[name][1]})
            print(name, seed, [f"{r['metric']}: {r['value']:.3g}" for r in rows[-6:]])
    desc = ("Which ingredients make PITA's FK-weighted ladder work on LJ-13 `quick` (seed 0 unless stated), "
            "against the certified PT references at T = 1.5 (below the solid–liquid transition) and T = 1; "
            "noise floor = the two certified runs against each other at the same n. "
            + "; ".join(f"`{k}`: {v[1]}" for k, v in LJ13_VARIANTS.items() if k in variants))
    atomic_write_json(out, {"description": desc, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
