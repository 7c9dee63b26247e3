"""Every stage of a peptide PITA ladder against a replica-exchange reference at the stage's own
temperature: where on the way down does a run leave the equilibrium distribution?

The reference is one ``boltzpath reference --all-temperatures`` run whose replica ladder holds the
PITA ladder's temperatures (e.g. ``--temperature 300 --t-max 1200 --replicas 9`` for the eight-rung
ALDP ``cpu`` ladder: the same geometric temperatures); its frame sets are matched to the stages by
temperature (within 0.5 K). For each stage and each reference temperature the script reports the
backbone basin fractions (``metrics.peptides.basin_fractions``: C7eq/C5, αR, φ > 0 of the first
residue), the torus W2 of the (φ, ψ) pairs of every residue (``metrics.peptides.torus_w2``, n = the
smaller of the two sets), and as its noise floor the torus W2 between the reference's first and second
halves (consecutive frames, so the floor includes the reference's own correlation). The reference
rows carry the frames and the effective samples (``decorrelation.json``) of each temperature.
Each set also gets the mean-energy gap between its αR and C7eq/C5 samples, ⟨E/kT⟩_αR − ⟨E/kT⟩_C7eq at
its temperature, with the standard error of independent samples (``energy_gap_alpha_r_c7eq``; too
small for correlated frames and resampled duplicates): a true-energy resampling changes the two
basins' odds by about e^{−(Δβ/β)·gap}, so a ladder whose αR samples sit high in energy loses αR
at every rung (docs/pita.md, fifteenth session).

    python benchmarks/pita_peptide_stages.py [--reference REMD_DIR] --runs label=RUN [--runs …] [--out FILE]

Without ``--reference`` (AL3 has no replica ladder reference yet) each stage gets only its basin
fractions and energy gap: where along the ladder a basin's share changes.

Writes ``benchmarks/results/pita_peptide_stages.json`` unless ``--out``. Nothing is trained or
sampled here: the cost is the OT solves (seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from boltzpath.config import load_yaml
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.io.samples import Samples
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.metrics.peptides import backbone_dihedrals, basin_masks, torus_w2
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("Each stage of a peptide PITA ladder against a replica-exchange reference at its own "
               "temperature (`benchmarks/pita_peptide_stages.py`): first-residue basin fractions and "
               "torus W2 of the backbone dihedrals; floor = the reference's first half against its second "
               "half")


def reference_sets(folder: Path) -> dict[float, tuple[Path, float | None]]:
    """{temperature (K): (samples.npz, effective samples or None)} of a ``boltzpath reference`` run."""
    if not (folder / "COMPLETE").is_file():
        raise BadInput(f"--reference {folder}: not a finished `boltzpath reference` run (no COMPLETE)")
    found = {}
    for sub in [folder, *sorted((folder / "temperatures").glob("*K"))]:
        f = sub / "samples.npz"
        if not f.is_file():
            continue
        info = Samples.load(f).info
        t = info.get("temperature_kelvin")
        if t is None:
            continue
        dec = sub / "decorrelation.json"
        n_eff = json.loads(dec.read_text()).get("n_effective") if dec.is_file() else None
        found[float(t)] = (f, n_eff)
    if not found:
        raise BadInput(f"--reference {folder}: no samples with a temperature")
    return found


def dihedral_view(x: np.ndarray, topology) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(all backbone (φ, ψ) side by side, the first residue's basin masks), the dihedrals computed once."""
    phi, psi = backbone_dihedrals(x, topology)
    return np.concatenate([phi, psi], axis=1), basin_masks(phi[:, 0], psi[:, 0])


def energy_gap(x: np.ndarray, masks: dict[str, np.ndarray], target,
               temperature: float) -> tuple[float, float] | None:
    """(⟨E/kT⟩_αR − ⟨E/kT⟩_C7eq/C5 at ``temperature``, its i.i.d. standard error) of the first residue's
    basins (``masks`` from ``dihedral_view``); None when either basin has fewer than two samples."""
    a, c = masks["alpha_r"], masks["c7eq_c5"]
    if a.sum() < 2 or c.sum() < 2:
        return None
    e = uncounted_energy(target.at_temperature(temperature), torch.as_tensor(x)).double().numpy()
    se = (e[a].var(ddof=1) / a.sum() + e[c].var(ddof=1) / c.sum()) ** 0.5
    return float(e[a].mean() - e[c].mean()), float(se)


def gap_rows(common: dict, x: np.ndarray, masks: dict[str, np.ndarray], target,
             temperature: float) -> list[dict]:
    """The ``energy_gap_alpha_r_c7eq`` row (with its standard error) of one sample set, or none when
    ``energy_gap`` has too few samples in a basin."""
    gap = energy_gap(x, masks, target, temperature)
    if gap is None:
        return []
    return [{**common, "metric": "energy_gap_alpha_r_c7eq", "value": gap[0], "standard_error": gap[1]}]


