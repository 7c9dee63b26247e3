"""PITA on peptides: the atom transformer, rotation augmentation, units of the data scale, the
kelvin-ladder pipeline end to end on aldp-fab (tiny sizes, stage 0 by OpenMM MD, the chirality fix),
kill/resume, ``--stage0-data``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("openmm", reason="peptide targets need OpenMM (the [molecules] extra)")
pytest.importorskip("mdtraj", reason="peptide metrics need mdtraj (the [molecules] extra)")

from boltzpath.config import from_dict  # noqa: E402
from boltzpath.diffusion.buffer import TrainingBuffer, random_rotations  # noqa: E402
from boltzpath.diffusion.precond import CoMProjection, EnergyModel  # noqa: E402
from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models, train  # noqa: E402
from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.methods.pita import run_pita  # noqa: E402
from boltzpath.methods.pita_cli import pita, resolve_config  # noqa: E402
from boltzpath.methods.pita_config import PITAConfig  # noqa: E402
from boltzpath.nets.transformer import AtomTransformer  # noqa: E402
from boltzpath.targets.registry import make_target  # noqa: E402

S = 0.164  # data std of ALDP in nm (SPEC §5)
HOLDOUT = Path(__file__).resolve().parents[2] / "shared" / "holdout" / "aldp_300K_fab_10k_xyz_nm.npy"
TINY = {
    "target": "aldp-fab",
    "temperatures": [1200.0, 755.95],
    "stage0": {"method": "mala", "n_samples": 64,
               "options": {"chains": 32, "burn_in": 30, "thin": 2, "step_size": 6e-6}},
    "net": {"kind": "transformer", "hidden": 16, "layers": 1, "heads": 2, "emb_dim": 8, "sigma_data": S},
    "train": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "log_every": 3, "pin": 1.0,
              "p_mean": -3.008},
    "finetune": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "log_every": 3},
    "schedule": {"sigma_min": 0.01 * S, "sigma_max": 80 * S},
    "anneal": {"n_steps": 5, "divergence": "hutchinson"},
    "relax": {"n_steps": 4, "adapt_steps": 2, "step_size": 1e-6, "repair_step": 0.002},
    "n_particles": 32,
    "buffer_size": 32,
    "eval_max_n": 64,
    "eval_noise_floors": False,
    "stage_plots": False,
}


class Killed(RuntimeError):
    pass


@pytest.fixture(scope="module")
def aldp():
    return make_target("aldp-fab", temperature=300.0, dtype="float64")


def _rotation(seed: int) -> torch.Tensor:
    return random_rotations(1, 3, torch.Generator().manual_seed(seed), dtype=torch.float64)[0]


def test_rotating_a_configuration_rotates_its_force_and_the_scaled_score_is_the_scaled_force(aldp):
    x = aldp.prior_sample(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    rot = _rotation(1)
    xr = (x.reshape(4, 22, 3) @ rot).reshape(4, 66)
    e, g = aldp.energy_and_grad(x)
    er, gr = aldp.energy_and_grad(xr)
    # E is rotation-invariant and F(xR) = F(x)R; a wrong augmentation (rotating x but not the
    # score, or with Rᵀ) fails the second check by O(|F|) ~ 1e4 kT/nm
    assert torch.allclose(e, er, rtol=1e-9, atol=1e-8)
    assert torch.allclose(gr, (g.reshape(4, 22, 3) @ rot).reshape(4, 66), rtol=1e-7, atol=1e-5)
    # in scaled coordinates y = x/s the score is ∇_y log p = s·F(x) (F in kT/nm)
    y = (x / S).requires_grad_(True)
    (gy,) = torch.autograd.grad(aldp.energy(y * S).sum(), y)
    assert torch.allclose(-gy, -S * g, rtol=1e-9, atol=1e-6)
    # the energy model with σ_data = s on nm coordinates is the σ_data = 1 model on y = x/s at σ/s
    # (its network's noise input ¼ ln σ is in nm, i.e. shifted by the constant ¼ ln s): U is the same
    # scalar (E/kT units) and ∇ₓU = (1/s)∇_yU
    torch.manual_seed(0)
    net = AtomTransformer(22, hidden=16, layers=1, emb_dim=8, heads=2).double()
    for p in net.parameters():  # leave the zero initialisation so that F ≠ 0
        torch.nn.init.normal_(p, std=0.1)
    proj = CoMProjection(22, 3)
    nm_model = EnergyModel(net, S, proj, centre=True)
    shift = 0.25 * float(np.log(S))

    class Shifted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, c_noise, temperature=None):
            return self.net(x, c_noise + shift, temperature)

    scaled_model = EnergyModel(Shifted(), 1.0, proj, centre=True)
    sigma = 0.05
    u_nm, g_nm = nm_model.energy_and_grad(x, sigma)
    u_y, g_y = scaled_model.energy_and_grad(x / S, sigma / S)
    assert torch.allclose(u_nm, u_y, rtol=1e-10, atol=1e-8)
    assert torch.allclose(g_nm, g_y / S, rtol=1e-8, atol=1e-6)
    # translation invariance of the centred peptide models
    shifted = x + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64).repeat(22)
    assert torch.allclose(nm_model.energy(shifted, sigma), u_nm, rtol=1e-10, atol=1e-8)


def test_transformer_shapes_and_adaln_zero_starts_at_identity(aldp):
    net = AtomTransformer(22, hidden=16, layers=2, emb_dim=8, heads=4)
    x = torch.randn(5, 66)
    c = torch.randn(5)
    h = net.tokens(x)
    cond = net.embedding(c)
    for block in net.blocks:  # every gate α is zero: each block is exactly the identity
        assert torch.equal(block(h, cond), h)
    out = net(x, c)
    assert out.shape == (5, 66) and torch.count_nonzero(out) == 0  # zero read-out: D = c_skip·x
    torch.nn.init.normal_(net.blocks[0].modulation[1].weight, std=0.1)
    torch.nn.init.normal_(net.readout.weight, std=0.1)
    torch.nn.init.normal_(net.final_modulation[1].weight, std=0.1)
    assert not torch.equal(net.blocks[0](h, cond), h) and net(x, c).abs().sum() > 0
    # through build_models (mode score+energy): a score model and a scalar energy per configuration;
    # the energy is differentiable twice (distillation = double backprop)
    score, energy = build_models(aldp, NetConfig(kind="transformer", hidden=16, layers=1, heads=2,
                                                 emb_dim=8, sigma_data=S, temperature_conditioned=True))
    xs = aldp.prior_sample(3, torch.Generator().manual_seed(0))
    temps = torch.full((3,), 755.95)
    assert score.denoise(xs, 0.1, temps).shape == (3, 66)
    assert energy.energy(xs, 0.1, temps).shape == (3,)
    d_e = energy.denoise(xs.requires_grad_(True), 0.1, temps, create_graph=True)
    d_e.square().sum().backward()
    assert all(p.grad is not None for p in energy.parameters() if p.requires_grad)
    assert AtomTransformer(22, hidden=16, layers=1, emb_dim=8, heads=2, temperature_conditioned=True)(
        torch.randn(2, 66), torch.randn(2), torch.full((2,), 300.0)).shape == (2, 66)


def test_pair_head_is_equivariant_starts_at_zero_and_adds_pair_potentials_to_the_energy(aldp):
    """The transformer's pair head (net.pair_features): F = 0 at initialisation; F_pair rotates with
    the configuration and ignores translations; ⟨F_pair(y), y⟩ = Σ_{i<j} g_ij·r_ij², i.e. the energy
    model gains a function of the interatomic distances only (rotation- and reflection-invariant,
    unlike the attention blocks on absolute coordinates); and build_models gives it the target's
    reference structure (bond lengths in units of x/σ_data)."""
    torch.manual_seed(0)
    ref = torch.randn(22, 3, dtype=torch.float64) * 2.0
    net = AtomTransformer(22, hidden=16, layers=1, emb_dim=8, heads=4, pair_features=8,
                          pair_reference=ref).double()
    y, c = torch.randn(4, 66, dtype=torch.float64) * 2.0, torch.randn(4, dtype=torch.float64)
    assert torch.count_nonzero(net(y, c)) == 0  # zero last layers: D = c_skip·x at initialisation
    torch.nn.init.normal_(net.pair.out.weight, std=0.5)
    torch.nn.init.normal_(net.pair.harmonic.weight, std=0.1)
    cond = net.embedding(c)
    pos = y.reshape(4, 22, 3)
    f = net.pair(pos, cond)
    assert f.abs().max() > 1e-3
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))  # a rotation (reflections checked below)
    assert torch.allclose(net.pair(pos @ q.T, cond), f @ q.T, atol=1e-10)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert torch.allclose(net.pair(pos + shift, cond), f, atol=1e-10)
    reflect = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    pair_energy = (f * pos).sum((1, 2))
    assert torch.allclose((net.pair(pos @ reflect, cond) * (pos @ reflect)).sum((1, 2)), pair_energy,
                          atol=1e-10)
    g, r = net.pair.pair_coefficients(pos, cond)  # the pair-potential form
    assert g.shape == (4, 231)
    assert torch.allclose(pair_energy, (g * r**2).sum(-1), atol=1e-10)
    # the reference lengths come from the target's structure, centred and divided by σ_data
    _, energy = build_models(aldp, NetConfig(kind="transformer", hidden=16, layers=1, heads=2, emb_dim=8,
                                             sigma_data=S, pair_features=8))
    pos_ref = torch.as_tensor(np.asarray(aldp.initial_positions_nm, dtype=np.float64)).reshape(22, 3)
    head = energy.net.pair
    expected = (pos_ref[head.pair_i] - pos_ref[head.pair_j]).norm(dim=-1) / S
    assert torch.allclose(head.reference_r.double(), expected, rtol=1e-6)


def test_pair_head_can_go_to_the_energy_net_only(aldp):
    """net.pair_head=energy: U_η gets the pair head, the score net D_θ is built as without one (same
    parameter count as pair_features=0); an unknown value is refused with one clear error."""
    base = dict(kind="transformer", hidden=16, layers=1, heads=2, emb_dim=8, sigma_data=S)
    score, energy = build_models(aldp, NetConfig(**base, pair_features=8, pair_head="energy"))
    plain_score, plain_energy = build_models(aldp, NetConfig(**base))
    assert energy.net.pair is not None and score.net.pair is None
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(score) == count(plain_score) < count(energy)
    both_score, _ = build_models(aldp, NetConfig(**base, pair_features=8))
    assert both_score.net.pair is not None
    with pytest.raises(BadInput, match="pair_head"):
        build_models(aldp, NetConfig(**base, pair_features=8, pair_head="score"))


def test_plain_steps_train_without_the_pair_head_and_force_matching_first(aldp, tmp_path):
    """train.plain_steps = N ("distillation first"): steps < N leave U_η's pair head exactly at its
    zero initialisation and log no force-matching loss; from step N (here after a resume from the
    step-N checkpoint) the head learns and force matching is on. A negative value is refused."""
    torch.manual_seed(1)
    net = NetConfig(kind="transformer", hidden=16, layers=1, heads=2, emb_dim=8, sigma_data=S,
                    pair_features=8, pair_head="energy")
    score, energy = build_models(aldp, net)
    models = Models(score, energy, net)
    x = torch.as_tensor(np.asarray(aldp.initial_positions_nm, dtype=np.float32)).reshape(1, 66)
    x = x + 0.005 * torch.randn(24, 66)
    buf = TrainingBuffer.from_target(aldp, x)
    head0 = {k: v.clone() for k, v in energy.net.pair.state_dict().items()}
    rest0 = {k: v.clone() for k, v in energy.state_dict().items() if ".pair." not in k}
    cfg = TrainConfig(steps=3, batch_size=8, log_every=1, checkpoint_every=1, pin=1.0, force=1.0,
                      plain_steps=3)
    ckpt = tmp_path / "model.pt"
    first = train(models, buf, cfg, torch.Generator().manual_seed(0), checkpoint_path=ckpt)
    for k, v in energy.net.pair.state_dict().items():
        assert torch.equal(v, head0[k]), k
    assert all("force" not in h for h in first.history) and all("distill" in h for h in first.history)
    assert any(not torch.equal(v, rest0[k]) for k, v in energy.state_dict().items() if ".pair." not in k)
    later = train(models, buf, replace(cfg, steps=5), torch.Generator().manual_seed(0), checkpoint_path=ckpt)
    assert later.step == 5 and [h["step"] for h in later.history] == [1, 2, 3, 4, 5]
    assert all("force" in h for h in later.history[3:])
    assert any(not torch.equal(v, head0[k]) for k, v in energy.net.pair.state_dict().items())
    with pytest.raises(BadInput, match="plain_steps"):
        train(models, buf, replace(cfg, plain_steps=-1), torch.Generator().manual_seed(0))


def test_pair_fade_switches_the_pair_head_off_at_large_sigma(aldp):
    """net.pair_fade=σ_f: the pair head's output is multiplied by σ_f²/(σ_f² + σ²) — unchanged at
    σ ≪ σ_f, a tenth at σ = 3σ_f, off at σ ≫ σ_f; the attention blocks are untouched; a negative
    value is refused."""
    torch.manual_seed(0)
    kw = dict(hidden=16, layers=1, emb_dim=8, heads=4, pair_features=8, sigma_data=S)
    plain = AtomTransformer(22, **kw).double()
    faded = AtomTransformer(22, **kw, pair_fade=0.03).double()
    faded.load_state_dict(plain.state_dict())
    torch.nn.init.normal_(plain.pair.out.weight, std=0.5)
    faded.pair.out.weight.data.copy_(plain.pair.out.weight)
    y = torch.randn(3, 66, dtype=torch.float64)
    for sigma, factor in ((1e-4, 1.0), (0.09, 0.1), (30.0, 1e-6)):
        c = torch.full((3,), 0.25 * np.log(sigma), dtype=torch.float64)
        assert torch.allclose(faded(y, c), factor * plain(y, c), rtol=2e-3, atol=1e-12), sigma
    with pytest.raises(BadInput, match="pair_fade"):
        build_models(aldp, NetConfig(kind="transformer", hidden=16, layers=1, heads=2, emb_dim=8,
                                     sigma_data=S, pair_features=8, pair_fade=-1.0))


def test_rotation_augmentation_rotates_positions_and_scores_together(aldp):
    x = aldp.prior_sample(1, torch.Generator().manual_seed(3))
    buf = TrainingBuffer.from_target(aldp, x)
    assert (buf.n_particles, buf.spatial_dim) == (22, 3)  # molecules carry their atom shape
    batch = buf.sample(6, torch.Generator().manual_seed(4), augment=True)
    p0 = buf.x.reshape(22, 3).double()
    for xb, sb in zip(batch.x, batch.score, strict=True):
        rot = torch.linalg.lstsq(p0, xb.reshape(22, 3).double()).solution  # xb = x R
        assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-4)
        assert torch.linalg.det(rot) > 0  # a proper rotation, no reflection (chirality kept)
        assert not torch.allclose(rot, torch.eye(3, dtype=torch.float64), atol=1e-2)
        # the stored score, rotated with x, is the force at the rotated positions
        force = aldp.force(xb[None].double())[0]
        assert torch.allclose(sb.double(), force, rtol=1e-4, atol=1e-2 * force.abs().max().item())
        assert torch.allclose(sb.double().reshape(22, 3), buf.score.reshape(22, 3).double() @ rot,
                              rtol=1e-3, atol=1e-3 * force.abs().max().item())


def _reference_file(tmp_path: Path) -> str | None:
    if not HOLDOUT.is_file():
        return None
    ref = np.load(HOLDOUT)[::20].reshape(-1, 66)  # 500 frames, evaluation only (never trained on)
    path = tmp_path / "ref_300K.npy"
    np.save(path, ref)
    return str(path)


def test_peptide_pipeline_end_to_end_writes_stage_folders_with_peptide_metrics(tmp_path):
    ref = _reference_file(tmp_path)
    # stage 0 by OpenMM MD (4 chains, 16 frames each), counted; the chirality fix is on by default
    md = {"method": "md", "n_samples": 64, "options": {"chains": 4, "burn_in": 50, "thin": 10,
                                                       "platform": "Reference"}}
    cfg = dict(TINY, stage0=md)
    if ref is not None:  # the held-out 300 K set: the last stage is at 300 K to use it
        cfg = dict(cfg, temperatures=[1200.0, 300.0], reference=ref)
    res = run_pita(from_dict(PITAConfig, cfg), tmp_path / "run")
    d = tmp_path / "run"
    st0 = json.loads((d / "stage_0" / "metrics.json").read_text())
    assert st0["stage0_method"] == "md" and st0["stage0_info"]["temperature_kelvin"] == 1200.0
    assert st0["energy_evaluations"]["initial_data"] == st0["stage0_info"]["energy_evaluations"] \
        == 4 * (50 + 16 * 10 + 16)
    assert st0["chirality_stage0_data"]["n"] == 64
    for f in ("config.yaml", "samples.npz", "metrics.json", "ladder.png", "COMPLETE"):
        assert (d / f).is_file(), f
    for k in range(2):
        st = json.loads((d / f"stage_{k}" / "metrics.json").read_text())
        for f in ("samples.npz", "buffer.npz", "metrics.json", "COMPLETE"):
            assert (d / f"stage_{k}" / f).is_file(), (k, f)
        # the samples that feed training are L: all-D ones flipped (ALDP has one centre: no mixed)
        ch = st["chirality"]
        assert ch["chirality_fix"] is True and ch["l_fraction"] == 1.0 and ch["mirrored_fraction"] == 0.0
        assert ch["dropped_mixed"] == 0 and st["evaluation"]["metrics"]["mirrored_fraction"]["value"] == 0.0
    st1 = json.loads((d / "stage_1" / "metrics.json").read_text())
    before, after = st1["chirality_before_relaxation"], st1["chirality_after_relaxation"]
    assert before["flipped"] == round(32 * before["mirrored_fraction"])
    assert st1["chirality"]["flipped_for_training"] == before["flipped"] + after["flipped"]
    log = (d / "run.log").read_text()
    assert all(f"stage {k} chirality: " in log for k in range(2))
    assert (d / "stage_0" / "model.pt").is_file() and not (d / "stage_1" / "model.pt").exists()
    # the generator check: a 6-step model cannot make a molecule at 1200 K — it is reported so,
    # counted, and warned about (the check's arithmetic: tests/test_pita.py)
    mc = st0["model_check"]
    assert mc["n"] == 64 and mc["in_range_fraction"] < 0.5 and mc["median_energy"] > mc["buffer_q99_energy"]
    assert st0["energy_evaluations"]["model_check"] == 64 and "cis_peptide_fraction" in mc
    assert "WARNING stage 0: the trained model does not reproduce its own training data" in log
    # a stage whose samples hold cis amides says so (another isomer; nothing downstream undoes it),
    # and one without says nothing
    for k in range(2):
        cis = json.loads((d / f"stage_{k}" / "metrics.json").read_text())["evaluation"]["metrics"][
            "cis_peptide_fraction"]["value"]
        assert (f"WARNING stage {k}: {cis:.1%} of the samples at T=" in log) == (cis > 0), (k, cis)
    metrics = json.loads((d / "metrics.json").read_text())
    ev = metrics["energy_evaluations"]
    assert ev["initial_data"] > 0 and ev["relaxation"] > 0 and ev["training_buffers"] == 64 + 32
    assert ev["model_check"] == 64 and metrics["stages"][0]["model_check"] == mc
    assert [s["flipped_for_training"] for s in metrics["stages"]] == [
        json.loads((d / f"stage_{k}" / "metrics.json").read_text())["chirality"]["flipped_for_training"]
        for k in range(2)]
    # the final metrics state the final samples' chirality and the flips of every stage
    fc = metrics["chirality"]
    assert fc["l_fraction"] == 1.0 and fc["flipped_all_stages"] == sum(
        s["flipped_for_training"] for s in metrics["stages"]) and fc["dropped_mixed_all_stages"] == 0
    assert res.samples.x.shape == (32, 66) and np.isfinite(res.samples.energy.numpy()).all()
    if ref is not None:
        final = metrics["evaluation"]["metrics"]
        for name in ("energy_w1", "energy_w2", "torus_w2", "ramachandran_kl", "phi_positive_fraction"):
            assert name in final and final[name]["n"] > 0, name


def test_run_killed_after_stage_0_resumes_and_completes_with_user_stage0_data(tmp_path):
    # stage 0 from a user's file: used as given, its cost recorded as the user states it
    x0 = make_target("aldp-fab").prior_sample(48, torch.Generator().manual_seed(5))
    data = tmp_path / "t0.npy"
    np.save(data, x0.numpy().reshape(48, 22, 3))  # (n, atoms, 3) is accepted too
    # the chirality fix is on by default: mirrored annealed particles are reflected, and counted
    cfg = from_dict(PITAConfig, dict(TINY, stage0={"data": str(data), "data_evaluations": 12345}))

    def kill(event, info):
        if event == "stage" and info["stage"] == 0:
            raise Killed

    with pytest.raises(Killed):
        run_pita(cfg, tmp_path / "cut", callback=kill)
    assert (tmp_path / "cut" / "stage_0" / "COMPLETE").is_file()
    assert not (tmp_path / "cut" / "stage_1" / "COMPLETE").exists()
    res = run_pita(cfg, tmp_path / "cut", resume=True)
    assert (tmp_path / "cut" / "COMPLETE").is_file() and res.samples.x.shape == (32, 66)
    full = run_pita(cfg, tmp_path / "full")
    assert np.array_equal(full.samples.x.numpy(), res.samples.x.numpy())
    st0 = json.loads((tmp_path / "cut" / "stage_0" / "metrics.json").read_text())
    assert st0["energy_evaluations"]["initial_data"] == 12345
    assert st0["stage0_method"] == "user supplied"
    assert Samples.load(tmp_path / "cut" / "stage_0" / "samples.npz").n == 48
    st1 = json.loads((tmp_path / "cut" / "stage_1" / "metrics.json").read_text())
    before, after = st1["chirality_before_relaxation"], st1["chirality_after_relaxation"]
    assert st1["chirality"]["flipped_for_training"] == before["flipped"] + after["flipped"]
    assert before["flipped"] == round(32 * before["mirrored_fraction"]) > 0, before
    # the repair of a 6-step model's clashes can move CB across: flipped again after relaxation
    assert st1["chirality"]["l_fraction"] == 1.0 and res.samples.x.shape[0] == 32


def test_stage0_data_with_a_wrong_shape_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 65), dtype=np.float32))
    out = tmp_path / "run"
    r = CliRunner().invoke(pita, ["--target", "aldp-fab", "--preset", "quick", "--out", str(out),
                                  "--stage0-data", str(bad)])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert "bad.npy" in r.output and "(10, 65)" in r.output
    assert not out.exists()
    r = CliRunner().invoke(pita, ["--target", "aldp-fab", "--out", str(out), "--stage0-evaluations", "5"])
    assert r.exit_code == 2 and "--stage0-data" in r.output


def test_a_network_option_that_does_not_fit_is_refused_before_stage_0(tmp_path):
    """net.analytic_grad on a molecule (its models centre x) used to fail with a traceback after the
    4-minute MD stage 0; now one line, exit 2, nothing written."""
    out = tmp_path / "run"
    r = CliRunner().invoke(pita, ["--target", "aldp-fab", "--preset", "quick", "--out", str(out),
                                  "--set", "net.kind=egnn", "--set", "net.analytic_grad=true"])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert "analytic_grad" in r.output and not out.exists()


def test_peptide_presets_resolve_to_kelvin_ladders_and_the_transformer():
    for target, n in (("aldp-fab", 4), ("aldp-pita", 4), ("al3", 5)):
        for preset in ("quick", "cpu", "paper"):
            cfg = resolve_config(target, preset, None, ())
            temps = cfg.temperatures
            assert temps[0] == 1200.0 and temps[-1] == 300.0 and cfg.net.kind == "transformer"
            # the per-chain step adaptation of every measured peptide run, pinned since the library
            # default became shared (smc/relax.py); al3 and aldp-pita paper inherit it through `base`
            assert cfg.relax.adapt == "per_chain"
            if preset == "cpu" and target in ("aldp-fab", "al3"):  # eight rungs of γ = 4^(1/8) (docs/pita.md)
                assert len(temps) == 9
                ratios = [temps[i] / temps[i + 1] for i in range(8)]
                assert ratios == pytest.approx([4 ** 0.125] * 8, rel=2e-3)
                # basin weights over the relaxation path on aldp-fab (measured there); AL3 keeps its
                # measured one-energy estimate (docs/pita.md, twenty-first session)
                assert cfg.rung_basin_weights == ("path" if target == "aldp-fab" else "instant")
                # aldp-fab's extra rung samples and sparser stage-0 frames double its evaluations
                # (twenty-third session); AL3 inherits the recipe but not that, never measured there
                assert cfg.rung_samples == (3000 if target == "aldp-fab" else None)
                assert cfg.stage0.options["thin"] == (400 if target == "aldp-fab" else 200)
            elif preset == "quick" and target in ("aldp-fab", "al3"):  # four rungs of γ = √2
                assert len(temps) == 5
                ratios = [temps[i] / temps[i + 1] for i in range(4)]
                assert ratios == pytest.approx([2 ** 0.5] * 4, rel=2e-3)
                assert cfg.rung == "reweight" and cfg.net.pair_features == 16
            else:  # the paper's ladder
                assert len(temps) == n
            assert cfg.net.sigma_data == pytest.approx(S)
            assert cfg.schedule.sigma_min == pytest.approx(0.01 * S)
            assert cfg.chirality_fix is True
            # these ladders compile their training step (bench_peptide_train_speed: 1.6× per step)
            compiled = preset == "cpu" or (preset == "quick" and target != "aldp-pita")
            assert cfg.train.compile is compiled and cfg.finetune.compile is compiled
    assert 408.24 in resolve_config("al3", "paper", None, ()).temperatures


def test_egnn_on_a_peptide_gets_atom_features_and_an_achiral_energy(aldp):
    """net.kind=egnn on a molecule: one learned feature per atom (nets.egnn), an energy model whose
    U_η is unchanged by a rotation, a translation and a reflection (the force field is achiral; the
    chirality fix relies on it) and whose score rotates with x."""
    torch.manual_seed(0)
    score, energy = build_models(aldp, NetConfig(kind="egnn", hidden=16, layers=2, emb_dim=8, sigma_data=S))
    assert energy.net.atom_embedding is not None and energy.net.atom_embedding.num_embeddings == 22
    for layer in energy.net.layers:  # O(1) coordinate updates, so the checks below are not trivial
        torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    energy.double()
    x = aldp.prior_sample(4, torch.Generator().manual_seed(1)).double()
    u = energy.energy(x, 0.05)
    rot = _rotation(3)
    moved = (x.reshape(4, 22, 3) @ rot + 0.3).reshape(4, 66)
    mirrored = (x.reshape(4, 22, 3) * torch.tensor([1.0, -1.0, 1.0], dtype=x.dtype)).reshape(4, 66)
    tol = 1e-9 * max(1.0, float(u.abs().max()))
    torch.testing.assert_close(energy.energy(moved, 0.05), u, atol=tol, rtol=0)
    torch.testing.assert_close(energy.energy(mirrored, 0.05), u, atol=tol, rtol=0)
    s = energy.score(x, 0.05)
    expected = (s.reshape(4, 22, 3) @ rot).reshape(4, 66)
    torch.testing.assert_close(energy.score(moved, 0.05), expected, atol=1e-8 * float(s.abs().max()), rtol=0)
    assert float(u.std()) > 1e-6  # not a constant


def test_backbone_strata_rung_weights_the_model_samples_to_the_buffer_basins(tmp_path):
    """rung: reweight with rung_strata: backbone on aldp-fab (tiny): stage 1 records the model's and the
    stage-0 buffer's backbone-basin fractions (each summing to 1) and the mass it could not restore;
    the ESS reflects both weightings. ``strata_log_weights`` itself: tests/test_bench_one_step.py."""
    x0 = make_target("aldp-fab").prior_sample(48, torch.Generator().manual_seed(5))
    data = tmp_path / "t0.npy"
    np.save(data, x0.numpy())
    cfg = from_dict(PITAConfig, dict(TINY, stage0={"data": str(data)}, rung="reweight",
                                     rung_strata="backbone"))
    res = run_pita(cfg, tmp_path / "run")
    st1 = json.loads((tmp_path / "run" / "stage_1" / "metrics.json").read_text())
    strata = st1["strata"]
    for side in ("samples", "reference"):
        assert abs(sum(strata[side].values()) - 1) < 1e-9, side
    assert 0 <= strata["missing_mass"] < 1 and 0 < st1["final_ess_fraction"] <= 1
    assert res.samples.x.shape == (32, 66)
    # no U_η value enters a reweight rung's samples: what judges U_η for FK weights (the gate's energy
    # criterion, the σ_min check, the annealed model's energy slope) is recorded but not warned about,
    # nor does it fail the gate; the model check is a plain log line (the rung relaxes those samples)
    log = (tmp_path / "run" / "run.log").read_text()
    st0 = json.loads((tmp_path / "run" / "stage_0" / "metrics.json").read_text())
    gate = st0["energy_model_gate"]
    last = gate["checks"][-1]
    assert last["reweight_ess_fraction"] < 0.3 or last["corr"] < 0.9  # a 6-step model: it would fail
    assert gate["passed"] and gate["not_applied"] == ["energy"] and "too poor for gamma" not in log
    assert st0["sigma_min_check"]["median_std"] > 1.0 and "noise of size sigma_min" not in log
    assert st1["previous_model_here"]["slope"] < 0.9 and "energy differences are" not in log
    assert st0["model_check"]["in_range_fraction"] < 0.5
    assert "stage 0: model check: " in log and "does not reproduce its own training data" not in log


def test_path_basin_weights_rung_records_its_corrections(tmp_path):
    """rung_basin_weights: path on aldp-fab (tiny): the rung relaxes with recorded energies and logs,
    per backbone stratum of the model's samples, a finite correction over the frozen MALA steps
    (the estimator itself: tests/test_path_basin_weights.py)."""
    x0 = make_target("aldp-fab").prior_sample(48, torch.Generator().manual_seed(5))
    data = tmp_path / "t0.npy"
    np.save(data, x0.numpy())
    cfg = from_dict(PITAConfig, dict(TINY, stage0={"data": str(data)}, rung="reweight",
                                     rung_strata="backbone", rung_basin_weights="path"))
    res = run_pita(cfg, tmp_path / "run")
    st1 = json.loads((tmp_path / "run" / "stage_1" / "metrics.json").read_text())
    path = st1["path_basin_weights"]
    assert path["frozen_steps"] == TINY["relax"]["n_steps"] - TINY["relax"]["adapt_steps"]
    assert set(path["log_correction"]) == set(st1["strata"]["samples"])
    assert all(np.isfinite(v) for v in path["log_correction"].values())
    assert res.samples.x.shape == (32, 66)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["rung_basin_weights"] == "path"


def test_backbone_strata_do_not_depend_on_chirality_and_follow_the_basins(aldp):
    from boltzpath.metrics.chirality import chirality_masks, reflect
    from boltzpath.metrics.peptides import BASIN_NAMES, backbone_dihedrals, backbone_strata, basin_masks

    x = aldp.prior_sample(200, torch.Generator().manual_seed(3)).numpy()
    x = x + np.random.default_rng(0).normal(0, 0.03, x.shape).astype(x.dtype)  # spread the dihedrals
    codes = backbone_strata(x, aldp.topology)
    assert np.array_equal(codes, backbone_strata(reflect(x, aldp.n_atoms), aldp.topology))
    _, all_d, _ = chirality_masks(x, aldp.topology)  # the noise turns some samples D
    assert 0 < all_d.sum() < len(x)
    phi, psi = backbone_dihedrals(x[~all_d], aldp.topology)  # the L ones: their own basins
    masks = basin_masks(phi[:, 0], psi[:, 0])
    expect = sum(i * masks[name].astype(int) for i, name in enumerate(BASIN_NAMES))
    assert np.array_equal(codes[~all_d], expect) and len(np.unique(codes)) >= 2


def test_rung_samples_relaxes_the_whole_pool_and_resamples_a_buffer(tmp_path):
    """rung_samples = 2 × buffer_size on aldp-fab (tiny): the rung draws and relaxes 64 model samples at
    T_{k−1} (≥ 64 · relax.n_steps evaluations), sets the strata's weights from all 64 (fractions in
    sixty-fourths) and resamples a 32-sample buffer from them."""
    md = {"method": "md", "n_samples": 64, "options": {"chains": 4, "burn_in": 50, "thin": 10,
                                                       "platform": "Reference"}}
    cfg = from_dict(PITAConfig, dict(TINY, stage0=md, rung="reweight",
                                     rung_strata="backbone", rung_basin_weights="path", rung_samples=64))
    res = run_pita(cfg, tmp_path / "run")
    st1 = json.loads((tmp_path / "run" / "stage_1" / "metrics.json").read_text())
    assert st1["rung_samples"] == 64
    evals = st1["energy_evaluations"]
    assert evals["relaxation_before"] >= 64 * TINY["relax"]["n_steps"]
    assert evals["relaxation"] < 64 * TINY["relax"]["n_steps"]  # the resampled buffer's 32 only
    counts = np.array(list(st1["strata"]["samples"].values())) * 64
    assert np.allclose(counts, np.round(counts)) and round(counts.sum()) == 64
    odds = st1["strata_odds"]  # per stratum of the 64: count, log mean path weight, its standard error
    assert set(odds) == set(st1["strata"]["samples"]) and sum(o["n"] for o in odds.values()) == 64
    assert all(o["se"] >= 0 for o in odds.values() if o["n"] > 1)
    assert res.samples.x.shape == (32, 66)
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert final["rung_samples"] == 64
    assert final["basin_log_odds_se_from_rungs"]["rungs"] == 1
    log = (tmp_path / "run" / "run.log").read_text()
    assert "basin odds: after the stage-0 data and 1 rung, ln(share / share of stratum" in log
    # the stage-0 MD buffer's own error, between its 4 chains (stage0_strata_errors)
    s0 = json.loads((tmp_path / "run" / "stage_0" / "metrics.json").read_text())["stage0_strata_se"]
    assert s0["chains"] == 4 and all(np.isfinite(v) and v >= 0 for v in s0["se"].values())
