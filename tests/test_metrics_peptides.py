"""Peptide metrics: dihedrals, Ramachandran/torsion KL, torus W2, chirality, the full metric dict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

md = pytest.importorskip("mdtraj")

from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.metrics.chirality import chirality_report, fix_chirality  # noqa: E402
from boltzpath.metrics.peptides import (  # noqa: E402
    PSEUDOCOUNT,
    backbone_dihedrals,
    basin_masks,
    basin_matched_torus_w2,
    ramachandran_kl,
    torsion_kl,
    torus_w2,
    within_basin_torus_w2,
    wrap_angle,
)

HOLDOUT = Path(__file__).resolve().parents[2] / "shared" / "holdout"
ALDP_PDB = HOLDOUT / "aldp_openmmtools.pdb"
DEG = np.pi / 180.0


@pytest.fixture(scope="module")
def aldp():
    """(topology, positions (1, 66) nm) of alanine dipeptide from the target (openmmtools files)."""
    from boltzpath.molecules.system import load_molecular_system

    pytest.importorskip("openmm")
    mol = load_molecular_system("aldp-fab")
    return mol.topology, mol.positions_nm.reshape(1, -1).astype(np.float32)


def test_dihedrals_of_a_constructed_conformation(aldp):
    # Place the five backbone atoms by hand: N at the origin, CA on +x, C at (1, 1, 0); C(ACE) at +z
    # and N(NME) at C + z. Newman projections (IUPAC sign: clockwise = positive) give
    # φ(C', N, CA, C) = −90° and ψ(N, CA, C, N') = +90°. A sign or atom-order mistake flips or
    # shifts these by ≥ 90°; the tolerance is float32 rounding.
    topology, x = aldp
    pos = x.reshape(22, 3).copy()
    names = {(a.residue.index, a.name): a.index for a in topology.atoms}
    pos[names[(0, "C")]] = (0.0, 0.0, 0.1)
    pos[names[(1, "N")]] = (0.0, 0.0, 0.0)
    pos[names[(1, "CA")]] = (0.1, 0.0, 0.0)
    pos[names[(1, "C")]] = (0.1, 0.1, 0.0)
    pos[names[(2, "N")]] = (0.1, 0.1, 0.1)
    phi, psi = backbone_dihedrals(pos.reshape(1, -1), topology)
    assert phi.shape == psi.shape == (1, 1)
    assert phi[0, 0] == pytest.approx(-90 * DEG, abs=1e-5)
    assert psi[0, 0] == pytest.approx(90 * DEG, abs=1e-5)


def test_wrap_angle():
    assert wrap_angle(np.array([358 * DEG]))[0] == pytest.approx(-2 * DEG)
    assert wrap_angle(np.array([-181 * DEG]))[0] == pytest.approx(179 * DEG)


def test_torus_w2_goes_the_short_way_round():
    # +179° vs −179° are 2° apart on the circle, not 358°.
    a = np.array([[179 * DEG, 0.0]])
    b = np.array([[-179 * DEG, 0.0]])
    assert torus_w2(a, b) == pytest.approx(2 * DEG, abs=1e-12)
    # {10°, 170°} vs {−10°, −170°}: the optimal plan pairs 10↔−10 and 170↔−170 (20° each) → W2 = 20°.
    # Without wrap-around 170↔−170 would cost 340° and W2 = sqrt((20² + 340²)/2)° ≈ 241°.
    a = np.array([[10.0], [170.0]]) * DEG
    b = np.array([[-10.0], [-170.0]]) * DEG
    assert torus_w2(a, b) == pytest.approx(20 * DEG, abs=1e-12)
    assert torus_w2(a, a) == pytest.approx(0.0, abs=1e-12)


def test_basin_matched_and_within_basin_torus_w2_separate_populations_from_shapes():
    # Reference: 90 points at (−80°, 70°) (C7eq) and 10 at (−80°, −40°) (αR). Samples with the
    # same points in the other proportion (50/50): plain torus W2 = √(0.4·(110°)²) — the αR excess
    # must travel 110° in ψ — but the basin-matched W2 and each within-basin W2 are exactly 0.
    # Moving the sample's αR points by 10° in φ makes within-αR W2 = 10° and the matched W2
    # √(0.1·(10°)²); a C7eq-free sample set has no matched W2 (None).
    ref = np.array([[-80.0, 70.0]] * 90 + [[-80.0, -40.0]] * 10) * DEG
    smp = np.array([[-80.0, 70.0]] * 50 + [[-80.0, -40.0]] * 50) * DEG
    mr, ms = basin_masks(ref[:, 0], ref[:, 1]), basin_masks(smp[:, 0], smp[:, 1])
    assert torus_w2(smp, ref) == pytest.approx(np.sqrt(0.4) * 110 * DEG, rel=1e-9)
    assert basin_matched_torus_w2(smp, ms, ref, mr) == pytest.approx(0.0, abs=1e-6)  # √ of OT round-off
    for name in ("c7eq_c5", "alpha_r"):
        assert within_basin_torus_w2(smp, ms[name], ref, mr[name]) == pytest.approx(0.0, abs=1e-9)
    shifted = smp.copy()
    shifted[50:, 0] += 10 * DEG
    ms2 = basin_masks(shifted[:, 0], shifted[:, 1])
    assert within_basin_torus_w2(shifted, ms2["alpha_r"], ref, mr["alpha_r"]) == pytest.approx(10 * DEG)
    assert basin_matched_torus_w2(shifted, ms2, ref, mr) == pytest.approx(np.sqrt(0.1) * 10 * DEG)
    only_alpha = smp[50:]
    ma = basin_masks(only_alpha[:, 0], only_alpha[:, 1])
    assert basin_matched_torus_w2(only_alpha, ma, ref, mr) is None
    assert within_basin_torus_w2(only_alpha, ma["c7eq_c5"], ref, mr["c7eq_c5"]) is None


def test_kl_of_identical_sets_is_zero_and_of_a_missing_mode_is_large():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-np.pi, np.pi, size=(500, 2))
    assert ramachandran_kl(angles, angles) == pytest.approx(0.0, abs=1e-12)
    assert torsion_kl(angles[:, 0], angles[:, 0]) == pytest.approx(0.0, abs=1e-12)
    # Reference: half the mass in each of two bins; samples: all in the first. By hand,
    # KL(ref‖samples) = ½ ln(½ / 1) + ½ ln(½ / ε) with ε the pseudocount; the pseudocount's
    # renormalisation changes this by O(bins·ε) = 1e-4 — the tolerance.
    ref = np.array([0.01] * 50 + [1.01] * 50)
    samples = np.full(100, 0.01)
    expected = 0.5 * np.log(0.5) + 0.5 * np.log(0.5 / PSEUDOCOUNT)
    assert torsion_kl(samples, ref) == pytest.approx(expected, abs=1e-3)


def test_mirrored_conformation_is_detected_and_flipped_back(aldp):
    topology, x = aldp
    mirrored = x.reshape(1, 22, 3).copy()
    mirrored[..., 0] *= -1.0  # reflection through the yz plane: L-alanine → D-alanine
    both = np.concatenate([x, mirrored.reshape(1, -1)])
    report = chirality_report(both, topology)
    assert report["n_centres"] == 1
    assert report["mirrored_fraction"] == 0.5 and report["l_fraction"] == 0.5
    fixed, flipped = fix_chirality(both, topology)
    assert flipped.tolist() == [False, True]
    assert chirality_report(fixed, topology)["mirrored_fraction"] == 0.0
    # the flip is a reflection (z ↦ −z), so all interatomic distances of the mirror image are kept
    d = md.compute_distances(md.Trajectory(fixed.reshape(2, 22, 3), topology), [[0, 8], [8, 14], [4, 16]])
    np.testing.assert_allclose(d[0], d[1], atol=1e-6)


def test_energy_is_mirror_symmetric(aldp):
    # the AMBER force field is achiral (torsion phases 0 or π), which is why samplers produce D forms
    # and why the chirality check exists: a reflected conformation has the same energy (1e-3 kJ/mol).
    from boltzpath import make_target

    target = make_target("aldp-fab")
    _, x = aldp
    mirrored = x.reshape(1, 22, 3).copy()
    mirrored[..., 2] *= -1.0
    e = target.energy_kj_mol(torch.from_numpy(np.concatenate([x, mirrored.reshape(1, -1)])).double())
    assert float(e[0]) == pytest.approx(float(e[1]), abs=1e-3)


@pytest.fixture(scope="module")
def holdout_frames():
    f = HOLDOUT / "aldp_300K_fab_10k_xyz_nm.npy"
    if not f.is_file():
        pytest.skip("../shared/holdout/ is absent (evaluation-only reference data)")
    return np.load(f).reshape(10_000, -1)[:800]


def test_peptide_metrics_of_the_reference_against_itself(holdout_frames):
    # Samples = reference (same frames, same size, no OT subsampling): every distance and KL is 0 —
    # this fails if the samples' energies (E/kT from the record) and the reference energies
    # (recomputed from positions) disagree in units, or the two sides get different features.
    # Half of the samples are mirrored: they must be detected (fraction 0.5 exactly) and flipped
    # before the other metrics, so the distances stay 0.
    from boltzpath import make_target
    from boltzpath.metrics.peptide_suite import peptide_metrics

    target = make_target("aldp-fab")
    x = holdout_frames
    with torch.no_grad():
        energy = target.energy(torch.from_numpy(x)).double()
    mixed = x.reshape(-1, 22, 3).copy()
    mixed[::2, :, 2] *= -1.0
    samples = Samples(x=torch.from_numpy(mixed.reshape(len(x), -1)), energy=energy)
    m = peptide_metrics(
        samples, target, x, generator=torch.Generator().manual_seed(0), max_n=800, max_n_ot=800
    )
    assert m["mirrored_fraction"]["value"] == 0.5
    for name in ("ramachandran_kl", "kl_phi", "kl_psi", "torus_w2", "tica_w2", "energy_w1", "energy_w2"):
        assert m[name]["value"] == pytest.approx(0.0, abs=1e-4), name
        assert m[name]["noise_floor"] > 0, name  # two disjoint halves of the reference differ
        assert m[name]["n"] > 0 and "convention" in m[name]
    assert m["phi_positive_fraction"]["value"] == m["phi_positive_fraction"]["reference_value"]


def test_plot_peptide_writes_three_figures(holdout_frames, tmp_path):
    from boltzpath import make_target
    from boltzpath.report.peptide_plots import plot_peptide

    target = make_target("aldp-fab")
    x = holdout_frames[:300]
    with torch.no_grad():
        energy = target.energy(torch.from_numpy(x)).double()
    paths = plot_peptide(
        tmp_path, Samples(x=torch.from_numpy(x), energy=energy), target, holdout_frames[300:]
    )
    assert sorted(p.name for p in paths) == ["energy_hist_kj_mol.png", "ramachandran.png", "tica.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without a reference there is nothing to fit TICA on: two figures
    assert len(plot_peptide(tmp_path / "noref", Samples(x=torch.from_numpy(x), energy=energy), target)) == 2


def test_plot_peptide_comparison_writes_one_figure(holdout_frames, tmp_path):
    # reference + two sample sets (one of them mirrored: flipped back like the metrics) in one PNG
    from boltzpath import make_target
    from boltzpath.report.peptide_plots import plot_peptide_comparison

    target = make_target("aldp-fab")
    sets = [("a", holdout_frames[:200]), ("mirrored", -holdout_frames[200:400])]
    path = plot_peptide_comparison(tmp_path / "fig" / "cmp.png", sets, target, holdout_frames[400:])
    assert path == tmp_path / "fig" / "cmp.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_free_metrics_without_a_reference(holdout_frames):
    from boltzpath import make_target
    from boltzpath.metrics.peptide_suite import peptide_metrics

    target = make_target("aldp-fab")
    x = holdout_frames[:50]
    samples = Samples(x=torch.from_numpy(x), energy=torch.zeros(50, dtype=torch.float64))
    m = peptide_metrics(samples, target, None)
    assert set(m) == {"high_energy_fraction", "mirrored_fraction", "mixed_chirality_fraction",
                      "cis_peptide_fraction"}
    assert m["mirrored_fraction"]["value"] == 0.0
    assert m["cis_peptide_fraction"]["value"] == 0.0 and m["cis_peptide_fraction"]["per_bond"] == [0.0, 0.0]


def test_basin_fractions_per_residue_of_the_shipped_al3_reference():
    # AL3 has two (φ, ψ) pairs; the per-residue helper must equal basin_fractions residue by residue,
    # and on the shipped REMD frames reproduce the fractions docs/reference-data.md states
    # (peptide_references.json: residue 1 C7eq/C5 0.5432, residue 2 αR 0.4163, exact counts of 1900)
    pytest.importorskip("openmm")
    from boltzpath import make_target
    from boltzpath.metrics.bundled import bundled_reference
    from boltzpath.metrics.peptides import basin_fractions, residue_basin_fractions

    target = make_target("al3")
    x, _ = bundled_reference(target)
    per_residue = residue_basin_fractions(x, target.topology)
    assert per_residue == [basin_fractions(x, target.topology, residue=r) for r in (0, 1)]
    assert per_residue[0]["c7eq_c5"] == pytest.approx(1032 / 1900)
    assert per_residue[1]["alpha_r"] == pytest.approx(791 / 1900)
    assert all(abs(sum(f.values()) - 1.0) < 1e-12 for f in per_residue)
