"""The model the annealer simulates: U_t(x) (an energy on the noised path), its score, ∂U/∂t.

A ``DiffusionModel`` has ``dim`` and, for positions x (batch, dim) and a time t ∈ [0, 1]:

* ``energy(x, t)``      U_t(x), shape (batch,) — −log p_t up to a constant in x;
* ``grad_energy(x, t)`` ∇ₓU_t(x), (batch, dim);
* ``score(x, t)``       s_t(x) ≈ ∇ log p_t(x), (batch, dim) — a score network, or −∇U;
* ``dU_dt(x, t)``       ∂U_t/∂t, (batch,) — autograd through σ(t);
* ``divergence(x, t, method, generator)`` ∇·s_t(x), (batch,) — ``smc.divergence``;
* ``terms(x, t, ...)``  all of the above that one Feynman–Kac step needs, computed together.

``NetworkModel`` adapts trained networks (an energy network U_η(x, σ) and optionally a score
network s_θ(x, σ), both per-sample in x and conditioned on σ = σ(t)); with only an energy network
the score is s = −∇U and its divergence is −ΔU (second derivatives by autograd).
``smc.exact.GaussianMixtureVE`` is the analytic model used by the exactness tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.smc.divergence import divergence as field_divergence

Net = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ModelTerms:
    """What one FK step needs at (x, t): s (batch, d), ∇U (batch, d), ∂U/∂t (batch,), ∇·s (batch,)."""

    score: torch.Tensor
    grad_energy: torch.Tensor
    du_dt: torch.Tensor
    div_score: torch.Tensor


class DiffusionModel(Protocol):
    dim: int

    def energy(self, x: torch.Tensor, t: float) -> torch.Tensor: ...

    def grad_energy(self, x: torch.Tensor, t: float) -> torch.Tensor: ...

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor: ...

    def dU_dt(self, x: torch.Tensor, t: float) -> torch.Tensor: ...

    def divergence(
        self, x: torch.Tensor, t: float, method: str = "exact", generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    def terms(
        self,
        x: torch.Tensor,
        t: float,
        method: str = "exact",
        generator: torch.Generator | None = None,
        n_probes: int = 1,
    ) -> ModelTerms: ...


class NetworkModel:
    """U_t and s_t from networks ``energy_net(x, σ) -> (batch,)`` and ``score_net(x, σ) -> (batch, d)``.

    σ is passed as a (batch,) tensor σ(t); ∂U/∂t = ∂U/∂σ · dσ/dt comes from autograd through
    ``schedule.sigma`` on a per-sample copy of t. ``project`` (CoM removal for particle systems)
    is applied to the score, ∇U and Hutchinson probes. Networks are used in eval mode, no
    parameter gradients are kept.
    """

    def __init__(
        self,
        schedule: KarrasSchedule,
        dim: int,
        energy_net: Net | None = None,
        score_net: Net | None = None,
        project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if energy_net is None:
            raise BadInput("NetworkModel needs an energy network (U_t drives the annealing weights)")
        self.schedule, self.dim = schedule, int(dim)
        self.energy_net, self.score_net = energy_net, score_net
        self._project = project or (lambda v: v)

    @classmethod
    def from_diffusion(cls, score_model, energy_model, schedule: KarrasSchedule, dim: int, project=None,
                       temperature: float | None = None):
        """Wrap ``boltzpath.diffusion`` models (``EnergyModel.energy(x, σ)``, ``ScoreModel.score(x, σ)``;
        ``score_model`` None → s = −∇U). The modules are put in eval mode with frozen parameters.
        ``temperature``: the temperature at which a temperature-conditioned model is read."""
        for m in (score_model, energy_model):
            if m is not None:
                m.eval()
                m.requires_grad_(False)

        def temp(x):
            if temperature is None:
                return None
            return torch.full((x.shape[0],), float(temperature), dtype=x.dtype, device=x.device)

        score_fn = None if score_model is None else (lambda x, s: score_model.score(x, s, temp(x)))
        return cls(schedule, dim, lambda x, s: energy_model.energy(x, s, temp(x)), score_fn, project)

    def _t(self, x: torch.Tensor, t: float, requires_grad: bool = False) -> torch.Tensor:
        tt = torch.full((x.shape[0],), float(t), dtype=torch.float64, device=x.device)
        return tt.requires_grad_(requires_grad)

    def _sigma(self, x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return self.schedule.sigma(tt).to(x.dtype)

    def energy(self, x: torch.Tensor, t: float) -> torch.Tensor:
        with torch.no_grad():
            return self.energy_net(x, self._sigma(x, self._t(x, t)))

    def _energy_grads(self, x: torch.Tensor, t: float, create_graph: bool = False):
        """(U, ∇U, ∂U/∂t) with autograd; ∇U keeps its graph when ``create_graph``."""
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            tt = self._t(x, t, requires_grad=True)
            u = self.energy_net(xg, self._sigma(x, tt))
            gx, gt = torch.autograd.grad(u.sum(), (xg, tt), create_graph=create_graph)
        return u, self._project(gx), gt

    def grad_energy(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self._energy_grads(x, t)[1].detach()

    def dU_dt(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self._energy_grads(x, t)[2].detach()

    def _score_field(self, t: float):
        if self.score_net is not None:

            def field(xg: torch.Tensor) -> torch.Tensor:
                return self._project(self.score_net(xg, self._sigma(xg, self._t(xg, t))))

        else:

            def field(xg: torch.Tensor) -> torch.Tensor:
                return -self._energy_grads(xg, t, create_graph=True)[1]

        return field

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        if self.score_net is None:
            return -self.grad_energy(x, t)
        with torch.no_grad():
            return self._score_field(t)(x)

    def divergence(self, x, t, method="exact", generator=None, n_probes: int = 1) -> torch.Tensor:
        return field_divergence(self._score_field(t), x, method, generator, n_probes, self._project)[0]

    def terms(self, x, t, method="exact", generator=None, n_probes: int = 1) -> ModelTerms:
        div, s = field_divergence(self._score_field(t), x, method, generator, n_probes, self._project)
        _, gu, dudt = self._energy_grads(x, t)
        return ModelTerms(score=s, grad_energy=gu.detach(), du_dt=dudt.detach(), div_score=div)
