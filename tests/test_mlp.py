"""MLP backbone and the noise embedding."""

from __future__ import annotations

import pytest
import torch
from fixtures import seeded

from boltzpath.diffusion.precond import ScoreModel, edm_coefficients
from boltzpath.nets import MLP, NoiseEmbedding


def test_shapes_and_zero_initial_readout():
    net = MLP(5, hidden=16, layers=2, emb_dim=8)
    x = torch.randn(7, 5, generator=seeded(0))
    assert net(x, torch.zeros(7)).shape == (7, 5)
    # zero-initialised read-out: the untrained denoiser is c_skip·x (optimal for N(0, σ_d²) data)
    sigma = torch.full((7,), 0.8)
    c_skip = edm_coefficients(sigma)[0][:, None]
    torch.testing.assert_close(ScoreModel(net).denoise(x, sigma), c_skip * x)


def test_embedding_distinguishes_noise_levels():
    emb = NoiseEmbedding(16)
    c = 0.25 * torch.log(torch.tensor([0.01, 0.0101, 0.5, 80.0]))
    e = emb(c)
    assert e.shape == (4, 16)
    # neighbouring levels differ (smoothly), far levels differ more
    assert 0 < float((e[0] - e[1]).norm()) < float((e[0] - e[3]).norm())


def test_temperature_conditioning():
    net = MLP(2, hidden=8, layers=1, emb_dim=8, temperature_conditioned=True)
    torch.nn.init.normal_(net.readout.weight)
    x, c = torch.randn(3, 2, generator=seeded(1)), torch.zeros(3)
    assert float((net(x, c, torch.ones(3)) - net(x, c, torch.full((3,), 3.0))).abs().max()) > 1e-4
    with pytest.raises(ValueError):
        net(x, c)


def test_bad_sizes():
    with pytest.raises(ValueError):
        MLP(0)
    with pytest.raises(ValueError):
        NoiseEmbedding(7)
