"""EDM preconditioning, the score model D_θ and the energy model U_η (SPEC §5).

With σ_data = σ_d (SPEC: σ_d = 1):

    c_skip = σ_d²/(σ² + σ_d²),  c_out = σ·σ_d/√(σ² + σ_d²),  c_in = 1/√(σ² + σ_d²),  c_noise = ¼ ln σ

Score model:   D_θ(x, σ) = c_skip·x + c_out·F_θ(c_in·x, c_noise),   s_θ = (D_θ − x)/σ².
Energy model:  U_η(x, σ) = ‖x‖²/(2(σ_d² + σ²)) − σ_d·⟨F_η(c_in·x, c_noise), c_in·x⟩/σ,
               D_E = x − σ²∇ₓU_η,   s_E = −∇ₓU_η.
(For σ_d = 1 this is SPEC's U = ‖x‖²/(2(1+σ²)) − ⟨F, c_in x⟩/σ. The factor σ_d makes
D_E = c_skip·x + c_out·(F + J_Fᵀ c_in x): the same EDM form as D_θ for every σ_d.)

Shapes: x (batch, dim); σ a float, a 0-d tensor or a (batch,) tensor (broadcast); temperature
None or (batch,) (only used by temperature-conditioned nets). U_η is differentiable in σ, so
∂_t U = ∂U/∂σ · dσ/dt comes from autograd through ``KarrasSchedule.sigma(t)`` (keep σ a tensor
with ``requires_grad``). Networks run in float32; σ is cast to x's dtype.

Particle systems: pass ``project=CoMProjection(n, d)``; D, s and ∇U are projected,
which is exact for a CoM-free x and an equivariant (translation-invariant) F.

Molecules (``centre=True`` with a ``CoMProjection``): the targets' x keeps its centre of mass
(peptide samplers do not remove it), so the models centre x themselves, x_c = P x, and are
translation-invariant: U_η(x) = U_η(x_c) and D_θ(x) = (x − x_c) + P(c_skip·x_c + c_out·F(c_in·x_c)),
so s_θ = (D_θ − x)/σ² has no centre-of-mass component. With ``centre=False`` (the default) x is
used as given, exactly as before.

Soft-core prior (``EnergyModel(..., core=SoftCore(...))``, particle systems, off by default):
U_η(x, σ) += λ(σ)·k·Σ_{i<j} max(0, r₀ − r_ij)²,  λ(σ) = σ_c²/(σ_c² + σ²).
The buffer never holds two particles closer than the target's repulsive core, so a network
trained on it extrapolates freely there, and measured on LJ-13 it put overlapping clusters
*lower* than real configurations (docs/pita.md): the Feynman–Kac weights then select them.
The prior is zero on every configuration with all r_ij ≥ r₀ (choose r₀ below the data's
smallest distance), is a fixed function (no target evaluation), fades at large σ where the noised
density has no hard core, and the network learns the residual through the same losses.

Analytic gradient (``EnergyModel(..., analytic_grad=True)``, for nets with ``forward_vjp``, i.e. the
EGNN): ∇ₓU_η = x/(σ_d² + σ²) − (σ_d c_in/σ)·(F + J_Fᵀ c_in x) with J_Fᵀ c_in x from the net's
hand-written reverse pass instead of autograd. Same function (equal to rounding, tested); the
graph is first-order, so the distillation loss needs one backward, not a double backward, and
the computation can go through ``torch.compile`` (``diffusion.train``'s ``TrainConfig.fast``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 1.0):
    """(c_skip, c_out, c_in, c_noise) for noise level σ (any shape), SPEC §5."""
    sd2 = sigma_data**2
    c_skip = sd2 / (sigma**2 + sd2)
    c_out = sigma * sigma_data / torch.sqrt(sigma**2 + sd2)
    c_in = 1.0 / torch.sqrt(sigma**2 + sd2)
    c_noise = 0.25 * torch.log(sigma)
    return c_skip, c_out, c_in, c_noise


def _sigma_column(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ as a (batch, 1) tensor in x's dtype (keeps autograd through σ)."""
    if isinstance(sigma, torch.Tensor):
        s = sigma.to(dtype=x.dtype, device=x.device)
    else:  # a Python float goes straight to x's dtype (no float32 round trip)
        s = torch.tensor(float(sigma), dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(s.shape)}")
    return s[:, None]


class CoMProjection:
    """v ↦ v − mean over particles, for flattened (batch, n·d) vectors (picklable, unlike a bound method)."""

    def __init__(self, n_particles: int, spatial_dim: int) -> None:
        self.n_particles, self.spatial_dim = int(n_particles), int(spatial_dim)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        p = v.reshape(v.shape[0], self.n_particles, self.spatial_dim)
        return (p - p.mean(dim=1, keepdim=True)).reshape(v.shape)


