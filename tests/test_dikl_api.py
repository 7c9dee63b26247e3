"""DiKL in the Python API (boltzpath.dikl / boltzpath.dikl_sample) and the --device option."""

import json

import pytest
import torch
from click.testing import CliRunner
from test_dikl_run import SET_TINY, TINY

import boltzpath
from boltzpath.cli import cli
from boltzpath.config import from_dict
from boltzpath.errors import BadInput
from boltzpath.methods.dikl import DiKLConfig, run_dikl
from boltzpath.methods.dikl.config import resolve_config
from boltzpath.methods.dikl.trainer import read_checkpoint

NO_GPU = not torch.cuda.is_available()
OVERRIDES = {k: v for k, v in TINY.items() if k != "target"}


class Killed(RuntimeError):
    pass


def test_dikl_trains_into_a_folder_and_dikl_sample_draws_from_it(tmp_path):
    s = boltzpath.dikl("gmm40", preset="quick", seed=0, out=tmp_path / "d", **OVERRIDES)
    assert s.x.shape == (64, 2) and (tmp_path / "d" / "COMPLETE").is_file()
    m = s.info["metrics"]
    assert m["energy_evaluations"]["training"] == 12 * 32 * 7 and m["device"] == "cpu"
    fresh = boltzpath.dikl_sample(tmp_path / "d", n=30, seed=2)
    assert fresh.x.shape == (30, 2) and fresh.info["energy_evaluations"] == 0
    assert fresh.info["sampling_time_s"] >= 0 and torch.isfinite(fresh.energy).all()
    again = boltzpath.dikl_sample(tmp_path / "d", n=30, seed=2, out=tmp_path / "more", metrics=False)
    assert torch.allclose(again.x, fresh.x) and (tmp_path / "more" / "COMPLETE").is_file()
    assert json.loads((tmp_path / "more" / "metrics.json").read_text())["energy_evaluations"] == 0
    assert not (tmp_path / "more" / "checkpoint.pt").exists()
    ev = boltzpath.evaluate(fresh, max_n=30, noise_floors=False)  # the recorded target is enough
    assert "mode_coverage" in ev["metrics"]
    with pytest.raises(BadInput):
        boltzpath.dikl_sample(tmp_path / "d", n=0)
    with pytest.raises(BadInput):
        boltzpath.dikl_sample(tmp_path / "nothing", n=5)


def test_dikl_resumes_a_killed_run_like_the_uninterrupted_one(tmp_path):
    full = boltzpath.dikl("gmm40", seed=0, out=tmp_path / "full", **OVERRIDES)
    cfg = resolve_config("gmm40", "quick", 0, (), extra=OVERRIDES)  # what the API resolved

    def kill(i, n, info):
        if i == 8:
            raise Killed

    with pytest.raises(Killed):
        run_dikl(cfg, tmp_path / "cut", callback=kill)
    with pytest.raises(BadInput):  # neither resume nor overwrite
        boltzpath.dikl("gmm40", seed=0, out=tmp_path / "cut", **OVERRIDES)
    resumed = boltzpath.dikl("gmm40", seed=0, out=tmp_path / "cut", resume=True, **OVERRIDES)
    assert torch.equal(resumed.x, full.x)
    assert resumed.info["metrics"]["energy_evaluations"] == full.info["metrics"]["energy_evaluations"]


def test_dikl_on_a_custom_energy_without_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def banana(x):
        return 0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2

    over = {**OVERRIDES, "generator": {**TINY["generator"], "scale": 1.0},
            "score_net": {**TINY["score_net"], "scale": 1.0}, "train": {**TINY["train"], "iterations": 3}}
    s = boltzpath.dikl(banana, dim=2, seed=1, **over)
    assert s.x.shape == (64, 2) and torch.isfinite(s.energy).all() and not list(tmp_path.iterdir())
    with pytest.raises(BadInput):
        boltzpath.dikl("gmm40", train={"iterations": -1})


def test_device_cpu_runs_and_a_missing_gpu_is_refused(tmp_path):
    cfg = from_dict(DiKLConfig, {**TINY, "train": {**TINY["train"], "iterations": 4}})
    res = run_dikl(cfg, tmp_path / "cpu", device="cpu")
    assert res.metrics["device"] == "cpu"
    assert read_checkpoint(tmp_path / "cpu" / "checkpoint.pt")["device"] == "cpu"
    if NO_GPU:
        with pytest.raises(BadInput, match="no CUDA GPU"):
            run_dikl(cfg, tmp_path / "gpu", device="cuda")
        assert not (tmp_path / "gpu").exists()
        with pytest.raises(BadInput, match="no CUDA GPU"):
            boltzpath.dikl_sample(tmp_path / "cpu", n=5, device="cuda")
    with pytest.raises(BadInput):
        boltzpath.dikl("gmm40", out=tmp_path / "x", device="tpu", **OVERRIDES)


def test_a_checkpoint_resumes_only_on_its_device_kind(tmp_path):
    cfg = from_dict(DiKLConfig, TINY)

    def kill(i, n, info):
        if i == 6:
            raise Killed

    with pytest.raises(Killed):
        run_dikl(cfg, tmp_path / "r", callback=kill)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    data = read_checkpoint(ckpt)
    torch.save({**data, "device": "cuda"}, ckpt)
    with pytest.raises(BadInput, match="written by a run on cuda"):
        run_dikl(cfg, tmp_path / "r", resume=True, device="cpu")


def test_cli_device_option(tmp_path):
    sets = [x for s in SET_TINY for x in ("--set", s)]
    res = CliRunner().invoke(cli, ["run", "dikl", "--target", "gmm40", "--out", str(tmp_path / "d"),
                                   "--quiet", "--device", "cpu", *sets])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["run", "dikl-sample", "--from", str(tmp_path / "d"), "--n", "20",
                                   "--out", str(tmp_path / "s"), "--no-metrics", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["device"] == "cpu"
    if NO_GPU:
        for argv in (["run", "dikl", "--target", "gmm40", "--out", str(tmp_path / "g"), "--device", "cuda",
                      *sets],
                     ["run", "dikl-sample", "--from", str(tmp_path / "d"), "--n", "5", "--out",
                      str(tmp_path / "g2"), "--device", "cuda:0"]):
            res = CliRunner().invoke(cli, argv)
            assert res.exit_code == 2 and "no CUDA GPU" in res.output, res.output
            assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
        assert not (tmp_path / "g").exists() and not (tmp_path / "g2").exists()
