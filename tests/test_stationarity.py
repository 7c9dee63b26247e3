"""The configurational temperature: E[|∇U|²] = E[ΔU] for exact samples of exp(−U)."""

import numpy as np
import pytest
import torch

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.metrics.stationarity import configurational_temperature, laplacian_and_grad_sq


def test_laplacian_is_exact_on_a_quadratic():
    # U = Σ k_i x_i² / 2 written as a target: ΔU = Σ k_i, |∇U|² = Σ k_i² x_i²
    k = torch.tensor([1.0, 4.0, 100.0], dtype=torch.float64)

    class Quadratic:
        dim = 3

        def energy(self, x):
            return 0.5 * (k * x**2).sum(-1)

    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lap, g2 = laplacian_and_grad_sq(Quadratic(), x, chunk=2)
    assert np.allclose(lap, 105.0) and np.allclose(g2, ((k * x) ** 2).sum(1).numpy())


@pytest.mark.parametrize("name,noise", [("gmm40", 1.0), ("manywell32", 0.15)])
def test_exact_samples_give_one_and_heated_ones_do_not(name, noise):
    # exact samples: the ratio within 4 standard errors of 1 (the test's tolerance: a two-sided
    # 6e-5 false-alarm rate); the same samples with N(0, noise²) added per coordinate (hotter in
    # every direction; gmm40's components have sd 1.31, so 1.0 makes them ≈ 1.6× as wide in
    # variance) sit above 1 by more than 10 standard errors
    target = make_target(name)
    x = target.exact_sample(2000, torch.Generator().manual_seed(1))
    good = configurational_temperature(target, x, max_n=2000)
    assert good["n"] == 2000
    assert abs(good["value"] - 1) < 4 * good["standard_error"], good
    hot = x + noise * torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2))
    bad = configurational_temperature(target, hot, max_n=2000)
    assert bad["value"] - 1 > 10 * bad["standard_error"], bad


def test_bad_frames_are_refused():
    target = make_target("manywell32")
    with pytest.raises(BadInput, match="shape"):
        configurational_temperature(target, np.zeros((4, 3)))
    with pytest.raises(BadInput, match="non-finite"):
        configurational_temperature(target, np.full((4, 32), np.nan))
