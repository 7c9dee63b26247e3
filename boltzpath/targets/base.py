"""The Target protocol: what distribution, at which temperature, with counted energy calls.

A target works in reduced units: ``energy(x)`` is E/kT at the target's current temperature and
``log_prob(x) = -energy(x)`` (SPEC §1). ``at_temperature(T)`` gives a re-tempered copy that
shares the evaluation counter, so parallel tempering or PITA count every call against one total.

Subclasses implement ``_reference_energy(x)``: E/kT at ``reference_temperature`` for a batch
``x`` of shape (batch, dim). Tempering rescales it by ``reference_temperature / temperature``.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from boltzpath.errors import BadInput


@dataclass
class EvaluationCounter:
    """Counts target energy evaluations: one per configuration per call, gradients included."""

    count: int = 0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, n: int) -> None:
        with self._lock:
            self.count += int(n)
            self.calls += 1

    def reset(self) -> None:
        with self._lock:
            self.count = 0
            self.calls = 0


class Target:
    """Base class of every target. See the module docstring for the contract."""

    name: str = "target"
    dim: int
    #: the temperature at which ``_reference_energy`` is E/kT (reduced units, or kelvin for molecules)
    reference_temperature: float = 1.0
    temperature_unit: str = "reduced"
    #: particle systems override these and live in the centre-of-mass-free subspace
    n_particles: int | None = None
    spatial_dim: int | None = None

    def __init__(self, dim: int, temperature: float | None = None) -> None:
        self.dim = int(dim)
        self.temperature = float(self.reference_temperature if temperature is None else temperature)
        if not self.temperature > 0:
            raise BadInput(f"temperature must be > 0, got {self.temperature}")
        self.counter = EvaluationCounter()

    # ----------------------------------------------------------------- subclass API
    def _reference_energy(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The constructor options that rebuild this target (saved in run configs)."""
        return {}

    # ----------------------------------------------------------------- public API
    @property
    def beta_scale(self) -> float:
        """Factor turning reference-temperature E/kT into E/kT at ``self.temperature``."""
        return self.reference_temperature / self.temperature

    @property
    def is_particle_system(self) -> bool:
        return self.n_particles is not None

    def at_temperature(self, temperature: float) -> Target:
        """A copy at another temperature, sharing this target's evaluation counter."""
        if not float(temperature) > 0:
            raise BadInput(f"temperature must be > 0, got {temperature}")
        other = copy.copy(self)
        other.temperature = float(temperature)
        return other

    def to(self, device: str | torch.device) -> Target:
        """This target with its tensors (and torch modules) on ``device``: a copy sharing the evaluation
        counter, or ``self`` when nothing needs to move. Sample on the device the target lives on."""
        dev = torch.device(device)
        moved: dict[str, Any] = {}
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor) and value.device != dev:
                moved[key] = value.to(dev)
            elif isinstance(value, torch.nn.Module) and any(
                    t.device != dev for t in value.state_dict().values()):
                moved[key] = copy.deepcopy(value).to(dev)
        if not moved:
            return self
        other = copy.copy(self)
        other.__dict__.update(moved)
        return other

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise BadInput(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise BadInput(
                f"{self.name}: expected positions of shape (batch, {self.dim}), got {tuple(x.shape)}"
            )
        return x

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E/kT at the current temperature, shape (batch,). Counted; differentiable."""
        x = self.check_input(x)
        self.counter.add(x.shape[0])
        return self._reference_energy(x) * self.beta_scale

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -self.energy(x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E/kT, dE/dx / kT) for a batch, detached. One counted evaluation per configuration."""
        x = self.check_input(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self.energy(xg)
            (g,) = torch.autograd.grad(e.sum(), xg)
        return e.detach(), self.project(g.detach())

    def force(self, x: torch.Tensor) -> torch.Tensor:
        """-dE/dx in units of kT per length unit (the score of p)."""
        return -self.energy_and_grad(x)[1]

    score = force

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """Project onto the subspace the target lives in (identity unless a particle system)."""
        return v

    def prior_sample(self, n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
        """A broad, cheap initialisation for chains (not a sample of the target)."""
        x = torch.randn(n, self.dim, generator=generator, dtype=dtype, device=generator.device)
        return self.project(x)

    # exact samplers / normalisers where they exist
    has_exact_sampler: bool = False

    def exact_sample(self, n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
        raise BadInput(f"{self.name} has no exact sampler")

    def log_z(self) -> float:
        """log ∫ exp(-energy) dx at the current temperature, where known."""
        raise BadInput(f"{self.name} has no known log Z")

    def sampler_defaults(self, method: str) -> dict[str, Any]:
        """Per-target defaults of sampling method ``method`` (a partial config mapping), applied
        under the user's own options by ``mcmc.registry.method_config(..., target=...)``. None here:
        every method keeps its dataclass defaults; stiff targets (peptides) override this."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "temperature": self.temperature,
            "temperature_unit": self.temperature_unit,
            "options": self.options(),
        }


class ParticleTarget(Target):
    """A system of ``n_particles`` in ``spatial_dim`` dimensions, flattened to (batch, n·d).

    Lives in the centre-of-mass-free subspace: ``project`` subtracts the particle mean.
    """

    def __init__(self, n_particles: int, spatial_dim: int, temperature: float | None = None):
        self.n_particles = int(n_particles)
        self.spatial_dim = int(spatial_dim)
        super().__init__(self.n_particles * self.spatial_dim, temperature)

    def as_particles(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.n_particles, self.spatial_dim)

    def project(self, v: torch.Tensor) -> torch.Tensor:
        p = v.reshape(v.shape[0], self.n_particles, self.spatial_dim)
        return (p - p.mean(dim=1, keepdim=True)).reshape(v.shape)

    def pairwise_distances(self, x: torch.Tensor) -> torch.Tensor:
        """All i<j distances, shape (batch, n(n-1)/2)."""
        p = self.as_particles(x)
        i, j = torch.triu_indices(self.n_particles, self.n_particles, offset=1, device=x.device)
        return (p[:, i] - p[:, j]).norm(dim=-1)
