"""Build the alanine-tripeptide (ACE-ALA-ALA-NME) structure shipped in boltzpath/data/al3.pdb.

Run once, offline: ``.venv/bin/python scripts/build_al3.py``. Starts from the openmmtools alanine
dipeptide (ACE-ALA-NME), renumbers NME so that PDBFixer sees one missing ALA between ALA and NME,
lets PDBFixer build the missing residue and hydrogens, turns every peptide bond trans, then
minimises the result under the ``al3`` force field (amber14-all + implicit/obc1, CutoffNonPeriodic
2 nm, no constraints) so the shipped structure is a low-energy starting point. Writes
boltzpath/data/al3.pdb.

The structure shipped until 2026-12-03 had two cis peptide bonds (ω ≈ −4° and −6°), and MD never
crosses the amide barrier (≈ 90 kJ/mol: 87–94 for a rigid 90° turn of one al3 bond, unrelaxed), so
every trajectory from it stayed cis. PDBFixer's heavy atoms were trans (ω ≈ ±173°), but the amide
hydrogens it adds to the new ALA and to NME sat off the amide plane (O–C–N–H −118° and 85° instead
of 180°, N–H 0.123 nm), and the minimiser turned the peptide planes to meet them. ``make_trans``
therefore sets every peptide bond to ω = 180° (rotating the N-side fragment about the C–N axis: bond
lengths and angles unchanged) and puts each amide H in the plane, anti to O (N–H 0.101 nm along the
bisector of C–N and Y–N); it also turns every alanine to (φ, ψ) = (−80°, 150°), the β basin
(with the trans fix and the minimisation alone the second alanine ended at φ = +58°, the rare αL
side), rotating the C-terminal side about N–CA and CA–C, which keeps each residue's chirality. Then
the minimisation.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import openmmtools
from pdbfixer import PDBFixer
from pdbfixer.pdbfixer import Sequence

DIPEPTIDE = Path(os.path.dirname(openmmtools.__file__)) / "data/alanine-dipeptide-gbsa/alanine-dipeptide.pdb"
OUT = Path(__file__).resolve().parents[1] / "boltzpath" / "data" / "al3.pdb"
PHI_START, PSI_START = np.radians(-80.0), np.radians(150.0)  # every ALA starts in the β basin


def _dihedral(p: np.ndarray, quad) -> float:
    b0, b1, b2 = p[quad[0]] - p[quad[1]], p[quad[2]] - p[quad[1]], p[quad[3]] - p[quad[2]]
    b1n = b1 / np.linalg.norm(b1)
    v, w = b0 - (b0 @ b1n) * b1n, b2 - (b2 @ b1n) * b1n
    return float(np.arctan2(np.cross(b1n, v) @ w, v @ w))


def _rotate(p: np.ndarray, moving: list[int], origin: np.ndarray, axis: np.ndarray, angle: float) -> None:
    k = axis / np.linalg.norm(axis)
    r = p[moving] - origin
    p[moving] = origin + (r * np.cos(angle) + np.cross(k, r) * np.sin(angle)
                          + np.outer(r @ k, k) * (1 - np.cos(angle)))


def make_trans(topology, positions_nm: np.ndarray) -> np.ndarray:
    """Every peptide bond C(i)–N(i+1) set to ω = 180° by rotating the N side about the bond, its
    amide H put in the peptide plane anti to O (module docstring)."""
    from boltzpath.metrics.amides import peptide_bond_torsions

    p = positions_nm.copy()
    neighbours: dict[int, set[int]] = {}
    for a, b in topology.bonds():
        neighbours.setdefault(a.index, set()).add(b.index)
        neighbours.setdefault(b.index, set()).add(a.index)
    md_top = _mdtraj_topology(topology)
    for quad in peptide_bond_torsions(md_top):
        c, n = int(quad[1]), int(quad[2])
        moving = _side(neighbours, n, c)  # the atoms reached from N without crossing N–C
        _rotate(p, sorted(moving), p[c], p[n] - p[c], np.pi - _dihedral(p, quad))
        assert abs(abs(_dihedral(p, quad)) - np.pi) < 1e-6
        h = [j for j in neighbours[n] if md_top.atom(j).element.symbol == "H"]
        if len(h) == 1:  # the amide H: in the plane, anti to O
            u = _unit(p[n] - p[c]) + _unit(p[n] - p[quad[3]])
            p[h[0]] = p[n] + 0.101 * _unit(u)
    for res in topology.residues():  # backbone in the β basin: rotate the C-terminal side
        names = {a.name: a.index for a in res.atoms()}
        if res.name != "ALA":
            continue
        prev_c = [j for j in neighbours[names["N"]] if md_top.atom(j).name == "C"][0]
        next_n = [j for j in neighbours[names["C"]] if md_top.atom(j).name == "N"][0]
        for quad, axis_from, axis_to, target in (
                ([prev_c, names["N"], names["CA"], names["C"]], names["N"], names["CA"], PHI_START),
                ([names["N"], names["CA"], names["C"], next_n], names["CA"], names["C"], PSI_START)):
            moving = _side(neighbours, axis_to, axis_from) - {axis_to}
            _rotate(p, sorted(moving), p[axis_to], p[axis_to] - p[axis_from], target - _dihedral(p, quad))
            assert abs(np.angle(np.exp(1j * (_dihedral(p, quad) - target)))) < 1e-6
    return p


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _side(neighbours: dict[int, set[int]], start: int, blocked: int) -> set[int]:
    """Atoms reached from ``start`` without crossing the bond to ``blocked``."""
    seen, stack = {start}, [start]
    while stack:
        for j in neighbours[stack.pop()]:
            if j != blocked and j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def _mdtraj_topology(topology):
    import mdtraj

    return mdtraj.Topology.from_openmm(topology)


def main() -> int:
    lines = []
    for line in DIPEPTIDE.read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")) and line[17:20] == "NME":
            line = line[:22] + f"{4:4d}" + line[26:]
        if line.startswith(("ATOM", "HETATM")) and line[12:16].strip().startswith("H"):
            continue  # PDBFixer re-adds all hydrogens with consistent names
        lines.append(line)
    fixer = PDBFixer(pdbfile=io.StringIO("\n".join(lines) + "\n"))
    chain_id = next(fixer.topology.chains()).id
    fixer.sequences = [Sequence(chain_id, ["ACE", "ALA", "ALA", "NME"])]
    fixer.findMissingResidues()
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc1.xml")
    system = forcefield.createSystem(fixer.topology, nonbondedMethod=app.CutoffNonPeriodic,
                                     nonbondedCutoff=2.0 * unit.nanometer, constraints=None,
                                     rigidWater=False)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    start = make_trans(fixer.topology, np.asarray(fixer.positions.value_in_unit(unit.nanometer)))
    context.setPositions(start * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 5000)
    state = context.getState(getEnergy=True, getPositions=True)
    residues = [r.name for r in fixer.topology.residues()]
    print(f"residues {residues}, atoms {fixer.topology.getNumAtoms()}, minimised energy "
          f"{state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole):.3f} kJ/mol")
    with open(OUT, "w") as handle:
        app.PDBFile.writeFile(fixer.topology, state.getPositions(), handle, keepIds=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
