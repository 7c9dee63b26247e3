"""The discrete variance-preserving (DDPM) noise levels of DiKL (SPEC §7).

Levels t = 1..T with a linear β schedule β_t = β_start + (t − 1)(β_end − β_start)/(T − 1):

    ᾱ_t = Π_{s≤t} (1 − β_s),   α_t = √ᾱ_t,   σ_t = √(1 − ᾱ_t)   (so α_t² + σ_t² = 1)

and the kernel k_t(x_t | x) = N(α_t x, σ_t² I). Levels are addressed by 0-based index i = t − 1.
Training draws levels uniformly from i ∈ {``first_level``, …, T − 1}: by default the smallest level
(i = 0, σ ≈ √β_start, 0.01 at β_start = 1e-4) is left out, as in the released code (its level draw
is ``randint(1, T)``). There the model score −ε_φ/σ multiplies the network's error by 1/σ = 100: on
gmm40 a 64×3 score net trained by DSM on exact target samples had a per-row score error ≈ 7 at
i = 0 against ≈ 0.6 at i = 1..12, so the 1/30 of rows at i = 0 carried most of the gradient noise.
The objective's weights are w(t) = 1/α_t (``inv_alpha``, released MoG/MW setup) or 1 (``uniform``,
DW/LJ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput

WEIGHTINGS = ("inv_alpha", "uniform")


@dataclass
class DDPMConfig:
    steps: int = 30
    beta_start: float = 1e-4
    beta_end: float = 0.7
    first_level: int = 1

    def validate(self) -> None:
        if self.steps < 1:
            raise BadInput(f"ddpm.steps must be >= 1, got {self.steps}")
        if not 0 <= self.first_level < self.steps:
            raise BadInput(f"ddpm.first_level must be in [0, steps - 1] = [0, {self.steps - 1}], "
                           f"got {self.first_level}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise BadInput(f"ddpm: need 0 < beta_start <= beta_end < 1, got {self.beta_start}, "
                           f"{self.beta_end}")


class VPSchedule:
    """α_t, σ_t (float64 tensors of shape (T,)) of a linear-β DDPM schedule; see the module docstring."""

    def __init__(self, cfg: DDPMConfig) -> None:
        cfg.validate()
        t = torch.arange(cfg.steps, dtype=torch.float64)
        beta = cfg.beta_start + t * (cfg.beta_end - cfg.beta_start) / max(cfg.steps - 1, 1)
        alpha_bar = torch.cumprod(1.0 - beta, dim=0)
        self.beta = beta
        self.alpha = alpha_bar.sqrt()
        self.sigma = (1.0 - alpha_bar).sqrt()
        self.steps = cfg.steps
        self.first_level = cfg.first_level

    def draw_levels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` level indices, uniform on {first_level, …, T − 1}, on ``generator``'s device."""
        return torch.randint(self.first_level, self.steps, (n,), generator=generator, device=generator.device)

    def weights(self, kind: str) -> torch.Tensor:
        """w(t) per level (float64, (T,))."""
        if kind == "inv_alpha":
            return 1.0 / self.alpha
        if kind == "uniform":
            return torch.ones_like(self.alpha)
        raise BadInput(f"unknown weighting {kind!r}; use one of {', '.join(WEIGHTINGS)}")

    def columns(self, idx: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, σ) of levels ``idx`` (batch,) as (batch, 1) columns in ``dtype`` on ``idx``'s device."""
        dev = idx.device
        return self.alpha.to(dev)[idx].to(dtype)[:, None], self.sigma.to(dev)[idx].to(dtype)[:, None]
