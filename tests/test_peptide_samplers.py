"""MALA, Langevin, PT and DiGS on ``aldp-fab`` at their peptide defaults (issue 11, part 3).

The failure these tests guard against: with the generic defaults, DiGS proposed Gaussian moves of
0.05–1 nm on every coordinate of a molecule whose bonds fluctuate by ~0.003 nm, never accepted one,
and its inner MALA barely moved — all samples stayed at the start (φ ≈ ψ ≈ ±180°, Ramachandran KL
8.6 against the held-out 300 K set).

Basins (``metrics.peptides.basin_fractions``): the held-out 300 K set has c7eq_c5 = 0.854,
alpha_r = 0.141, phi_positive = 0.0045. The checks below only ask that both φ < 0 basins hold
mass — c7eq_c5 ≥ 0.5 and alpha_r ≥ 0.02 (≥ 4 of 200 samples) — not that the weights are right:
16 chains of this length cross between basins a few times at most, so the fractions are those of
a handful of effectively independent chains (a sampler with 16 perfectly independent chains would
put none in αR with probability 0.86¹⁶ ≈ 0.09 at a given instant). A sampler stuck at the start
gives alpha_r = 0 and fails. Physical sanity for every sample: E/kT ≤ 1000 (the quality gate's
"exploded" threshold) and every bond within 0.02 nm of its rest length (the thermal spread of a
bond, √(kT/k), is ≤ 0.003 nm; a broken or overlapping bond is off by ≫ 0.02 nm).

The fast tests take ≲ 20 s each on one core; reaching αR with MALA, PT or DiGS needs their full
defaults (1.6e5 evaluations for MALA, 2.7e5 for PT and DiGS: 1.5–2.5 minutes), so those are ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openmm", reason="needs OpenMM (the [molecules] extra)")
pytest.importorskip("mdtraj", reason="needs mdtraj (the [molecules] extra)")

from boltzpath import make_target  # noqa: E402
from boltzpath.mcmc.registry import method_config, run_method  # noqa: E402
from boltzpath.metrics.peptides import basin_fractions  # noqa: E402

pytestmark = pytest.mark.molecules

MIN_C7EQ_C5 = 0.5
MIN_ALPHA_R = 0.02
MAX_BOND_DEVIATION_NM = 0.02
MAX_ENERGY_KT = 1000.0


@pytest.fixture(scope="module")
def aldp():
    return make_target("aldp-fab")


def bond_table(target) -> tuple[np.ndarray, np.ndarray]:
    """(bonded atom pairs (m, 2), rest lengths r0 (m,) nm) from the System's HarmonicBondForce."""
    import openmm

    pairs, r0 = [], []
    for force in target.openmm_system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for k in range(force.getNumBonds()):
                i, j, length, _ = force.getBondParameters(k)
                pairs.append((i, j))
                r0.append(length.value_in_unit(openmm.unit.nanometer))
    return np.array(pairs), np.array(r0)


def assert_physical(target, samples) -> None:
    energy = samples.energy.double()
    assert torch.isfinite(energy).all() and torch.isfinite(samples.x).all()
    assert float(energy.max()) <= MAX_ENERGY_KT
    pos = samples.x.double().numpy().reshape(samples.n, target.n_atoms, 3)
    pairs, r0 = bond_table(target)
    r = np.linalg.norm(pos[:, pairs[:, 0]] - pos[:, pairs[:, 1]], axis=-1)
    assert len(r0) == 21 and np.abs(r - r0).max() < MAX_BOND_DEVIATION_NM


def assert_both_basins(target, samples) -> dict:
    frac = basin_fractions(samples.x.numpy(), target.topology)
    assert frac["c7eq_c5"] >= MIN_C7EQ_C5, frac
    assert frac["alpha_r"] >= MIN_ALPHA_R, frac
    return frac


def test_peptide_defaults_apply_to_peptides_only(aldp):
    mala = method_config("mala", None, target=aldp)
    assert (mala.chains, mala.step_size) == (16, 1e-6)
    assert method_config("mala", {"step_size": 1e-5}, target=aldp).step_size == 1e-5  # the user wins
    assert method_config("langevin", None, target=aldp).step_size == 2e-3
    toy = make_target("gmm40")
    for name in ("mala", "langevin", "pt", "digs", "hmc"):
        assert method_config(name, None, target=toy) == method_config(name)  # toy defaults unchanged
    digs = method_config("digs", None, target=aldp)
    scales = [s / (1 - s * s) ** 0.5 for s in digs.noise.resolve(aldp.name)]
    assert scales[0] == pytest.approx(5e-4, rel=1e-6) and max(scales) <= 0.0201  # nm, not 0.05–1 nm


def test_langevin_defaults_visit_both_basins(aldp):
    # peptide defaults: BAOAB h = 2e-3, 16 chains × 2000 warm-up steps (≈ 3.4e4 evaluations, ~15 s)
    samples = run_method("langevin", aldp, 200, torch.Generator().manual_seed(0))
    assert samples.info["energy_evaluations"] <= 40_000
    assert_both_basins(aldp, samples)
    assert_physical(aldp, samples)
    # BAOAB at h = 2e-3 samples the held-out energy level (−96.7 kJ/mol = −38.8 kT; sd 5.6 kT)
    assert abs(float(samples.energy.double().mean()) - (-38.8)) < 4.0


def test_digs_gibbs_steps_are_accepted(aldp):
    # the generic noise levels (σ/α 0.05–1 nm) had acceptance 0 at every level: DiGS never moved
    cfg = method_config("digs", {"burn_in": 45, "thin": 3}, target=aldp)  # ≈ 8e3 evaluations
    samples = run_method("digs", aldp, 32, torch.Generator().manual_seed(0), cfg)
    assert samples.info["mwg_acceptance"][0] > 0.15  # measured 0.35 at σ/α = 5e-4 nm
    steps = samples.info["step_size_median"]
    assert 2e-7 < steps[-1] < 1e-5  # the largest level's inner MALA runs at MALA's own step (~1.5e-6)
    assert_physical(aldp, samples)


def test_mala_defaults_adapt_to_the_stiff_bonds(aldp):
    cfg = method_config("mala", {"burn_in": 400, "thin": 10}, target=aldp)
    samples = run_method("mala", aldp, 32, torch.Generator().manual_seed(0), cfg)
    assert 5e-7 < samples.info["step_size_median"] < 5e-6  # docs/molecules.md: h ≈ 1.5e-6
    assert 0.4 < samples.info["acceptance"] < 0.75
    assert_physical(aldp, samples)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mala", "digs", "pt"])
def test_defaults_visit_both_basins(aldp, method):
    """MALA (1.6e5 evaluations), DiGS (2.7e5), PT (2.7e5) at their peptide defaults, n = 200."""
    samples = run_method(method, aldp, 200, torch.Generator().manual_seed(0))
    assert samples.info["energy_evaluations"] <= 300_000
    assert_both_basins(aldp, samples)
    assert_physical(aldp, samples)
