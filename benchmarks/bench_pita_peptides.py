"""PITA ladders on the peptides against a 300 K reference, next to Langevin (BAOAB) and MALA at the
same energy evaluations (issue 11 benchmark).

The reference: for ``aldp-fab`` the held-out 300 K set; for ``al3`` and ``aldp-pita`` the project's
REMD reference shipped in ``boltzpath/data/references`` (``metrics.bundled``; docs/reference-data.md
states its length and effective samples).

The ladders are run beforehand with ``boltzpath run pita`` (commands in docs/pita.md, "Peptides");
this script reads their run folders (``--runs label=DIR`` — the label names the row's method, e.g.
``pita`` and ``scaling`` for the ablation), scores their final samples with the peptide suite
(``metrics.peptide_suite``: energy W1/W2 in kT, torus W2, Ramachandran and φ/ψ KL, TICA-W2, φ > 0
fraction, cis-peptide fraction, each with its noise floor: the held-out set against itself at the
same n) and the basin fractions (``metrics.peptides.basin_fractions``), and takes the evaluations
and wall time from the run's ``metrics.json``. Then it runs each ``--baselines`` method with its
peptide defaults (docs/molecules.md) for the same n and the first run's total evaluations, split and
thinned as in ``bench_peptide_samplers.py`` (16 chains, or ``--chains``; half warm-up), scored by
the same code.
``--baseline-samples langevin=DIR/langevin_samples.npz`` scores a baseline kept by an earlier
``--keep`` instead (same target and n, evaluations within 1 %; the row names the file), so a second
ladder with the same budget does not pay for the baseline twice. ``--budget-from JSON=LABEL``
(instead of ``--runs``) takes the evaluations and n of a run already scored into a result file of
this script, for when its run folder is gone, and copies that run's rows beside the new baselines.

    python benchmarks/bench_pita_peptides.py [--target aldp-fab|al3|aldp-pita] --runs pita=runs/aldp_long \
        --runs scaling=runs/aldp_abl [--baselines langevin,mala] [--out FILE]

Writes ``benchmarks/results/pita_peptides.json`` (``aldp-fab``) or ``pita_peptides_<target>.json``.
Basin fractions are per residue (``basin_<name>_residue<r>``) on the tripeptide. The held-out set is
for evaluation only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from bench_peptide_samplers import CHAINS, HOLDOUT, run_at_budget

from boltzpath import make_target
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples
from boltzpath.mcmc.registry import method_config
from boltzpath.metrics.bundled import bundled_reference
from boltzpath.metrics.chirality import fix_chirality
from boltzpath.metrics.peptide_suite import peptide_metrics
from boltzpath.metrics.peptides import (
    MAX_N_OT,
    backbone_dihedrals,
    basin_masks,
    basin_matched_torus_w2,
    residue_basin_fractions,
    within_basin_torus_w2,
)

RESULTS = Path(__file__).resolve().parent / "results" / "pita_peptides.json"
TARGETS = ("aldp-fab", "al3", "aldp-pita")
METRICS = ("energy_w1", "energy_w2", "torus_w2", "ramachandran_kl", "kl_phi", "kl_psi", "tica_w2",
           "phi_positive_fraction", "cis_peptide_fraction", "high_energy_fraction")


def residue_basins(x: np.ndarray, target) -> dict:
    """Basin fractions keyed as the rows name them: ``name`` (one residue) or ``name_residue<r>``."""
    per_residue = residue_basin_fractions(x, target.topology)
    one = len(per_residue) == 1
    return {(name if one else f"{name}_residue{r + 1}"): value
            for r, fractions in enumerate(per_residue) for name, value in fractions.items()}


def load_reference_for(target) -> tuple[np.ndarray, str] | None:
    """The 300 K reference of ``target``: the held-out set (aldp-fab) or the shipped REMD frames."""
    if target.name == "aldp-fab":
        return (np.load(HOLDOUT).reshape(-1, target.dim), str(HOLDOUT)) if HOLDOUT.is_file() else None
    return bundled_reference(target)


def score(samples: Samples, target, reference: np.ndarray, ref_basins: dict, seed: int) -> list[tuple]:
    """(metric, value, n, noise floor, extra) for one sample set."""
    out = []
    metrics = peptide_metrics(samples, target, reference, torch.Generator().manual_seed(seed))
    for name in METRICS:
        if name in metrics:
            m = metrics[name]
            out.append((name, m["value"], m["n"], m["noise_floor"], {}))
    for name, value in residue_basins(samples.x.numpy(), target).items():
        out.append((f"basin_{name}", value, samples.n, None, {"reference_value": ref_basins[name]}))
    out += within_basin_rows(samples.x.numpy(), target, reference, seed)
    out.append(("mean_energy_kt", float(samples.energy.double().mean()), samples.n, None, {}))
    return out


def within_basin_rows(x: np.ndarray, target, reference: np.ndarray, seed: int) -> list[tuple]:
    """Single-residue peptides: torus W2 with the basins weighted to the reference's fractions
    (``torus_w2_basin_matched``) and within each populated basin (``torus_w2_within_<basin>``),
    against n reference frames; floor: those frames against n other reference frames. What the
    basin fractions leave out (shape, width, sub-basin balance inside a basin)."""
    x, _ = fix_chirality(x, target.topology)
    n = min(len(x), MAX_N_OT, len(reference) // 2)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(reference))
    ref_a, ref_b = reference[pick[:n]], reference[pick[n:2 * n]]
    sets = []
    for frames in (x[rng.permutation(len(x))[:n]], ref_a, ref_b):
        phi, psi = backbone_dihedrals(frames, target.topology)
        if phi.shape[1] != 1:
            return []
        sets.append((np.stack([phi[:, 0], psi[:, 0]], 1), basin_masks(phi[:, 0], psi[:, 0])))
    (a, ma), (r, mr), (f, mf) = sets
    rows = []
    value, floor = basin_matched_torus_w2(a, ma, r, mr), basin_matched_torus_w2(f, mf, r, mr)
    if value is not None:
        rows.append(("torus_w2_basin_matched", value, n, floor, {}))
    for name in ma:
        value = within_basin_torus_w2(a, ma[name], r, mr[name])
        if value is not None:
            rows.append((f"torus_w2_within_{name}", value, int(ma[name].sum()),
                         within_basin_torus_w2(f, mf[name], r, mr[name]), {}))
    return rows


def reuse_baseline(path: Path, method: str, target, budget: int | None, n: int | None):
    """(samples, options, wall) of a baseline saved by ``--keep``: same method and target, the same
    n, and evaluations within 1 % of ``budget``; anything else is refused (``BadInput``)."""
    samples = Samples.load(path)
    info = samples.info
    evals = int(info.get("energy_evaluations", -1))
    where = f"--baseline-samples {method}={path}"
    if info.get("method") != method or info.get("target", {}).get("name") != target.name:
        raise BadInput(f"{where}: holds {info.get('method')} on {info.get('target', {}).get('name')}, "
                       f"not {method} on {target.name}")
    if budget is None or abs(evals - budget) > 0.01 * budget:
        raise BadInput(f"{where}: {evals:,} evaluations, not within 1 % of the run's {budget}")
    if n is not None and samples.n != n:
        raise BadInput(f"{where}: {samples.n} samples, the runs have {n}")
    return samples, info.get("config", {}), float(info.get("wall_time_s", float("nan")))


def budget_from(item: str, target_name: str) -> tuple[int, int, list[dict]]:
    """(evaluations, n, rows) of run LABEL in an earlier result JSON ``item`` = ``JSON=LABEL``: the
    budget and sample count its baselines must match, and its rows as they were scored (each marked
    ``copied_from``). Refused (``BadInput``) unless the file holds rows of LABEL on ``target_name``
    with one evaluation count."""
    path, sep, label = item.partition("=")
    if not sep or not label or not Path(path).is_file():
        raise BadInput("expected JSON=LABEL of an existing result file")
    try:
        rows = json.loads(Path(path).read_text())["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BadInput(f"not a result file of this script ({err})") from None
    mine = [r for r in rows if r.get("method") == label and r.get("target") == target_name]
    evals = {r.get("energy_evaluations") for r in mine}
    sizes = [r["n"] for r in mine if r.get("metric") == "mean_energy_kt"]
    if not mine or len(evals) != 1 or not sizes:
        raise BadInput(f"no single-budget rows of {label} on {target_name} with a mean_energy_kt row")
    return int(evals.pop()), int(sizes[0]), [{**r, "copied_from": path} for r in mine]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="aldp-fab", choices=TARGETS)
    parser.add_argument("--runs", action="append", default=[], help="label=run folder (repeatable)")
    parser.add_argument("--baselines", default="langevin,mala", help="comma list ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="save each baseline's samples as DIR/<method>_samples.npz")
    parser.add_argument("--baseline-samples", action="append", default=[], metavar="METHOD=NPZ",
                        help="score a baseline kept by an earlier --keep instead of rerunning it; refused "
                             "unless it is the same target and its evaluations are within 1 %% of the "
                             "first run's (repeatable)")
    parser.add_argument("--baseline-set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="an option of one baseline over its peptide defaults, the value read as "
                             "JSON (e.g. pt.n_replicas=9 --baseline-set pt.t_max=1200: replica exchange "
                             "over the cpu ladder's temperatures); repeatable")
    parser.add_argument("--budget-from", default=None, metavar="JSON=LABEL",
                        help="instead of --runs: take the evaluations and n of run LABEL's rows in an "
                             "earlier result JSON of this script (its run folder may be gone), and copy "
                             "those rows into --out next to the baselines run at that budget")
    parser.add_argument("--chains", type=int, default=CHAINS,
                        help=f"chains per baseline (default {CHAINS}, bench_peptide_samplers'); the budget "
                             "is the same, so more chains are shorter: same simulated time in all, the "
                             "torch force field's batch better used (measured on 2 cores: 64 chains "
                             "≈ 2.3-2.9x the evaluations per second of 16)")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="one figure: Ramachandran and TICA free energy of the reference, each run "
                             "and each baseline (report.peptide_plots.plot_peptide_comparison)")
    args = parser.parse_args(argv)
    baselines = [m for m in args.baselines.split(",") if m]
    if args.chains < 1:
        print(f"--chains {args.chains}: expected a positive number of chains", file=sys.stderr)
        return 2

    def not_run(flag: str, item: str, method: str) -> bool:
        """True (and one line on stderr) when ``method`` is not among --baselines."""
        if method in baselines:
            return False
        print(f"{flag} {item}: {method} is not among --baselines {args.baselines}", file=sys.stderr)
        return True

    kept = {}
    for item in args.baseline_samples:
        method, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            print(f"--baseline-samples {item}: expected METHOD=NPZ of an existing file", file=sys.stderr)
            return 2
        if not_run("--baseline-samples", item, method):
            return 2
        kept[method] = Path(path)
    extra: dict[str, dict] = {}
    for item in args.baseline_set:
        key, sep, value = item.partition("=")
        method, dot, option = key.partition(".")
        if not sep or not dot or not option:
            print(f"--baseline-set {item}: expected METHOD.KEY=VALUE", file=sys.stderr)
            return 2
        if not_run("--baseline-set", item, method):
            return 2
        try:
            extra.setdefault(method, {})[option] = json.loads(value)
        except json.JSONDecodeError:
            print(f"--baseline-set {item}: {value!r} is not a JSON value", file=sys.stderr)
            return 2
    for method, options in extra.items():
        if method in kept:
            print(f"--baseline-set {method}.…: {method} is scored from --baseline-samples, not run",
                  file=sys.stderr)
            return 2
        try:
            method_config(method, options, target=None)
        except BadInput as err:
            print(f"--baseline-set {method}: {err}", file=sys.stderr)
            return 2
    out = args.out or str(RESULTS if args.target == "aldp-fab"
                          else RESULTS.with_name(f"pita_peptides_{args.target}.json"))
    target = make_target(args.target)
    found = load_reference_for(target)
    if found is None:
        print(f"no 300 K reference for {args.target} (held-out set absent or none shipped): skipped",
              file=sys.stderr)
        return 0
    reference, reference_name = found
    runs = []
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep or not (Path(folder) / "COMPLETE").is_file():
            print(f"--runs {item}: expected label=DIR of a finished run", file=sys.stderr)
            return 2
        runs.append((label, Path(folder)))
    command = f"python benchmarks/bench_pita_peptides.py --target {args.target}"
    command += "".join(f" --runs {r}" for r in args.runs)
    command += f" --baselines {shlex.quote(args.baselines)}"  # '' (none) stays visible
    command += "".join(f" --baseline-samples {b}" for b in args.baseline_samples)
    command += "".join(f" --baseline-set {b}" for b in args.baseline_set)
    if args.chains != CHAINS:
        command += f" --chains {args.chains}"
    machine = describe_machine()
    ref_basins = residue_basins(reference, target)
    rows: list[dict] = []

    def add(method, results, evals, wall, **extra):
        for metric, value, n, floor, more in results:
            rows.append({"benchmark": "pita_peptides", "method": method, "target": args.target,
                         "metric": metric, "value": float(value), "n": int(n), "noise_floor": floor,
                         "energy_evaluations": evals, "wall_time_s": wall, "machine": machine,
                         "command": command, "reference": reference_name, **more, **extra})

    budget, n = None, None
    drawn: list[tuple[str, np.ndarray]] = []  # (label, x) for --figure
    if args.budget_from:
        if runs:
            print("--budget-from: give it instead of --runs, not with them", file=sys.stderr)
            return 2
        try:
            budget, n, copied = budget_from(args.budget_from, args.target)
        except BadInput as err:
            print(f"--budget-from {args.budget_from}: {err}", file=sys.stderr)
            return 2
        command += f" --budget-from {args.budget_from}"
        rows += copied
        print(f"budget from {args.budget_from}: {budget:,} evaluations, n = {n}", file=sys.stderr)
    for label, folder in runs:
        metrics = json.loads((folder / "metrics.json").read_text())
        samples = Samples.load(folder / "samples.npz")
        evals = int(metrics["energy_evaluations"]["total"])
        budget, n = budget or evals, n or samples.n
        drawn.append((label, samples.x.numpy()))
        add(label, score(samples, target, reference, ref_basins, args.seed + 1), evals,
            round(float(metrics["wall_time_s"]), 1), run=str(folder),
            evaluations_by_phase=metrics["energy_evaluations"])
        print(f"{label}: {evals:,} evaluations, n = {samples.n}", file=sys.stderr)
    for method in baselines:
        if method in kept:
            samples, opts, wall = reuse_baseline(kept[method], method, target, budget, n)
            reused = str(kept[method])
        else:
            samples, opts, wall = run_at_budget(method, target, budget, n, args.seed, extra.get(method),
                                                chains=args.chains)
            reused = None
        wall = round(wall, 1)
        evals = int(samples.info["energy_evaluations"])
        add(method, score(samples, target, reference, ref_basins, args.seed + 1), evals, wall, options=opts,
            **({"reused_samples": reused} if reused else {}))
        print(f"{method}: {evals:,} evaluations, {wall} s", file=sys.stderr)
        atomic_write_json(out, {"rows": rows})
        drawn.append((method, samples.x.numpy()))
        if args.keep:
            samples.save(Path(args.keep) / f"{method}_samples.npz")
    atomic_write_json(out, {"rows": rows})
    if args.figure and drawn:
        from boltzpath.report.peptide_plots import plot_peptide_comparison

        print(f"wrote {plot_peptide_comparison(args.figure, drawn, target, reference)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