class SoftCore(nn.Module):
    """λ(σ)·k·Σ_{i<j} max(0, r₀ − r_ij)², λ(σ) = σ_c²/(σ_c² + σ²), on flattened (batch, n·d) x.

    ``energy_and_grad(x, s)`` with ``s`` a (batch, 1) σ column returns (u (batch,), ∇ₓu (batch, n·d))
    from ordinary differentiable ops (so autograd through it, in x, σ or both, is exact)."""

    def __init__(self, n_particles: int, spatial_dim: int, radius: float, strength: float,
                 sigma_fade: float) -> None:
        super().__init__()
        if not (radius > 0 and strength > 0 and sigma_fade > 0):
            raise ValueError(f"soft core needs radius, strength and sigma_fade > 0, got "
                             f"{radius}, {strength}, {sigma_fade}")
        self.n, self.d = int(n_particles), int(spatial_dim)
        self.radius, self.strength, self.sigma_fade = float(radius), float(strength), float(sigma_fade)
        i, j = torch.triu_indices(self.n, self.n, offset=1)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)

    def fade(self, s: torch.Tensor) -> torch.Tensor:
        return self.sigma_fade**2 / (self.sigma_fade**2 + s**2)

    def _pairs(self, x: torch.Tensor, s: torch.Tensor):
        """(pair differences (B, pairs, d), distances, gaps max(0, r₀ − r), λ(σ) (B, 1), u (B,))."""
        p = x.reshape(x.shape[0], self.n, self.d)
        diff = p[:, self.pair_i] - p[:, self.pair_j]
        r = torch.sqrt((diff * diff).sum(-1) + 1e-12)
        gap = torch.clamp(self.radius - r, min=0.0)
        lam = self.fade(s)
        return diff, r, gap, lam, lam[:, 0] * self.strength * (gap * gap).sum(-1)

    def energy(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The prior alone (differentiable by autograd), shape (batch,)."""
        return self._pairs(x, s)[-1]

    def energy_and_grad(self, x: torch.Tensor, s: torch.Tensor):
        diff, r, gap, lam, u = self._pairs(x, s)
        # d/dx_i of k·gap² = −2k·gap·(x_i − x_j)/r; x_j gets the opposite
        fij = (-2.0 * self.strength) * (lam * gap / r)[..., None] * diff  # (B, pairs, d)
        g = torch.zeros(x.shape[0], self.n, self.d, dtype=x.dtype, device=x.device)
        g = g.index_add(1, self.pair_i, fij).index_add(1, self.pair_j, -fij)
        return u, g.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, strength={self.strength}, sigma_fade={self.sigma_fade}"


class _Preconditioned(nn.Module):
    def __init__(self, net: nn.Module, sigma_data: float = 1.0, project: Callable | None = None,
                 centre: bool = False) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        if centre and project is None:
            raise ValueError("centre=True needs a projection (the centre-of-mass removal)")
        self.net = net
        self.sigma_data = float(sigma_data)
        self._project = project
        self.centre = bool(centre)

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return v if self._project is None else self._project(v)

    def _centred(self, x: torch.Tensor) -> torch.Tensor:
        """x_c = P x for molecules (``centre``), x itself otherwise."""
        return self.project(x) if self.centre else x


class ScoreModel(_Preconditioned):
    """D_θ(x, σ) = c_skip·x + c_out·F_θ(c_in·x, c_noise); s_θ = (D_θ − x)/σ²."""

    def denoise(self, x: torch.Tensor, sigma, temperature: torch.Tensor | None = None) -> torch.Tensor:
        s = _sigma_column(sigma, x)
        c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
        xc = self._centred(x)
        f = self.net(c_in * xc, c_noise[:, 0], temperature)
        d = self.project(c_skip * xc + c_out * f)
        return d + (x - xc) if self.centre else d

    def score(self, x: torch.Tensor, sigma, temperature: torch.Tensor | None = None) -> torch.Tensor:
        s = _sigma_column(sigma, x)
        return (self.denoise(x, s[:, 0], temperature) - x) / s**2

    forward = denoise


class EnergyModel(_Preconditioned):
    """U_η(x, σ) = ‖x‖²/(2(σ_d²+σ²)) − σ_d⟨F_η(c_in x, c_noise), c_in x⟩/σ; D_E = x − σ²∇ₓU_η."""

    def __init__(
        self, net: nn.Module, sigma_data: float = 1.0, project: Callable | None = None,
        centre: bool = False, analytic_grad: bool = False, core: SoftCore | None = None,
    ) -> None:
        super().__init__(net, sigma_data, project, centre)
        if core is not None and centre:
            raise ValueError("the soft-core prior is for particle systems, not centred molecules")
        self.core = core
        if analytic_grad and not hasattr(net, "forward_vjp"):
            raise ValueError(f"analytic_grad needs a net with forward_vjp (EGNN), not {type(net).__name__}")
        if analytic_grad and centre:
            raise ValueError("analytic_grad is for particle systems (EGNN), not centred molecules")
        self.analytic_grad = bool(analytic_grad)

    def energy(self, x: torch.Tensor, sigma, temperature: torch.Tensor | None = None) -> torch.Tensor:
        """U_η(x, σ), shape (batch,); differentiable in x, σ and the parameters."""
        s = _sigma_column(sigma, x)
        _, _, c_in, c_noise = edm_coefficients(s, self.sigma_data)
        x = self._centred(x)
        xin = c_in * x
        f = self.net(xin, c_noise[:, 0], temperature)
        quad = (x * x).sum(-1) / (2.0 * (self.sigma_data**2 + s[:, 0] ** 2))
        u = quad - self.sigma_data * (f * xin).sum(-1) / s[:, 0]
        if self.core is not None:
            u = u + self.core.energy(x, s)
        return u

    def grad_x(
        self, x: torch.Tensor, sigma, temperature: torch.Tensor | None = None, create_graph: bool = False
    ) -> torch.Tensor:
        """∇ₓU_η (batch, dim) by autograd; ``create_graph=True`` for double backprop (distillation)."""
        return self.energy_and_grad(x, sigma, temperature, create_graph)[1]

    def analytic_energy_and_grad(self, x: torch.Tensor, sigma, temperature: torch.Tensor | None = None):
        """(U_η, ∇ₓU_η) with ∇ₓU_η from the net's ``forward_vjp``: ordinary ops, differentiable in
        x, σ and the parameters (one backward through it = autograd's double backward)."""
        s = _sigma_column(sigma, x)
        _, _, c_in, c_noise = edm_coefficients(s, self.sigma_data)
        xin = c_in * x
        f, jtv = self.net.forward_vjp(xin, c_noise[:, 0], temperature, xin)
        var = self.sigma_data**2 + s**2  # (batch, 1)
        u = (x * x).sum(-1) / (2.0 * var[:, 0]) - self.sigma_data * (f * xin).sum(-1) / s[:, 0]
        # ∇ₓ⟨F(c_in x), c_in x⟩ = c_in (F + J_Fᵀ c_in x)
        g = x / var - (self.sigma_data * c_in / s) * (f + jtv)
        if self.core is not None:
            uc, gc = self.core.energy_and_grad(x, s)
            u, g = u + uc, g + gc
        return u, self.project(g)

    def energy_and_grad(self, x, sigma, temperature=None, create_graph: bool = False):
        """(U_η (batch,), ∇ₓU_η (batch, dim)); detached from the graph unless ``create_graph``."""
        if self.analytic_grad:
            if create_graph:
                return self.analytic_energy_and_grad(x, sigma, temperature)
            with torch.no_grad():
                return self.analytic_energy_and_grad(x.detach(), sigma, temperature)
        if torch.compiler.is_compiling():  # inside TrainConfig.compile's graph: see _func_energy_and_grad
            u, g = self._func_energy_and_grad(x, sigma, temperature)
        else:
            with torch.enable_grad():
                xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
                u = self.energy(xg, sigma, temperature)
                (g,) = torch.autograd.grad(u.sum(), xg, create_graph=create_graph)
        g = self.project(g)
        return (u, g) if create_graph else (u.detach(), g.detach())

    def _func_energy_and_grad(self, x, sigma, temperature=None):
        """(U_η, ∇ₓU_η before projection) through ``torch.func.grad``: the same numbers as the autograd
        path, differentiable in the parameters, and traceable by ``torch.compile`` (which breaks its
        graph at ``torch.autograd.grad``). So with ``TrainConfig.compile`` a net without
        ``forward_vjp`` (the peptide transformer) gets its distillation and force-matching double
        backward compiled into the step's graph as ordinary ops (docs/diffusion.md, measured in
        ``benchmarks/bench_peptide_train_speed.py``)."""

        def total(xx):
            u = self.energy(xx, sigma, temperature)
            return u.sum(), u

        g, u = torch.func.grad(total, has_aux=True)(x)
        return u, g

    def denoise(self, x, sigma, temperature=None, create_graph: bool = False) -> torch.Tensor:
        """D_E(x, σ) = x − σ²∇ₓU_η(x, σ)."""
        s = _sigma_column(sigma, x)
        return x - s**2 * self.grad_x(x, s[:, 0], temperature, create_graph)

    def score(self, x, sigma, temperature=None, create_graph: bool = False) -> torch.Tensor:
        """s_E = −∇ₓU_η."""
        return -self.grad_x(x, sigma, temperature, create_graph)

    forward = energy
