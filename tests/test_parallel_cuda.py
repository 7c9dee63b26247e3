"""End-to-end CUDA checks: sampling, targets, training, checkpoints across devices, annealing,
relaxation, the peptide torch force field and NCCL. Skipped (with the reason) where no GPU exists, as
on the development machine. Run on an NVIDIA H200 on 2026-12-04: 10 passed, the peptide check
skipped (no OpenMM there), after fixing GMM40's prior, which drew on the CPU with a CUDA generator
(docs/scaling.md, "Measured on one GPU")."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

from boltzpath import make_target  # noqa: E402
from boltzpath.diffusion.buffer import TrainingBuffer  # noqa: E402
from boltzpath.diffusion.schedule import KarrasSchedule  # noqa: E402
from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models, load_models, train  # noqa: E402
from boltzpath.parallel.device import DevicePolicy, load_state  # noqa: E402
from boltzpath.parallel.dist import DistContext  # noqa: E402
from boltzpath.parallel.sharded_smc import sharded_anneal  # noqa: E402
from boltzpath.sampling import run_from_mapping, sample_to_folder  # noqa: E402
from boltzpath.smc.annealing import AnnealConfig, anneal  # noqa: E402
from boltzpath.smc.model import NetworkModel  # noqa: E402
from boltzpath.smc.relax import RelaxConfig, relax  # noqa: E402

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("method", ["mala", "hmc", "langevin", "pt", "digs"])
def test_samplers_run_on_the_gpu(tmp_path, method):
    run = run_from_mapping({"target": {"name": "gmm40"}, "method": method, "n": 64, "device": "cuda",
                            "sampler": {"chains": 8, "burn_in": 10}})
    rd = sample_to_folder(run, tmp_path / method)[0]
    samples = rd.read_samples()
    assert rd.is_complete and samples.n == 64 and torch.isfinite(samples.energy).all()


def test_targets_agree_across_devices():
    for name in ("gmm40", "dw4", "lj13", "manywell32"):
        target = make_target(name)
        x = target.prior_sample(16, torch.Generator().manual_seed(0), dtype=torch.float64)
        on_gpu = target.to(CUDA)
        assert on_gpu.counter is target.counter
        e_cpu, g_cpu = target.energy_and_grad(x)
        e_gpu, g_gpu = on_gpu.energy_and_grad(x.to(CUDA))
        torch.testing.assert_close(e_gpu.cpu(), e_cpu, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-8, atol=1e-8)


def test_peptide_force_field_on_the_gpu_matches_the_cpu():
    pytest.importorskip("openmm")
    cpu, gpu = make_target("aldp-fab", device="cpu"), make_target("aldp-fab", device="cuda")
    x = cpu.prior_sample(8, torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(gpu.energy(x.to(CUDA)).cpu(), cpu.energy(x), rtol=1e-9, atol=1e-9)


def test_training_checkpoint_moves_between_gpu_and_cpu_and_annealing_runs_on_gpu(tmp_path):
    target = make_target("dw4")
    pol = DevicePolicy.from_spec("cuda")
    x = target.prior_sample(64, torch.Generator().manual_seed(0))
    buffer = TrainingBuffer.from_target(target, x, temperature=1.0).to(CUDA)
    net = NetConfig(hidden=8, layers=2, emb_dim=8)
    score, energy = build_models(target, net, device=CUDA)
    res = train(Models(score, energy, net), buffer, TrainConfig(steps=4, batch_size=16, checkpoint_every=2,
                                                                pin=0.1), pol.generator(0),
                checkpoint_path=tmp_path / "m.pt")
    assert res.step == 4
    raw = load_state(tmp_path / "m.pt", "cpu")
    assert all(t.device.type == "cpu" for t in raw["ema"]["energy"].values())
    s_cpu, e_cpu = load_models(tmp_path / "m.pt", target, device="cpu")
    s_gpu, e_gpu = load_models(tmp_path / "m.pt", target, device=CUDA)
    for a, b in zip(e_cpu.parameters(), e_gpu.parameters(), strict=True):
        assert torch.equal(a, b.cpu())
    schedule = KarrasSchedule(0.05, 80.0)
    model = NetworkModel.from_diffusion(s_gpu, e_gpu, schedule, target.dim, target.project)
    out = anneal(model, 32, schedule, AnnealConfig(n_steps=5), pol.generator(1), target.project)
    assert out.x.device.type == "cuda" and out.log_weights.dtype == torch.float64
    g = pol.generator(1)
    out2 = sharded_anneal(model, 32, schedule, AnnealConfig(n_steps=5), g, g, DistContext(device=CUDA),
                          target.project)
    assert torch.equal(out.x, out2.x)
    rel = relax(target.to(CUDA), out.x.detach(), pol.generator(2), RelaxConfig(n_steps=4, adapt_steps=2))
    assert rel.x.device.type == "cuda" and torch.isfinite(rel.energy).all()


def test_mixed_precision_autocast_uses_bfloat16_on_the_gpu():
    pol = DevicePolicy.from_spec("cuda", mixed_precision=True)
    a = torch.ones(4, 4, device=CUDA)
    with pol.autocast():
        assert (a @ a).dtype == torch.bfloat16


def test_tiny_pita_ladder_on_the_gpu(tmp_path):
    from test_parallel_pita import TINY

    from boltzpath.config import from_dict
    from boltzpath.methods.pita import run_pita
    from boltzpath.methods.pita_config import PITAConfig

    res = run_pita(from_dict(PITAConfig, TINY), tmp_path / "p", device="cuda")
    assert res.run.is_complete and res.samples.n == 128
    assert res.metrics["energy_evaluations"]["total"] > 0


def test_fk_annealing_on_the_gpu_reproduces_p_gamma():
    """The statistical check of tests/test_smc_annealing.py on the GPU (same tolerance and origin:
    4 standard errors over 8 replicas + 0.01 discretisation allowance): weighted SMC to γ = 2 on the
    closed-form 1-D mixture, every tensor and generator on CUDA, hits quadrature's P(x > 0)."""
    import copy
    import math

    from test_smc_annealing import MIX_1D, SCHEDULE, _quadrature

    from boltzpath.smc.weights import weighted_mean

    mix = copy.copy(MIX_1D)
    for name in ("weights", "means", "stds"):
        setattr(mix, name, getattr(MIX_1D, name).to(CUDA))
    p = []
    for r in range(8):
        cfg = AnnealConfig(n_steps=100, gamma=2.0, dtype="float64", ess_threshold=0.5, stop_resampling_t=0.1,
                           tail="fk")
        res = anneal(mix, 1000, SCHEDULE, cfg, torch.Generator(device=CUDA).manual_seed(100 + r))
        assert res.x.device.type == CUDA.type
        p.append(float(weighted_mean((res.x[:, 0] > 0).double(), res.log_weights)))
    p_gpu = torch.tensor(p, dtype=torch.float64)
    p_true, _ = _quadrature(2.0)
    assert abs(float(p_gpu.mean()) - p_true) < 4 * float(p_gpu.std()) / math.sqrt(len(p)) + 0.01
