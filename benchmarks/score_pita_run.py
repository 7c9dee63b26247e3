"""Score a finished particle PITA run folder (made with ``boltzpath run pita``) the way
``bench_pita.py`` scores its own ladders, so that a run made from the command line, as a new user
would make it, lands in BENCHMARKS.md next to the benchmark's rows.

Rows: the final samples against the held-out test set (one comparison, as ``bench_pita``'s plain
rows) and against the certified T = 1 reference (mean of 10 random subsets, floor = seed-1 subsets
against seed-0 subsets); every stage against the certified reference at its own temperature; with
``--pt``, parallel tempering given the run's total energy evaluations, scored the same way (its
samples are kept beside the run folder, ``<run>_pt_seed<S>.npz``, so a rerun rescores without
resampling).

    python benchmarks/score_pita_run.py --run runs/lj13-cpu --references runs/references \
        [--label "pita (CLI)"] [--pt] [--seed 0] --out benchmarks/results/FILE.json

The held-out sets in ../shared/holdout/ are used for evaluation only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from bench_pita import HOLDOUT, _pt_same_budget, _rows, _stage_rows, _subset_rows

from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import load_reference
from boltzpath.metrics.suite import evaluate
from boltzpath.targets.registry import make_target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `boltzpath run pita` folder (lj13 or dw4)")
    p.add_argument("--references", required=True, help="folder of certified references "
                                                       "(benchmarks/particle_references.py)")
    p.add_argument("--label", default="pita (CLI run)", help="the rows' method name")
    p.add_argument("--pt", action="store_true", help="also PT at the run's total evaluations")
    p.add_argument("--seed", type=int, default=0, help="PT's seed")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    rd, refs = RunDir(args.run), Path(args.references)
    run = rd.path
    if not rd.is_complete:
        raise BadInput(f"--run {run}: not a finished run folder (no COMPLETE file)")
    if not refs.is_dir():
        raise BadInput(f"--references {refs}: not a folder")
    cfg = rd.read_config()
    target_name = cfg.get("target")
    if target_name not in ("lj13", "dw4"):
        raise BadInput(f"--run {run}: target {target_name!r}; this script scores lj13 and dw4 runs")
    metrics = rd.read_metrics()
    evals, wall = int(metrics["energy_evaluations"]["total"]), round(float(metrics["wall_time_s"]), 1)
    samples = rd.read_samples()
    command = "python benchmarks/score_pita_run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = []
    holdout_file = HOLDOUT / f"{target_name}_test_10k.npy"
    holdout = load_reference(holdout_file) if holdout_file.is_file() else None
    if holdout is not None:
        ev = evaluate(samples, make_target(target_name), reference=holdout,
                      generator=torch.Generator().manual_seed(1), max_n=2000)
        rows += _rows(args.label, target_name, ev, evals, wall, command, samples.n)
    rows += _subset_rows(args.label, target_name, samples, refs, evals, wall, command, cfg.get("seed"))
    rows += _stage_rows(args.label, target_name, run, [float(t) for t in cfg["temperatures"]], refs,
                        cfg.get("seed"), command)
    if args.pt:
        save = run.parent / f"{run.name}_pt_seed{args.seed}.npz"  # beside the run, not in results/
        pt_rows, pt = _pt_same_budget(target_name, evals, samples.n, holdout, command, args.seed, save)
        rows += pt_rows
        rows += _subset_rows("pt-same-budget", target_name, pt, refs, int(pt.info["energy_evaluations"]),
                             round(float(pt.info["wall_time_s"]), 1), command, args.seed)
    for r in rows:
        r["run"] = str(run)
    atomic_write_json(args.out, {"description": f"A `boltzpath run pita` folder ({run.name}) scored as "
                                                "bench_pita.py scores its ladders; `pt-same-budget`: "
                                                "parallel tempering given the run's evaluations.",
                                 "rows": rows})
    for r in rows:
        print(f"{r['method']:<24} {r['metric']:<60} {r['value']} (floor {r.get('noise_floor')})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
