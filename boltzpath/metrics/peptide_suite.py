"""All peptide metrics of one sample set against a reference, with noise floors (see peptides.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from boltzpath.io.samples import Samples
from boltzpath.metrics import peptides as P
from boltzpath.metrics.amides import cis_report
from boltzpath.metrics.chirality import chirality_report, fix_chirality
from boltzpath.metrics.distributions import energy_w, high_energy_fraction
from boltzpath.metrics.tica import TICA_LAGTIME_FRAMES, TicaProjection

_CONV = {
    "ramachandran_kl": (
        f"KL(ref||samples), {P.RAMA_BINS}x{P.RAMA_BINS} (phi,psi) bins, pseudocount {P.PSEUDOCOUNT}"
    ),
    "kl_phi": f"KL(ref||samples) of phi, {P.TORSION_BINS} bins, pseudocount {P.PSEUDOCOUNT}",
    "kl_psi": f"KL(ref||samples) of psi, {P.TORSION_BINS} bins, pseudocount {P.PSEUDOCOUNT}",
    "torus_w2": "exact OT W2 on the (phi,psi) torus, wrap-around distance, sqrt of cost, radians",
    "tica_w2": (
        f"exact OT W2 of the first 2 TICA components (fitted on the reference, lag {TICA_LAGTIME_FRAMES})"
    ),
    "energy_w1": "1-D exact OT W1 of E/kT",
    "energy_w2": "1-D exact OT W2 of E/kT, sqrt of cost",
    "energy_w1_kj_mol": "1-D exact OT W1 of E in kJ/mol",
    "energy_w2_kj_mol": "1-D exact OT W2 of E in kJ/mol, sqrt of cost",
    "phi_positive_fraction": "fraction of samples with phi > 0 (first residue)",
}


def _entry(
    value: float, n: int, convention: str, floor: float | None = None, floor_n: int | None = None, **extra
) -> dict:
    return {
        "value": float(value),
        "n": int(n),
        "convention": convention,
        "noise_floor": None if floor is None else float(floor),
        "noise_floor_n": floor_n,
        **extra,
    }


def compute_peptide_metrics(
    samples: Samples, target: Any, reference, generator: torch.Generator | None, max_n: int, max_n_ot: int
) -> dict:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()) if generator is not None else 0
    rng = np.random.default_rng(seed)
    topology = target.topology
    kt = float(target.kt_kj_mol)

    chir = chirality_report(samples.x, topology)
    metrics: dict[str, dict] = {
        "high_energy_fraction": _entry(
            high_energy_fraction(samples.energy),
            samples.n,
            "fraction of samples with E/kT > 1000 or non-finite",
        ),
        "mirrored_fraction": _entry(
            chir["mirrored_fraction"],
            chir["n"],
            "fraction with every chiral centre D (flipped before other metrics)",
        ),
        "mixed_chirality_fraction": _entry(
            chir["mixed_fraction"], chir["n"], "fraction with both L and D centres (cannot be flipped)"
        ),
    }
    cis = cis_report(samples.x, topology)
    if cis["n_bonds"]:
        metrics["cis_peptide_fraction"] = _entry(
            cis["cis_fraction"], cis["n"],
            "fraction with any peptide bond cis (|omega| < 90 deg, metrics.amides)",
            per_bond=cis["cis_fraction_per_bond"],
        )
    if reference is None:
        return metrics
    idx = P._subsample(rng, samples.n, max_n)
    x, flipped = fix_chirality(samples.x.numpy()[idx], topology)
    e = samples.energy.double().numpy()[idx]
    e = e[np.isfinite(e)]
    ref_full, ref_e_full = P._reference_parts(reference, target)
    n_ref = ref_full.shape[0]
    # TICA is fitted on the whole reference in its given (time) order; too short a reference → no TICA-W2
    tica = TicaProjection(ref_full, topology) if n_ref > TICA_LAGTIME_FRAMES + 2 else None
    # the metric's reference set has the samples' size; the noise floor compares two disjoint
    # reference sets of that size m (fewer when the reference is short: see noise_floor_n)
    ridx = P._subsample(rng, n_ref, min(n_ref, x.shape[0]))
    m = min(x.shape[0], n_ref // 2)
    perm = rng.permutation(n_ref)
    half_a, half_b = perm[:m], perm[m : 2 * m]
    used = np.unique(np.concatenate([ridx, half_a, half_b]))
    ref_e_used = ref_e_full[used] if ref_e_full is not None else P._reduced_energy(target, ref_full[used])
    ref_e_full = np.full(n_ref, np.nan)
    ref_e_full[used] = ref_e_used

    phi, psi = P.backbone_dihedrals(x, topology)
    angles = np.concatenate([phi, psi], 1)
    rphi, rpsi = P.backbone_dihedrals(ref_full[used], topology)
    rangles_full = np.zeros((n_ref, angles.shape[1]))
    rangles_full[used] = np.concatenate([rphi, rpsi], 1)
    rproj_full = np.zeros((n_ref, 2))
    if tica is not None:
        rproj_full[used] = tica.transform(ref_full[used])
    rangles, ref_e = rangles_full[ridx], ref_e_full[ridx]
    n_res = phi.shape[1]

    def rama(a, b):
        return float(
            np.mean([P.ramachandran_kl(a[:, [r, n_res + r]], b[:, [r, n_res + r]]) for r in range(n_res)])
        )

    proj = tica.transform(x) if tica is not None else np.zeros((x.shape[0], 2))
    rproj = rproj_full[ridx]
    n_ot = min(max_n_ot, x.shape[0])
    o_s, o_r = P._subsample(rng, x.shape[0], n_ot), P._subsample(rng, ridx.shape[0], n_ot)
    m_ot = min(max_n_ot, m)
    fa, fb = half_a[:m_ot], half_b[:m_ot]

    def add(name: str, fn: Callable, s, r, floor_a, floor_b, n: int, floor_n: int) -> None:
        floor = fn(floor_a, floor_b) if floor_n > 0 else None
        metrics[name] = _entry(fn(s, r), n, _CONV[name], floor, floor_n or None)

    add("ramachandran_kl", rama, angles, rangles, rangles_full[half_a], rangles_full[half_b], x.shape[0], m)
    add(
        "kl_phi",
        lambda a, b: P.torsion_kl(a[:, :n_res], b[:, :n_res]),
        angles,
        rangles,
        rangles_full[half_a],
        rangles_full[half_b],
        x.shape[0],
        m,
    )
    add(
        "kl_psi",
        lambda a, b: P.torsion_kl(a[:, n_res:], b[:, n_res:]),
        angles,
        rangles,
        rangles_full[half_a],
        rangles_full[half_b],
        x.shape[0],
        m,
    )
    add("torus_w2", P.torus_w2, angles[o_s], rangles[o_r], rangles_full[fa], rangles_full[fb], n_ot, m_ot)
    if tica is not None:
        add("tica_w2", P.euclidean_w2, proj[o_s], rproj[o_r], rproj_full[fa], rproj_full[fb], n_ot, m_ot)
    for p in (1, 2):
        add(
            f"energy_w{p}",
            lambda a, b, p=p: energy_w(a, b, p=p),
            e,
            ref_e,
            ref_e_full[half_a],
            ref_e_full[half_b],
            x.shape[0],
            m,
        )
        add(
            f"energy_w{p}_kj_mol",
            lambda a, b, p=p: kt * energy_w(a, b, p=p),
            e,
            ref_e,
            ref_e_full[half_a],
            ref_e_full[half_b],
            x.shape[0],
            m,
        )
    frac = lambda a, b: float(np.mean(a[:, 0] > 0))  # noqa: E731
    metrics["phi_positive_fraction"] = _entry(
        frac(angles, None), x.shape[0], _CONV["phi_positive_fraction"], reference_value=frac(rangles, None)
    )
    metrics["flipped_in_subsample"] = _entry(
        float(np.mean(flipped)), x.shape[0], "fraction reflected z -> -z"
    )
    return metrics


def peptide_metrics(
    samples: Samples,
    target: Any,
    reference=None,
    generator: torch.Generator | None = None,
    max_n: int = 5000,
    max_n_ot: int = P.MAX_N_OT,
) -> dict:
    """``{name: {"value", "n", "convention", "noise_floor", "noise_floor_n"}}`` for a peptide target.

    ``reference``: a ``Samples`` record, an (n, 3·n_atoms) or (n, n_atoms, 3) array of nm positions, or
    None (then only the reference-free metrics: chirality fractions and the E/kT > 1000 fraction).
    """
    return compute_peptide_metrics(samples, target, reference, generator, max_n, max_n_ot)
