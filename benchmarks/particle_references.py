"""Certified references for DW-4 and LJ-13 at every temperature of the PITA ladders, by long PT.

One parallel-tempering run whose replica ladder contains every PITA temperature (plus fill-ins
for swap acceptance) gives samples at all of them at once (``run_pt(return_all=True)``). The
run is repeated from independent random starts (different seeds); the *agreement between the
independent runs* — energy W2 and interatomic-distance W2 between them, next to the same metric
between two halves of one run — is the certificate. At T = 1 the reference is also compared with
the held-out set (evaluation only), which settles whether that set is biased. For DW-4 the
macrostate fractions (configurations with 2 vs 4 pair distances below 4) are reported.

    python benchmarks/particle_references.py --target dw4 [--quick] [--seeds 0,1] [--n 10000]
        [--out-dir runs/references] [--results benchmarks/results/particle_references_dw4.json]

**LJ-13 above T = 1 (2026-12-04):** with 4.0 as the ladder's top rung, both seeds came out 0.5–5 kT
too hot above T = 1 (T = 4: E/kT 21.5 against 16.6 from long MALA) — chains from the prior stayed in a
slow hot state that nothing hotter could swap them out of — and their agreement certified nothing.
The ladder now runs on to 8.0; long-MALA checks of its output are in docs/reference-data.md. Check
any new ladder the same way.

Samples go to ``<out-dir>/<target>_T<T>_seed<s>.npy`` (float32, (n, dim), CoM-free); PITA runs
read them with ``--set reference=...`` (final stage) or the per-stage evaluation in bench_pita.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_save_npy, atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.mcmc.tempering import PTConfig, run_pt
from boltzpath.metrics.distributions import energy_w
from boltzpath.metrics.particles import distance_w2, pair_distances
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
HOLDOUT = ROOT.parent.parent / "shared" / "holdout"

# every PITA temperature (quick and cpu presets) plus fill-ins so that neighbours swap well
LADDERS = {
    "dw4": [1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0],
    # rungs above 4: with 4 the top, chains from the prior stayed in a hot slow state (docstring)
    "lj13": [1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.5, 8.0],
}
# the temperatures whose samples are saved; LJ-13 1.75: the extra rung tried in the melting region
PITA_TEMPERATURES = {"dw4": [1.0, 1.2, 1.5, 2.0, 3.0], "lj13": [1.0, 1.2, 1.5, 1.75, 2.0, 3.0, 3.5, 4.0]}
SIZES = {  # chains per replica, burn-in and thinning (MALA iterations)
    "full": {"chains": 256, "burn_in": 4000, "thin": 40},
    "quick": {"chains": 64, "burn_in": 500, "thin": 10},
}


def macrostates(x: np.ndarray, target) -> dict:
    """DW-4: fractions of configurations with exactly 2 / exactly 4 pair distances below 4."""
    short = (pair_distances(torch.as_tensor(x), target) < 4.0).sum(1)
    return {"two_short": float((short == 2).mean()), "four_short": float((short == 4).mean())}


def _save(path: Path, x: torch.Tensor) -> None:
    atomic_save_npy(path, x.detach().float().numpy())


def run(target_name: str, seeds: list[int], n: int, size: str, out_dir: Path) -> dict:
    target = make_target(target_name)
    ladder = LADDERS[target_name]
    per_seed: dict[int, dict[float, torch.Tensor]] = {}
    energies: dict[int, dict[float, torch.Tensor]] = {}
    costs = {}
    for seed in seeds:
        paths = {t: out_dir / f"{target_name}_T{t:g}_seed{seed}.npy" for t in PITA_TEMPERATURES[target_name]}
        cfg = PTConfig(**SIZES[size], temperatures=ladder, step_size=1e-3)
        t0, c0 = time.perf_counter(), target.counter.count
        outs = run_pt(target, n, torch.Generator().manual_seed(1000 + seed), cfg, return_all=True)
        costs[seed] = {"energy_evaluations": target.counter.count - c0,
                       "wall_time_s": time.perf_counter() - t0,
                       "swap_acceptance": outs[0].info["swap_acceptance"]}
        per_seed[seed], energies[seed] = {}, {}
        for s in outs:
            temp = float(s.info["temperature"])
            if temp in paths:
                _save(paths[temp], s.x)
                per_seed[seed][temp] = s.x
                energies[seed][temp] = s.energy.double()  # E/kT at the replica's temperature
        print(f"{target_name} seed {seed}: {costs[seed]}", file=sys.stderr)
    report = {"target": target_name, "ladder": ladder, "n": n, "size": size, "runs": costs,
              "temperatures": {}}
    a, b = seeds[0], seeds[-1]
    for temp in PITA_TEMPERATURES[target_name]:
        xa, xb = per_seed[a][temp], per_seed[b][temp]
        ea, eb = energies[a][temp], energies[b][temp]
        half = xa.shape[0] // 2
        entry = {
            "mean_energy": {str(s): float(energies[s][temp].mean()) for s in seeds},
            "energy_w2_between_runs": energy_w(ea, eb, 2),
            "distance_w2_between_runs": distance_w2(xa, xb, target),
            # within one run (first vs second half of the collected chain): the noise floor at n/2
            "energy_w2_within_run_halves": energy_w(ea[:half], ea[half:], 2),
            "distance_w2_within_run_halves": distance_w2(xa[:half], xa[half:], target),
        }
        if target_name == "dw4":
            entry["macrostates"] = {str(s): macrostates(per_seed[s][temp].numpy(), target) for s in seeds}
        report["temperatures"][f"{temp:g}"] = entry
    held = HOLDOUT / f"{target_name}_test_10k.npy"
    if held.is_file():
        ref = torch.as_tensor(np.load(held)).float()
        ref = target.project(ref)
        e_ref = target.energy(ref).double()
        x1 = per_seed[a][1.0]
        report["holdout_T1"] = {
            "file": held.name,
            "energy_w2_vs_run": energy_w(energies[a][1.0], e_ref, 2),
            "distance_w2_vs_run": distance_w2(x1, ref, target),
            "mean_energy_holdout": float(e_ref.mean()),
        }
        if target_name == "dw4":
            report["holdout_T1"]["macrostates"] = macrostates(ref.numpy(), target)
    return report


def rows(report: dict, command: str) -> list[dict]:
    out = []
    evals = sum(r["energy_evaluations"] for r in report["runs"].values())
    wall = sum(r["wall_time_s"] for r in report["runs"].values())
    for temp, e in report["temperatures"].items():
        for metric in ("energy_w2", "distance_w2"):
            out.append({"benchmark": "particle-references", "method": f"PT seed-vs-seed (T={temp})",
                        "target": report["target"], "metric": metric, "value": e[f"{metric}_between_runs"],
                        "n": report["n"], "noise_floor": e[f"{metric}_within_run_halves"],
                        "energy_evaluations": evals, "wall_time_s": wall, "machine": describe_machine(),
                        "command": command})
    if "holdout_T1" in report:
        for metric in ("energy_w2", "distance_w2"):
            out.append({"benchmark": "particle-references", "method": "PT vs held-out set (T=1)",
                        "target": report["target"], "metric": metric,
                        "value": report["holdout_T1"][f"{metric}_vs_run"], "n": report["n"],
                        "noise_floor": report["temperatures"]["1"][f"{metric}_between_runs"],
                        "energy_evaluations": evals, "wall_time_s": wall, "machine": describe_machine(),
                        "command": command})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=sorted(LADDERS), required=True)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out-dir", default="runs/references")
    p.add_argument("--results")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = run(args.target, seeds, args.n, "quick" if args.quick else "full", out_dir)
    args_text = " ".join(argv if argv is not None else sys.argv[1:])
    command = f"python benchmarks/particle_references.py {args_text}"
    results = Path(args.results or ROOT / "results" / f"particle_references_{args.target}.json")
    atomic_write_json(results, {"description": __doc__.split("\n\n")[0], "report": report,
                                "rows": rows(report, command)})
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
