"""Benchmark scripts: bad input on the command line ends in one ``error:`` line and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from boltzpath.errors import BadInput, run_cli

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_run_cli_turns_bad_input_into_status_2(capsys):
    def bad():
        raise BadInput("--set expects key=value, got 'foo'\nsecond line")

    assert run_cli(bad) == 2
    assert capsys.readouterr().err == "error: --set expects key=value, got 'foo'\n"
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3


def test_run_cli_lets_other_errors_through():
    def broken():
        raise RuntimeError("a bug, not bad input")

    with pytest.raises(RuntimeError):
        run_cli(broken)


@pytest.mark.parametrize("script,args", [
    ("bench_pita.py", ["--targets", "lj13", "--set", "foo"]),
    ("bench_pita.py", ["--targets", "dw4", "--set", "train.steps=abc"]),
    ("bench_dikl.py", ["--targets", "gmm40", "--set", "nokey=1"]),
    ("score_pita_run.py", ["--run", "no/such/run", "--references", "."]),
    ("pita_rung_oracle.py", ["--target", "lj13", "--references", ".", "--temperatures", "1,2"]),
    ("pita_rung_oracle.py", ["--target", "lj13", "--references", ".", "--temperatures", "2,1",
                             "--adapt", "each"]),
    ("pita_rung_oracle.py", ["--target", "lj13", "--references", ".", "--temperatures", "2,1"]),
])
def test_malformed_set_is_one_line_before_any_run(tmp_path, script, args):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert not out.exists()


def test_bench_dikl_scores_the_last_iterate_beside_a_selected_generator(tmp_path):
    # a tiny gmm40 run with generator selection: rows for the kept generator (naming the selected
    # iteration and the selection's evaluations) and for the run's last iterate
    sys.path.insert(0, str(BENCH))
    import bench_dikl

    tiny = ["generator.hidden=8", "generator.layers=1", "score_net.hidden=8", "score_net.layers=1",
            "train.iterations=6", "train.batch_size=16", "train.dsm_steps=1", "train.checkpoint_every=3",
            "posterior.n_importance=2", "posterior.mala_steps=1", "plots=false", "eval_noise_floors=false",
            "select.method=mala_shift", "select.every=3", "select.n=20", "select.mala_steps=2",
            "n_samples=50", "eval_max_n=50"]
    out = tmp_path / "b.json"
    argv = ["--quick", "--targets", "gmm40", "--methods", "dikl", "--runs-dir", str(tmp_path / "runs"),
            "--out", str(out)] + [a for kv in tiny for a in ("--set", kv)]
    assert bench_dikl.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    kept = [r for r in rows if r["method"] == "dikl"]
    last = [r for r in rows if r["method"] == "dikl (last iterate)"]
    assert kept and len(last) == len(kept)
    assert kept[0]["selected_iteration"] in (3, 6) and kept[0]["selection_evaluations"] == 2 * 20 * (2 + 1)
    assert last[0]["iteration"] == 6


def test_bench_dikl_clash_fraction_counts_positive_and_non_finite_energies(monkeypatch):
    # issue 12's clash fraction: E > 0 over every sample, a non-finite energy counted as a clash
    sys.path.insert(0, str(BENCH))
    import bench_dikl
    import torch

    from boltzpath.io.samples import Samples

    monkeypatch.setattr(bench_dikl, "particle_metrics", lambda *a: {})
    energy = torch.tensor([-3.0, 0.0, 2.0, float("nan"), -1.0, float("inf"), -5.0, -0.5], dtype=torch.float64)
    samples = Samples(torch.zeros(8, 8), energy)
    value, n, floor = bench_dikl._metrics(samples, None, reference=object(), seed=0)["clash_fraction"]
    assert (value, n, floor) == (3 / 8, 8, None)


def test_bench_pita_peptides_reuses_a_kept_baseline_only_at_the_same_budget(tmp_path):
    # --baseline-samples: a baseline saved by --keep is scored again only if it is the same method on
    # the same target with the same n and evaluations within 1 % of the run's
    import torch

    sys.path.insert(0, str(BENCH))
    from bench_pita_peptides import reuse_baseline

    from boltzpath.io.samples import Samples

    class Target:
        name = "aldp-fab"

    info = {"method": "langevin", "target": {"name": "aldp-fab"}, "energy_evaluations": 1000,
            "config": {"step_size": 0.002}, "wall_time_s": 12.5}
    path = Samples(torch.zeros(4, 66), torch.zeros(4), info=info).save(tmp_path / "langevin_samples.npz")
    samples, options, wall = reuse_baseline(path, "langevin", Target(), 995, 4)
    assert samples.n == 4 and options == {"step_size": 0.002} and wall == 12.5
    for method, budget, n, words in [("mala", 1000, 4, "holds langevin"), ("langevin", 1100, 4, "1 %"),
                                     ("langevin", None, 4, "1 %"), ("langevin", 1000, 5, "4 samples")]:
        with pytest.raises(BadInput, match=words):
            reuse_baseline(path, method, Target(), budget, n)


def test_reference_stationarity_finds_a_hot_set_and_passes_an_exact_one():
    # exact ManyWell-32 samples keep their mean E/kT under MALA (paired change within 4 standard
    # errors of 0, the test's tolerance: a two-sided 6e-5 false-alarm rate); the same samples with
    # Gaussian noise (sd 0.2 per coordinate: E/kT raised by ~ 0.04·Σ∂²E) relax down by many errors
    sys.path.insert(0, str(BENCH))
    import torch
    from reference_stationarity import paired_changes

    from boltzpath import make_target
    from boltzpath.smc.relax import RelaxConfig

    target = make_target("manywell32")
    exact = target.exact_sample(800, torch.Generator().manual_seed(0)).numpy()
    hot = exact + 0.2 * np.random.default_rng(1).standard_normal(exact.shape)
    cfg = RelaxConfig(n_steps=200, adapt_steps=50, step_size=1e-2, repair_above=None)
    good = paired_changes(target, exact, 800, cfg, 0)
    bad = paired_changes(target, hot, 800, cfg, 0)
    assert abs(good["change_pass1"]) < 4 * good["change_pass1_se"], good
    assert bad["change_pass1"] < -10 * bad["change_pass1_se"], bad
    assert abs(bad["change_pass2"]) < 4 * bad["change_pass2_se"], bad


def test_bench_pita_peptides_refuses_kept_samples_of_a_baseline_it_does_not_run(tmp_path):
    # --baseline-samples for a method missing from --baselines would be silently unused: one line, exit 2
    sys.path.insert(0, str(BENCH))
    from bench_pita_peptides import main

    kept = tmp_path / "mala_samples.npz"
    kept.write_bytes(b"")
    assert main(["--baselines", "langevin", "--baseline-samples", f"mala={kept}",
                 "--out", str(tmp_path / "o.json")]) == 2
    assert not (tmp_path / "o.json").exists()


def test_bench_pita_peptides_budget_from_an_earlier_result(tmp_path):
    # --budget-from JSON=LABEL: the budget and n of a scored run whose folder is gone; its rows are
    # copied (marked); a missing label, two budgets or no mean_energy_kt row is refused
    sys.path.insert(0, str(BENCH))
    from bench_pita_peptides import budget_from

    def row(method, metric, n, evals):
        return {"method": method, "target": "al3", "metric": metric, "n": n, "energy_evaluations": evals}

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"rows": [row("pita", "energy_w1", 939, 8_438_152),
                                         row("pita", "mean_energy_kt", 939, 8_438_152),
                                         row("langevin", "mean_energy_kt", 500, 10)]}))
    budget, n, rows = budget_from(f"{path}=pita", "al3")
    assert (budget, n, len(rows)) == (8_438_152, 939, 2)
    assert all(r["copied_from"] == str(path) and r["method"] == "pita" for r in rows)
    for item, target in [(f"{path}=other", "al3"), (f"{path}=pita", "aldp-fab"), (str(path), "al3"),
                         (f"{tmp_path / 'missing.json'}=pita", "al3")]:
        with pytest.raises(BadInput):
            budget_from(item, target)
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"rows": [row("pita", "mean_energy_kt", 9, 1),
                                        row("pita", "energy_w1", 9, 2)]}))
    with pytest.raises(BadInput):
        budget_from(f"{two}=pita", "al3")


@pytest.mark.parametrize("item", ["pt.t_max", "t_max=1200", "mala.t_max=1200", "pt.t_max=12OO",
                                  "pt.no_such_option=1"])
def test_bench_pita_peptides_refuses_a_bad_baseline_set(tmp_path, item, capsys):
    # --baseline-set METHOD.KEY=VALUE: malformed, for a baseline not run, not JSON, or not an option of
    # the method: one line, exit 2, before anything is read or run
    sys.path.insert(0, str(BENCH))
    from bench_pita_peptides import main

    assert main(["--baselines", "pt", "--baseline-set", item, "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baseline-set" in err, err
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("chains", ["0", "-4"])
def test_bench_pita_peptides_refuses_a_chain_count_below_one(tmp_path, chains, capsys):
    sys.path.insert(0, str(BENCH))
    from bench_pita_peptides import main

    assert main(["--baselines", "pt", "--chains", chains, "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--chains {chains}" in err, err
    assert not (tmp_path / "o.json").exists()


def test_bench_peptide_samplers_budget_with_baseline_options():
    # pt.n_replicas=9, pt.t_max=1200 (the aldp cpu ladder's temperatures): the options reach the config
    # and the split pays for nine replicas of five leapfrog gradients per iteration
    pytest.importorskip("openmm", reason="peptide targets need the [molecules] extra")
    sys.path.insert(0, str(BENCH))
    from bench_peptide_samplers import method_options

    from boltzpath.mcmc.registry import method_config
    from boltzpath.targets.registry import make_target

    target = make_target("aldp-fab")
    opts = method_options("pt", target, 9 * 5 * 16 * 1000, 1000, 16, {"n_replicas": 9, "t_max": 1200.0})
    assert opts["n_replicas"] == 9 and opts["t_max"] == 1200.0
    assert opts["burn_in"] + opts["thin"] * 63 == 1000  # 1000 iterations: 63 samples per chain, thinned
    ladder = method_config("pt", opts, target=target).ladder(300.0)
    assert len(ladder) == 9 and ladder[-1] == pytest.approx(1200.0) and ladder[4] == pytest.approx(600.0)
