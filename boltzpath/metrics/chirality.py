"""Chirality check for peptide samples (SPEC §8): mirrored samples and their flip.

Every residue with atoms N, CA, C, CB is a chiral centre. For L-amino acids the improper
dihedral (N, CA, C, CB) is negative (≈ −122° in the openmmtools alanine dipeptide; every frame of
the held-out 300 K set lies in [−141°, −107°]). A reflection r ↦ −r negates every dihedral, so a
mirror image has all signs positive. The force field is achiral (torsion phases 0 or π), so the
energy cannot tell the two apart — samplers that start from symmetric noise produce both.

``fix_chirality`` reflects samples whose chiral centres are *all* D (z ↦ −z), which maps them to
the L enantiomer; samples with mixed L/D centres cannot be fixed by a reflection and are reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boltzpath.io.trajectories import positions_nm, samples_to_mdtraj

#: sign of the improper dihedral (N, CA, C, CB) for L residues
L_SIGN = -1.0


def chiral_centres(topology: Any) -> np.ndarray:
    """(n_centres, 4) atom indices (N, CA, C, CB) for every residue that has all four atoms."""
    quads = []
    for res in topology.residues:
        names = {a.name: a.index for a in res.atoms}
        if all(k in names for k in ("N", "CA", "C", "CB")):
            quads.append([names["N"], names["CA"], names["C"], names["CB"]])
    return np.asarray(quads, dtype=np.int64).reshape(-1, 4)


def d_centres(x, topology: Any) -> np.ndarray:
    """(n, n_centres) bool: True where the centre has D (mirrored) chirality."""
    import mdtraj as md

    quads = chiral_centres(topology)
    if quads.shape[0] == 0:
        return np.zeros((positions_nm(x, topology.n_atoms).shape[0], 0), dtype=bool)
    dihedrals = md.compute_dihedrals(samples_to_mdtraj(x, topology), quads)
    return np.sign(dihedrals) == -L_SIGN


def chirality_report(x, topology: Any) -> dict:
    """Fractions of samples that are all-L, mirrored (all D) and mixed (some D, some L)."""
    d = d_centres(x, topology)
    n = d.shape[0]
    if d.shape[1] == 0:
        return {"n": n, "n_centres": 0, "l_fraction": 1.0, "mirrored_fraction": 0.0, "mixed_fraction": 0.0}
    all_d = d.all(axis=1)
    any_d = d.any(axis=1)
    return {
        "n": n,
        "n_centres": int(d.shape[1]),
        "l_fraction": float(np.mean(~any_d)),
        "mirrored_fraction": float(np.mean(all_d)),
        "mixed_fraction": float(np.mean(any_d & ~all_d)),
    }


def fix_chirality(x, topology: Any) -> tuple[np.ndarray, np.ndarray]:
    """(positions (n, 3·n_atoms) float32 with all-D samples reflected z ↦ −z, flipped mask (n,))."""
    pos = positions_nm(x, topology.n_atoms).copy()
    d = d_centres(pos, topology)
    flip = d.all(axis=1) if d.shape[1] else np.zeros(pos.shape[0], dtype=bool)
    pos[flip, :, 2] *= -1.0
    return pos.reshape(pos.shape[0], -1), flip
