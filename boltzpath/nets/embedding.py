"""Conditioning embeddings: the EDM noise input c_noise = ¼ ln σ and an optional temperature.

``NoiseEmbedding(dim)`` maps c_noise (batch,) to sinusoidal features (batch, dim) with
geometrically spaced frequencies, followed by a two-layer SiLU MLP. When the model is
temperature-conditioned, ln T (batch,) is embedded the same way and added, so one network can
serve every temperature of a PITA ladder.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_features(u: torch.Tensor, dim: int, max_frequency: float = 16.0) -> torch.Tensor:
    """[cos(ω_k u), sin(ω_k u)], ω_k geometric in [1, max_frequency], k < dim/2; (batch,) → (batch, dim).

    u = c_noise = ¼ ln σ spans ≈ [−1.2, 1.1] over the schedule: the slowest feature is smooth in σ
    (neighbouring noise levels share their embedding, so the net generalises across σ) and the
    fastest resolves ≈ 16 rad per unit of u.
    """
    half = dim // 2
    freqs = torch.logspace(0.0, math.log10(max_frequency), half, dtype=u.dtype, device=u.device)
    angles = u[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class NoiseEmbedding(nn.Module):
    """(c_noise, temperature | None) → embedding of shape (batch, dim)."""

    def __init__(self, dim: int, temperature_conditioned: bool = False) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"embedding dim must be even and >= 2, got {dim}")
        self.dim = int(dim)
        self.temperature_conditioned = bool(temperature_conditioned)
        self.noise_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.temperature_mlp = (
            nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
            if temperature_conditioned
            else None
        )

    def forward(self, c_noise: torch.Tensor, temperature: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.noise_mlp(sinusoidal_features(c_noise, self.dim))
        if self.temperature_mlp is not None:
            if temperature is None:
                raise ValueError("this network is temperature-conditioned: pass temperature")
            log_t = torch.log(temperature.to(c_noise.dtype))
            emb = emb + self.temperature_mlp(sinusoidal_features(log_t / 4.0, self.dim))
        return emb
