"""EDM preconditioning and the score/energy parameterisations of SPEC §5, against hand values."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures import seeded
from torch import nn

from boltzpath.diffusion.precond import CoMProjection, EnergyModel, ScoreModel, SoftCore, edm_coefficients


class LinearNet(nn.Module):
    """F(y, c) = A·y + c·b: analytic, so D and ∇U have closed forms."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())
        self.b = nn.Parameter(b.clone())

    def forward(self, y, c_noise, temperature=None):
        return y @ self.a.T + c_noise[:, None] * self.b


def _net(dim=3, seed=0, dtype=torch.float64):
    g = seeded(seed)
    a = torch.randn(dim, dim, generator=g, dtype=dtype)
    return LinearNet(a, torch.randn(dim, generator=g, dtype=dtype))


def test_coefficients_hand_values_sigma_one():
    c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor(1.0, dtype=torch.float64))
    # σ = σ_d = 1: c_skip = 1/2, c_out = c_in = 1/√2, c_noise = ¼ ln 1 = 0
    assert float(c_skip) == pytest.approx(0.5, abs=1e-15)
    assert float(c_out) == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert float(c_in) == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert float(c_noise) == 0.0


def test_coefficients_general_sigma_data():
    sigma, sd = torch.tensor(2.0, dtype=torch.float64), 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    # hand values: σ² + σ_d² = 4.25
    assert float(c_skip) == pytest.approx(0.25 / 4.25, rel=1e-14)
    assert float(c_out) == pytest.approx(2 * 0.5 / math.sqrt(4.25), rel=1e-14)
    assert float(c_in) == pytest.approx(1 / math.sqrt(4.25), rel=1e-14)
    assert float(c_noise) == pytest.approx(0.25 * math.log(2.0), rel=1e-14)


def test_score_model_denoiser_and_score():
    net = _net()
    model = ScoreModel(net)
    x = torch.randn(5, 3, generator=seeded(1), dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.3, 1.0, 4.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma[:, None])
    expected = c_skip * x + c_out * ((c_in * x) @ net.a.T + c_noise * net.b)
    torch.testing.assert_close(model.denoise(x, sigma), expected, rtol=1e-13, atol=1e-13)
    score = (expected - x) / sigma[:, None] ** 2
    torch.testing.assert_close(model.score(x, sigma), score, rtol=1e-12, atol=1e-12)


