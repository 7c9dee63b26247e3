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


def sinusoidal_features(u: torch.Tensor, dim: int, max_period: float = 1e3) -> torch.Tensor:
    """[cos(ω_k·100u), sin(ω_k·100u)], ω_k = max_period^{−k/(dim/2)}, k < dim/2; (batch,) → (batch, dim)."""
    half = dim // 2
    k = torch.arange(half, dtype=u.dtype, device=u.device)
    freqs = torch.exp(-math.log(max_period) * k / half)
    # u is O(1) (¼ ln σ ∈ [−1.2, 1.1] over the schedule): scale so the fastest frequency resolves it
    angles = (100.0 * u)[:, None] * freqs[None, :]
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
