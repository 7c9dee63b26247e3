"""Every bad input the review found: exit 2, one line naming the input, no traceback, nothing
half-written; custom targets rerun from their saved config; failures and resumes."""

import json
import os
import stat
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from boltzpath.cli import cli
from boltzpath.io.samples import Samples

SMALL = ["--set", "sampler.chains=16", "--set", "sampler.burn_in=20", "--set", "sampler.thin=1", "--quiet"]
BANANA = "def banana(x):\n    return 0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2\n"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_exit_2(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """The current folder is tmp_path and is NOT on sys.path (as for the installed script)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path), os.getcwd())])
    (tmp_path / "my_energies.py").write_text(BANANA)
    yield tmp_path
    sys.modules.pop("my_energies", None)


def test_custom_target_from_the_current_folder_reruns_from_config_and_evaluates(in_tmp):
    res = run("sample", "--target", "my_energies:banana", "--set", "target.dim=2", "--method", "mala",
              "--n-samples", 64, "--out", "a", *SMALL)
    assert res.exit_code == 0, res.output
    res = run("sample", "--config", "a/config.yaml", "--out", "b", "--quiet")
    assert res.exit_code == 0, res.output
    a, b = Samples.load(in_tmp / "a" / "samples.npz"), Samples.load(in_tmp / "b" / "samples.npz")
    assert np.array_equal(a.x.numpy(), b.x.numpy())
    res = run("evaluate", "a", "--quiet")
    assert res.exit_code == 0, res.output
    # result files honour the umask (not mkstemp's 0600)
    mode = stat.S_IMODE(os.stat(in_tmp / "a" / "samples.npz").st_mode)
    assert mode == 0o666 & ~_umask()


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_custom_target_without_dim_and_with_a_bad_shape(in_tmp):
    one_line_exit_2(run("sample", "--target", "my_energies:banana", "--method", "mala", "--n", 8,
                        "--out", "x", *SMALL), "target.dim")
    (in_tmp / "shapes.py").write_text("def bad(x):\n    return x\n")
    one_line_exit_2(run("sample", "--target", "shapes:bad", "--set", "target.dim=2", "--method", "mala",
                        "--n", 8, "--out", "x", *SMALL), "shapes:bad", "shape")
    one_line_exit_2(run("sample", "--target", "nowhere_module:f", "--set", "target.dim=2", "--method",
                        "mala", "--n", 8, "--out", "x", *SMALL), "nowhere_module")
    assert not (in_tmp / "x").exists()  # nothing half-written: checked before the folder exists
    sys.modules.pop("shapes", None)


def test_bad_files_are_one_line_each(tmp_path):
    assert run("sample", "--target", "gmm40", "--method", "mala", "--n", 16, "--out", tmp_path / "r",
               *SMALL).exit_code == 0
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    (tmp_path / "ref.csv").write_text("1,2\n3,4\n")
    (tmp_path / "bad.yaml").write_text("target: gmm40\nmethod: [mala\nn: 4\n")
    base = ["sample", "--target", "gmm40", "--method", "mala", "--n", 8, "--out", tmp_path / "x", *SMALL]
    one_line_exit_2(run(*base, "--reference", tmp_path / "corrupt.npz"), "corrupt.npz")
    one_line_exit_2(run(*base, "--reference", tmp_path / "ref.csv"), "ref.csv", ".npy")
    one_line_exit_2(run("sample", "--config", tmp_path / "bad.yaml", "--out", tmp_path / "x"), "line 3")
    assert not (tmp_path / "x").exists()
    (tmp_path / "r" / "samples.npz").write_bytes(b"garbage")
    one_line_exit_2(run("evaluate", tmp_path / "r", "--quiet"), "samples.npz")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root ignores folder permissions")
def test_unwritable_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_exit_2(run("sample", "--target", "gmm40", "--method", "mala", "--n", 8, "--out",
                            ro / "run", *SMALL), "ro")
    finally:
        ro.chmod(0o700)


def test_unwritable_output_folder_as_root_too(tmp_path, monkeypatch):
    # root ignores modes, so the permission check itself is exercised through os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    one_line_exit_2(run("sample", "--target", "gmm40", "--method", "mala", "--n", 8, "--out",
                        tmp_path / "run", *SMALL), "permission denied")


def test_set_reads_1e_minus_6_as_a_float(tmp_path):
    res = run("sample", "--target", "gmm40", "--method", "mala", "--n", 8, "--out", tmp_path / "r",
              *SMALL, "--set", "sampler.step_size=1e-6")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["sampler"]["step_size"] == 1e-6


def test_failed_run_records_why_and_resume_or_overwrite_work(tmp_path, monkeypatch):
    import boltzpath.sampling as sampling

    out = tmp_path / "r"
    base = ["sample", "--target", "gmm40", "--method", "mala", "--n", 32, "--out", out, *SMALL]

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sampling, "compute_metrics", boom)  # Ctrl-C after sampling, during metrics
    res = run(*base)
    assert res.exit_code == 130 and "--resume" in res.output and "Aborted" not in res.output
    assert "interrupted" in (out / "run.log").read_text()
    assert (out / "samples.npz").is_file() and not (out / "COMPLETE").exists()
    monkeypatch.undo()
    res = run(*base)  # a plain rerun refuses and says how to go on
    one_line_exit_2(res, "--resume")
    res = run(*base, "--resume")
    assert res.exit_code == 0, res.output
    assert "samples.npz kept" in (out / "run.log").read_text() and (out / "COMPLETE").is_file()
    fresh = tmp_path / "fresh"
    assert run(*base[:-len(SMALL) - 2], "--out", fresh, *SMALL).exit_code == 0
    resumed, uninterrupted = Samples.load(out / "samples.npz"), Samples.load(fresh / "samples.npz")
    assert np.array_equal(resumed.x.numpy(), uninterrupted.x.numpy())
    assert json.loads((out / "metrics.json").read_text())["metrics"] == \
        json.loads((fresh / "metrics.json").read_text())["metrics"]
    assert run(*base, "--overwrite").exit_code == 0


def test_pita_needs_target_and_a_bad_target_leaves_nothing(tmp_path):
    one_line_exit_2(run("run", "pita", "--out", tmp_path / "p"), "--target")
    one_line_exit_2(run("run", "pita", "--target", "nope", "--out", tmp_path / "p"), "nope")
    one_line_exit_2(run("run", "pita", "--target", "missing_mod:f", "--set", "target_options.dim=2",
                        "--out", tmp_path / "p"), "missing_mod")
    assert not (tmp_path / "p").exists()


def test_threads_and_the_long_option_names(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        res = run("sample", "--threads", 1, "--target", "gmm40", "--method", "mala", "--num-samples", 8,
                  "--out", tmp_path / "r", *SMALL)
        assert res.exit_code == 0, res.output
        assert torch.get_num_threads() == 1
        assert "sampling" in res.output and "metrics" in res.output  # the closing line's timings
    finally:
        torch.set_num_threads(before)
    one_line_exit_2(run("sample", "--threads", 0, "--target", "gmm40", "--method", "mala", "--n", 8,
                        "--out", tmp_path / "q"), "threads")


def test_progress_is_periodic_lines_when_stderr_is_not_a_terminal():
    import io

    from boltzpath.progress import Progress

    buf = io.StringIO()
    p = Progress(stream=buf, interval=3600)
    cb = p.steps("mala")
    for i in range(1, 10001):
        cb(i, 10000, {"accept": 0.5})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and "started" in lines[0] and "10000/10000" in lines[1]  # no bar redraws


def test_progress_eta_after_a_resume_counts_only_this_sessions_steps(monkeypatch):
    """Resumed at step 2000 of 4000, 100 steps in 10 s: the ETA is 1900 steps at 10 steps/s = 190 s
    (counting the 2000 earlier steps as done in these 10 s would say 9 s)."""
    import io

    from boltzpath import progress as progress_mod

    clock = {"now": 0.0}
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: clock["now"])
    buf = io.StringIO()
    cb = progress_mod.Progress(stream=buf, interval=10.0, tty=False).steps("REMD")
    for it in range(2001, 2102):
        clock["now"] = 0.1 * (it - 2001)  # 10 steps per second from the first callback on
        cb(it, 4000, {})
    lines = buf.getvalue().splitlines()
    assert "started (4000 steps)" in lines[0]
    assert "2101/4000" in lines[1] and "eta 190 s" in lines[1]


def test_every_primary_long_option_passes_through_torchrun():
    """torchrun's argparse rejects an option that abbreviates one of its own (``--n`` → --nnodes…)
    even after the module; every command's primary long names must pass through untouched."""
    run_mod = pytest.importorskip("torch.distributed.run")
    from boltzpath.cli import cli as group
    from boltzpath.methods.pita_cli import pita

    commands = [group.commands[name] for name in ("sample", "evaluate", "report")] + [pita]
    names = sorted({p.opts[0] for c in commands for p in c.params if p.opts[0].startswith("--")})
    assert "--n-samples" in names and "--n" not in names
    parser = run_mod.get_args_parser()
    args = parser.parse_args(["--nproc-per-node", "1", "-m", "boltzpath.cli", "sample",
                              *[x for name in names for x in (name, "1")]])
    assert args.training_script_args[0] == "sample" and "--n-samples" in args.training_script_args


def test_pita_interrupted_or_with_a_bad_energy(in_tmp, monkeypatch):
    import boltzpath.methods.pita as pita_mod
    from boltzpath.io.runs import RunDir

    (in_tmp / "shapes2.py").write_text("def bad(x):\n    return x.sum()\n")
    one_line_exit_2(run("run", "pita", "--target", "shapes2:bad", "--set", "target_options.dim=2",
                        "--out", "p", "--quiet"), "shapes2:bad", "shape")
    assert not (in_tmp / "p").exists()
    sys.modules.pop("shapes2", None)

    def interrupted_run(cfg, out, **kwargs):  # the folder exists, then Ctrl-C arrives
        rd = RunDir.create(out)
        rd.write_config({"target": cfg.target})
        raise KeyboardInterrupt

    monkeypatch.setattr(pita_mod, "run_pita", interrupted_run)
    res = run("run", "pita", "--target", "gmm40", "--out", "q", "--quiet")
    assert res.exit_code == 130 and "--resume" in res.output and "Aborted" not in res.output
    assert "interrupted" in (in_tmp / "q" / "run.log").read_text()
