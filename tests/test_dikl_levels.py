"""DiKL's training levels and model-score parametrisation (issue 12, against the released code).

- The released code draws levels from {1, …, T − 1}: the smallest level (σ ≈ √β_start = 0.01) is
  never used, by the DSM loss or by the generator's loss. Our default ``ddpm.first_level = 1`` does
  the same; at σ = 0.01 an ε-network's error is multiplied by 1/σ = 100 in the model score.
- The released score network outputs the score itself; ``output = score`` is s_φ = c_in·F_φ, the
  older ``eps`` is s_φ = −F_φ/σ. Both are trained by the same DSM loss (ε_φ = −σ s_φ).
"""

import math

import pytest
import torch
from fixtures import CorrelatedGaussian, seeded
from torch import nn

from boltzpath.config import from_dict
from boltzpath.errors import BadInput
from boltzpath.methods.dikl.config import DiKLConfig
from boltzpath.methods.dikl.networks import ModelScore, NetSpec, build_networks
from boltzpath.methods.dikl.schedule import DDPMConfig, VPSchedule
from boltzpath.methods.dikl.trainer import init_state, iterate


class Constant(nn.Module):
    """A backbone that returns a constant δ (records the c_noise it was called with)."""

    def __init__(self, dim: int, delta: float) -> None:
        super().__init__()
        self.delta, self.dim, self.seen = nn.Parameter(torch.tensor(delta)), dim, []

    def forward(self, x, c_noise):
        self.seen.append(c_noise.detach().clone())
        return self.delta * torch.ones_like(x)


def test_default_schedule_leaves_out_the_smallest_level():
    sched = VPSchedule(DDPMConfig(steps=30, beta_start=1e-4, beta_end=0.7))
    idx = sched.draw_levels(30000, seeded(0))
    assert int(idx.min()) == 1 and int(idx.max()) == 29
    counts = torch.bincount(idx, minlength=30)[1:].double()
    assert (counts - 30000 / 29).abs().max() < 5 * math.sqrt(30000 / 29)  # uniform on 1..29
    assert int(VPSchedule(DDPMConfig(steps=30, first_level=0)).draw_levels(30000, seeded(0)).min()) == 0
    for bad in (-1, 30):
        with pytest.raises(BadInput):
            DDPMConfig(steps=30, first_level=bad).validate()


def test_training_never_visits_levels_below_first_level():
    """Both the DSM phase and the generator phase draw levels ≥ first_level (old code: all from 0)."""
    net = {"kind": "mlp", "hidden": 8, "layers": 1, "emb_dim": 4}
    cfg = from_dict(DiKLConfig, {"generator": net, "score_net": net, "ddpm": {"steps": 4, "beta_end": 0.3},
                                 "posterior": {"n_importance": 2, "mala_steps": 1},
                                 "train": {"batch_size": 200, "dsm_steps": 2}})
    target = CorrelatedGaussian(mean=(0.5, -0.5), cov=((1.0, 0.0), (0.0, 1.0)))
    state = init_state(target, cfg)
    spy = Constant(2, 0.1)
    state.score.net = spy
    iterate(state, target, cfg)
    sched = state.score.schedule
    smallest = 0.25 * math.log(float(sched.sigma[0] / sched.alpha[0]))
    seen = torch.cat(spy.seen)
    assert len(spy.seen) == 3  # two DSM steps, one generator step
    assert float(seen.min()) > smallest + 1e-6  # level 0 (the smallest c_noise) never appears
    assert torch.unique(seen).numel() == 3  # the three levels 1..3 all appear


@pytest.mark.parametrize("output", ["score", "eps"])
def test_score_parametrisations_and_their_dsm_loss(output):
    sched = VPSchedule(DDPMConfig(steps=5, beta_end=0.3))
    delta, c_d = 0.2, 2.0
    model = ModelScore(Constant(3, delta), sched, data_scale=c_d, output=output)
    x_t = torch.randn(5, 3, generator=seeded(1))
    idx = torch.arange(5)
    alpha, sigma = sched.columns(idx, x_t.dtype)
    c_in = 1.0 / torch.sqrt(alpha**2 * c_d**2 + sigma**2)
    expected = c_in * delta if output == "score" else -delta / sigma  # a network error δ in the score
    torch.testing.assert_close(model.score(x_t, idx), expected.expand(5, 3))
    torch.testing.assert_close(model.eps(x_t, idx), -sigma * model.score(x_t, idx))
    # the DSM loss is ‖ε_φ − ε‖² with ε_φ = −σ s_φ in both parametrisations
    x0 = torch.randn(64, 3, generator=seeded(2))
    gen_a, gen_b = seeded(3), seeded(3)
    loss = model.dsm_loss(x0, gen_a)
    idx = sched.draw_levels(64, gen_b)
    eps = torch.randn(x0.shape, generator=gen_b)
    a, s = sched.columns(idx, x0.dtype)
    x_t = a * x0 + s * eps
    manual = ((-s * model.score(x_t, idx) - eps) ** 2).sum(-1).mean()
    torch.testing.assert_close(loss, manual)


def test_score_output_is_the_default_and_reaches_the_model():
    assert NetSpec().output == "score" and DiKLConfig().score_net.output == "score"
    target = CorrelatedGaussian(mean=(0.0,), cov=((1.0,),))
    sched = VPSchedule(DDPMConfig(steps=5))
    for output in ("score", "eps"):
        spec = NetSpec("mlp", 8, 1, 4, 1.0, output)
        assert build_networks(target, spec, spec, sched)[1].output == output
    with pytest.raises(BadInput):
        NetSpec(output="x0").validate()


class Overflowing(CorrelatedGaussian):
    """N(0, 1) in 2-D whose energy and gradient overflow to ∞ for x₀ > 1.5 (an LJ overlap in float32)."""

    def energy_and_grad(self, x):
        e, g = super().energy_and_grad(x)
        far = x[:, 0] > 1.5
        return torch.where(far, torch.inf, e), torch.where(far[:, None], torch.inf, g)


@pytest.mark.parametrize("score_clip", [None, 1000.0])
def test_non_finite_target_scores_are_dropped_not_propagated(score_clip):
    """Old code: one ∞ row made the surrogate ∞ (or ∞·0 = NaN in the clip) and the generator NaN."""
    net = {"kind": "mlp", "hidden": 8, "layers": 1, "emb_dim": 4, "scale": 1.5}
    cfg = from_dict(DiKLConfig, {"generator": net, "score_net": net, "ddpm": {"steps": 4, "beta_end": 0.3},
                                 "posterior": {"n_importance": 2, "mala_steps": 2},
                                 "train": {"batch_size": 128, "dsm_steps": 1, "score_clip": score_clip}})
    target = Overflowing(mean=(0.0, 0.0), cov=((1.0, 0.0), (0.0, 1.0)))
    state = init_state(target, cfg)
    dropped = 0
    for _ in range(3):
        dropped += iterate(state, target, cfg)["dropped_rows"]
    assert dropped > 0
    assert all(torch.isfinite(p).all() for p in state.generator.parameters())
    assert torch.isfinite(state.log_steps).all()