def _set_rows(common: dict, x: np.ndarray, masks: dict[str, np.ndarray], target,
              temperature: float) -> list[dict]:
    """Basin fractions and the αR − C7eq/C5 energy gap of one sample set."""
    rows = [{**common, "metric": f"basin_{name}", "value": float(np.mean(m))} for name, m in masks.items()]
    return rows + gap_rows(common, x, masks, target, temperature)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--reference", type=Path,
                    help="a `boltzpath reference --all-temperatures` run; without one, each stage gets its "
                         "basin fractions and energy gap only (no torus W2)")
    ap.add_argument("--runs", action="append", default=[], metavar="LABEL=DIR", help="PITA run folders")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "pita_peptide_stages.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not args.runs:
        raise BadInput("--runs: give at least one LABEL=DIR")
    refs = reference_sets(args.reference) if args.reference is not None else {}
    runs = []
    for item in args.runs:
        label, sep, folder = item.partition("=")
        cfg_file = Path(folder) / "config.yaml"
        if not sep or not cfg_file.is_file():
            raise BadInput(f"--runs {item}: expected LABEL=DIR of a PITA run folder")
        runs.append((label, Path(folder)))
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/pita_peptide_stages.py " + " ".join(given)
    machine = describe_machine()
    target, rows = None, []
    ref_cache: dict[float, tuple[np.ndarray, float]] = {}  # T → (angles, half-vs-half floor)

    def reference_at(temp: float):
        if not refs:
            return None
        t_ref = min(refs, key=lambda t: abs(t - temp))
        if abs(t_ref - temp) > 0.5:
            return None
        if t_ref not in ref_cache:
            x = Samples.load(refs[t_ref][0]).x.numpy()
            a, masks = dihedral_view(x, target.topology)
            half = len(a) // 2
            ref_cache[t_ref] = (a, torus_w2(a[:half], a[half:2 * half]))
            common = {"benchmark": "pita_peptide_stages", "method": "remd", "target": target.name,
                      "temperature": t_ref, "n": len(x), "n_effective": refs[t_ref][1], "machine": machine,
                      "command": command, "reference": str(args.reference)}
            rows.extend(_set_rows(common, x, masks, target, t_ref))
            rows.append({**common, "metric": "torus_w2_half_vs_half", "value": ref_cache[t_ref][1],
                         "n": half})
        return t_ref, *ref_cache[t_ref]

    for label, folder in runs:
        cfg = load_yaml(folder / "config.yaml")
        if target is None:
            target = make_target(cfg["target"])
            if not getattr(target, "is_peptide", False):
                raise BadInput(f"--runs {label}: target {cfg['target']} is not a peptide")
        elif cfg["target"] != target.name:
            raise BadInput(f"--runs {label}: target {cfg['target']}, not {target.name} like the first run")
        for k, temp in enumerate(cfg["temperatures"]):
            f = folder / f"stage_{k}" / "samples.npz"
            if not f.is_file():
                continue
            ref = reference_at(float(temp))
            if ref is None and refs:
                print(f"{label} stage {k} (T={temp:g}): no reference temperature within 0.5 K",
                      file=sys.stderr)
                continue
            x = Samples.load(f).x.numpy()
            a, masks = dihedral_view(x, target.topology)
            common = {"benchmark": "pita_peptide_stages", "method": label, "target": target.name,
                      "temperature": float(temp), "stage": k, "n": len(x), "machine": machine,
                      "command": command, "run": str(folder)}
            first = len(rows)
            if ref is not None:
                common["reference_temperature"] = ref[0]
            rows.extend(_set_rows(common, x, masks, target, float(temp)))
            if ref is not None:  # without a reference: the stage's own basins and energy gap only
                _, a_ref, floor = ref
                m = min(len(a), len(a_ref))
                rng = np.random.default_rng(k)
                a_sub = a[rng.choice(len(a), m, replace=False)] if len(a) > m else a
                ar_sub = a_ref[np.linspace(0, len(a_ref) - 1, m).astype(int)] if len(a_ref) > m else a_ref
                rows.append({**common, "metric": "torus_w2", "value": torus_w2(a_sub, ar_sub), "n": m,
                             "noise_floor": floor})
            print(f"{label} stage {k} (T={temp:g}): " + ", ".join(
                f"{r['metric']} {r['value']:.3f}" for r in rows[first:]), file=sys.stderr)
    atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    print(f"wrote {args.out} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
