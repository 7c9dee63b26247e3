"""Chirality of peptide samples: the L/D definition against the held-out MD set and the targets'
structures, reflection (mirror image at the same energy), PITA's fix (flip all-D, drop mixed) and
the OpenMM MD stage-0 sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openmm", reason="peptide targets need OpenMM (the [molecules] extra)")
pytest.importorskip("mdtraj", reason="chirality needs mdtraj (the [molecules] extra)")

from boltzpath.config import from_dict  # noqa: E402
from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.methods.pita import _chirality_fix  # noqa: E402
from boltzpath.methods.pita_config import PITAConfig  # noqa: E402
from boltzpath.metrics.chirality import (  # noqa: E402
    chiral_centres,
    chirality_masks,
    chirality_report,
    fix_chirality,
    reflect,
)
from boltzpath.molecules.md_chains import md_chains  # noqa: E402
from boltzpath.targets.registry import make_target  # noqa: E402

HOLDOUT = Path(__file__).resolve().parents[2] / "shared" / "holdout" / "aldp_300K_fab_10k_xyz_nm.npy"


@pytest.fixture(scope="module", params=["aldp-fab", "al3"])
def peptide(request):
    return make_target(request.param, temperature=300.0, dtype="float64")


def _achirality_bound_kj_mol(system) -> float:
    """max |E(mirror x) − E(x)| in kJ/mol: under φ ↦ −φ a torsion term k(1 + cos(nφ − φ₀)) changes by
    at most 2k|sin δ|, δ = φ₀'s distance to 0 or π (everything else in these force fields is
    achiral)."""
    import openmm

    total = 0.0
    for f in system.getForces():
        if isinstance(f, openmm.PeriodicTorsionForce):
            for j in range(f.getNumTorsions()):
                *_, phase, k = f.getTorsionParameters(j)
                total += 2 * abs(k.value_in_unit(openmm.unit.kilojoule_per_mole)) * abs(
                    np.sin(phase.value_in_unit(openmm.unit.radian)))
    return total


def _mixed(target, x: torch.Tensor) -> torch.Tensor:
    """x with the first chiral centre inverted (CB and HA of that residue swapped): a diastereomer."""
    quad = chiral_centres(target.topology)[0]
    res = target.topology.atom(int(quad[1])).residue
    ha = next(a.index for a in res.atoms if a.name == "HA")
    p = x.clone().reshape(x.shape[0], -1, 3)
    p[:, [quad[3], ha]] = p[:, [ha, quad[3]]]
    return p.reshape(x.shape)


def test_the_targets_structures_and_the_held_out_md_set_are_l():
    for name in ("aldp-fab", "aldp-pita", "al3"):
        t = make_target(name)
        rep = chirality_report(t.initial_positions_nm.reshape(1, -1), t.topology)
        assert rep["n_centres"] == (2 if name == "al3" else 1) and rep["l_fraction"] == 1.0, name
    if not HOLDOUT.is_file():
        pytest.skip("held-out 300 K set not available")
    t = make_target("aldp-fab")
    x = np.load(HOLDOUT).reshape(-1, 66)  # evaluation only
    assert chirality_report(x, t.topology)["l_fraction"] == 1.0
    # independent of the improper's sign convention: the CIP rule for L-alanine (S) — seen with HA
    # pointing away, N → C → CB run counterclockwise
    p = x.reshape(-1, 22, 3).astype(np.float64)
    names = {a.name: a.index for a in t.topology.residue(1).atoms}
    n, ca, c, cb, ha = (p[:, names[k]] for k in ("N", "CA", "C", "CB", "HA"))
    assert np.all(np.einsum("ij,ij->i", ca - ha, np.cross(c - n, cb - n)) > 0)
    assert chirality_report(reflect(x, 22), t.topology)["mirrored_fraction"] == 1.0


def test_a_reflected_configuration_is_mirrored_with_the_same_energy_and_reflected_forces(peptide):
    t = peptide
    x = t.prior_sample(8, torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x + torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64).repeat(t.n_atoms)  # off-centre
    xr = reflect(x, t.n_atoms)
    centroid = x.reshape(8, -1, 3).mean(1)
    assert torch.allclose(xr.reshape(8, -1, 3).mean(1), centroid, atol=1e-12)  # centroid kept
    rep = chirality_report(xr.numpy(), t.topology)
    assert rep["mirrored_fraction"] == 1.0 and chirality_report(x.numpy(), t.topology)["l_fraction"] == 1.0
    e, g = t.energy_and_grad(x)
    er, gr = t.energy_and_grad(xr)
    bound = _achirality_bound_kj_mol(t.openmm_system)
    if t.name == "al3":  # amber14 XML: phases exactly 0 and π, the energy is exactly achiral
        assert bound < 1e-12
    else:  # the aldp-fab prmtop stores π as 3.141594 (|Δ| = 1.35e-6): E is achiral to 5e-4 kJ/mol
        assert 1e-4 < bound < 1e-3
    tol_kt = bound / t.kt_kj_mol + 1e-9
    assert torch.all((er - e).abs() <= tol_kt), (er - e, tol_kt)  # E/kT, float64
    assert torch.allclose(gr, reflect(g, t.n_atoms, centre=False), rtol=1e-9, atol=1e-2)
    d_openmm = t.openmm_energy_kj_mol(xr.numpy()) - t.openmm_energy_kj_mol(x.numpy())
    assert np.all(np.abs(d_openmm) <= bound + 1e-6)
    e32 = t.energy(x.float().double())
    assert torch.allclose(t.energy(reflect(x.float(), t.n_atoms).double()), e32, rtol=1e-5, atol=1e-3)
    # reflecting twice is the identity; the float32 numpy path of fix_chirality flips exactly these
    assert torch.allclose(reflect(xr, t.n_atoms), x, atol=1e-12)
    fixed, flipped = fix_chirality(xr.numpy(), t.topology)
    assert flipped.all() and np.allclose(fixed, x.numpy(), atol=1e-5)
    # a configuration with one inverted centre is not a mirror image: a different energy
    if rep["n_centres"] > 1:
        xm = _mixed(t, x)
        assert chirality_report(xm.numpy(), t.topology)["mixed_fraction"] == 1.0
        assert chirality_report(reflect(xm, t.n_atoms).numpy(), t.topology)["mixed_fraction"] == 1.0


def test_pita_fix_flips_all_d_drops_mixed_and_reflects_the_forces():
    t = make_target("al3", temperature=300.0)
    x = t.prior_sample(6, torch.Generator().manual_seed(1))
    x = torch.cat([x[:3], reflect(x[3:5], t.n_atoms), _mixed(t, x[5:])])  # L L L D D mixed
    e, g = t.energy_and_grad(x)
    on = from_dict(PITAConfig, {"target": "al3", "temperatures": [1200.0, 300.0]})
    assert on.chirality_fix is True  # the default
    fx, fg, keep, rep = _chirality_fix(on, 1, x, t, g)
    assert rep["flipped"] == 2 and rep["dropped_mixed"] == 1 and keep.tolist() == [0, 1, 2, 3, 4]
    assert rep["mirrored_fraction"] == pytest.approx(2 / 6) and rep["mixed_fraction"] == pytest.approx(1 / 6)
    assert chirality_report(fx.numpy(), t.topology)["l_fraction"] == 1.0
    e2, g2 = t.energy_and_grad(fx)  # the stored energies and forces stay exact for the flipped rows
    assert torch.allclose(e2, e[keep], rtol=1e-5, atol=1e-3)
    assert torch.allclose(fg, g2, rtol=1e-3, atol=1e-2 * g2.abs().max().item())
    off = from_dict(PITAConfig, {"target": "al3", "temperatures": [1200.0, 300.0], "chirality_fix": False})
    same, _, keep, rep = _chirality_fix(off, 1, x, t)
    assert torch.equal(same, x) and keep.numel() == 6 and rep["flipped"] == rep["dropped_mixed"] == 0
    with pytest.raises(BadInput, match="mixed chirality"):
        _chirality_fix(on, 2, _mixed(t, x[:3]), t)
    report, all_d, mixed = chirality_masks(x.numpy(), t.topology)
    assert all_d.tolist() == [False] * 3 + [True] * 2 + [False] and mixed.tolist() == [False] * 5 + [True]


def test_md_chains_at_1200_k_counts_every_md_step_and_stays_l():
    t = make_target("aldp-fab", temperature=1200.0)
    opts = {"chains": 2, "burn_in": 40, "thin": 10, "platform": "Reference"}
    x, info = md_chains(t, 5, seed=3, options=opts)
    assert x.shape == (5, 66) and x.dtype == np.float32 and np.isfinite(x).all()
    # 3 rounds of 2 chains (the 6th frame dropped): steps 40 + 3·10 per chain, plus one energy read
    # per kept frame
    assert info["frames_per_chain"] == 3 and info["energy_evaluations"] == 2 * (40 + 30 + 3)
    assert info["temperature_kelvin"] == 1200.0 and info["platform_used"] == "Reference"
    assert chirality_report(x, t.topology)["l_fraction"] == 1.0
    x2, _ = md_chains(t, 5, seed=3, options=opts)
    assert np.array_equal(x, x2)  # Reference platform: reproducible from the seed
    with pytest.raises(BadInput, match="unknown"):
        md_chains(t, 5, seed=0, options={"step_size": 1e-6})
    with pytest.raises(BadInput, match="molecular"):
        md_chains(make_target("gmm40"), 5, seed=0)
