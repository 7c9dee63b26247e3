"""Chirality check for peptide samples (SPEC §8): mirrored samples and their flip.

Every residue with atoms N, CA, C, CB is a chiral centre. For L-amino acids the improper
dihedral (N, CA, C, CB) is negative (≈ −122° in the openmmtools alanine dipeptide and for both
alanines of ``al3.pdb``; every frame of the held-out 300 K set lies in [−141°, −107°]).
Checked independently by the CIP rule: in all 10,000 held-out frames N → C → CB run
counterclockwise seen with HA pointing away (S, i.e. L-alanine), and 99.55 % have φ < 0, as L
residues do (the reflected set: 99.55 % φ > 0). A reflection negates every dihedral, so a mirror
image has all signs positive. The force field is achiral (torsion phases 0 or π), so the energy
cannot tell the two apart — samplers that start from symmetric noise produce both
(``tests/test_chirality.py`` checks E(reflect(x)) = E(x): to float64 rounding for ``al3`` and
``aldp-pita``; for ``aldp-fab`` to ≤ 5e-4 kJ/mol, since its prmtop stores the phase π as 3.141594,
and Σ 2k|sin φ₀| over its torsions bounds the difference).

``fix_chirality`` reflects samples whose chiral centres are *all* D (``reflect``: z ↦ 2z̄ − z about
the configuration's centroid, which it keeps), which maps them to the L enantiomer of the same
energy; samples with mixed L/D centres (a diastereomer: a different energy, not reachable by a
reflection) cannot be fixed and are reported (``chirality_masks``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boltzpath.io.trajectories import dihedrals_of, positions_nm

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
    return np.sign(dihedrals_of(x, topology, chiral_centres(topology))) == -L_SIGN


def reflect(x, n_atoms: int, centre: bool = True):
    """Mirror images z ↦ 2z̄ − z of configurations (n, 3·n_atoms) or (n, n_atoms, 3), numpy or torch,
    shape and dtype kept. z̄ is each configuration's centroid (the plain mean over atoms, the centring
    of the diffusion models' ``CoMProjection``), so the centroid is unchanged. ``centre=False``
    reflects vectors (forces, scores): z ↦ −z."""
    shape = x.shape
    p = x.reshape(shape[0], n_atoms, 3)
    z = p[..., 2:3]
    if centre:
        zbar = z.mean(1, keepdims=True) if isinstance(z, np.ndarray) else z.mean(1, keepdim=True)
        new_z = 2 * zbar - z
    else:
        new_z = -z
    parts = (p[..., :2], new_z)
    out = np.concatenate(parts, axis=-1) if isinstance(p, np.ndarray) else _torch_cat(parts)
    return out.reshape(shape)


def _torch_cat(parts):
    import torch

    return torch.cat(parts, dim=-1)


def chirality_masks(x, topology: Any) -> tuple[dict, np.ndarray, np.ndarray]:
    """(``chirality_report``, all-D mask (n,), mixed mask (n,)) from one dihedral evaluation."""
    d = d_centres(x, topology)
    if d.shape[1] == 0:
        none = np.zeros(d.shape[0], dtype=bool)
        return _report(d), none, none
    all_d, any_d = d.all(axis=1), d.any(axis=1)
    return _report(d), all_d, any_d & ~all_d


def chirality_report(x, topology: Any) -> dict:
    """Fractions of samples that are all-L, mirrored (all D) and mixed (some D, some L)."""
    return _report(d_centres(x, topology))


def _report(d: np.ndarray) -> dict:
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
    """(positions (n, 3·n_atoms) float32 with all-D samples reflected (``reflect``), flipped mask (n,))."""
    pos = positions_nm(x, topology.n_atoms).copy()
    _, flip, _ = chirality_masks(pos, topology)
    pos[flip] = reflect(pos[flip], topology.n_atoms)
    return pos.reshape(pos.shape[0], -1), flip