def test_scalar_and_batched_sigma_agree():
    model = ScoreModel(_net())
    x = torch.randn(4, 3, generator=seeded(2), dtype=torch.float64)
    batched = torch.full((4,), 0.7, dtype=torch.float64)
    torch.testing.assert_close(model.denoise(x, 0.7), model.denoise(x, batched))
    with pytest.raises(ValueError):
        model.denoise(x, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("sigma_data", [1.0, 0.6])
def test_energy_model_closed_form(sigma_data):
    net = _net()
    model = EnergyModel(net, sigma_data=sigma_data)
    x = torch.randn(6, 3, generator=seeded(3), dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 20.0], dtype=torch.float64)
    s = sigma[:, None]
    _, _, c_in, c_noise = edm_coefficients(s, sigma_data)
    a, b = net.a.detach(), net.b.detach()
    # U = ‖x‖²/(2(σ_d²+σ²)) − σ_d⟨A c_in x + c_noise b, c_in x⟩/σ
    u = (x * x).sum(-1) / (2 * (sigma_data**2 + sigma**2)) - sigma_data * (
        ((c_in * x) @ a.T + c_noise * b) * (c_in * x)
    ).sum(-1) / sigma
    grad = x / (sigma_data**2 + s**2) - sigma_data * (c_in**2 * x @ (a + a.T).T + c_in * c_noise * b) / s
    torch.testing.assert_close(model.energy(x, sigma), u, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(model.grad_x(x, sigma), grad, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(model.denoise(x, sigma), x - s**2 * grad, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(model.score(x, sigma), -grad, rtol=1e-12, atol=1e-10)
    # D_E has the EDM form c_skip·x + c_out·(F + J_Fᵀ c_in x) for every σ_d
    c_skip, c_out, _, _ = edm_coefficients(s, sigma_data)
    f_eff = (c_in * x) @ a.T + c_noise * b + (c_in * x) @ a
    torch.testing.assert_close(model.denoise(x, sigma), c_skip * x + c_out * f_eff, rtol=1e-12, atol=1e-10)


def test_energy_is_differentiable_in_sigma():
    """∂U/∂σ by autograd (what PITA's ∂_tU uses) against a central finite difference."""
    model = EnergyModel(_net(seed=4))
    x = torch.randn(3, 3, generator=seeded(5), dtype=torch.float64)
    sigma = torch.tensor([0.2, 1.0, 5.0], dtype=torch.float64, requires_grad=True)
    (du,) = torch.autograd.grad(model.energy(x, sigma).sum(), sigma)
    h = 1e-6
    with torch.no_grad():
        fd = (model.energy(x, sigma + h) - model.energy(x, sigma - h)) / (2 * h)
    # central differences in float64: error O(h²) + rounding ~1e-9 relative
    torch.testing.assert_close(du, fd, rtol=1e-6, atol=1e-6)


def test_grad_x_detached_unless_create_graph():
    model = EnergyModel(_net())
    x = torch.randn(2, 3, generator=seeded(6), dtype=torch.float64)
    assert not model.grad_x(x, 0.5).requires_grad
    g = model.grad_x(x, 0.5, create_graph=True)
    assert g.requires_grad
    g.sum().backward()
    assert model.net.a.grad is not None and float(model.net.a.grad.abs().sum()) > 0


def test_com_projection_applies_to_outputs():
    proj = CoMProjection(4, 2)
    model = ScoreModel(_net(dim=8), project=proj)
    emodel = EnergyModel(_net(dim=8, seed=1), project=proj)
    x = proj(torch.randn(5, 8, generator=seeded(7), dtype=torch.float64))
    for v in (model.denoise(x, 0.3) - x, emodel.grad_x(x, 0.3)):
        torch.testing.assert_close(v.reshape(5, 4, 2).mean(1), torch.zeros(5, 2, dtype=torch.float64))


def _egnn_energy_pair(sigma_data=1.0, temperature_conditioned=True):
    """Two EnergyModels with the same EGNN weights (float64): autograd ∇ₓU and the analytic one."""
    from boltzpath.nets import EGNN

    torch.manual_seed(0)
    net = EGNN(5, 3, hidden=12, layers=3, emb_dim=8, temperature_conditioned=temperature_conditioned).double()
    for layer in net.layers:  # O(1) coordinate updates, so J_F is not ~0
        nn.init.normal_(layer.coord_out.weight, std=0.5)
    proj = CoMProjection(5, 3)
    ref = EnergyModel(net, sigma_data, proj)
    fast = EnergyModel(net, sigma_data, proj, analytic_grad=True)
    return ref, fast, proj


@pytest.mark.parametrize("sigma_data", [1.0, 0.7])
def test_analytic_energy_grad_equals_autograd(sigma_data):
    """EGNN energy: ∇ₓU_η by the hand-written reverse pass = autograd's, with the CoM projection,
    the noise conditioning (σ from 0.02 to 80) and the temperature conditioning (float64)."""
    ref, fast, proj = _egnn_energy_pair(sigma_data)
    x = proj(torch.randn(6, 15, generator=seeded(8), dtype=torch.float64))
    sigma = torch.tensor([0.02, 0.1, 0.5, 1.0, 5.0, 80.0], dtype=torch.float64)
    temps = torch.tensor([1.0, 1.2, 1.5, 2.0, 3.0, 4.0], dtype=torch.float64)
    u_ref, g_ref = ref.energy_and_grad(x, sigma, temps)
    u, g = fast.energy_and_grad(x, sigma, temps)
    assert not g.requires_grad
    torch.testing.assert_close(u, u_ref, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g.reshape(6, 5, 3).mean(1), torch.zeros(6, 3, dtype=torch.float64))
    d_ref = ref.denoise(x, sigma, temps)
    torch.testing.assert_close(fast.denoise(x, sigma, temps), d_ref, rtol=1e-10, atol=1e-10)
    # float32: the same to float32 rounding
    net32 = ref.net.float()
    ref32, fast32 = EnergyModel(net32, sigma_data, proj), EnergyModel(net32, sigma_data, proj, True)
    x32, s32, t32 = x.float(), sigma.float(), temps.float()
    g_ref32 = ref32.grad_x(x32, s32, t32)
    atol = 1e-5 * float(g_ref32.abs().max())
    torch.testing.assert_close(fast32.grad_x(x32, s32, t32), g_ref32, rtol=1e-4, atol=atol)


def test_analytic_energy_grad_has_the_same_parameter_and_sigma_gradients():
    """A distillation-type loss on D_E = x − σ²∇ₓU: its parameter gradient by one backward through
    the analytic ∇ₓU equals autograd's double backward; ∂U/∂σ and ∂(∇ₓU)/∂σ are the same (float64)."""
    ref, fast, proj = _egnn_energy_pair()
    x = proj(torch.randn(4, 15, generator=seeded(9), dtype=torch.float64))
    target = proj(torch.randn(4, 15, generator=seeded(10), dtype=torch.float64))
    temps = torch.full((4,), 1.5, dtype=torch.float64)
    grads = []
    for model in (ref, fast):
        sigma = torch.tensor([0.05, 0.3, 1.0, 4.0], dtype=torch.float64, requires_grad=True)
        d = model.denoise(x, sigma, temps, create_graph=True)
        u = model.energy(x, sigma, temps)
        loss = ((d - target) ** 2).sum() + u.sum()
        inputs = [sigma, *model.parameters()]
        gs = torch.autograd.grad(loss, inputs, allow_unused=True)
        grads.append([torch.zeros_like(p) if gp is None else gp for gp, p in zip(gs, inputs, strict=True)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)


def test_func_grad_path_equals_autograd_for_the_peptide_transformer():
    """``_func_energy_and_grad`` (torch.func.grad, the path ``TrainConfig.compile`` traces for nets
    without ``forward_vjp``) gives autograd's U_η, ∇ₓU_η and, through a distillation + force-matching
    type loss, the same parameter gradients (the double backward), float64, centred molecule model
    with the pair head. A wrong sign, a missing centring or a detached gradient would fail it."""
    from boltzpath.nets.transformer import AtomTransformer

    torch.manual_seed(3)
    net = AtomTransformer(6, hidden=8, layers=2, emb_dim=8, heads=2, pair_features=4,
                          pair_reference=torch.randn(6, 3), sigma_data=0.5).double()
    for p in net.parameters():  # the zero-initialised gates and read-outs would hide the blocks
        nn.init.normal_(p, std=0.3)
    model = EnergyModel(net, 0.5, CoMProjection(6, 3), centre=True)
    x = torch.randn(3, 18, generator=seeded(4), dtype=torch.float64)
    target = torch.randn(3, 18, generator=seeded(5), dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.2, 1.5], dtype=torch.float64)
    results = []
    for func in (False, True):
        if func:
            u, g = model._func_energy_and_grad(x, sigma)
            g = model.project(g)
        else:
            u, g = model.energy_and_grad(x, sigma, create_graph=True)
        loss = ((x - sigma[:, None] ** 2 * g - target) ** 2).sum() + (g ** 2).sum() + (u ** 2).sum()
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, params)
        results.append((u, g, grads))
    (u0, g0, p0), (u1, g1, p1) = results
    assert float(g0.detach().abs().max()) > 1e-3 and float(u0.detach().abs().max()) > 1e-3
    torch.testing.assert_close(u1, u0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12)
    for a, b in zip(p0, p1, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)


def test_analytic_grad_needs_a_net_with_forward_vjp():
    with pytest.raises(ValueError):
        EnergyModel(_net(), analytic_grad=True)


def test_soft_core_hand_values_and_zero_outside_the_core():
    """Two particles at distance r < r₀: λ(σ)·k·(r₀ − r)²; no pair inside r₀: exactly zero, zero gradient."""
    core = SoftCore(3, 3, radius=0.7, strength=1000.0, sigma_fade=0.1).double()
    x = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 5.0, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 5.0, 0.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([[0.05], [0.05]], dtype=torch.float64)
    u, g = core.energy_and_grad(x, s)
    lam = 0.01 / (0.01 + 0.0025)
    torch.testing.assert_close(u, torch.tensor([lam * 1000.0 * 0.2**2, 0.0], dtype=torch.float64))
    # ∂u/∂x₀ = +2kλ·gap along x (pushing particle 0 away from particle 1 lowers u)
    push = 2 * 1000 * lam * 0.2
    torch.testing.assert_close(g[0, :6], torch.tensor([push, 0, 0, -push, 0, 0], dtype=torch.float64))
    assert torch.all(g[1] == 0)


def test_soft_core_gradient_and_energy_model_paths_agree():
    """With the prior, U_η's analytic ∇ₓ (and its σ- and parameter-gradients) equal autograd's,
    and U_η differs from the prior-free model by exactly the prior (float64)."""
    ref, fast, proj = _egnn_energy_pair()
    core = SoftCore(5, 3, radius=0.9, strength=50.0, sigma_fade=0.2).double()
    ref_c = EnergyModel(ref.net, 1.0, proj, core=core)
    fast_c = EnergyModel(ref.net, 1.0, proj, analytic_grad=True, core=core)
    x = proj(0.5 * torch.randn(6, 15, generator=seeded(8), dtype=torch.float64))  # close pairs: prior active
    sigma = torch.tensor([0.02, 0.1, 0.3, 1.0, 5.0, 80.0], dtype=torch.float64)
    temps = torch.full((6,), 1.5, dtype=torch.float64)
    u0 = ref.energy(x, sigma, temps)
    u_ref, g_ref = ref_c.energy_and_grad(x, sigma, temps)
    uc, _ = core.energy_and_grad(x, sigma[:, None])
    assert float(uc[:3].min()) > 0
    torch.testing.assert_close(u_ref, u0 + uc, rtol=1e-12, atol=1e-10)
    u, g = fast_c.energy_and_grad(x, sigma, temps)
    torch.testing.assert_close(u, u_ref, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-9)
    grads = []
    for model in (ref_c, fast_c):
        sig = sigma.clone().requires_grad_(True)
        xx = x.clone().requires_grad_(True)
        d = model.denoise(xx, sig, temps, create_graph=True)
        loss = (d**2).sum() + model.energy(xx, sig, temps).sum()
        grads.append(torch.autograd.grad(loss, [sig, xx, *model.net.parameters()], allow_unused=True))
    for a, b in zip(*grads, strict=True):
        if a is None:
            assert b is None or torch.all(b == 0)
            continue
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-8)
