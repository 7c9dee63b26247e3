"""The discrete variance-preserving (DDPM) noise levels of DiKL (SPEC §7).

Levels t = 1..T with a linear β schedule β_t = β_start + (t − 1)(β_end − β_start)/(T − 1):

    ᾱ_t = Π_{s≤t} (1 − β_s),   α_t = √ᾱ_t,   σ_t = √(1 − ᾱ_t)   (so α_t² + σ_t² = 1)

and the kernel k_t(x_t | x) = N(α_t x, σ_t² I). Levels are addressed by 0-based index i = t − 1.
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

    def validate(self) -> None:
        if self.steps < 1:
            raise BadInput(f"ddpm.steps must be >= 1, got {self.steps}")
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
