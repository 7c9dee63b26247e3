"""MLP backbone for low-dimensional toys (gmm40, manywell32, 1-D tests).

F(x_in, c_noise, T) → (batch, dim): the input (batch, dim) is concatenated with the noise
(and temperature) embedding (batch, emb_dim), passed through ``layers`` SiLU hidden layers of
width ``hidden`` and a linear read-out initialised to zero, so an untrained denoiser starts as
D = c_skip·x (the optimal denoiser of N(0, σ_d² I) data).
"""

from __future__ import annotations

import torch
from torch import nn

from boltzpath.nets.embedding import NoiseEmbedding


class MLP(nn.Module):
    """Noise-conditioned MLP; ``forward(x, c_noise, temperature=None)`` → (batch, dim)."""

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        layers: int = 3,
        emb_dim: int = 32,
        temperature_conditioned: bool = False,
    ) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or layers < 1:
            raise ValueError(f"need dim, hidden, layers >= 1, got {dim}, {hidden}, {layers}")
        self.dim = int(dim)
        self.embedding = NoiseEmbedding(emb_dim, temperature_conditioned)
        blocks: list[nn.Module] = []
        width = dim + emb_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.readout = nn.Linear(hidden, dim)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, temperature: torch.Tensor | None = None):
        emb = self.embedding(c_noise, temperature)
        return self.readout(self.body(torch.cat([x, emb], dim=-1)))
