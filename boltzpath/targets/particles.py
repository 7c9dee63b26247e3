"""Particle systems (SPEC §2): DW-4 and Lennard-Jones clusters, centre-of-mass free."""

from __future__ import annotations

import torch

from boltzpath.errors import BadInput
from boltzpath.targets.base import ParticleTarget


class DoubleWellParticles(ParticleTarget):
    """``dw4``: E = Σ_{i<j} [a(d_ij − d0)⁴ + b(d_ij − d0)²], a = 0.9, b = −4, d0 = 4, kT = 1."""

    name = "dw4"

    def __init__(self, n_particles=4, spatial_dim=2, a=0.9, b=-4.0, d0=4.0, temperature=None):
        super().__init__(n_particles, spatial_dim, temperature)
        self.a, self.b, self.d0 = float(a), float(b), float(d0)

    def _reference_energy(self, x):
        d = self.pairwise_distances(x) - self.d0
        return (self.a * d**4 + self.b * d**2).sum(-1)

    def prior_sample(self, n, generator, dtype=torch.float32):
        x = 2.0 * torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=generator.device)
        return self.project(x).to(dtype)

    def options(self):
        return {"n_particles": self.n_particles, "spatial_dim": self.spatial_dim, "a": self.a,
                "b": self.b, "d0": self.d0}


class LennardJones(ParticleTarget):
    """``lj13``/``lj55``: E = f·Σ_{i<j} ε[(r_m/r)¹² − 2(r_m/r)⁶] + c·½Σ_i‖x_i − x̄‖².

    ``pair_factor`` f = 2 (ordered pairs) is the DEM/PITA/DiKL convention of all published
    numbers; f = 1 is bgflow's. ``oscillator`` is c. ε = r_m = 1 by default.
    """

    name = "lj"

    def __init__(self, n_particles=13, spatial_dim=3, pair_factor=2.0, oscillator=1.0,
                 epsilon=1.0, r_m=1.0, temperature=None):
        if n_particles < 2:
            raise BadInput("a Lennard-Jones cluster needs at least 2 particles")
        super().__init__(n_particles, spatial_dim, temperature)
        self.pair_factor, self.oscillator = float(pair_factor), float(oscillator)
        self.epsilon, self.r_m = float(epsilon), float(r_m)
        self.name = f"lj{n_particles}"

    def _reference_energy(self, x):
        r = self.pairwise_distances(x)
        s6 = (self.r_m / r) ** 6
        e_lj = self.pair_factor * self.epsilon * (s6 * s6 - 2 * s6).sum(-1)
        p = self.as_particles(x)
        e_osc = 0.5 * self.oscillator * ((p - p.mean(1, keepdim=True)) ** 2).sum((-1, -2))
        return e_lj + e_osc

    def prior_sample(self, n, generator, dtype=torch.float32):
        """Random points in a ball of the cluster's size, rejecting overlaps (r < 0.7 r_m)."""
        radius = self.r_m * (self.n_particles ** (1 / 3)) * 0.6
        out = torch.empty(n, self.dim, dtype=torch.float64, device=generator.device)
        filled = 0
        while filled < n:
            m = 4 * (n - filled)
            x = torch.randn(m, self.dim, generator=generator, dtype=torch.float64, device=generator.device)
            x = radius * x
            ok = self.pairwise_distances(x).min(1).values > 0.7 * self.r_m
            x = x[ok][: n - filled]
            out[filled : filled + x.shape[0]] = x
            filled += x.shape[0]
        return self.project(out).to(dtype)

    def options(self):
        return {"n_particles": self.n_particles, "spatial_dim": self.spatial_dim,
                "pair_factor": self.pair_factor, "oscillator": self.oscillator,
                "epsilon": self.epsilon, "r_m": self.r_m}
