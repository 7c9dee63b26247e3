"""Training losses of the diffusion core, written like the EDM loss (SPEC §5).

λ(σ) = (σ² + σ_d²)/(σ·σ_d)²  (= (1 + σ²)/σ² for σ_d = 1), x_t = x₀ + σ·ε, ε ~ N(0, I) (CoM-projected
for particle systems via ``project``). Each loss returns the mean over batch and coordinates
(a scalar); the per-coordinate mean keeps the scale independent of the dimension.

* DSM:          λ(σ)‖D_θ(x_t, σ) − x₀‖²
* TSM:          λ(σ)‖D_θ(x_t, σ) − (x_t + σ²∇log π(x₀))‖²,   σ < σ_TSM ≈ 0.19
                (SPEC writes it unweighted; λ is a per-σ constant, so the minimiser is the same
                and TSM and DSM are in the same units when both are on)
* distillation: λ(σ)‖D_E(x_t, σ) − sg[D_θ(x_t, σ)]‖²   (double backprop through ∇ₓU_η)
* pinning:      (U_η(x₀, σ_min) − E(x₀)/kT)² / d over samples with E(x₀)/kT ≤ 1000
                (the 1/d puts pinning in the per-coordinate units of the other losses: the released
                PITA code sums DSM over coordinates and adds the pinning term with weight 1, which is
                weight 1 here; samples above the high-energy flag are masked out as there)

* force matching: ‖∇ₓU_η(x₀, σ_pin) − ∇ₓE(x₀)/kT‖² / mean_batch ‖∇ₓE/kT‖², same mask as pinning
                (the buffer's forces: d numbers per sample where pinning has one; the molecular
                presets need it — with pinning alone, a small transformer's U_η(x, σ_min) on ALDP
                did not correlate with E/kT, see docs/pita.md 2026-12-03)

``model`` is anything with ``denoise(x, sigma, temperature)`` (ScoreModel, or EnergyModel which
then needs ``create_graph=True``; ``denoise_fn`` handles that).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from boltzpath.diffusion.precond import EnergyModel


def edm_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """λ(σ) = (σ² + σ_d²)/(σ·σ_d)²."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def noise_like(x: torch.Tensor, generator: torch.Generator, project: Callable | None = None) -> torch.Tensor:
    """ε ~ N(0, I) of x's shape, projected onto the target's subspace when ``project`` is given."""
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return eps if project is None else project(eps)


def denoise_fn(model, x_t, sigma, temperature=None) -> torch.Tensor:
    """D(x_t, σ) with a graph back to the parameters (energy models need create_graph=True)."""
    if isinstance(model, EnergyModel):
        return model.denoise(x_t, sigma, temperature, create_graph=True)
    return model.denoise(x_t, sigma, temperature)


def _weighted_mse(d: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, sigma_data: float):
    return (edm_weight(sigma, sigma_data)[:, None] * (d - target) ** 2).mean()


def dsm_loss(model, x0, sigma, eps, temperature=None) -> torch.Tensor:
    """λ(σ)‖D(x₀ + σε, σ) − x₀‖², averaged; x0, eps (batch, dim), sigma (batch,)."""
    x_t = x0 + sigma[:, None] * eps
    return _weighted_mse(denoise_fn(model, x_t, sigma, temperature), x0, sigma, model.sigma_data)


def tsm_loss(model, x0, score0, sigma, eps, temperature=None) -> torch.Tensor:
    """λ(σ)‖D(x_t, σ) − (x_t + σ²∇log π(x₀))‖²; score0 = ∇log π(x₀) = −∇(E/kT)(x₀), (batch, dim)."""
    x_t = x0 + sigma[:, None] * eps
    target = x_t + sigma[:, None] ** 2 * score0
    return _weighted_mse(denoise_fn(model, x_t, sigma, temperature), target, sigma, model.sigma_data)


def distillation_loss(energy_model: EnergyModel, x_t, sigma, d_teacher, temperature=None) -> torch.Tensor:
    """λ(σ)‖D_E(x_t, σ) − sg[D_θ(x_t, σ)]‖²; ``d_teacher`` is detached here."""
    d_e = energy_model.denoise(x_t, sigma, temperature, create_graph=True)
    return _weighted_mse(d_e, d_teacher.detach(), sigma, energy_model.sigma_data)


def pinning_loss(
    energy_model: EnergyModel, x0, energy0, sigma_min: float, temperature=None,
    mask_above: float | None = 1000.0, u=None,
) -> torch.Tensor:
    """(U_η(x₀, σ_min) − E(x₀)/kT)² / d, averaged over the batch; energy0 (batch,) is E/kT.

    Samples with E/kT > ``mask_above`` (SPEC's high-energy flag; None keeps all) contribute zero,
    as in the released PITA code: a clash's energy is a number the network should not chase.
    The 1/d makes the strength per dimension independent of d (see the module docstring).
    ``u``: U_η(x₀, σ_min) when the caller already has it (with force matching: ``pin_sigma_terms``).
    """
    d = x0.shape[1]
    if u is None:
        sigma = torch.full((x0.shape[0],), float(sigma_min), dtype=x0.dtype, device=x0.device)
        u = energy_model.energy(x0, sigma, temperature)
    sq = (u - energy0.to(u.dtype)) ** 2 / d
    if mask_above is not None:
        sq = torch.where(energy0.to(u.dtype) <= mask_above, sq, torch.zeros_like(sq))
    return sq.mean()


def pin_sigma_terms(energy_model: EnergyModel, x0, sigma_min: float, temperature=None):
    """(U_η(x₀, σ_min), ∇ₓU_η(x₀, σ_min)), both differentiable in the parameters: one evaluation that
    pinning and force matching share when both are on."""
    sigma = torch.full((x0.shape[0],), float(sigma_min), dtype=x0.dtype, device=x0.device)
    return energy_model.energy_and_grad(x0, sigma, temperature, create_graph=True)


def force_matching_loss(
    energy_model: EnergyModel, x0, score0, sigma_min: float, temperature=None, energy0=None,
    mask_above: float | None = 1000.0, grad=None,
) -> torch.Tensor:
    """mean ‖∇ₓU_η(x₀, σ_min) + score0‖² / mean ‖score0‖² over the batch (score0 = −∇ₓE/kT, projected
    like the model's gradients); differentiable in the parameters (double backprop). Samples with
    E/kT > ``mask_above`` are left out when ``energy0`` is given, as in ``pinning_loss``. ``grad``:
    ∇ₓU_η(x₀, σ_min) when the caller already has it (``pin_sigma_terms``)."""
    if grad is None:
        _, grad = pin_sigma_terms(energy_model, x0, sigma_min, temperature)
    target = energy_model.project(score0.to(grad.dtype))
    err = (grad + target).pow(2).sum(-1)
    norm = target.pow(2).sum(-1)
    if mask_above is not None and energy0 is not None:
        keep = (energy0.to(grad.dtype) <= mask_above).to(grad.dtype)
        err, norm = err * keep, norm * keep
    return err.sum() / norm.sum().clamp_min(1e-12)
