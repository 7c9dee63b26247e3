"""Long plain MD of alanine dipeptide (``aldp-fab``) at several temperatures: the backbone basin
fractions and the αR − C7eq/C5 energy gap that a ladder's stages are judged against, with errors that
respect how slowly the basins exchange.

Each ``--runs`` folder is one ``boltzpath reference --replicas 1`` run (OpenMM Langevin MD, one
temperature). Per run: the first residue's C7eq/C5, αR and φ > 0 fractions
(``metrics.peptides.basin_masks``), the mean-energy gap ⟨E/kT⟩_αR − ⟨E/kT⟩_C7eq/C5 at the run's
temperature, and the number of C7eq/C5 ↔ αR changes between consecutive frames. Errors are block
standard errors over ``--blocks`` contiguous blocks (the frames are a time series: C7eq/C5 stays for
hundreds of ps, so per-frame or autocorrelation-fit errors are far too small). Runs at one temperature
are pooled; the pooled error is the larger of the combined block error and the between-run standard
error. ``--holdout`` adds the held-out 300 K set (evaluation only; in file order, which is treated as
time order).

Thermodynamic consistency between neighbouring temperatures: for a basin defined by fixed dihedral
ranges, d ln(odds αR : C7eq/C5)/dβ = −(⟨E⟩_αR − ⟨E⟩_C7eq/C5) exactly, so the odds measured at two
temperatures and the gaps measured at both (trapezoid rule, in kJ/mol) must agree; rows
``log_odds_change_measured`` and ``log_odds_change_from_gaps``. The gap is a fast observable and
the odds a slow one, so the second is usually the sharper. Rows "odds at T_max chained down by the
gaps" give each lower temperature's αR fraction from the hottest run's odds (the most transitions)
and the gaps in between, with the two basins' measured total share at that temperature.

    python benchmarks/aldp_md_basins.py --runs DIR [--runs DIR ...] [--holdout] [--blocks 10] [--out FILE]

Writes ``benchmarks/results/aldp_md_basins.json`` unless ``--out``. Nothing is simulated here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from bench_peptide_samplers import HOLDOUT

from boltzpath.config import load_yaml
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples, load_reference
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.metrics.peptides import backbone_dihedrals, basin_masks
from boltzpath.targets.peptides import kt_kj_mol
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("Long plain OpenMM MD of ALDP (aldp-fab) per temperature (`benchmarks/aldp_md_basins.py`): "
               "first-residue basin fractions and the alphaR - C7eq/C5 mean-energy gap (E/kT) with block "
               "standard errors; pooled per temperature; log-odds changes between temperatures measured "
               "vs implied by the gaps (d ln odds / d beta = -gap)")


def set_stats(x: np.ndarray, target, temperature: float, blocks: int) -> dict:
    """Basin fractions, energy gap and C7eq/C5 <-> alphaR changes of one time-ordered frame set,
    each with its standard error over ``blocks`` contiguous blocks."""
    phi, psi = backbone_dihedrals(x, target.topology)
    masks = basin_masks(phi[:, 0], psi[:, 0])
    a, c = masks["alpha_r"], masks["c7eq_c5"]
    e = uncounted_energy(target.at_temperature(temperature), torch.as_tensor(x)).double().numpy()
    parts = np.array_split(np.arange(len(x)), blocks)

    def block_se(values):
        v = np.asarray([q for q in values if np.isfinite(q)])
        return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")

    def gap(idx):
        aa, cc = a[idx], c[idx]
        return float(e[idx][aa].mean() - e[idx][cc].mean()) if aa.sum() > 1 and cc.sum() > 1 else float("nan")

    label = np.where(a, 1, np.where(c, 0, -1))
    assigned = label[label >= 0]
    out = {"n": int(len(x)), "transitions_c7eq_alpha_r": int((np.diff(assigned) != 0).sum()),
           "gap": gap(np.arange(len(x))), "gap_se": block_se([gap(p) for p in parts])}
    for name, m in (("c7eq_c5", c), ("alpha_r", a), ("phi_positive", ~(a | c))):
        out[name] = float(m.mean())
        out[f"{name}_se"] = block_se([m[p].mean() for p in parts])
    return out


def pooled(stats: list[dict]) -> dict:
    """Frame-weighted means over runs at one temperature; error = max(combined block SE, between-run SE)."""
    w = np.array([s["n"] for s in stats], dtype=float)
    w = w / w.sum()
    out = {"n": int(sum(s["n"] for s in stats)), "runs": len(stats),
           "transitions_c7eq_alpha_r": int(sum(s["transitions_c7eq_alpha_r"] for s in stats))}
    for key in ("c7eq_c5", "alpha_r", "phi_positive", "gap"):
        v = np.array([s[key] for s in stats])
        out[key] = float((w * v).sum())
        within = float(np.sqrt((w ** 2 * np.array([s[f"{key}_se"] for s in stats]) ** 2).sum()))
        between = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        out[f"{key}_se"] = max(within, between)
    return out


def log_odds(p: dict) -> tuple[float, float]:
    """ln(alphaR / C7eq/C5) and its delta-method standard error."""
    a, c = p["alpha_r"], p["c7eq_c5"]
    return float(np.log(a / c)), float(np.hypot(p["alpha_r_se"] / a, p["c7eq_c5_se"] / c))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", action="append", default=[], type=Path, metavar="DIR",
                        help="a `boltzpath reference --replicas 1` folder (repeatable)")
    parser.add_argument("--holdout", action="store_true", help="add the held-out 300 K set (file order)")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "aldp_md_basins.json")
    args = parser.parse_args(argv)
    if not args.runs:
        raise BadInput("--runs: give at least one `boltzpath reference` folder")
    if args.blocks < 2:
        raise BadInput(f"--blocks must be >= 2, got {args.blocks}")
    target = make_target("aldp-fab")
    machine = describe_machine()
    command = "python benchmarks/aldp_md_basins.py " + " ".join(sys.argv[1:] if argv is None else argv)
    by_t: dict[float, list[dict]] = {}
    rows = []
    for folder in args.runs:
        cfg_file, npz = folder / "config.yaml", folder / "samples.npz"
        if not (folder / "COMPLETE").is_file() or not cfg_file.is_file() or not npz.is_file():
            raise BadInput(f"--runs {folder}: not a finished `boltzpath reference` run "
                           "(COMPLETE, config.yaml, samples.npz)")
        cfg = load_yaml(cfg_file)
        if cfg.get("target", {}).get("name") != "aldp-fab" or cfg.get("n_replicas") != 1:
            raise BadInput(f"--runs {folder}: needs an aldp-fab run with --replicas 1")
        temp = float(cfg["temperature_kelvin"])
        stats = set_stats(Samples.load(npz).x.numpy(), target, temp, args.blocks)
        ns = (cfg["n_iterations"] - cfg["equilibration_iterations"]) * cfg["steps_per_exchange"] \
            * cfg["timestep_fs"] * 1e-6
        stats.update(simulated_ns=float(ns), seed=cfg.get("seed"), run=str(folder))
        m = folder / "metrics.json"
        if m.is_file():  # the MD run's own cost (two runs shared the 2 cores: compare within a section only)
            run_metrics = json.loads(m.read_text())
            stats.update(energy_evaluations=run_metrics.get("energy_evaluations"),
                         wall_time_s=run_metrics.get("wall_time_s"))
        by_t.setdefault(temp, []).append(stats)
        print(f"{folder} ({temp:g} K, {ns:.2f} ns): alphaR {stats['alpha_r']:.3f} ± "
              f"{stats['alpha_r_se']:.3f}, gap {stats['gap']:.2f} ± {stats['gap_se']:.2f} kT, "
              f"{stats['transitions_c7eq_alpha_r']} changes", file=sys.stderr)
    common = {"benchmark": "aldp_md_basins", "target": "aldp-fab", "machine": machine, "command": command}
    for temp in sorted(by_t):
        for s in by_t[temp]:
            for key in ("alpha_r", "c7eq_c5", "phi_positive", "gap"):
                metric = "energy_gap_alpha_r_c7eq" if key == "gap" else f"{key}_fraction"
                rows.append({**common, "method": f"openmm-md seed {s['seed']}", "temperature": temp,
                             "metric": metric, "value": s[key], "standard_error": s[f"{key}_se"], "n": s["n"],
                             "simulated_ns": s["simulated_ns"],
                             "energy_evaluations": s.get("energy_evaluations"),
                             "wall_time_s": s.get("wall_time_s"),
                             "transitions_c7eq_alpha_r": s["transitions_c7eq_alpha_r"]})
        p = pooled(by_t[temp])
        by_t[temp] = [p]
        for key in ("alpha_r", "c7eq_c5", "phi_positive", "gap"):
            metric = "energy_gap_alpha_r_c7eq" if key == "gap" else f"{key}_fraction"
            rows.append({**common, "method": f"openmm-md pooled ({p['runs']} runs)", "temperature": temp,
                         "metric": metric, "value": p[key], "standard_error": p[f"{key}_se"], "n": p["n"],
                         "transitions_c7eq_alpha_r": p["transitions_c7eq_alpha_r"]})
    temps = sorted(by_t)
    implied_steps = []
    for t1, t2 in zip(temps, temps[1:], strict=False):
        p1, p2 = by_t[t1][0], by_t[t2][0]
        (l1, s1), (l2, s2) = log_odds(p1), log_odds(p2)
        beta1, beta2 = 1 / kt_kj_mol(t1), 1 / kt_kj_mol(t2)  # mol/kJ
        g1, g2 = p1["gap"] * kt_kj_mol(t1), p2["gap"] * kt_kj_mol(t2)  # kJ/mol
        implied = -0.5 * (g1 + g2) * (beta2 - beta1)
        implied_se = 0.5 * abs(beta2 - beta1) * float(np.hypot(p1["gap_se"] * kt_kj_mol(t1),
                                                                 p2["gap_se"] * kt_kj_mol(t2)))
        implied_steps.append((implied, implied_se))
        for metric, value, se in (("log_odds_change_measured", l2 - l1, float(np.hypot(s1, s2))),
                                  ("log_odds_change_from_gaps", implied, implied_se)):
            rows.append({**common, "method": f"openmm-md {t1:g} K -> {t2:g} K", "temperature": t2,
                         "metric": metric, "value": float(value), "standard_error": se})
        print(f"{t1:g} -> {t2:g} K: ln odds change measured {l2 - l1:+.3f} ± {np.hypot(s1, s2):.3f}, "
              f"from gaps {implied:+.3f} ± {implied_se:.3f}", file=sys.stderr)
    if len(temps) > 1:  # every temperature's odds from the hottest one's and the gaps in between
        top = by_t[temps[-1]][0]
        l_top, s_top = log_odds(top)
        for i, temp in enumerate(temps[:-1]):
            steps = implied_steps[i:]
            lo = l_top - sum(v for v, _ in steps)
            se = float(np.sqrt(s_top ** 2 + sum(e ** 2 for _, e in steps)))
            p = by_t[temp][0]
            share = p["alpha_r"] + p["c7eq_c5"]  # the two basins' measured total at this temperature
            frac = share * np.exp(lo) / (1 + np.exp(lo))
            frac_se = share * np.exp(lo) / (1 + np.exp(lo)) ** 2 * se
            rows.append({**common, "method": f"openmm-md, odds at {temps[-1]:g} K chained down by the gaps",
                         "temperature": temp, "metric": "alpha_r_fraction", "value": float(frac),
                         "standard_error": float(frac_se)})
            print(f"{temp:g} K: alphaR from the {temps[-1]:g} K odds and the gaps {frac:.3f} ± {frac_se:.3f} "
                  f"(measured {p['alpha_r']:.3f} ± {p['alpha_r_se']:.3f})", file=sys.stderr)
    if args.holdout:
        if not HOLDOUT.is_file():
            print(f"--holdout: {HOLDOUT} absent (needs ../shared); skipped", file=sys.stderr)
        else:
            s = set_stats(np.asarray(load_reference(HOLDOUT, target.dim)), target, 300.0, args.blocks)
            for key in ("alpha_r", "c7eq_c5", "phi_positive", "gap"):
                metric = "energy_gap_alpha_r_c7eq" if key == "gap" else f"{key}_fraction"
                rows.append({**common, "method": "held-out 300 K set (file order)", "temperature": 300.0,
                             "metric": metric, "value": s[key], "standard_error": s[f"{key}_se"],
                             "n": s["n"]})
            print(f"held-out: alphaR {s['alpha_r']:.3f} ± {s['alpha_r_se']:.3f}, gap {s['gap']:.2f} ± "
                  f"{s['gap_se']:.2f}", file=sys.stderr)
    atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    print(f"wrote {args.out} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
