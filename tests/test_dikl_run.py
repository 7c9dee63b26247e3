"""DiKL run folders, resume after a kill, the particle generator's symmetries, and the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fixtures import DIKL_TINY, seeded

from boltzpath.cli import cli
from boltzpath.config import from_dict
from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.methods.dikl import DiKLConfig, run_dikl
from boltzpath.methods.dikl.config import resolve_config
from boltzpath.methods.dikl.networks import NetSpec, build_networks
from boltzpath.methods.dikl.schedule import DDPMConfig, VPSchedule
from boltzpath.methods.dikl.trainer import read_checkpoint
from boltzpath.targets.registry import make_target

TINY = DIKL_TINY
SET_TINY = ["generator.hidden=16", "generator.layers=2", "score_net.hidden=16", "score_net.layers=2",
            "train.iterations=4", "train.batch_size=32", "train.dsm_steps=1", "n_samples=50",
            "eval_max_n=50", "eval_noise_floors=false", "posterior.n_importance=2", "posterior.mala_steps=2",
            "posterior.average_last=1", "plots=false"]


class Killed(RuntimeError):
    pass


def test_tiny_run_writes_a_complete_folder_and_counts_evaluations(tmp_path):
    res = run_dikl(from_dict(DiKLConfig, TINY), tmp_path / "run")
    d = tmp_path / "run"
    files = ("config.yaml", "samples.npz", "metrics.json", "run.log", "checkpoint.pt", "generator.pt",
             "COMPLETE")
    for f in files:
        assert (d / f).is_file(), f
    m = json.loads((d / "metrics.json").read_text())
    # per iteration: batch · (K + mala_steps) posterior evaluations; drawing the samples costs none
    assert m["energy_evaluations"] == {"training": 12 * 32 * (4 + 3), "selection": 0, "sampling": 0,
                                      "total": 12 * 32 * 7}
    assert m["wall_time_s"] > 0 and m["n"] == 64 and "mode_coverage" in m["evaluation"]["metrics"]
    s = Samples.load(d / "samples.npz")
    assert s.x.shape == (64, 2) and np.isfinite(s.energy.numpy()).all()
    assert res.samples.n == 64 and read_checkpoint(d / "checkpoint.pt")["iteration"] == 12
    # a long run reports its progress in run.log at every checkpoint (5, 10 and the last, 12)
    progress = [line for line in (d / "run.log").read_text().splitlines() if "checkpoint: iteration" in line]
    assert [p.split("iteration ")[1].split(",")[0] for p in progress] == ["5/12", "10/12", "12/12"]
    assert f"{12 * 32 * 7:,} energy evaluations" in progress[-1] and "dsm_loss" in progress[-1]
    # 6 logged points are too few to judge convergence: reported as unknown, no warning
    conv = m["training"]["convergence"]
    assert conv["key"] == "score_gap" and conv["still_falling"] is None and m["warnings"] == []


def _history(values, every=10):
    return [{"iteration": every * (i + 1), "score_gap": float(v)} for i, v in enumerate(values)]


def test_convergence_report_flags_a_score_gap_still_falling_and_only_that():
    from boltzpath.methods.dikl.report import convergence_report, convergence_warning

    rng = np.random.default_rng(0)
    it = np.arange(1, 351) * 10.0
    noise = np.exp(0.08 * rng.standard_normal(350))  # ~8 % scatter, like the DW-4 cpu run's log
    # a plateau (what a converged run logs): no flag, whatever the seed of the scatter
    flat = convergence_report(_history(4.0 * noise))
    assert flat["still_falling"] is False and abs(flat["relative_drop"]) < 0.05
    # the DW-4 cpu shape: 18 -> 4.3 over 3,500 iterations and still ~10 % down over the last half
    falling = convergence_report(_history((4.0 + 14.0 * np.exp(-it / 400.0)) * np.exp(-it / 16000.0) * noise))
    assert falling["still_falling"] is True and falling["t"] < -3 and falling["relative_drop"] > 0.05
    assert falling["window_iterations"] == [1760, 3500]
    assert "3500 here" in convergence_warning(falling, 3500)
    # rising, and a drop below the 5 % effect floor however significant: not "still falling"
    assert convergence_report(_history(4.0 * np.exp(it / 20000.0) * noise))["still_falling"] is False
    tiny_drop = convergence_report(_history(4.0 * np.exp(-it / 80000.0)))  # 2 % over the half, no noise
    assert tiny_drop["still_falling"] is False and tiny_drop["t"] < -3
    # too short to tell; non-finite points are ignored
    assert convergence_report(_history([5.0, 4.0, float("nan")] * 10))["still_falling"] is None
    assert convergence_warning(flat, 3500) is None


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path):
    cfg = from_dict(DiKLConfig, TINY)
    full = run_dikl(cfg, tmp_path / "full")

    def kill(i, n, info):
        if i == 8:  # after the checkpoint at 5: iterations 6–8 are lost and redone
            raise Killed

    with pytest.raises(Killed):
        run_dikl(cfg, tmp_path / "cut", callback=kill)
    assert not (tmp_path / "cut" / "COMPLETE").exists()
    with pytest.raises(BadInput):  # an existing folder needs --resume or --overwrite
        run_dikl(cfg, tmp_path / "cut")
    resumed = run_dikl(cfg, tmp_path / "cut", resume=True)
    assert torch.equal(resumed.samples.x, full.samples.x)
    a = read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    for k in a["generator"]:
        assert torch.equal(a["generator"][k], b["generator"][k])
    assert resumed.metrics["energy_evaluations"] == full.metrics["energy_evaluations"]
    other = from_dict(DiKLConfig, {**TINY, "seed": 5})
    with pytest.raises(BadInput):  # a different config cannot resume this folder
        run_dikl(other, tmp_path / "cut", resume=True)


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_particle_generator_is_equivariant_and_com_free(name):
    target = make_target(name)
    spec = NetSpec(hidden=16, layers=2, emb_dim=4)
    torch.manual_seed(0)
    gen, score = build_networks(target, spec, spec, VPSchedule(DDPMConfig(steps=5, beta_end=0.05)))
    for layer in gen.net.layers:  # make the EGNN's coordinate update large (it starts near 0)
        torch.nn.init.normal_(layer.coord_out.weight, std=0.5)
    n, d = target.n_particles, target.spatial_dim
    z = gen.latent(6, seeded(0)).double()
    gen, score = gen.double(), score.double()
    x = gen(z)
    assert (x.reshape(6, n, d).mean(1).abs() < 1e-10).all()  # CoM-free
    assert (x - gen.scale * z).abs().max() > 1e-2  # the network does contribute
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=seeded(1), dtype=torch.float64))
    perm = torch.randperm(n, generator=seeded(2))
    rot = lambda v: (v.reshape(-1, n, d) @ q.T).reshape(v.shape)  # noqa: E731
    per = lambda v: v.reshape(-1, n, d)[:, perm].reshape(v.shape)  # noqa: E731
    assert torch.allclose(gen(rot(z)), rot(x), atol=1e-10)
    assert torch.allclose(gen(per(z)), per(x), atol=1e-10)
    idx = torch.tensor([0, 1, 2, 3, 4, 4])
    s = score.score(x, idx)
    assert torch.allclose(score.score(rot(x), idx), rot(s), atol=1e-8)
    assert (s.reshape(6, n, d).mean(1).abs() < 1e-8).all()


def test_presets_resolve_for_every_target():
    for preset in ("quick", "cpu", "paper"):
        for name in ("gmm40", "manywell32", "dw4", "lj13"):
            cfg = resolve_config(name, preset, None, ())
            assert cfg.target == name
    assert resolve_config("lj13", "paper", 3, ()).generator.hidden == 192


def test_cli_end_to_end_and_fresh_samples(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["run", "dikl", "--target", "gmm40", "--preset", "quick", "--out", str(out), "--quiet"]
    for s in SET_TINY:
        args += ["--set", s]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (out / "COMPLETE").is_file() and "energy evaluations" in res.output
    res = runner.invoke(cli, ["run", "dikl-sample", "--from", str(out), "--n", "300",
                              "--out", str(tmp_path / "fresh"), "--no-metrics"])
    assert res.exit_code == 0, res.output
    fresh = Samples.load(tmp_path / "fresh" / "samples.npz")
    m = json.loads((tmp_path / "fresh" / "metrics.json").read_text())
    assert fresh.x.shape == (300, 2) and m["energy_evaluations"] == 0 and m["precision"] == "float32"
    res = runner.invoke(cli, ["run", "dikl-sample", "--from", str(out), "--n", "30",
                              "--out", str(tmp_path / "bf"), "--no-metrics", "--precision", "bfloat16"])
    assert res.exit_code == 0, res.output  # an MLP generator has no edge MLPs: it draws in float32
    assert json.loads((tmp_path / "bf" / "metrics.json").read_text())["precision"] == "float32"
    same = ["run", "dikl-sample", "--from", str(out), "--n", "3", "--out", str(out), "--overwrite"]
    res = runner.invoke(cli, same)
    assert res.exit_code == 2 and (out / "COMPLETE").is_file()  # the source run is never overwritten
    assert (tmp_path / "fresh" / "COMPLETE").is_file()


@pytest.mark.parametrize("extra", [
    ["--preset", "nope"],
    ["--set", "train.iterations=-1"],
    ["--set", "posterior.average_last=9"],
    ["--set", "train.weighting=cubic"],
    ["--set", "generator.kind=egnn"],
    ["--set", "bogus=1"],
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, extra):
    args = ["run", "dikl", "--target", "gmm40", "--out", str(tmp_path / "r"), "--quiet", *extra]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_dikl_sample_from_a_folder_that_is_not_a_run_is_exit_2(tmp_path):
    res = CliRunner().invoke(cli, ["run", "dikl-sample", "--from", str(tmp_path), "--n", "5", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1


def test_particle_run_without_a_reference_is_scored_against_the_shipped_one(tmp_path):
    # lj13/dw4 at T = 1 ship a certified reference (metrics.bundled); a run given none uses it, as
    # `sample` and `run pita` do, so its metrics.json holds the reference-based metrics
    args = ["run", "dikl", "--target", "dw4", "--out", str(tmp_path / "r"), "--quiet"]
    for s in SET_TINY:
        args += ["--set", s]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())["evaluation"]
    assert m["n_reference"] == 50 and "distance_w2" in m["metrics"]
    assert "certified PT reference" in (tmp_path / "r" / "run.log").read_text()


def test_optimisers_take_the_shared_adam_and_an_old_checkpoint_keeps_its_flags():
    """DiKL's two optimisers come from ``diffusion.train.adam`` (fused where torch has it, as PITA's
    trainer), not torch's default per-parameter loop on the CPU; a checkpoint written with the old
    plain Adam resumes with its own flags (load_state_dict restores them)."""
    from boltzpath.methods.dikl.trainer import init_state

    cfg = from_dict(DiKLConfig, TINY)
    state = init_state(make_target(cfg.target), cfg)
    for opt, net in ((state.opt_generator, state.generator), (state.opt_score, state.score)):
        group = opt.param_groups[0]
        assert group["fused"] or group["foreach"]
        assert len(group["params"]) == len(list(net.parameters())) > 0
    old = torch.optim.Adam(state.generator.parameters(), lr=1e-3)  # flags None: the per-parameter loop
    state.opt_generator.load_state_dict(old.state_dict())
    assert not state.opt_generator.param_groups[0]["fused"]
