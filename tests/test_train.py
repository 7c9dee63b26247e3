"""Training loop, checkpoints, bit-for-bit resume, the training buffer and its rotation augmentation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fixtures import seeded

from boltzpath import make_target
from boltzpath.diffusion.buffer import TrainingBuffer, random_rotations
from boltzpath.diffusion.losses import dsm_loss
from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models, load_models, train
from boltzpath.errors import BadInput

SMALL_EGNN = NetConfig(hidden=8, layers=2, emb_dim=8)


def _dw4_buffer(n=64, seed=0):
    target = make_target("dw4")
    x = target.project(2.0 * torch.randn(n, target.dim, generator=seeded(seed)))
    return target, TrainingBuffer.from_target(target, x, temperature=1.0)


def _models(target, cfg=SMALL_EGNN, seed=0):
    torch.manual_seed(seed)
    return Models(*build_models(target, cfg), net_config=cfg)


def _all_params(models):
    return torch.cat([p.detach().flatten() for m in models.modules().values() for p in m.parameters()])


def test_random_rotations_are_proper():
    rot = random_rotations(50, 3, seeded(0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(50, dtype=torch.float64), atol=1e-12, rtol=0)


def test_buffer_augmentation_rotates_positions_and_scores_together():
    target = make_target("lj13")
    x = target.project(1.5 * torch.randn(16, target.dim, generator=seeded(1)))
    buffer = TrainingBuffer.from_target(target, x)
    batch = buffer.sample(32, seeded(2), augment=True)
    e, grad = target.energy_and_grad(batch.x)
    # the energy is rotation invariant and the stored score must be −∇E at the rotated positions:
    # rotating x but not the score (or with different rotations) fails by O(|score|)
    torch.testing.assert_close(e.double(), batch.energy, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(-grad, batch.score, rtol=1e-3, atol=1e-3 * float(grad.abs().max()))
    assert float((batch.x - buffer.x[:1]).abs().max()) > 0  # something actually moved


def test_buffer_save_load_round_trip(tmp_path):
    _, buffer = _dw4_buffer(8)
    path = buffer.save(tmp_path / "buffer.npz")
    back = TrainingBuffer.load(path)
    for name in ("x", "energy", "score", "temperature"):
        assert torch.equal(getattr(back, name), getattr(buffer, name))
    assert (back.n_particles, back.spatial_dim) == (4, 2)
    two = TrainingBuffer.concat([buffer, back])
    assert len(two) == 16


def test_buffer_bad_inputs(tmp_path):
    with pytest.raises(BadInput):
        TrainingBuffer(torch.zeros(3, 2), torch.zeros(2), torch.zeros(3, 2))
    with pytest.raises(BadInput):
        TrainingBuffer(torch.zeros(3, 2), torch.tensor([0.0, float("nan"), 1.0]), torch.zeros(3, 2))
    with pytest.raises(BadInput):
        TrainingBuffer.load(tmp_path / "missing.npz")


def test_checkpoint_round_trip(tmp_path):
    target, buffer = _dw4_buffer()
    cfg = TrainConfig(steps=4, batch_size=8, tsm=1.0, pin=0.1, checkpoint_every=2, log_every=2)
    result = train(_models(target), buffer, cfg, seeded(3), checkpoint_path=tmp_path / "m.pt")
    score, energy = load_models(tmp_path / "m.pt", target)
    x = buffer.x[:5]
    sigma = torch.full((5,), 0.3)
    assert torch.equal(score.denoise(x, sigma), result.ema.score.denoise(x, sigma))
    assert torch.equal(energy.energy(x, sigma), result.ema.energy.energy(x, sigma))
    raw_score, _ = load_models(tmp_path / "m.pt", target, ema=False)
    assert torch.equal(raw_score.denoise(x, sigma), result.models.score.denoise(x, sigma))


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path):
    target, buffer = _dw4_buffer()
    cfg = TrainConfig(steps=6, batch_size=8, tsm=1.0, pin=0.1, checkpoint_every=3, log_every=1)
    straight = train(_models(target), buffer, cfg, seeded(5))

    def kill_at_step_5(info):
        if info["step"] == 5:
            raise KeyboardInterrupt

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_models(target), buffer, cfg, seeded(5), callback=kill_at_step_5, checkpoint_path=path)
    # a fresh process: different initial weights and generator state, restored from the step-3 checkpoint
    resumed = train(_models(target, seed=99), buffer, cfg, seeded(123), checkpoint_path=path)
    assert resumed.step == 6
    # bit-for-bit: same parameters, EMA and loss history (any unsaved state — optimiser moments,
    # EMA, generator — would make them differ in the last bits at least)
    assert torch.equal(_all_params(resumed.models), _all_params(straight.models))
    assert torch.equal(_all_params(resumed.ema), _all_params(straight.ema))
    strip = [{k: v for k, v in h.items() if k != "wall_time_s"} for h in straight.history]
    assert [{k: v for k, v in h.items() if k != "wall_time_s"} for h in resumed.history] == strip
    # resuming a finished run does no more steps
    again = train(_models(target, seed=7), buffer, cfg, seeded(0), checkpoint_path=path)
    assert torch.equal(_all_params(again.models), _all_params(straight.models))


def test_losses_decrease_on_a_toy():
    # anisotropic Gaussian data N(0, diag(2², 0.5²)): the untrained denoiser c_skip·x (optimal for
    # σ_d = 1) is far from the exact D* = Σ(Σ + σ²I)⁻¹x, whose loss is the posterior variance
    g = seeded(0)
    std = torch.tensor([2.0, 0.5])
    x = std * torch.randn(4096, 2, generator=g)
    buffer = TrainingBuffer(x, torch.zeros(4096), torch.zeros_like(x))
    models = _models(make_target("gmm40"), NetConfig(hidden=32, layers=2, emb_dim=16, mode="energy"))
    sigma = 1.0
    x0, eps = x[:2048], torch.randn(2048, 2, generator=seeded(2))
    sig = torch.full((2048,), sigma)
    optimum = float((std**2 * sigma**2 / (std**2 + sigma**2)).mean()) * (1 + sigma**2) / sigma**2
    before = dsm_loss(models.energy, x0, sig, eps).item()
    train(models, buffer, TrainConfig(steps=150, batch_size=128, lr=3e-3, log_every=50), g)
    after = dsm_loss(models.energy, x0, sig, eps).item()
    # the excess over the exact optimum must shrink by more than half (a loop that does not update the
    # weights, or moves them along the wrong sign, leaves it equal or larger); the optimum is a
    # population value, the fixed draws scatter around it by ~2 % (n = 2048)
    assert before - optimum > 0.3
    assert after - optimum < 0.5 * (before - optimum), (before, after, optimum)


def test_bad_configs_raise_badinput(tmp_path):
    target, buffer = _dw4_buffer(8)
    with pytest.raises(BadInput):
        build_models(target, NetConfig(kind="transformer"))
    with pytest.raises(BadInput):
        build_models(make_target("gmm40"), NetConfig(kind="egnn"))
    with pytest.raises(BadInput):
        build_models(target, NetConfig(mode="score"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput):
        load_models(bad, target)
    with pytest.raises(BadInput):
        train(_models(target), buffer, TrainConfig(steps=2, batch_size=4), seeded(0), checkpoint_path=bad)
    with pytest.raises(BadInput, match="pin_sigma"):
        train(_models(target), buffer, TrainConfig(steps=2, batch_size=4, pin=1.0, pin_sigma=0.0), seeded(0))


def test_ema_warm_up_follows_the_model_early_and_the_decay_later():
    # update n uses min(d, (1+n)/(10+n)): the first update keeps 10 % of the start, a late one d
    from boltzpath.diffusion.ema import Ema

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = Ema(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)
    assert float(ema.module.weight) == pytest.approx(0.9)
    assert ema.decay_at(10_000) == 0.999 and ema.decay_at(0) == pytest.approx(0.1)
    # late in a run: the plain decay
    ema2 = Ema(torch.nn.Linear(1, 1, bias=False), decay=0.5)
    with torch.no_grad():
        ema2.module.weight.fill_(0.0)
        model.weight.fill_(1.0)
    ema2.update(model, step=10_000)
    assert float(ema2.module.weight) == pytest.approx(0.5)


def test_ema_update_is_the_per_tensor_lerp_and_follows_moved_modules():
    # the multi-tensor update must equal θ_ema ← d θ_ema + (1 − d) θ for every parameter, copy the
    # buffers, and keep working when the model is moved (.to replaces buffers, not Parameters)
    from boltzpath.diffusion.ema import Ema

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    ema = Ema(model, decay=0.9)
    start = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].running_mean.fill_(3.0)
    ema.update(model, step=10_000)
    for s, pe, p in zip(start, ema.module.parameters(), model.parameters(), strict=True):
        assert torch.allclose(pe, 0.9 * s + 0.1 * p, atol=1e-7, rtol=0)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    model.double()  # new buffers, the same Parameter objects with float64 data
    ema.module.double()
    with torch.no_grad():
        model[1].running_var.fill_(7.0)
        model[0].weight.fill_(1.0)
        ema.module[0].weight.fill_(0.0)
    ema.update(model, step=10_000)
    assert torch.equal(ema.module[1].running_var, model[1].running_var)
    assert torch.allclose(ema.module[0].weight, torch.full_like(model[0].weight, 0.1))
    other = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="different structure"):
        ema.update(other, step=0)


def test_short_training_moves_the_ema_weights_away_from_the_start():
    # a 30-step run: without warm-up the EMA at 0.999 would still be ~97 % the initial weights
    target = make_target("gmm40")
    torch.manual_seed(0)
    score, energy = build_models(target, NetConfig(hidden=16, layers=2, emb_dim=8))
    start = _all_params(Models(score, energy))
    x = target.exact_sample(256, torch.Generator().manual_seed(0)).float()
    buffer = TrainingBuffer.from_target(target, x)
    cfg = TrainConfig(steps=30, batch_size=64)
    result = train(Models(score, energy), buffer, cfg, torch.Generator().manual_seed(1))
    moved = (_all_params(result.ema) - start).norm()
    raw = (_all_params(result.models) - start).norm()
    assert moved > 0.5 * raw


def _strip(history, tol_keys=("wall_time_s", "compile_s")):
    return [{k: v for k, v in h.items() if k not in tol_keys} for h in history]


@pytest.mark.parametrize("mode", ["score+energy", "energy"])
def test_analytic_grad_training_matches_the_autograd_reference(mode):
    """NetConfig.analytic_grad: same weights, same draws → the same losses and weights to float32
    rounding (the hand-written ∇ₓU_η is the same function as autograd's)."""
    target, buffer = _dw4_buffer()
    cfg = TrainConfig(steps=4, batch_size=16, tsm=1.0, pin=0.5, log_every=1)
    ref_cfg = NetConfig(hidden=8, layers=2, emb_dim=8, mode=mode)
    fast_cfg = NetConfig(hidden=8, layers=2, emb_dim=8, mode=mode, analytic_grad=True)
    ref = train(_models(target, ref_cfg), buffer, cfg, seeded(5))
    fast = train(_models(target, fast_cfg), buffer, cfg, seeded(5))
    assert fast.models.energy.analytic_grad and not ref.models.energy.analytic_grad
    for a, b in zip(_strip(ref.history), _strip(fast.history), strict=True):
        for k in ("loss", "dsm", "tsm", "pin", *(("distill",) if mode == "score+energy" else ())):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k
    torch.testing.assert_close(_all_params(fast.models), _all_params(ref.models), rtol=1e-4, atol=1e-5)


def test_analytic_grad_needs_the_egnn():
    with pytest.raises(BadInput):
        build_models(make_target("gmm40"), NetConfig(hidden=8, layers=1, emb_dim=8, analytic_grad=True))


def test_analytic_grad_round_trips_through_a_checkpoint(tmp_path):
    target, buffer = _dw4_buffer()
    cfg = NetConfig(hidden=8, layers=2, emb_dim=8, analytic_grad=True)
    path = tmp_path / "m.pt"
    train(_models(target, cfg), buffer, TrainConfig(steps=1, batch_size=8), seeded(1), checkpoint_path=path)
    _, energy = load_models(path, target)
    assert energy.analytic_grad


def test_compile_failure_falls_back_to_eager_from_the_same_draws(monkeypatch):
    """TrainConfig.compile with a torch.compile that fails: a warning, then the eager run, bit for bit."""
    import sys

    train_module = sys.modules["boltzpath.diffusion.train"]  # (the package exports a function of that name)

    def broken_compile(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no C++ compiler here")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(train_module, "_COMPILED", None)
    target, buffer = _dw4_buffer()
    cfg = TrainConfig(steps=3, batch_size=8, pin=0.1, log_every=1)
    eager = train(_models(target), buffer, cfg, seeded(5))
    with pytest.warns(RuntimeWarning, match="torch.compile"):
        fell_back = train(_models(target), buffer, dataclasses.replace(cfg, compile=True), seeded(5))
    assert _strip(fell_back.history) == _strip(eager.history)
    assert torch.equal(_all_params(fell_back.models), _all_params(eager.models))


@pytest.mark.slow
def test_compiled_training_matches_eager():
    """TrainConfig.compile (a real torch.compile; minutes on a cold cache): same losses to rounding."""
    target, buffer = _dw4_buffer()
    net = NetConfig(hidden=8, layers=2, emb_dim=8, analytic_grad=True)
    cfg = TrainConfig(steps=3, batch_size=16, pin=0.5, log_every=1)
    eager = train(_models(target, net), buffer, cfg, seeded(5))
    compiled = train(_models(target, net), buffer, dataclasses.replace(cfg, compile=True), seeded(5))
    assert compiled.history[-1]["compile_s"] > 0
    for a, b in zip(_strip(eager.history), _strip(compiled.history), strict=True):
        for k in ("loss", "dsm", "distill", "pin"):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k


@pytest.mark.slow
def test_compiled_peptide_training_matches_eager():
    """TrainConfig.compile on the peptide transformer (no forward_vjp: the double backward of
    distillation and force matching goes through ``torch.func.grad`` inside the compiled graph): the
    same losses as eager to rounding, with the pair head, pinning and force matching on."""
    pytest.importorskip("openmm", reason="peptide targets need the [molecules] extra")
    target = make_target("aldp-fab")
    x0 = torch.as_tensor(target.initial_positions_nm, dtype=torch.float32).reshape(1, -1)
    x = x0 + 0.01 * torch.randn(32, target.dim, generator=seeded(1))
    buffer = TrainingBuffer.from_target(target, x)
    net = NetConfig(kind="transformer", hidden=16, layers=1, heads=2, emb_dim=8, sigma_data=0.164,
                    pair_features=4, pair_head="energy")
    cfg = TrainConfig(steps=3, batch_size=16, pin=1.0, force=1.0, log_every=1, p_mean=-3.0)
    eager = train(_models(target, net), buffer, cfg, seeded(5), pin_sigma_default=0.00164)
    compiled = train(_models(target, net), buffer, dataclasses.replace(cfg, compile=True), seeded(5),
                     pin_sigma_default=0.00164)
    assert compiled.history[-1]["compile_s"] > 0
    for a, b in zip(_strip(eager.history), _strip(compiled.history), strict=True):
        for k in ("loss", "dsm", "distill", "pin", "force"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k


def test_soft_core_round_trips_through_a_checkpoint_and_is_refused_off_particles(tmp_path):
    target, buffer = _dw4_buffer()
    cfg = NetConfig(hidden=8, layers=2, emb_dim=8, analytic_grad=True, core_radius=0.5, core_strength=10.0)
    path = tmp_path / "m.pt"
    train(_models(target, cfg), buffer, TrainConfig(steps=1, batch_size=8), seeded(1), checkpoint_path=path)
    _, energy = load_models(path, target)
    assert energy.core is not None and energy.core.radius == 0.5 and energy.core.strength == 10.0
    with pytest.raises(BadInput, match="core_radius"):
        build_models(make_target("gmm40"), NetConfig(hidden=8, layers=1, emb_dim=8, core_radius=0.5))
    with pytest.raises(BadInput, match="core_strength"):
        build_models(target, NetConfig(hidden=8, layers=1, emb_dim=8, core_radius=0.5, core_strength=-1.0))
