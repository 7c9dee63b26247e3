"""The DiGS noise schedule: variance-preserving levels σ₁ < … < σ_T, α = √(1 − σ²) (SPEC §4).

A level adds noise x̃ = αx + σε; what matters for a sweep is the *proposal scale* σ/α, the
standard deviation of the denoising-posterior initialisation x' ~ N(x̃/α, (σ/α)²I) around x̃/α
(in the units of x). Small σ/α refines inside a mode; σ/α comparable to the distance between
modes lets the chain jump (seed talk, "Choosing the right noise level is important").

The schedule is either an explicit list ``sigmas`` or a geometric grid ``(sigma_min, sigma_max,
count)``. Fields left unset are filled from a per-target default (``DEFAULT_NOISE``) whose
reasoning is written next to it and in ``docs/digs.md``. The grid is geometric in the proposal
scale σ/α = σ/√(1 − σ²) (the same as geometric in σ for σ ≪ 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from boltzpath.errors import BadInput

#: (sigma_min, sigma_max, count) per target name, VP σ ∈ (0, 1). Proposal scale σ/α in brackets.
DEFAULT_NOISE: dict[str, tuple[float, float, int]] = {
    # 40 modes of std 1.31 in an 80 × 80 box, nearest neighbours ~ 6–12 apart: the largest level
    # proposes across the box (σ/α ≈ 32) so mode weights equilibrate globally, not by diffusion
    # from neighbour to neighbour; the smallest refines within one mode (σ/α ≈ 0.3).
    "gmm40": (0.3, 0.9995, 6),
    # 16 independent double wells (minima ±1.7, barrier ≈ 9 kT) in 32-D: a large σ/α moves all
    # 32 coordinates at once and is always rejected, so the top level stays near the well width.
    "manywell32": (0.05, 0.6, 6),
    # DW-4: pair distances switch between d ≈ 2.5 and 5.5 (barrier ≈ 4.4 kT per pair), so σ/α up
    # to ~0.5 can propose a switch; small levels refine.
    "dw4": (0.02, 0.45, 6),
    # LJ-13: stiff repulsion (MALA's adapted step ≈ 1e-3). The proposal is accepted only for
    # σ/α ≲ 0.05 in 36 free coordinates, and the conditional's extra curvature α²/σ² caps the
    # inner MALA step at ~(σ/α)², so small levels crawl; large levels make the conditional ≈ p
    # and the inner steps ≈ plain MALA. A short range across both regimes (measured, docs/digs.md).
    "lj13": (0.03, 0.3, 4),
    "lj55": (0.02, 0.2, 4),
    # Peptides in Cartesian nm (docs/molecules.md): bonds are stiff (Hessian up to 5.5e5 kT/nm²),
    # so an isotropic proposal over all 66 (96) coordinates is accepted only for σ/α ≲ 1e-3 nm
    # (aldp-fab, measured: acceptance 0.34 at 5e-4, 0.02 at 1.4e-3, 0 at ≥ 4e-3) — far below the
    # ~0.1 nm an atom moves between Ramachandran basins, so no level can jump a basin. The smallest
    # level is where the Gibbs step is accepted; the largest (σ/α = 0.02, conditional curvature
    # α²/σ² = 2.5e3 ≪ the bonds') leaves the inner MALA at its unconditional step (~1.5e-6). The
    # generic (0.05, 0.7) had proposal scales 0.05–1 nm: never accepted, DiGS = slow MALA.
    "aldp-fab": (5e-4, 0.02, 3),
    "aldp-pita": (5e-4, 0.02, 3),
    "al3": (5e-4, 0.02, 3),
}
#: fallback for targets not listed: a local-to-moderate range in the target's own units
GENERIC_NOISE: tuple[float, float, int] = (0.05, 0.7, 6)


@dataclass
class NoiseConfig:
    """Noise levels: explicit ``sigmas`` (increasing, each in (0, 1)) or a geometric grid."""

    sigmas: list[float] | None = None
    sigma_min: float | None = None
    sigma_max: float | None = None
    count: int | None = None

    def validate(self) -> None:
        if self.sigmas is not None:
            if len(self.sigmas) == 0:
                raise BadInput("noise.sigmas must not be empty")
            _check_sigmas(list(self.sigmas), "noise.sigmas")
            return
        for name in ("sigma_min", "sigma_max"):
            v = getattr(self, name)
            if v is not None and not 0 < v < 1:
                raise BadInput(f"noise.{name} must be in (0, 1) (variance preserving), got {v}")
        if self.count is not None and self.count < 1:
            raise BadInput(f"noise.count must be >= 1, got {self.count}")
        if self.sigma_min is not None and self.sigma_max is not None and self.sigma_min > self.sigma_max:
            raise BadInput(f"noise.sigma_min {self.sigma_min} must be <= noise.sigma_max {self.sigma_max}")

    def resolve(self, target_name: str) -> list[float]:
        """The increasing list σ₁ < … < σ_T for ``target_name`` (defaults fill unset fields)."""
        self.validate()
        if self.sigmas is not None:
            return [float(s) for s in self.sigmas]
        lo, hi, count = DEFAULT_NOISE.get(target_name, GENERIC_NOISE)
        lo = self.sigma_min if self.sigma_min is not None else lo
        hi = self.sigma_max if self.sigma_max is not None else hi
        count = self.count if self.count is not None else count
        if lo > hi:
            raise BadInput(f"noise: sigma_min {lo} > sigma_max {hi} with the {target_name} defaults")
        sigmas = geometric_sigmas(lo, hi, count)
        _check_sigmas(sigmas, "noise")
        return sigmas


def geometric_sigmas(sigma_min: float, sigma_max: float, count: int) -> list[float]:
    """``count`` levels from σ_min to σ_max, equally spaced in log(σ/α), the log proposal scale.

    For σ ≪ 1 this is the geometric grid in σ; near σ = 1 it does not crowd the small levels
    (σ/α grows without bound as σ → 1, so equal steps in log σ would waste levels).
    """
    if count == 1:
        return [float(sigma_max)]
    lo, hi = math.log(sigma_min / alpha_of(sigma_min)), math.log(sigma_max / alpha_of(sigma_max))
    ratios = [math.exp(lo + (hi - lo) * k / (count - 1)) for k in range(count)]
    return [float(r / math.sqrt(1.0 + r * r)) for r in ratios]


def alpha_of(sigma: float) -> float:
    """Variance preserving: α² + σ² = 1."""
    return math.sqrt(1.0 - sigma * sigma)


def _check_sigmas(sigmas: list[float], where: str) -> None:
    for s in sigmas:
        if not 0 < s < 1:
            raise BadInput(f"{where}: every σ must be in (0, 1) (variance preserving), got {s}")
    if any(b <= a for a, b in zip(sigmas, sigmas[1:], strict=False)):
        raise BadInput(f"{where}: σ levels must be strictly increasing, got {sigmas}")
