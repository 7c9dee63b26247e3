"""PT on ``aldp-fab``: which local move and ladder reach the αR basin at the peptide budget?

Four variants of parallel tempering at the same 2.7e5 counted evaluations (16 chains, n = 200, one
torch thread): MALA or HMC moves (5 leapfrog steps), 8 replicas up to 3,000 K (the peptide default
ladder) or 4 up to 600 K. Reports the basin fractions (``metrics.peptides.basin_fractions``) and the
mean energy, to compare with the held-out 300 K set (αR 0.141, C7eq/C5 0.854, mean E/kT −38.8).
200 samples from 16 chains are a few independent chains: the numbers rank variants only when they
differ by more than the seed-to-seed spread. Writes ``benchmarks/results/pt_peptide_local_moves.json``.

    OMP_NUM_THREADS=1 python benchmarks/pt_peptide_local_moves.py [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from boltzpath.errors import run_cli

VARIANTS = {
    "pt mala, 8 replicas to 3000 K (old default)": {"local": "mala", "burn_in": 2000, "thin": 10,
                                                   "step_size": 1e-6},
    # {}: the peptide defaults themselves (PEPTIDE_SAMPLER_DEFAULTS["pt"], HMC with 5 leapfrog steps)
    "pt hmc5, 8 replicas to 3000 K (default)": {},
    "pt hmc5, 4 replicas to 600 K": {"local": "hmc", "n_leapfrog": 5, "step_size": 1e-3, "n_replicas": 4,
                                     "t_max": 600.0, "burn_in": 800, "thin": 4},
    "pt mala, 4 replicas to 600 K": {"local": "mala", "step_size": 1e-6, "n_replicas": 4, "t_max": 600.0,
                                     "burn_in": 4000, "thin": 20},
}


def rows_for(record: dict, command: str, machine_name: str) -> list[dict]:
    """Benchmark rows (render.py's format) for one run's record."""
    base = {"benchmark": "pt_peptide_local_moves", "method": record["variant"], "target": "aldp-fab",
            "n": 200, "noise_floor": None, "energy_evaluations": record["evals"],
            "wall_time_s": record["wall_s"], "machine": machine_name, "command": command,
            "seed": record["seed"]}
    metrics = (("alpha_r fraction (held-out 0.141)", "alpha_r"),
               ("c7eq_c5 fraction (held-out 0.854)", "c7eq_c5"),
               ("phi > 0 fraction (held-out 0.0045)", "phi_positive"),
               ("mean E/kT (held-out -38.8)", "mean_E_kT"),
               ("local acceptance", "acc"))
    return [{**base, "metric": m, "value": record[k]} for m, k in metrics]


def main() -> None:
    from boltzpath import make_target
    from boltzpath.io.machine import describe_machine
    from boltzpath.mcmc.registry import method_config, run_method
    from boltzpath.metrics.peptides import basin_fractions

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                        / "pt_peptide_local_moves.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    aldp = make_target("aldp-fab")
    command = f"OMP_NUM_THREADS=1 python benchmarks/pt_peptide_local_moves.py --seeds {args.seeds}"
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, opts in VARIANTS.items():
            cfg = method_config("pt", opts, target=aldp)
            t0 = time.perf_counter()
            s = run_method("pt", aldp, 200, torch.Generator().manual_seed(seed), cfg)
            frac = basin_fractions(s.x.numpy(), aldp.topology)
            record = {"variant": name, "seed": seed, "evals": int(s.info["energy_evaluations"]),
                      "wall_s": round(time.perf_counter() - t0, 1), "acc": float(s.info["acceptance"]),
                      "mean_E_kT": float(s.energy.double().mean()),
                      **{k: float(v) for k, v in frac.items()}}
            print(json.dumps(record), flush=True)
            rows += rows_for(record, command, describe_machine())
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(run_cli(main))
