"""The fast DiKL sampling path computes the trained generator's function (eager, threaded, compiled)."""

import pytest
import torch
from torch import nn

from boltzpath.methods.dikl import draw
from boltzpath.methods.dikl.inference import FastGenerator
from boltzpath.methods.dikl.networks import NetSpec, build_networks
from boltzpath.methods.dikl.schedule import DDPMConfig, VPSchedule
from boltzpath.targets.registry import make_target


def _generator(target_name, hidden=16, layers=3, kind="auto", seed=0):
    target = make_target(target_name)
    torch.manual_seed(seed)
    spec = NetSpec(kind, hidden, layers, 8, 1.5)
    gen, _ = build_networks(target, spec, NetSpec(kind, 8, 1, 8), VPSchedule(DDPMConfig()))
    for p in gen.net.parameters():  # far from the near-identity initialisation: O(1) updates
        nn.init.normal_(p, std=0.3)
    return gen.eval(), target


def _close(a, b):
    return float((a - b).abs().max()) <= 1e-5 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("name,layers", [("lj13", 3), ("dw4", 2), ("lj13", 1)])
@pytest.mark.parametrize("chunk,threads", [(None, 1), (7, 1), (5, 2), (1000, 2)])
def test_fast_generator_draws_the_same_samples(name, layers, chunk, threads):
    gen, target = _generator(name, layers=layers)
    fast = FastGenerator(gen, chunk=chunk, threads=threads)
    with torch.no_grad():
        want = gen.sample(37, torch.Generator().manual_seed(3))
    before = torch.get_num_threads()
    got = fast.sample(37, torch.Generator().manual_seed(3))
    assert torch.get_num_threads() == before  # the workers' one-thread setting stays theirs
    fast.close()
    assert got.shape == want.shape and float(want.std()) > 0.5
    z = gen.latent(37, torch.Generator().manual_seed(3))
    assert float((want - 1.5 * z).abs().max()) > 1e-2  # the network really moves the particles
    assert _close(got, want)
    assert not got.is_inference() and not got.requires_grad  # usable by later autograd code
    com = got.reshape(37, target.n_particles, target.spatial_dim).mean(1)
    assert float(com.abs().max()) < 1e-5


def test_fast_generator_with_an_mlp_and_the_draw_helper():
    gen, target = _generator("gmm40", kind="mlp")
    fast, slow = draw(gen, target, 50, seed=4), draw(gen, target, 50, seed=4, fast=False)
    assert _close(fast[0].x, slow[0].x) and fast[1] >= 0
    gen13, t13 = _generator("lj13")
    a, b = draw(gen13, t13, 300, seed=1, block=128), draw(gen13, t13, 300, seed=1, block=128, fast=False)
    assert _close(a[0].x, b[0].x) and torch.allclose(a[0].energy, b[0].energy, rtol=1e-3, atol=1e-3)


def test_weights_are_a_snapshot_and_chunk_is_checked():
    gen, _ = _generator("dw4")
    fast = FastGenerator(gen, threads=1)
    z = fast.latent(9, torch.Generator().manual_seed(0))
    before = fast(z)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    assert torch.equal(fast(z), before)
    with pytest.raises(ValueError):
        FastGenerator(gen, chunk=0)


@pytest.mark.slow
def test_compiled_forward_gives_the_same_samples_or_falls_back():
    gen, _ = _generator("dw4", hidden=8, layers=2)
    fast = FastGenerator(gen, chunk=16, threads=1, compile=True)
    with torch.no_grad():
        want = gen.sample(40, torch.Generator().manual_seed(2))
    got = fast.sample(40, torch.Generator().manual_seed(2))  # 16 + 16 compiled, the last 8 eager
    assert _close(got, want)
    if fast.compiled:
        assert fast.compile_seconds > 0 and fast.compile_error is None
    else:  # no working compiler here: the eager path runs and says why
        assert fast.compile_error


def test_a_failing_compile_falls_back_to_eager(monkeypatch):
    gen, _ = _generator("dw4", hidden=8, layers=2)

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    fast = FastGenerator(gen, chunk=8, threads=1, compile=True)
    assert not fast.compiled and fast.compile_error == "RuntimeError: no compiler"
    with torch.no_grad():
        want = gen.sample(20, torch.Generator().manual_seed(2))
    assert _close(fast.sample(20, torch.Generator().manual_seed(2)), want)


@pytest.mark.parametrize("name,layers", [("lj13", 3), ("dw4", 2)])
def test_bfloat16_edges_stay_within_bfloat16_resolution_of_the_float32_draws(name, layers):
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2 % per operation); a few layers of
    # O(1) weights amplify that, so the samples may move by up to 3 % of the network's displacement
    # F_θ(z) in rms (measured: 0.8 % on lj13 with these far-from-identity weights). A skipped layer or a
    # wrong weight would move them by O(100 %).
    gen, target = _generator(name, layers=layers)
    with torch.no_grad():
        want = gen.sample(200, torch.Generator().manual_seed(3))
    z = gen.latent(200, torch.Generator().manual_seed(3))
    fast = FastGenerator(gen, threads=1, precision="bfloat16")
    got = fast.sample(200, torch.Generator().manual_seed(3))
    assert got.dtype == torch.float32 and not _close(got, want)  # really a different precision
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    assert rms(got - want) <= 0.03 * rms(want - 1.5 * z)
    com = got.reshape(200, target.n_particles, target.spatial_dim).mean(1)
    assert float(com.abs().max()) < 1e-4
    with pytest.raises(ValueError, match="precision"):
        FastGenerator(gen, precision="float16")
