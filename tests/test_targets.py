"""Targets against exact answers: published minima, quadrature, definitions, finite differences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import torch

import boltzpath
from boltzpath import BadInput, make_target
from boltzpath.targets.registry import TARGETS

HOLDOUT = Path(__file__).resolve().parents[2] / "shared" / "holdout"
needs_holdout = pytest.mark.skipif(not HOLDOUT.is_dir(), reason=f"held-out sets not present at {HOLDOUT}")

TOY_AND_PARTICLES = ["gmm40", "manywell32", "dw4", "lj13", "lj55"]


def icosahedron_vertices() -> np.ndarray:
    p = (1 + 5**0.5) / 2
    v = []
    for a in (-1, 1):
        for b in (-p, p):
            v += [(0, a, b), (a, b, 0), (b, 0, a)]
    v = np.array(v, dtype=np.float64)
    return v / np.linalg.norm(v[0])


def mackay(shells: int) -> np.ndarray:
    """Mackay icosahedron with 1 + 12 (+ 42) atoms on unit-spaced shells (before minimisation)."""
    v = icosahedron_vertices()
    pts = [np.zeros(3)] + list(v)
    if shells >= 2:
        d = np.linalg.norm(v[:, None] - v[None], axis=-1)
        edge = d[d > 1e-9].min()
        i, j = np.nonzero(np.triu(np.isclose(d, edge)))
        pts += list(2 * v) + list(v[i] + v[j])  # 12 vertices and 30 edge midpoints of shell 2
    return np.array(pts)


def minimise(target, x0: np.ndarray) -> float:
    def fun(flat):
        x = torch.from_numpy(flat).reshape(1, -1)
        e, g = target.energy_and_grad(x)
        return float(e[0]), g[0].numpy().astype(np.float64)

    res = scipy.optimize.minimize(fun, x0.reshape(-1), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
    return float(res.fun)


@pytest.mark.parametrize(
    "n, shells, published",
    [(13, 1, -44.326801), (55, 2, -279.248470)],  # Cambridge Cluster Database global minima
)
def test_lj_icosahedral_minimum_matches_published(n, shells, published):
    # f = 1 (bgflow convention) and no oscillator: the published LJ cluster energies.
    target = make_target(f"lj{n}", pair_factor=1.0, oscillator=0.0)
    x0 = mackay(shells) * 1.1  # nearest-neighbour distance ≈ r_m = 1.12 after scaling
    assert x0.shape == (n, 3)
    assert minimise(target, x0) == pytest.approx(published, abs=2e-6)


def test_lj_pair_factor_doubles_the_pair_energy():
    x = torch.from_numpy(mackay(1) * 1.1).reshape(1, -1)
    e1 = make_target("lj13", pair_factor=1.0, oscillator=0.0).energy(x)
    e2 = make_target("lj13", pair_factor=2.0, oscillator=0.0).energy(x)
    assert torch.allclose(e2, 2 * e1)


def test_manywell_log_z_and_well_probability_by_independent_quadrature():
    target = make_target("manywell32")
    z1 = scipy.integrate.quad(lambda a: math.exp(-(a**4 - 6 * a**2 - 0.5 * a)), -10, 10, limit=200)[0]
    z2 = math.sqrt(2 * math.pi)  # the 0.5·x₂² factor
    assert z1 == pytest.approx(11784.50927, rel=1e-8)  # SPEC: the x₁ factor of one well
    assert target.log_z() == pytest.approx(16 * math.log(z1 * z2), abs=1e-6)
    assert target.log_z() == pytest.approx(164.6957, abs=1e-4)
    zr = scipy.integrate.quad(lambda a: math.exp(-(a**4 - 6 * a**2 - 0.5 * a)), 0, 10, limit=200)[0]
    assert zr / z1 == pytest.approx(0.8443, abs=1e-4)


def test_manywell_exact_sampler_well_probability_and_second_moment():
    target = make_target("manywell32")
    x = target.exact_sample(20000, torch.Generator().manual_seed(0))
    p_hat = (x[:, 0::2] > 0).double().mean()
    # 16 wells × 20000 draws, Bernoulli(0.8443): standard error ≈ 6.4e-4; allow 4 s.e.
    se = math.sqrt(0.8443 * 0.1557 / (16 * 20000))
    assert abs(float(p_hat) - 0.8443) < 4 * se
    # x₂ is N(0, 1) exactly: mean of x₂² within 4 s.e. (√2/√n)
    x2sq = (x[:, 1::2] ** 2).mean()
    assert abs(float(x2sq) - 1.0) < 4 * math.sqrt(2 / (16 * 20000))


def test_manywell_exact_sampler_at_another_temperature_matches_quadrature():
    target = make_target("manywell32").at_temperature(2.0)
    x = target.exact_sample(20000, torch.Generator().manual_seed(1))
    zr = scipy.integrate.quad(lambda a: math.exp(-(a**4 - 6 * a**2 - 0.5 * a) / 2), 0, 10)[0]
    z = scipy.integrate.quad(lambda a: math.exp(-(a**4 - 6 * a**2 - 0.5 * a) / 2), -10, 10)[0]
    p = zr / z
    se = math.sqrt(p * (1 - p) / (16 * 20000))
    assert abs(float((x[:, 0::2] > 0).double().mean()) - p) < 4 * se


def test_gmm40_means_reproduce_the_definition():
    target = make_target("gmm40")
    means = target.means
    assert means.shape == (40, 2)
    assert means[0].tolist() == pytest.approx([-0.2995, 21.4577], abs=1e-3)
    assert means[1].tolist() == pytest.approx([-32.9218, -29.4376], abs=1e-3)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    expected = (torch.rand(40, 2) - 0.5) * 80
    assert torch.allclose(means.float(), expected, atol=1e-5)
    assert target.std == pytest.approx(math.log1p(math.e), rel=1e-6)
    del g


@needs_holdout
def test_gmm40_matches_the_holdout_parameters():
    import json

    params = json.loads((HOLDOUT / "mog40_fab_params.json").read_text())
    means = np.array(params["means"] if "means" in params else params["locs"])
    assert np.allclose(make_target("gmm40").means.numpy(), means, atol=1e-4)


def test_gmm40_is_normalised_log_z_zero():
    target = make_target("gmm40")
    # trapezoid on a grid of step 0.2 (std 1.31): spectrally accurate for Gaussians far from the edge
    grid = torch.linspace(-50, 50, 501, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    dens = torch.exp(-target.energy(pts)).reshape(501, 501)
    h = float(grid[1] - grid[0])
    z = float(torch.trapezoid(torch.trapezoid(dens, dx=h), dx=h))
    assert target.log_z() == 0.0
    assert math.log(z) == pytest.approx(0.0, abs=1e-6)


def test_gmm40_exact_sampler_mode_weights():
    target = make_target("gmm40")
    x = target.exact_sample(40000, torch.Generator().manual_seed(0))
    counts = torch.bincount(target.mode_index(x), minlength=40).double()
    # each count ~ Binomial(40000, 1/40): s.e. ≈ 31; chi-square with 39 dof < 80 (p ≈ 1e-4)
    chi2 = float(((counts - 1000) ** 2 / 1000).sum())
    assert chi2 < 80


@pytest.mark.parametrize("name", TOY_AND_PARTICLES)
def test_forces_equal_minus_gradient_by_finite_differences(name):
    target = make_target(name)
    g = torch.Generator().manual_seed(3)
    x = target.prior_sample(4, g, dtype=torch.float64)
    if name == "gmm40":
        x = target.exact_sample(4, g)
    forces = target.force(x)
    h = 1e-6
    fd = torch.zeros_like(x)
    for k in range(target.dim):
        e = torch.zeros_like(x)
        e[:, k] = h
        fd[:, k] = -(target.energy(x + e) - target.energy(x - e)) / (2 * h)
    fd = target.project(fd)  # particle systems live in the CoM-free subspace
    scale = fd.abs().max().clamp_min(1.0)
    assert torch.allclose(forces, fd, atol=1e-5 * float(scale), rtol=1e-5)


@pytest.mark.parametrize("name", TOY_AND_PARTICLES)
def test_tempering_scales_energy_and_shares_the_counter(name):
    target = make_target(name)
    hot = target.at_temperature(2.5)
    x = target.prior_sample(3, torch.Generator().manual_seed(0), dtype=torch.float64)
    before = target.counter.count
    e1, e2 = target.energy(x), hot.energy(x)
    assert torch.allclose(e2, e1 / 2.5)
    assert target.counter.count - before == 6
    _, _ = hot.energy_and_grad(x)
    assert target.counter.count - before == 9  # a gradient call counts once per configuration
    assert target.temperature == 1.0 and hot.temperature == 2.5


def test_particle_targets_are_com_free():
    for name in ("dw4", "lj13"):
        target = make_target(name)
        x = target.prior_sample(5, torch.Generator().manual_seed(0), dtype=torch.float64)
        zero = torch.zeros(5, target.spatial_dim, dtype=torch.float64)
        assert torch.allclose(target.as_particles(x).mean(1), zero, atol=1e-12)
        f = target.force(x)
        assert torch.allclose(target.as_particles(f).sum(1), zero, atol=1e-9)


@needs_holdout
def test_lj13_holdout_mean_energy_and_virial_temperature():
    target = make_target("lj13")  # f = 2, oscillator 1: the convention of the reference set
    x = torch.from_numpy(np.load(HOLDOUT / "lj13_test_10k.npy")).double().reshape(10000, -1)
    e, grad = target.energy_and_grad(x)
    assert float(e.mean()) == pytest.approx(-43.13, abs=0.01)
    # virial theorem in the CoM-free subspace: <Σ (x_i − x̄)·∇_i E> = (3N − 3) kT
    virial = (target.project(x) * grad).sum(1) / (3 * 13 - 3)
    assert float(virial.mean()) == pytest.approx(1.0, abs=0.02)
    # with f = 1 the same configurations have a clearly different mean energy
    e1 = make_target("lj13", pair_factor=1.0).energy(x)
    assert float(e1.mean()) > -25


@needs_holdout
def test_dw4_holdout_mean_energy():
    target = make_target("dw4")
    x = torch.from_numpy(np.load(HOLDOUT / "dw4_test_10k.npy")).double().reshape(10000, -1)
    assert float(target.energy(x).mean()) == pytest.approx(-22.45, abs=0.01)


@needs_holdout
def test_manywell_holdout_agrees_with_the_exact_well_probability():
    x = np.load(HOLDOUT / "manywell32_ref_1888.npy")
    p = float((x[:, 0::2] > 0).mean())
    se = math.sqrt(0.8443 * 0.1557 / x[:, 0::2].size)
    assert abs(p - 0.8443) < 4 * se


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(BadInput, match="unknown target"):
        make_target("lj14")
    with pytest.raises(BadInput, match="bad options"):
        make_target("gmm40", nonsense=1)
    target = make_target("lj13")
    with pytest.raises(BadInput, match=r"shape \(batch, 39\)"):
        target.energy(torch.zeros(2, 38))
    with pytest.raises(BadInput, match="temperature"):
        target.at_temperature(-1.0)
    with pytest.raises(BadInput, match="no exact sampler"):
        target.exact_sample(3, torch.Generator())


def test_custom_energy_from_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_energies.py").write_text(
        "def banana(x):\n    return 0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2\n"
        "def wrong_shape(x):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    target = make_target("my_energies:banana", dim=2)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert float(target.energy(x)) == pytest.approx(0.5 + 0.5)
    expected = torch.tensor([[-1.0 + 2.0 * 1.0 * 1.0, -1.0]], dtype=torch.float64)  # −∇E at (1, 2)
    assert torch.allclose(target.force(x), expected)
    with pytest.raises(BadInput, match="shape"):
        make_target("my_energies:wrong_shape", dim=2).energy(x)
    with pytest.raises(BadInput, match="module:function"):
        make_target("os.system('x'):f", dim=2)
    with pytest.raises(BadInput, match="cannot import"):
        make_target("no_such_module_xyz:f", dim=2)


def test_every_registered_target_is_listed_with_options():
    from boltzpath.targets.registry import target_options

    for name in TARGETS:
        assert isinstance(target_options(name), dict)
    assert boltzpath.make_target is make_target
