"""Cis peptide bonds in peptide samples: a reference-free check of the backbone's local structure.

Every peptide bond C(i)–N(i+1) joins two residues; its torsion ω = dihedral(X, C, N, Y), with X the
carbon bonded to C (CA, or the acetyl cap's CH3) and Y the carbon bonded to N (CA, or the
N-methyl cap's C), is ≈ 180° (trans) in every frame of the held-out 300 K alanine-dipeptide set and
in the structures the targets are built from. A rigid turn of one al3 bond to cis (|ω| < 90°)
costs 25–43 kJ/mol (10–17 kT at 300 K, unrelaxed), and the barrier between
the two (87–94 kJ/mol for a rigid 90° turn) is never crossed by MD or by MALA relaxation at these
temperatures — so a cis bond in a sample is a defect its generator put there, not a
thermal fluctuation. Unlike an all-D sample (``metrics.chirality``), nothing maps it back exactly:
it is reported, not fixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boltzpath.io.trajectories import dihedrals_of


def _heavy(atom) -> bool:
    return atom.element is not None and atom.element.symbol != "H"


def peptide_bond_torsions(topology: Any) -> np.ndarray:
    """(n_bonds, 4) atom indices (X, C, N, Y) of every peptide bond C–N between two residues."""
    neighbours: dict[int, list] = {}
    for a, b in topology.bonds:
        neighbours.setdefault(a.index, []).append(b)
        neighbours.setdefault(b.index, []).append(a)
    quads = []
    for a, b in topology.bonds:
        c, n = (a, b) if a.name == "C" and b.name == "N" else (b, a)
        if c.name != "C" or n.name != "N" or c.residue.index == n.residue.index:
            continue
        x = [o for o in neighbours[c.index] if _heavy(o) and o.index != n.index and o.element.symbol == "C"]
        y = [o for o in neighbours[n.index] if _heavy(o) and o.index != c.index and o.element.symbol == "C"]
        if len(x) == 1 and len(y) == 1:
            quads.append([x[0].index, c.index, n.index, y[0].index])
    return np.asarray(quads, dtype=np.int64).reshape(-1, 4)


def cis_bonds(x, topology: Any) -> np.ndarray:
    """(n, n_bonds) bool: True where the peptide bond is cis (|ω| < 90°)."""
    return np.abs(dihedrals_of(x, topology, peptide_bond_torsions(topology))) < np.pi / 2


def cis_report(x, topology: Any) -> dict:
    """Fraction of samples with any cis peptide bond, and the cis fraction of each bond."""
    cis = cis_bonds(x, topology)
    n = int(cis.shape[0])
    any_cis = float(cis.any(axis=1).mean()) if n and cis.shape[1] else 0.0
    return {"n": n, "n_bonds": int(cis.shape[1]), "cis_fraction": any_cis,
            "cis_fraction_per_bond": [float(v) for v in cis.mean(axis=0)] if n else []}
