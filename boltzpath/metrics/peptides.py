"""Peptide metrics (SPEC §8): backbone φ/ψ, Ramachandran KL, torus W2, TICA-W2, energy W1/W2,
chirality.

Conventions (all angles in radians, energies from ``Samples.energy`` = E/kT at the target
temperature, kJ/mol = E/kT · kT):
- φ/ψ: mdtraj ``compute_phi``/``compute_psi`` (backbone C–N–CA–C and N–CA–C–N), in (−π, π].
- Ramachandran KL = KL(reference ‖ samples) = Σ_k p_k log(p_k/q_k) on a 60×60 histogram of the
  (φ, ψ) torus; each bin probability gets a pseudocount ε = 1e-6 and is renormalised, so empty
  sample bins cost log(p_k/ε) instead of ∞. With several residues the KL is averaged over them.
  ``kl_phi``/``kl_psi``: the same on 1-D 100-bin histograms (the FAB/ASBS torsion KL).
- Torus W2 = √(min_π Σ π_ij d(i,j)²), exact OT (POT ``emd2``) with d² = Σ_angles wrap(Δ)²,
  wrap(Δ) = (Δ + π) mod 2π − π, on at most ``max_n_ot`` = 2000 points per side.
- TICA-W2: see ``metrics/tica.py``; energy W1/W2: exact 1-D OT (``distributions.energy_w``).
- Metrics are computed after ``fix_chirality`` flips all-D (mirrored) samples; the flip rate is
  reported as ``mirrored_fraction`` (SPEC §8: "flip mirrored samples, report the rate").
- ``noise_floor``: the same metric between two disjoint random halves of the reference, at
  m = min(n, n_ref/2) points (reported in ``noise_floor_n``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.io.trajectories import positions_nm, samples_to_mdtraj
from boltzpath.metrics.chirality import chirality_report, fix_chirality
from boltzpath.metrics.distributions import energy_w, high_energy_fraction

RAMA_BINS = 60
TORSION_BINS = 100
PSEUDOCOUNT = 1e-6
MAX_N_OT = 2000


def backbone_dihedrals(x, topology: Any) -> tuple[np.ndarray, np.ndarray]:
    """(φ, ψ), each (n, n_residues_with_the_angle) float64 radians, mdtraj convention."""
    import mdtraj as md

    traj = samples_to_mdtraj(x, topology)
    _, phi = md.compute_phi(traj)
    _, psi = md.compute_psi(traj)
    if phi.shape[1] == 0 or phi.shape[1] != psi.shape[1]:
        raise BadInput("topology has no complete backbone φ/ψ pair")
    return phi.astype(np.float64), psi.astype(np.float64)


def wrap_angle(delta: np.ndarray) -> np.ndarray:
    """Δ mapped to [−π, π): the signed shortest way round the circle."""
    return np.mod(np.asarray(delta, dtype=np.float64) + np.pi, 2 * np.pi) - np.pi


def _kl(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    p = p_counts / p_counts.sum() + PSEUDOCOUNT
    q = q_counts / q_counts.sum() + PSEUDOCOUNT
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def ramachandran_kl(phi_psi, phi_psi_ref, bins: int = RAMA_BINS) -> float:
    """KL(ref ‖ samples) of 2-D (φ, ψ) histograms on [−π, π)²; inputs (n, 2) radians."""
    a, b = np.asarray(phi_psi, dtype=np.float64), np.asarray(phi_psi_ref, dtype=np.float64)
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    hq, _, _ = np.histogram2d(wrap_angle(a[:, 0]), wrap_angle(a[:, 1]), bins=[edges, edges])
    hp, _, _ = np.histogram2d(wrap_angle(b[:, 0]), wrap_angle(b[:, 1]), bins=[edges, edges])
    return _kl(hp.ravel(), hq.ravel())


def torsion_kl(angles, angles_ref, bins: int = TORSION_BINS) -> float:
    """KL(ref ‖ samples) of 1-D angle histograms on [−π, π)."""
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    hq, _ = np.histogram(wrap_angle(np.ravel(angles)), bins=edges)
    hp, _ = np.histogram(wrap_angle(np.ravel(angles_ref)), bins=edges)
    return _kl(hp, hq)


def torus_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) squared torus distances Σ_angles wrap(a_i − b_j)² for angle sets (n, k), (m, k)."""
    d = wrap_angle(np.asarray(a, dtype=np.float64)[:, None, :] - np.asarray(b, dtype=np.float64)[None, :, :])
    return np.sum(d * d, axis=-1)


def _ot_w2(cost: np.ndarray, weights: np.ndarray | None = None) -> float:
    """√ of the exact OT cost between the rows (uniform, or ``weights`` normalised) and the
    uniform columns of ``cost``."""
    import ot

    n, m = cost.shape
    a = np.full(n, 1.0 / n) if weights is None else weights / weights.sum()
    value = ot.emd2(a, np.full(m, 1.0 / m), cost, numItermax=10_000_000)
    return float(np.sqrt(max(float(value), 0.0)))


def torus_w2(angles, angles_ref) -> float:
    """Exact W2 on the torus between two angle sets (n, k) and (m, k) (√ of the OT cost)."""
    return _ot_w2(torus_cost(angles, angles_ref))


