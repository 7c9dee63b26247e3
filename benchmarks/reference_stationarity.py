"""Is a reference set an equilibrium sample of the target? Two checks that need no other reference.

1. The configurational temperature (``metrics.stationarity``): mean |∇U|² / mean ΔU, U = E/kT, is 1
   for exact samples (an identity, by integration by parts) and ≈ T'/T for a set that is hot in
   its stiff modes; reported with its standard error (row ``configurational_temperature_ratio``).
2. A paired stationarity check. Exact MCMC leaves the target's distribution invariant, so frames
   drawn from it keep, on average, the same E/kT after any number of exact steps. Each set's n
   frames are run through MALA on the target (``smc.relax``: ``--adapt`` steps adapting each
   chain's step, then frozen steps, which are exact) twice in a row; reported: the mean change of
   E/kT over pass 1 and over pass 2, each with its standard error over frames (paired, frame by
   frame). A set whose pass-1 change is many standard errors below 0 while pass 2 is near 0 starts
   above the target's equilibrium in the modes MALA relaxes in a few hundred steps (bond and angle
   vibrations), and the change is what an exact sampler's energies differ from it by.

Neither says anything about slow coordinates (basin fractions), which these steps do not move. A set
made with another integrator, temperature or force field fails them; a set that passes can still
hold the wrong basin fractions.

    python benchmarks/reference_stationarity.py [--target aldp-fab] [--sets label=FILE ...] \
        [--n 1000] [--steps 400] [--adapt 100] [--out FILE]

``FILE``: a ``.npz`` run/sample file (its ``x``) or a ``.npy`` array of frames; ``holdout`` (the
default set) is the held-out 300 K ALDP set, read for evaluation only. ``--steps 0`` runs only the
configurational temperature (e.g. on the particle targets, whose held-out sets are files). Writes
``benchmarks/results/reference_stationarity_<target>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_peptide_samplers import HOLDOUT

from boltzpath import make_target
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import load_reference
from boltzpath.metrics.stationarity import configurational_temperature
from boltzpath.smc.relax import RelaxConfig, relax

RESULTS = Path(__file__).resolve().parent / "results"


def paired_changes(target, x: np.ndarray, n: int, cfg: RelaxConfig, seed: int) -> dict:
    """Mean E/kT at the start and after each of two MALA passes, and the paired changes ± SE."""
    pick = np.random.default_rng(seed).permutation(len(x))[:n]
    pos = torch.as_tensor(x[pick], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    energies, infos = [], []
    for _ in range(2):
        result = relax(target, pos, gen, cfg)
        if not energies:
            energies.append(result.initial_energy.double())
        energies.append(result.energy.double())
        infos.append(result.info)
        pos = result.x
    out = {"n": int(len(pick)), "mean_energy_kt": [float(e.mean()) for e in energies],
           "acceptance": [float(i.get("acceptance", float("nan"))) for i in infos]}
    for name, a, b in (("pass1", energies[0], energies[1]), ("pass2", energies[1], energies[2])):
        d = (b - a).numpy()
        out[f"change_{name}"] = float(d.mean())
        out[f"change_{name}_se"] = float(d.std(ddof=1) / np.sqrt(len(d)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="aldp-fab")
    parser.add_argument("--sets", action="append", default=[], metavar="LABEL=FILE",
                        help="frames to test (repeatable); default: holdout=holdout")
    parser.add_argument("--n", type=int, default=1000, help="frames per set")
    parser.add_argument("--steps", type=int, default=400, help="MALA steps per pass (0: T_conf only)")
    parser.add_argument("--adapt", type=int, default=100, help="of which adapting the step size")
    parser.add_argument("--step-size", type=float, default=1e-6, help="initial MALA step (nm² per kT)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.n < 2 or args.adapt < 0 or (args.steps and args.steps <= args.adapt):
        raise BadInput("--n must be >= 2 and --steps 0 (no MALA check) or > --adapt >= 0")
    torch.set_num_threads(args.threads)
    target = make_target(args.target)
    sets = args.sets or ["holdout=holdout"]
    parsed = []
    for item in sets:
        label, sep, spec = item.partition("=")
        if not sep or not label:
            raise BadInput(f"--sets {item}: expected LABEL=FILE")
        parsed.append((label, spec, load_reference(HOLDOUT if spec == "holdout" else spec, target.dim)))
    cfg = RelaxConfig(n_steps=args.steps, adapt_steps=args.adapt, step_size=args.step_size,
                      repair_above=None)
    out = Path(args.out) if args.out else RESULTS / f"reference_stationarity_{args.target}.json"
    command = (f"python benchmarks/reference_stationarity.py --target {args.target} "
               + " ".join(f"--sets {s}" for s in sets)
               + f" --n {args.n} --steps {args.steps} --adapt {args.adapt} --seed {args.seed}")
    machine, rows = describe_machine(), []
    for label, spec, x in parsed:
        start = time.perf_counter()
        tc = configurational_temperature(target, x, max_n=args.n, seed=args.seed)
        rows.append({"benchmark": "reference_stationarity", "method": label, "target": args.target,
                     "metric": "configurational_temperature_ratio", "value": tc["value"], "n": tc["n"],
                     "noise_floor": None, "standard_error": tc["standard_error"],
                     "energy_evaluations": tc["n"] * (target.dim + 1),
                     "wall_time_s": round(time.perf_counter() - start, 1), "machine": machine,
                     "command": command, "source": str(spec)})
        print(f"{label}: T_conf/T = {tc['value']:.4f} ± {tc['standard_error']:.4f} (n = {tc['n']})",
              file=sys.stderr)
        if not args.steps:
            continue
        start = time.perf_counter()
        r = paired_changes(target, x, min(args.n, len(x)), cfg, args.seed)
        wall = round(time.perf_counter() - start, 1)
        for name in ("pass1", "pass2"):
            rows.append({"benchmark": "reference_stationarity", "method": label, "target": args.target,
                         "metric": f"mean_energy_change_kt_{name}", "value": r[f"change_{name}"],
                         "n": r["n"], "noise_floor": None, "standard_error": r[f"change_{name}_se"],
                         "energy_evaluations": 2 * r["n"] * (args.steps + 1), "wall_time_s": wall,
                         "machine": machine, "command": command, "source": str(spec),
                         "mean_energy_kt": r["mean_energy_kt"], "acceptance": r["acceptance"]})
        e0, e1, e2 = r["mean_energy_kt"]
        print(f"{label}: n = {r['n']}, E/kT {e0:.2f} -> {e1:.2f} -> {e2:.2f}; "
              f"pass 1 {r['change_pass1']:+.3f} ± {r['change_pass1_se']:.3f}, "
              f"pass 2 {r['change_pass2']:+.3f} ± {r['change_pass2_se']:.3f}", file=sys.stderr)
    atomic_write_json(out, {"rows": rows})
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
