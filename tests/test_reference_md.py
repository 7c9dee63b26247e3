"""Replica-exchange reference runs: exchange correctness, decorrelation estimators, files, resume, CLI."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openmm")
pytest.importorskip("mdtraj")

import openmm  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.io.runs import RunDir  # noqa: E402
from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.molecules.decorrelation import (  # noqa: E402
    _pymbar_timeseries,
    geyer_inefficiency,
    statistical_inefficiency,
)
from boltzpath.molecules.reference import ReferenceConfig, run_reference  # noqa: E402
from boltzpath.molecules.reference_cli import reference  # noqa: E402
from boltzpath.molecules.remd import ReplicaExchange, geometric_ladder  # noqa: E402
from boltzpath.molecules.system import KB_KJ_MOL_K  # noqa: E402


def _ar1(phi: float, n: int, seed: int) -> np.ndarray:
    from scipy.signal import lfilter

    noise = np.random.default_rng(seed).standard_normal(n)
    return lfilter([1.0], [1.0, -phi], noise)


def test_geyer_and_pymbar_recover_the_ar1_inefficiency():
    # AR(1) with coefficient 0.9 has g = (1 + 0.9)/(1 - 0.9) = 19 exactly. With n = 200k the
    # relative standard error of a windowed estimate is ≈ sqrt(2(2M+1)/n) ≈ 5 % (window M ≈ 5g), so
    # 15 % is 3 standard errors. Forgetting the factor 2 (g = 1 + Σρ) gives 10, a one-sided sum 9.5.
    x = _ar1(0.9, 200_000, seed=0)
    assert geyer_inefficiency(x) == pytest.approx(19.0, rel=0.15)
    g, estimator = statistical_inefficiency(x)
    # when pymbar is installed it must really be the one used (not a silent fallback)
    assert estimator == ("pymbar" if _pymbar_timeseries() is not None else "geyer")
    assert g == pytest.approx(19.0, rel=0.15)
    # white noise: g = 1 (the estimator clamps at 1; 0.15 covers the same 3-standard-error band)
    assert geyer_inefficiency(np.random.default_rng(1).standard_normal(50_000)) == pytest.approx(
        1.0, abs=0.15
    )


def test_geometric_ladder():
    t = geometric_ladder(300.0, 1200.0, 3)
    assert t == pytest.approx([300.0, 600.0, 1200.0])
    assert geometric_ladder(300.0, 1.0, 1) == pytest.approx([300.0])
    with pytest.raises(BadInput):
        geometric_ladder(300.0, 250.0, 4)


def _harmonic_system(k_kj_mol_nm2: float = 1e5) -> openmm.System:
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce("0.5*k*(x^2+y^2+z^2)")
    force.addGlobalParameter("k", k_kj_mol_nm2)
    force.addParticle(0, [])
    system.addForce(force)
    return system


def test_exchange_keeps_every_slot_at_its_temperature():
    # A 3-D harmonic well has <U> = (3/2) k_B T exactly at every temperature. Three slots
    # (300, 600, 1200 K), swaps every 10 fs; the thermostat alone decorrelates U in ~3 iterations.
    # Tolerance: 4 standard errors from the effective sample size (g by the decorrelation module).
    # Checked failure modes: a reversed acceptance exponent sends energies to ~1e81; accepting every
    # swap (no Metropolis) puts <U> at 300 K 24 standard errors high.
    temps = geometric_ladder(300.0, 1200.0, 3)
    engine = ReplicaExchange(_harmonic_system(), np.zeros((1, 3)), temps, 1.0, 20.0, "Reference", seed=3)
    engine.minimize_and_thermalize(seed=3, max_iterations=0)
    rng = np.random.default_rng(3)
    energies = []
    for it in range(3000):
        engine.run_md(10)
        pos, vel, pot = engine.snapshot()
        engine.exchange(rng, it % 2, pos, vel, pot)
        energies.append(pot.copy())
    energies = np.asarray(energies)[100:]
    assert 0.3 < (engine.swap_accepts / engine.swap_attempts).min() < 0.9
    for k, temp in enumerate(temps):
        g, _ = statistical_inefficiency(energies[:, k])
        se = energies[:, k].std(ddof=1) * np.sqrt(g / energies.shape[0])
        assert abs(energies[:, k].mean() - 1.5 * KB_KJ_MOL_K * temp) < 4 * se, (temp, energies[:, k].mean())


# --------------------------------------------------------------------------- tiny alanine runs
TINY = dict(
    n_replicas=2,
    t_max_kelvin=330.0,
    n_iterations=6,
    steps_per_exchange=10,
    equilibration_iterations=1,
    checkpoint_every=2,
    platform="Reference",
    minimize_max_iterations=20,
    seed=5,
    save_all_temperatures=True,
)


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    pytest.importorskip("openmmtools")
    run_dir = RunDir.create(tmp_path_factory.mktemp("straight"))
    metrics = run_reference(ReferenceConfig(**TINY), run_dir)
    return run_dir, metrics


def test_tiny_run_writes_the_reference_files(straight_run):
    import mdtraj as md

    run_dir, metrics = straight_run
    for name in (
        "config.yaml",
        "topology.pdb",
        "trajectory.dcd",
        "energies.npz",
        "samples.npz",
        "decorrelation.json",
        "metrics.json",
        "COMPLETE",
        "checkpoint.npz",
    ):
        assert run_dir.file(name).is_file(), name
    # the run-folder convention `boltzpath evaluate` rebuilds the target from
    assert run_dir.read_config()["target"] == {"name": "aldp-fab", "temperature": 300.0}
    samples = Samples.load(run_dir.file("samples.npz"))
    assert samples.x.shape == (5, 66)  # 6 iterations − 1 of equilibration, 22 atoms × 3
    with np.load(run_dir.file("energies.npz")) as e:
        # the reduced energy is U/(k_B·300 K) of the same frames (1 kT = 2.494339 kJ/mol, SPEC §2)
        np.testing.assert_allclose(samples.energy.numpy(), e["energy_kj_mol"][:, 0] / 2.4943387854, rtol=1e-9)
        assert e["energy_kj_mol"].shape == (5, 2)
    traj = md.load(str(run_dir.file("trajectory.dcd")), top=str(run_dir.file("topology.pdb")))
    # DCD stores Å as float32: 1e-5 nm is well above its rounding and far below any bond length
    np.testing.assert_allclose(traj.xyz.reshape(5, -1), samples.x.numpy(), atol=1e-5)
    hot = Samples.load(run_dir.file("temperatures/330.0K/samples.npz"))
    with np.load(run_dir.file("energies.npz")) as e:
        # every ladder temperature gets its own samples, reduced at its own temperature
        np.testing.assert_allclose(
            hot.energy.numpy(), e["energy_kj_mol"][:, 1] / (KB_KJ_MOL_K * 330.0), rtol=1e-9
        )
    assert hot.info["temperature_kelvin"] == pytest.approx(330.0)
    assert metrics["energy_evaluations"] == 6 * 10 * 2
    assert metrics["ns_per_day"] > 0
    assert -250.0 < metrics["mean_energy_kj_mol"] < 50.0  # a sane alanine dipeptide, not an exploded one


def test_killed_run_resumes_from_its_checkpoint(straight_run, tmp_path):
    run_dir_a, _ = straight_run
    path = tmp_path / "killed"
    seen: list[int] = []

    def kill_at_5(info):
        seen.append(info["iteration"])
        if info["iteration"] == 5:
            raise _Killed

    with pytest.raises(_Killed):
        run_reference(ReferenceConfig(**TINY), RunDir.create(path), callback=kill_at_5)
    assert not (path / "COMPLETE").exists()
    chunk_before = (path / "chunks" / "frames_000000004.npz").read_bytes()
    resumed: list[int] = []
    run_reference(
        ReferenceConfig(**TINY),
        RunDir.create(path, resume=True),
        callback=lambda i: resumed.append(i["iteration"]),
    )
    # continues after the last checkpoint (iteration 4) instead of starting over at 1
    assert resumed == [5, 6]
    assert (path / "chunks" / "frames_000000004.npz").read_bytes() == chunk_before
    assert "resumed from iteration 4" in (path / "run.log").read_text()
    # the restored OpenMM checkpoints and exchange RNG make the continuation bit-identical
    a = Samples.load(run_dir_a.file("samples.npz"))
    b = Samples.load(path / "samples.npz")
    assert np.array_equal(a.x.numpy(), b.x.numpy())


def test_resume_with_changed_physics_is_refused(straight_run, tmp_path):
    run_dir_a, _ = straight_run
    with pytest.raises(BadInput, match="timestep_fs"):
        run_reference(
            ReferenceConfig(**{**TINY, "timestep_fs": 0.5}), RunDir.create(run_dir_a.path, resume=True)
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "no-such-target"], "no-such-target"),
        (["--replicas", "0"], "n_replicas"),
        (["--t-max", "200"], "t_max"),
        (["--platform", "Quantum"], "platform"),
        (["--overwrite", "--resume"], "exclude"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, args, message):
    result = CliRunner().invoke(
        reference, ["--out", str(tmp_path / "r"), "--n-iterations", "3", "--equilibration", "1", *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    result = CliRunner().invoke(
        reference, ["--out", str(tmp_path), "--n-iterations", "3", "--equilibration", "1"]
    )
    assert result.exit_code == 2
    assert (tmp_path / "x.txt").read_text() == "keep me"


def test_cli_end_to_end_single_replica(tmp_path):
    # --replicas 1 is plain Langevin MD (the 1200 K PITA stage-0 recipe), here at 1200 K
    out = tmp_path / "hot"
    args = ["--out", str(out), "--temperature", "1200", "--replicas", "1", "--n-iterations", "3",
            "--steps-per-exchange", "5", "--equilibration", "1", "--minimize-iterations", "0",
            "--platform", "Reference"]  # fmt: skip
    result = CliRunner().invoke(reference, args)
    assert result.exit_code == 0, result.output
    assert "2 frames at 1200 K" in result.output
    samples = Samples.load(out / "samples.npz")
    assert samples.info["temperature_kelvin"] == 1200.0 and samples.n == 2
    # resuming a finished run of the same length only rewrites the outputs
    again = CliRunner().invoke(reference, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert np.array_equal(Samples.load(out / "samples.npz").x.numpy(), samples.x.numpy())


@pytest.mark.slow
def test_sigkill_then_resume_through_the_cli(tmp_path):
    # a real kill -9 of the command while it runs; the resumed command must finish from the checkpoint
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    args = ["--out", str(out), "--replicas", "2", "--t-max", "330", "--n-iterations", "40",
            "--steps-per-exchange", "20", "--equilibration", "1", "--checkpoint-every", "2",
            "--minimize-iterations", "10", "--platform", "Reference"]  # fmt: skip
    code = "import sys; from boltzpath.molecules.reference_cli import reference; reference(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (out / "chunks").is_dir() or len(list((out / "chunks").iterdir())) < 3:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.2)
    # 3 chunks on disk: the checkpoint listing the first two (iteration 4) is complete, since each
    # chunk is written before the checkpoint that lists it
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "COMPLETE").exists()
    result = CliRunner().invoke(reference, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    log = (out / "run.log").read_text()
    assert "resumed from iteration" in log
    resumed_at = int(log.split("resumed from iteration ")[1].split()[0])
    assert resumed_at >= 4
    assert Samples.load(out / "samples.npz").n == 39
