"""The public Python API: Target from a callable or a name, sample, pita, evaluate, Samples."""

import math
import warnings

import numpy as np
import pytest
import torch

import boltzpath
from boltzpath import BadInput, Samples, Target


def harmonic(x):
    """E/kT = ½‖x‖²: p is N(0, I), so every moment is known exactly."""
    return 0.5 * (x**2).sum(1)


def test_target_from_a_callable_and_from_a_name():
    t = Target(harmonic, dim=3)
    assert isinstance(t, Target) and t.dim == 3
    assert torch.allclose(t.energy(torch.ones(2, 3)), torch.full((2,), 1.5))
    assert t.counter.count == 2
    g = Target("gmm40", temperature=2.0)
    assert isinstance(g, Target) and g.dim == 2 and g.temperature == 2.0
    with pytest.raises(BadInput, match="dimension"):
        Target(harmonic)
    with pytest.raises(BadInput, match="unknown target"):
        Target("nope")


def test_sample_a_plain_callable_without_writing_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = boltzpath.sample(harmonic, dim=2, method="mala", n=2000, seed=0, chains=16, burn_in=200, thin=5)
    assert isinstance(s, Samples) and s.x.shape == (2000, 2) and s.energy.shape == (2000,)
    assert list(tmp_path.iterdir()) == []  # no run folder unless out= is given
    # E[½‖x‖²] = 1 for N(0, I₂); its sd is 1, so 4 standard errors at the ESS ArviZ measured
    ess = s.info["diagnostics"]["ess_bulk_min"]
    assert abs(float(s.energy.mean()) - 1.0) < 4 / math.sqrt(ess)
    assert s.info["diagnostics"]["rhat_max"] < 1.05
    # a bad energy shape is one BadInput naming the function, before any sampling
    with pytest.raises(BadInput, match="shape"):
        boltzpath.sample(lambda x: x, dim=2, n=10)


def test_sample_warns_when_chains_have_not_converged():
    # 4 chains started far apart in a very narrow double well, no warm-up: R-hat must flag it
    def wells(x):
        return 20.0 * (x[:, 0] ** 2 - 4.0) ** 2 + 0.5 * x[:, 1] ** 2

    with pytest.warns(boltzpath.ConvergenceWarning, match="R-hat"):
        boltzpath.sample(wells, dim=2, method="mala", n=400, chains=8, burn_in=0, thin=1, step_size=1e-3)


def test_sample_with_out_writes_a_run_folder_that_evaluate_reads(tmp_path):
    with pytest.warns(boltzpath.ConvergenceWarning):  # 20 warm-up steps on 40 modes: rightly flagged
        s = boltzpath.sample("gmm40", method="mala", n=64, seed=0, out=tmp_path / "r", chains=16,
                             burn_in=20, thin=1)
    assert (tmp_path / "r" / "COMPLETE").is_file()
    loaded = Samples.load(tmp_path / "r" / "samples.npz")
    assert np.array_equal(loaded.x.numpy(), s.x.numpy())
    metrics = boltzpath.evaluate(s)  # target taken from s.info; the exact sampler is the reference
    assert metrics["metrics"]["mode_coverage"]["n"] == 64
    ref = Target("gmm40").exact_sample(200, torch.Generator().manual_seed(1))
    m2 = boltzpath.evaluate(tmp_path / "r" / "samples.npz", reference=ref.numpy(), noise_floors=False)
    assert "energy_w2" in m2["metrics"]


def test_samples_round_trip(tmp_path):
    x = torch.randn(10, 4)
    s = Samples(x, x.double().pow(2).sum(1), torch.linspace(-1, 0, 10, dtype=torch.float64),
                {"method": "test", "target": {"name": "gmm40"}})
    arrays = s.to_numpy()
    assert arrays["x"].dtype == np.float32 and arrays["energy"].dtype == np.float64
    s.save(tmp_path / "s.npz")
    back = Samples.load(tmp_path / "s.npz")
    assert np.array_equal(back.to_numpy()["x"], arrays["x"])
    assert np.array_equal(back.to_numpy()["log_weights"], arrays["log_weights"])
    assert back.info == s.info and "n=10" in repr(back)
    with pytest.raises(BadInput, match="needs a molecule"):
        s.to_mdtraj()


def test_pita_on_a_custom_2d_energy_with_a_tiny_preset(tmp_path):
    def double_well_2d(x):
        return (x[:, 0] ** 2 - 1.0) ** 2 + 0.5 * x[:, 1] ** 2

    tiny = dict(
        temperatures=[2.0, 1.0],
        stage0={"method": "mala", "n_samples": 256, "options": {"chains": 32, "burn_in": 50, "thin": 2}},
        net={"kind": "mlp", "hidden": 16, "layers": 2, "emb_dim": 8},
        train={"steps": 30, "batch_size": 64, "checkpoint_every": 10, "log_every": 10, "augment": False},
        anneal={"n_steps": 8, "divergence": "exact"},
        relax={"n_steps": 5, "adapt_steps": 2, "step_size": 0.01},
        n_particles=128, buffer_size=128, eval_max_n=128, eval_noise_floors=False, stage_plots=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", boltzpath.ConvergenceWarning)  # 30 training steps: a plumbing test
        s = boltzpath.pita(double_well_2d, dim=2, preset="quick", seed=0, **tiny)
    assert s.x.shape == (128, 2) and torch.isfinite(s.energy).all()
    assert s.info["metrics"]["energy_evaluations"]["total"] > 0
    assert s.info["temperature"] == 1.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.molecules
def test_peptide_samples_become_an_mdtraj_trajectory():
    pytest.importorskip("openmm", reason="needs the [molecules] extra")
    pytest.importorskip("mdtraj", reason="needs the [molecules] extra")
    t = Target("aldp-fab")
    x = torch.from_numpy(np.asarray(t.initial_positions_nm, dtype=np.float32).reshape(1, -1)).repeat(3, 1)
    s = Samples(x, t.energy(x).double(), info={"target": t.describe()})
    traj = s.to_mdtraj()  # the topology comes from the target named in info
    assert traj.n_frames == 3 and traj.n_atoms == 22
    assert np.allclose(traj.xyz[0], np.asarray(t.initial_positions_nm), atol=1e-6)  # nm in, nm out
