"""The command line: run folders, reproducibility, and bad input → exit 2 with one line."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from boltzpath.cli import cli
from boltzpath.io.samples import Samples

SMALL = ["--set", "sampler.chains=16", "--set", "sampler.burn_in=20", "--set", "sampler.thin=1"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def sample(out, *extra, target="gmm40", method="mala", n=64, seed=0):
    return invoke("sample", "--target", target, "--method", method, "--n", n, "--seed", seed,
                  "--out", out, *SMALL, *extra)


def digest(path):
    with np.load(path, allow_pickle=False) as d:
        return hashlib.sha256(d["x"].tobytes() + d["energy"].tobytes()).hexdigest()


def test_targets_and_methods_are_listed():
    res = invoke("targets")
    assert res.exit_code == 0
    for name in ("gmm40", "manywell32", "dw4", "lj13", "lj55", "aldp-fab", "module:fn"):
        assert name in res.output
    res = invoke("methods")
    assert res.exit_code == 0 and "mala" in res.output and "pt" in res.output


def test_sample_writes_a_complete_run_folder_and_same_seed_is_identical(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert sample(a).exit_code == 0
    for name in ("config.yaml", "samples.npz", "metrics.json", "run.log", "COMPLETE", "energy_hist.png",
                 "density_2d.png"):
        assert (a / name).is_file(), name
    s = Samples.load(a / "samples.npz")
    assert s.x.shape == (64, 2) and s.energy.shape == (64,)
    metrics = json.loads((a / "metrics.json").read_text())
    assert metrics["energy_evaluations"] == s.info["energy_evaluations"] > 0
    assert metrics["wall_time_s"] > 0 and "metrics" in metrics
    assert sample(b).exit_code == 0
    assert digest(a / "samples.npz") == digest(b / "samples.npz")  # bit-for-bit on CPU
    assert sample(c, seed=1).exit_code == 0
    assert digest(a / "samples.npz") != digest(c / "samples.npz")


def test_saved_config_reruns_the_same_samples(tmp_path):
    assert sample(tmp_path / "a", target="dw4").exit_code == 0
    config = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert config["target"]["name"] == "dw4" and config["sampler"]["chains"] == 16
    res = invoke("sample", "--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    assert digest(tmp_path / "a" / "samples.npz") == digest(tmp_path / "b" / "samples.npz")


def test_without_a_reference_the_shipped_certified_set_is_used(tmp_path):
    # DW-4 at T = 1 has a certified reference in the package (metrics/bundled.py): `sample` and
    # `evaluate` score against it when no --reference is given, as `run pita` does; at another
    # temperature there is none, and only the reference-free metrics are computed
    assert sample(tmp_path / "a", target="dw4").exit_code == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["reference"].startswith("bundled certified PT reference")
    assert metrics["metrics"]["energy_w2"]["n"] == 64 and "distance_w2" in metrics["metrics"]
    res = invoke("evaluate", tmp_path / "a", "--quiet")
    assert res.exit_code == 0 and "energy_w2" in res.output, res.output
    assert sample(tmp_path / "b", "--temperature", "2", target="dw4").exit_code == 0
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["reference"] is None and "energy_w2" not in metrics["metrics"]


def test_evaluate_recomputes_metrics_against_a_reference(tmp_path):
    assert sample(tmp_path / "a", target="dw4").exit_code == 0
    ref = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    np.save(tmp_path / "ref.npy", ref)
    res = invoke("evaluate", tmp_path / "a", "--reference", tmp_path / "ref.npy")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["metrics"]["energy_w2"]["n"] == 64
    assert "energy_evaluations" in metrics  # the sampling figures are kept


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "--target", "nope", "--method", "mala", "--n", "5", "--out", "{tmp}/x"],
         "unknown target"),
        (["sample", "--target", "gmm40", "--method", "magic", "--n", "5", "--out", "{tmp}/x"],
         "unknown method"),
        (["sample", "--target", "gmm40", "--method", "mala", "--n", "0", "--out", "{tmp}/x"],
         "n must be >= 1"),
        (["sample", "--target", "gmm40", "--method", "mala", "--n", "5", "--out", "{tmp}/x",
          "--set", "sampler.step_sise=0.1"], "unknown key"),
        (["sample", "--target", "gmm40", "--method", "mala", "--n", "5", "--out", "{tmp}/x",
          "--set", "sampler.chains=many"], "must be an integer"),
        (["sample", "--target", "gmm40", "--method", "mala", "--n", "5", "--out", "{tmp}/x",
          "--reference", "{tmp}/wrong_dim.npy"], "dimension 3, the target has 2"),
        (["sample", "--target", "gmm40", "--method", "mala", "--n", "5", "--out", "{tmp}/x",
          "--config", "{tmp}/broken.yaml"], "malformed YAML"),
        (["sample", "--target", "gmm40", "--method", "mala", "--n", "5", "--out", "{tmp}/x",
          "--temperature", "-1"], "temperature must be > 0"),
        (["evaluate", "{tmp}/nowhere", "--reference", "{tmp}/wrong_dim.npy"], "no run folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    np.save(tmp_path / "wrong_dim.npy", np.zeros((10, 3), np.float32))
    (tmp_path / "broken.yaml").write_text("target: [gmm40\n")
    res = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "x" / "samples.npz").exists()


def test_existing_folder_needs_overwrite(tmp_path):
    assert sample(tmp_path / "a").exit_code == 0
    res = CliRunner().invoke(cli, ["sample", "--target", "gmm40", "--method", "mala", "--n", "8",
                                   "--out", str(tmp_path / "a"), *SMALL])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert sample(tmp_path / "a", "--overwrite").exit_code == 0


def test_non_finite_energies_exit_2_and_keep_the_samples(tmp_path, monkeypatch):
    (tmp_path / "nan_energy.py").write_text(
        "import torch\ndef f(x):\n    return torch.where(x[:, 0] > 0, x[:, 0] * float('nan'), x[:, 0] ** 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    res = CliRunner().invoke(cli, ["sample", "--target", "nan_energy:f", "--set", "target.dim=1",
                                   "--method", "mala", "--n", "16", "--out", str(tmp_path / "r"), *SMALL])
    # NaN proposals are rejected, so chains started at x > 0 keep a NaN energy: reported, not hidden
    assert res.exit_code == 2 and "non-finite" in res.output, res.output
    assert (tmp_path / "r" / "samples.npz").is_file()
    assert not (tmp_path / "r" / "COMPLETE").exists()


def test_evaluate_accepts_a_config_that_names_the_target_by_string(tmp_path):
    assert sample(tmp_path / "a", target="dw4").exit_code == 0
    cfg = tmp_path / "a" / "config.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["target"] = "dw4"  # the form PITA run folders use
    cfg.write_text(yaml.safe_dump(data))
    res = invoke("evaluate", tmp_path / "a")
    assert res.exit_code == 0, res.output
    data["target"] = 3
    cfg.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "a")])
    assert res.exit_code == 2 and "target must be" in res.output
