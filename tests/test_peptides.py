"""Peptide targets: facts, reduced units, tempering, held-out energies, sampling through the torch energy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openmm")
mdtraj = pytest.importorskip("mdtraj")

from boltzpath import make_target  # noqa: E402
from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.mcmc.registry import run_method  # noqa: E402
from boltzpath.targets.openmm_torch import dihedral_angles  # noqa: E402
from boltzpath.targets.peptides import PeptideTarget, make_peptide_target  # noqa: E402

pytestmark = pytest.mark.molecules

HOLDOUT = Path(__file__).resolve().parents[2] / "shared" / "holdout"
FACTS = {"aldp-fab": (22, 10, 1), "aldp-pita": (22, 10, 1), "al3": (32, 15, 2)}  # atoms, heavy, alanines


@pytest.fixture(scope="module")
def targets():
    return {name: make_target(name) for name in FACTS}


def test_shapes_units_and_dihedral_atoms(targets):
    for name, (n_atoms, n_heavy, n_ala) in FACTS.items():
        t = targets[name]
        assert isinstance(t, PeptideTarget) and t.is_peptide
        assert (t.n_atoms, t.dim, len(t.heavy_atom_indices)) == (n_atoms, 3 * n_atoms, n_heavy)
        assert t.initial_positions_nm.shape == (n_atoms, 3)
        assert t.topology.n_atoms == n_atoms
        assert t.kt_kj_mol == pytest.approx(2.494339, abs=1e-6)  # SPEC §2, R·300 K
        idx = t.backbone_dihedral_indices()
        names = [[t.topology.atom(int(k)).name for k in row] for row in idx["phi"]]
        assert names == [["C", "N", "CA", "C"]] * n_ala  # one φ per alanine
        names = [[t.topology.atom(int(k)).name for k in row] for row in idx["psi"]]
        assert names == [["N", "CA", "C", "N"]] * n_ala


def test_reduced_energy_tempering_and_counting(targets):
    t = targets["aldp-pita"]
    x = t.prior_sample(6, torch.Generator().manual_seed(0), dtype=torch.float64)
    e_kj = t.energy_kj_mol(x)
    before = t.counter.count
    # E/kT at 300 K equals the OpenMM energy divided by R·300 K (1e-9 relative: float64 round-off)
    np.testing.assert_allclose(t.energy(x).numpy(), t.openmm_energy_kj_mol(x) / t.kt_kj_mol, rtol=1e-9)
    hot = t.at_temperature(600.0)
    assert hot.kt_kj_mol == pytest.approx(2 * t.kt_kj_mol)
    np.testing.assert_allclose(hot.energy(x).numpy(), e_kj.numpy() / hot.kt_kj_mol, rtol=1e-12)
    e, g = hot.energy_and_grad(x)
    assert t.counter.count == before + 18  # shared counter, one per configuration per call
    # the gradient is −F/kT with OpenMM's forces (1e-2 kJ/mol/nm agreement, SPEC §2)
    _, forces = t.openmm_energy_and_forces(x)
    np.testing.assert_allclose(g.numpy() * hot.kt_kj_mol, -forces.reshape(6, -1), atol=1e-2, rtol=0)
    assert float(t.energy_kj_mol(x).sub(e_kj).abs().max()) == 0  # energy_kj_mol is not counted
    assert t.counter.count == before + 18


def test_float32_positions_keep_float64_internals(targets):
    t = targets["aldp-fab"]
    x64 = t.prior_sample(4, torch.Generator().manual_seed(1), dtype=torch.float64)
    e32 = t.energy(x64.float())
    assert e32.dtype == torch.float32
    # float32 rounding of the positions (~3e-8 nm) moves E by ≪ 1e-3 kT; the energy itself is float64 inside
    np.testing.assert_allclose(e32.double().numpy(), t.energy(x64).numpy(), rtol=1e-5)


def test_bad_input():
    with pytest.raises(BadInput, match="unknown peptide"):
        make_peptide_target("aldp-xyz")
    with pytest.raises(BadInput, match="dtype"):
        make_peptide_target("aldp-pita", dtype="float16")
    with pytest.raises(BadInput, match="platform"):
        make_peptide_target("aldp-pita", platform="NoSuchPlatform")
    with pytest.raises(BadInput):
        make_target("aldp-pita", n_particles=3)
    t = make_peptide_target("aldp-pita")
    with pytest.raises(BadInput, match="66"):
        t.energy(torch.zeros(2, 65))


def test_al3_is_l_alanine_like_the_dipeptide(targets):
    # chirality: the improper N–CA–C–CB dihedral has the same sign for every L-alanine; a D residue
    # built by mistake (mirror image) flips it
    def improper_signs(t):
        top = t.topology
        pos = torch.tensor(t.initial_positions_nm[None])
        signs = []
        for res in top.residues:
            if res.name == "ALA":
                idx = [res.atom(n).index for n in ("N", "CA", "C", "CB")]
                signs.append(float(torch.sign(dihedral_angles(pos, torch.tensor([idx]))[0, 0])))
        return signs

    reference = improper_signs(targets["aldp-fab"])
    assert len(reference) == 1
    assert improper_signs(targets["al3"]) == reference * 2


def test_every_start_structure_has_trans_peptide_bonds_and_the_cis_metric_sees_a_flip(targets):
    """The shipped al3.pdb had two cis peptide bonds (ω ≈ −4°, −6°) until 2026-12-03, so all MD from
    it stayed cis. Every target's start must be all trans with the expected bonds; turning the N side
    of one bond by 180° about C–N (a cis isomer, bond lengths unchanged) is reported as cis."""
    from boltzpath.metrics.amides import cis_report, peptide_bond_torsions

    for name, (_, _, n_ala) in FACTS.items():
        t = targets[name]
        quads = peptide_bond_torsions(t.topology)
        names = [[t.topology.atom(int(k)).name for k in row] for row in quads]
        assert len(names) == n_ala + 1 and names[0] == ["CH3", "C", "N", "CA"], name
        assert names[-1][1:3] == ["C", "N"] and names[-1][3] in ("C", "CA"), name
        rep = cis_report(t.initial_positions_nm[None], t.topology)
        assert rep["cis_fraction"] == 0.0 and rep["cis_fraction_per_bond"] == [0.0] * (n_ala + 1), name
    t = targets["al3"]
    x = t.initial_positions_nm.copy()
    _, c, n, _ = peptide_bond_torsions(t.topology)[1]
    bonded = {i: set() for i in range(t.n_atoms)}
    for a, b in t.topology.bonds:
        bonded[a.index].add(b.index)
        bonded[b.index].add(a.index)
    side, stack = {int(n)}, [int(n)]
    while stack:
        for j in bonded[stack.pop()] - side - {int(c)}:
            side.add(j)
            stack.append(j)
    k = (x[n] - x[c]) / np.linalg.norm(x[n] - x[c])
    r = x[sorted(side)] - x[c]
    x[sorted(side)] = x[c] - r + 2 * np.outer(r @ k, k)  # a rotation by π about the C–N axis
    rep = cis_report(x[None], t.topology)
    assert rep["cis_fraction"] == 1.0 and rep["cis_fraction_per_bond"] == [0.0, 1.0, 0.0]


def test_dihedrals_match_mdtraj_on_perturbed_structures(targets):
    t = targets["al3"]
    x = t.prior_sample(5, torch.Generator().manual_seed(2), dtype=torch.float64).reshape(5, t.n_atoms, 3)
    idx = t.backbone_dihedral_indices()
    quads = np.concatenate([idx["phi"], idx["psi"]])
    ours = dihedral_angles(x, torch.tensor(quads)).numpy()
    theirs = mdtraj.compute_dihedrals(mdtraj.Trajectory(x.numpy(), t.topology), quads)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # mdtraj computes in float32


@pytest.mark.skipif(not HOLDOUT.is_dir(), reason="../shared/holdout/ absent (fresh clone): held-out ALDP set")
def test_holdout_aldp_fab_mean_energy(targets):
    t = targets["aldp-fab"]
    ref_top = mdtraj.load(str(HOLDOUT / "aldp_openmmtools.pdb")).topology
    assert [a.name for a in ref_top.atoms] == [a.name for a in t.topology.atoms]  # same atom order
    frames = np.load(HOLDOUT / "aldp_300K_fab_10k_xyz_nm.npy")[::5]
    assert frames.shape == (2000, 22, 3)
    e = t.energy_kj_mol(torch.tensor(frames, dtype=torch.float64).reshape(2000, -1)).numpy()
    # held-out README: mean −96.7, sd 14.0 kJ/mol; ±0.5 is the tolerance (≈ 1.6 standard
    # errors of the mean, but the frames are fixed so the value is deterministic). A wrong GB
    # model (e.g. OBC2 instead of OBC1) or a missing surface term shifts the mean by > 5 kJ/mol.
    assert abs(e.mean() - (-96.7)) < 0.5
    assert abs(e.std() - 14.0) < 0.5


@pytest.mark.parametrize("method, options", [
    ("mala", {"chains": 4, "burn_in": 10, "thin": 2, "step_size": 1e-3}),
    ("langevin", {"chains": 4, "burn_in": 10, "thin": 2, "step_size": 1e-6, "scheme": "ula"}),
])
def test_baseline_samplers_run_on_a_peptide(targets, method, options):
    t = targets["aldp-fab"]
    samples = run_method(method, t, 8, torch.Generator().manual_seed(3), options)
    assert samples.x.shape == (8, 66)
    assert torch.isfinite(torch.as_tensor(samples.x)).all()
    assert torch.isfinite(torch.as_tensor(samples.energy)).all()
    # a few steps from the perturbed start cannot leave the molecule's energy scale: E/kT < 1e3
    assert float(torch.as_tensor(samples.energy).max()) < 1e3