def euclidean_w2(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cost = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    return _ot_w2(cost)


#: Ramachandran basins of the first residue (degrees): with φ < 0, "c7eq_c5" (the β / C5 / C7eq
#: region of extended backbones, 50° ≤ ψ or ψ < −150°, across the ψ = ±180° seam) and "alpha_r"
#: (−150° ≤ ψ < 50°, the right-handed helix region with the bridge); "phi_positive" (αL / C7ax).
BASIN_PSI_EDGES_DEG = (-150.0, 50.0)


def basin_masks(phi: np.ndarray, psi: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample, whether one residue's (φ, ψ) in radians lies in the ``c7eq_c5``, ``alpha_r`` or
    ``phi_positive`` basin (``BASIN_PSI_EDGES_DEG``); exactly one is true for each sample."""
    phi, psi = np.degrees(phi), np.degrees(psi)
    lo, hi = BASIN_PSI_EDGES_DEG
    neg = phi < 0
    helix = neg & (psi >= lo) & (psi < hi)
    return {"c7eq_c5": neg & ~helix, "alpha_r": helix, "phi_positive": ~neg}


def basin_matched_torus_w2(angles, masks: dict, angles_ref, masks_ref: dict) -> float | None:
    """Torus W2 with the samples' basins weighted to the reference's basin fractions: sample i in
    basin b gets mass f_ref(b)/n_b. What is left is the error *within* the basins (shape, width,
    sub-basin balance), the part that the basin fractions do not show. None when a basin the
    reference populates has no sample (no weighting can stand in for it)."""
    weights = np.zeros(len(angles))
    for name, ref_mask in masks_ref.items():
        f_ref, mask = float(np.mean(ref_mask)), np.asarray(masks[name])
        if f_ref > 0 and not mask.any():
            return None
        if mask.any():
            weights[mask] = f_ref / mask.sum()
    return _ot_w2(torus_cost(angles, angles_ref), weights)


def within_basin_torus_w2(angles, mask, angles_ref, mask_ref, min_n: int = 10) -> float | None:
    """Torus W2 between the samples and the reference restricted to one basin (each side's own
    members); None when either side has fewer than ``min_n`` of them."""
    mask, mask_ref = np.asarray(mask), np.asarray(mask_ref)
    if mask.sum() < min_n or mask_ref.sum() < min_n:
        return None
    return torus_w2(np.asarray(angles)[mask], np.asarray(angles_ref)[mask_ref])


def _basins(phi: np.ndarray, psi: np.ndarray) -> dict[str, float]:
    """Basin fractions of one residue's (φ, ψ) in radians (``basin_masks``)."""
    return {name: float(np.mean(mask)) for name, mask in basin_masks(phi, psi).items()}


BASIN_NAMES = ("c7eq_c5", "alpha_r", "phi_positive")


def backbone_strata(x, topology: Any) -> np.ndarray:
    """Per sample, an integer naming its backbone basin on every residue (``basin_masks``), Σ_r
    label_r·3^r with labels in ``BASIN_NAMES`` order; all-D samples are labelled as their L mirror
    image (a reflection maps (φ, ψ) to (−φ, −ψ)), so the stratum does not depend on chirality."""
    x, _ = fix_chirality(x, topology)
    phi, psi = backbone_dihedrals(x, topology)
    codes = np.zeros(len(x), dtype=np.int64)
    for r in range(phi.shape[1]):
        masks = basin_masks(phi[:, r], psi[:, r])
        label = sum(i * masks[name].astype(np.int64) for i, name in enumerate(BASIN_NAMES))
        codes += label * 3 ** r
    return codes


def basin_fractions(x, topology: Any, residue: int = 0) -> dict[str, float]:
    """Fractions of samples in the ``c7eq_c5``, ``alpha_r`` and ``phi_positive`` basins of one
    residue's (φ, ψ) (``BASIN_PSI_EDGES_DEG``; default the first); the three sum to 1."""
    phi, psi = backbone_dihedrals(x, topology)
    return _basins(phi[:, residue], psi[:, residue])


def residue_basin_fractions(x, topology: Any) -> list[dict[str, float]]:
    """``basin_fractions`` of every residue, in order (the dihedrals computed once)."""
    phi, psi = backbone_dihedrals(x, topology)
    return [_basins(phi[:, r], psi[:, r]) for r in range(phi.shape[1])]


def _subsample(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)


def _reference_parts(reference, target: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(positions (n, 3·n_atoms) float32 nm, energies E/kT at the target temperature or None)."""
    if isinstance(reference, Samples):
        t_ref = reference.info.get("temperature_kelvin")
        same_t = t_ref is None or abs(float(t_ref) - float(target.temperature)) < 1e-6
        energy = reference.energy.numpy().astype(np.float64) if same_t else None
        return positions_nm(reference, target.n_atoms).reshape(reference.n, -1), energy
    return positions_nm(reference, target.n_atoms).reshape(len(reference), -1), None


def _reduced_energy(target: Any, x: np.ndarray) -> np.ndarray:
    """E/kT at the target temperature for positions (n, dim) nm, on a private evaluation counter."""
    from boltzpath.metrics.energies import uncounted_energy

    return uncounted_energy(target, torch.as_tensor(x, dtype=torch.float32)).numpy()


__all__ = [
    "backbone_dihedrals",
    "basin_fractions",
    "wrap_angle",
    "ramachandran_kl",
    "torsion_kl",
    "torus_cost",
    "torus_w2",
    "euclidean_w2",
    "chirality_report",
    "fix_chirality",
    "energy_w",
    "high_energy_fraction",
]
