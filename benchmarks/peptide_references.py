"""Certified REMD references for the peptide targets that have no held-out set (``al3``, ``aldp-pita``).

Issue 11 compares PITA on AL3 and on ``aldp-pita`` with references the project generates. A
reference is two independent runs of ``boltzpath reference`` (different seeds, so different
velocities and exchange draws; the same start structure, minimised) at 300 K:

    boltzpath reference --target al3 --temperature 300 --out DIR_s0 --n-iterations 2000 \\
        --replicas 4 --t-max 600 --platform CPU --seed 0        # and --seed 1 into DIR_s1

(4 replicas on a geometric 300–600 K ladder, 0.5 ps of 1-fs Langevin MD per exchange, 100
iterations discarded: 0.95 ns kept per replica for 2000 iterations; ``aldp-pita`` needed 8 replicas
to 1200 K, docs/reference-data.md). Each run's ladder is read from its ``config.yaml``. The
certificate is their agreement:

* every peptide metric of seed 1 against seed 0 (``metrics.peptide_suite``: energy W1/W2,
  Ramachandran KL per residue, torsion KL, torus W2, TICA-W2) next to its noise floor (two
  disjoint random halves of seed 0 at the same n — frames are correlated, so this floor is
  optimistic and an agreement "at the floor" is the strong form);
* the mean energy of each run with its standard error from the statistical inefficiency of the
  energy series (``decorrelation.json``), and their difference in units of the combined error;
* per residue: the C7eq/C5, αR and φ > 0 fractions, each with a binomial standard error from the
  run's smallest effective sample size, and the between-run difference in units of the combined
  error; the cis-peptide and mirrored fractions.

``--ship`` writes the seed-0 frames, every k-th in time order (TICA needs the order), at most
``--ship-n`` of them, to ``boltzpath/data/references/<target>_300K.npy`` (float32, nm, (n, dim)),
which ``metrics.bundled`` then hands to PITA and the comparisons on that target at 300 K.

    python benchmarks/peptide_references.py --target al3 --runs DIR_s0,DIR_s1 [--ship]

Writes (merges into) ``benchmarks/results/peptide_references.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from boltzpath import make_target
from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_save_npy, atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples
from boltzpath.metrics import peptides as P
from boltzpath.metrics.amides import cis_report
from boltzpath.metrics.chirality import chirality_report
from boltzpath.metrics.peptide_suite import peptide_metrics

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "peptide_references.json"
DATA = ROOT.parent / "boltzpath" / "data" / "references"
BETWEEN = ("energy_w1_kj_mol", "energy_w2_kj_mol", "energy_w1", "ramachandran_kl", "kl_phi", "kl_psi",
           "torus_w2", "tica_w2")
DESCRIPTION = (
    "Peptide references by REMD (boltzpath reference: a geometric ladder from 300 K, 0.5 ps between "
    "exchanges, 100 iterations discarded; each run's ladder in its 'replicas' and 't_max_kelvin' (rows "
    "without them: 4 replicas to 600 K) and its length in 'iterations' and 'simulated_ns_per_replica'), "
    "two independent seeds per target. 'between runs': seed 1 against seed 0 with the "
    "noise floor of two random halves of seed 0 at the same n (optimistic for correlated frames). "
    "Mean energies with standard errors from the statistical inefficiency of the energy series.")


def _load_run(path: Path) -> dict:
    with np.load(path / "samples.npz", allow_pickle=False) as z:
        x, energy = np.asarray(z["x"], dtype=np.float64), np.asarray(z["energy"], dtype=np.float64)
    metrics = json.loads((path / "metrics.json").read_text())
    decor = json.loads((path / "decorrelation.json").read_text())
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else {}
    return {"x": x, "energy": energy, "metrics": metrics, "decor": decor, "path": str(path),
            "config": config or {}}


def _per_run_rows(run: dict, target, seed: int, common: dict) -> list[dict]:
    kt = float(target.kt_kj_mol)
    e_kj = run["energy"] * kt
    g_e = float(run["decor"]["observables"].get("energy_kj_mol", {}).get(
        "statistical_inefficiency", run["decor"]["max_statistical_inefficiency"]))
    n = e_kj.shape[0]
    se = float(e_kj.std(ddof=1) * np.sqrt(g_e / n))
    extra = {"seed": seed, "run": run["path"], "energy_evaluations": run["metrics"].get("energy_evaluations"),
             "wall_time_s": run["metrics"].get("wall_time_s"), "n_effective": run["decor"]["n_effective"],
             "iterations": run["metrics"].get("iterations"),
             "replicas": run["config"].get("n_replicas"), "t_max_kelvin": run["config"].get("t_max_kelvin"),
             "simulated_ns_per_replica": run["metrics"].get("simulated_ns_per_replica"),
             "max_statistical_inefficiency": run["decor"]["max_statistical_inefficiency"]}
    rows = [dict(common, method=f"remd seed {seed}", metric="mean_energy_kj_mol", value=float(e_kj.mean()),
                 n=n, noise_floor=None, standard_error=se, energy_statistical_inefficiency=g_e, **extra)]
    for r, fractions in enumerate(P.residue_basin_fractions(run["x"], target.topology)):
        for name, value in fractions.items():
            # binomial error with the run's smallest effective sample size (the slowest observable)
            se_b = float(np.sqrt(value * (1 - value) / max(run["decor"]["n_effective"], 1.0)))
            rows.append(dict(common, method=f"remd seed {seed}", metric=f"basin_{name}_residue{r + 1}",
                             value=value, n=n, noise_floor=None, standard_error=se_b, **extra))
    cis = cis_report(run["x"], target.topology)
    chir = chirality_report(run["x"], target.topology)
    rows.append(dict(common, method=f"remd seed {seed}", metric="cis_peptide_fraction",
                     value=float(cis["cis_fraction"]), n=n, noise_floor=None, **extra))
    rows.append(dict(common, method=f"remd seed {seed}", metric="mirrored_fraction",
                     value=float(chir["mirrored_fraction"]), n=n, noise_floor=None, **extra))
    return rows


def certify(name: str, runs: list[Path], seed: int = 0) -> tuple[list[dict], dict]:
    target = make_target(name)
    loaded = [_load_run(p) for p in runs]
    common = {"benchmark": "peptide_references", "target": name, "temperature_kelvin": 300.0,
              "machine": describe_machine(),
              "command": f"python benchmarks/peptide_references.py --target {name} --runs <seed0>,<seed1>"}
    rows: list[dict] = []
    for s, run in enumerate(loaded):
        rows += _per_run_rows(run, target, s, common)
    a, b = loaded[0], loaded[1]
    samples_b = Samples(torch.from_numpy(b["x"]).float(), torch.from_numpy(b["energy"]))
    reference = Samples(torch.from_numpy(a["x"]).float(), torch.from_numpy(a["energy"]))
    rep = peptide_metrics(samples_b, target, reference, torch.Generator().manual_seed(seed))
    for key in BETWEEN:
        if key in rep:
            m = rep[key]
            rows.append(dict(common, method="between runs (seed 1 vs seed 0)", metric=key, value=m["value"],
                             n=m["n"], noise_floor=m["noise_floor"], noise_floor_n=m["noise_floor_n"]))
    for key in sorted({r["metric"] for r in rows if r["metric"].startswith("basin_")}):
        pair = [r for r in rows if r["metric"] == key]
        se = float(np.hypot(pair[0]["standard_error"], pair[1]["standard_error"]))
        diff = pair[1]["value"] - pair[0]["value"]
        rows.append(dict(common, method="between runs (seed 1 vs seed 0)", metric=f"{key}_difference_z",
                         value=float(diff / se) if se > 0 else None, n=pair[1]["n"], noise_floor=None,
                         difference=float(diff)))
    mean = [r for r in rows if r["metric"] == "mean_energy_kj_mol"]
    diff = mean[1]["value"] - mean[0]["value"]
    z = diff / float(np.hypot(mean[0]["standard_error"], mean[1]["standard_error"]))
    rows.append(dict(common, method="between runs (seed 1 vs seed 0)", metric="mean_energy_difference_z",
                     value=float(z), n=mean[1]["n"], noise_floor=None, difference_kj_mol=float(diff)))
    return rows, {"x": a["x"]}


def ship(name: str, x: np.ndarray, max_n: int) -> Path:
    """Every k-th seed-0 frame (time order kept), at most ``max_n``, as float32 (n, dim) nm."""
    step = max(1, int(np.ceil(x.shape[0] / max_n)))
    return atomic_save_npy(DATA / f"{name}_300K.npy", np.ascontiguousarray(x[::step], dtype=np.float32))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, choices=["al3", "aldp-pita", "aldp-fab"])
    ap.add_argument("--runs", required=True, help="two run folders of `boltzpath reference`: seed0,seed1")
    ap.add_argument("--ship", action="store_true", help="write boltzpath/data/references/<target>_300K.npy")
    ap.add_argument("--ship-n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    runs = [Path(p) for p in args.runs.split(",")]
    if len(runs) != 2 or not all((p / "COMPLETE").is_file() for p in runs):
        ap.error("--runs needs two finished run folders (with COMPLETE)")
    rows, data = certify(args.target, runs)
    old = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = [r for r in old if r["target"] != args.target] + rows
    atomic_write_json(args.out, {"benchmark": "peptide_references", "description": DESCRIPTION, "rows": rows})
    for r in rows:
        if r["target"] == args.target:
            tail = "".join(f" {k} {r[k]:.3g}" for k in ("noise_floor", "standard_error", "difference")
                           if r.get(k) is not None)
            print(f"{r['method']:32s} {r['metric']:34s} {r['value']:10.4g}{tail}")
    if args.ship:
        print(f"wrote {ship(args.target, data['x'], args.ship_n)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
