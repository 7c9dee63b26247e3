"""The device policy (``boltzpath.parallel.device``) and ``device="cpu"`` at every public entry point.

On this CPU-only machine "auto" must resolve to the CPU and an explicit CUDA request must be a
``BadInput`` (CLI: exit 2, one line), never a silent fall-back. The CUDA paths themselves are
exercised by tests/test_parallel_cuda.py, which skips without a GPU.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from boltzpath import make_target
from boltzpath.cli import cli
from boltzpath.diffusion.buffer import TrainingBuffer
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models, load_models, train
from boltzpath.errors import BadInput
from boltzpath.parallel.device import DevicePolicy, load_state, resolve_device
from boltzpath.parallel.dist import DistContext, init_from_env, shard
from boltzpath.parallel.sharded_smc import sharded_anneal, sharded_relax
from boltzpath.sampling import run_from_mapping, sample_to_folder
from boltzpath.smc.annealing import AnnealConfig, anneal
from boltzpath.smc.model import NetworkModel
from boltzpath.smc.relax import RelaxConfig, relax

NO_GPU = not torch.cuda.is_available()


def test_resolve_device_rules():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cpu" if NO_GPU else "cuda")
    for bad in ("gpu", "cuda:x", "cuda:-1", "tpu", 3):
        with pytest.raises(BadInput):
            resolve_device(bad)
    if NO_GPU:
        for spec in ("cuda", "cuda:0"):
            with pytest.raises(BadInput, match="no CUDA GPU"):
                resolve_device(spec)


def test_policy_generators_autocast_and_map_location(tmp_path):
    pol = DevicePolicy.from_spec("cpu", mixed_precision=True)
    assert DevicePolicy.from_spec(pol) is pol
    g = pol.generator(7)
    assert g.device == torch.device("cpu") and g.initial_seed() == 7
    assert pol.tensor([1.0, 2.0]).dtype == torch.float32 and pol.weight_dtype == torch.float64
    with pol.autocast():  # mixed precision is CUDA-only: on the CPU float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert pol.describe()["device"] == "cpu"
    torch.save({"w": torch.ones(3)}, tmp_path / "x.pt")
    assert load_state(tmp_path / "x.pt", "cpu")["w"].device == torch.device("cpu")


def test_one_process_context_and_shards(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    # shards of 10 over 3 ranks: 4 + 3 + 3, contiguous, covering everything once
    parts = [shard(10, DistContext(r, 3)) for r in range(3)]
    assert parts == [(0, 4), (4, 3), (7, 3)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(BadInput):
        init_from_env("cpu")


def test_every_entry_point_accepts_device_cpu(tmp_path):
    # sampling run folder
    run = run_from_mapping({"target": {"name": "dw4"}, "method": "mala", "n": 16, "device": "cpu",
                            "sampler": {"chains": 4, "burn_in": 5}})
    rd = sample_to_folder(run, tmp_path / "s")[0]
    assert rd.is_complete and rd.read_config()["device"] == "cpu"
    # targets: to("cpu") is the identity when nothing moves; the counter is shared either way
    target = make_target("gmm40")
    assert target.to("cpu") is target
    # networks, training, checkpoints (read onto the CPU whatever wrote them)
    net = NetConfig(kind="mlp", hidden=8, layers=2, emb_dim=8)
    score, energy = build_models(target, net, device="cpu")
    x = target.exact_sample(64, torch.Generator().manual_seed(0)).float()
    buffer = TrainingBuffer.from_target(target, x)
    train(Models(score, energy, net), buffer, TrainConfig(steps=2, batch_size=8, checkpoint_every=2),
          DevicePolicy.from_spec("cpu").generator(0), checkpoint_path=tmp_path / "m.pt")
    score, energy = load_models(tmp_path / "m.pt", target, device="cpu")
    assert next(energy.parameters()).device == torch.device("cpu")
    # annealing and relaxation: particles live on the generator's device
    schedule = KarrasSchedule(0.05, 80.0)
    model = NetworkModel.from_diffusion(score, energy, schedule, target.dim)
    cfg = AnnealConfig(n_steps=3)
    res = anneal(model, 8, schedule, cfg, torch.Generator(device="cpu").manual_seed(1))
    assert res.x.device == torch.device("cpu") and res.log_weights.dtype == torch.float64
    g = torch.Generator(device="cpu").manual_seed(1)
    res2 = sharded_anneal(model, 8, schedule, cfg, g, g, DistContext())
    assert torch.equal(res.x, res2.x)
    rel = relax(target, res.x.detach(), torch.Generator(device="cpu").manual_seed(2), RelaxConfig(n_steps=2))
    rel2 = sharded_relax(target, res.x.detach(), torch.Generator(device="cpu").manual_seed(2),
                         RelaxConfig(n_steps=2), DistContext())
    assert torch.equal(rel.x, rel2.x)


@pytest.mark.skipif(not NO_GPU, reason="checks the no-GPU refusal")
def test_cli_refuses_cuda_without_a_gpu(tmp_path):
    res = CliRunner().invoke(cli, ["sample", "--target", "gmm40", "--method", "mala", "--n", "10",
                                   "--device", "cuda", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no CUDA GPU" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_peptide_torch_force_field_takes_a_device():
    pytest.importorskip("openmm")
    target = make_target("aldp-fab", device="cpu")
    assert target.options()["device"] == "cpu" and target.to("cpu") is target
    x = target.prior_sample(3, torch.Generator(device="cpu").manual_seed(0), dtype=torch.float64)
    assert x.device == torch.device("cpu") and torch.isfinite(target.energy(x)).all()
    with pytest.raises(BadInput):
        make_target("aldp-fab", device="quantum")


def test_pita_accepts_device_cpu_and_refuses_a_missing_gpu(tmp_path):
    from test_parallel_pita import TINY

    from boltzpath.config import from_dict
    from boltzpath.methods.pita import run_pita
    from boltzpath.methods.pita_config import PITAConfig

    small = {**TINY, "temperatures": [4.0, 2.0], "train": {**TINY["train"], "steps": 10}}
    res = run_pita(from_dict(PITAConfig, small), tmp_path / "p", device="cpu")
    assert res.run.is_complete and res.samples.x.device == torch.device("cpu")
    if NO_GPU:
        with pytest.raises(BadInput, match="no CUDA GPU"):
            run_pita(from_dict(PITAConfig, small), tmp_path / "q", device="cuda")


def test_public_api_accepts_device_cpu():
    import boltzpath

    s = boltzpath.sample("gmm40", method="mala", n=20, seed=0, device="cpu", chains=4, burn_in=5, thin=1)
    assert s.x.shape == (20, 2) and s.x.device.type == "cpu"
    absent = "cuda:7" if not torch.cuda.is_available() else "tpu"  # never a silent CPU fall-back
    with pytest.raises(boltzpath.BadInput):
        boltzpath.sample("gmm40", method="mala", n=20, device=absent, chains=4, burn_in=5, thin=1)
