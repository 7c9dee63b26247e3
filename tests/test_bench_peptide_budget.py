"""benchmarks/bench_peptide_samplers.py's budget split: each baseline, run with the peptide defaults
for "the same energy evaluations", really spends that budget. PT's peptide default moves by HMC
(``n_leapfrog`` gradients per replica per iteration); counting one per replica made PT spend
n_leapfrog × the budget (5× at the defaults) beside a PITA row it was meant to equal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("mdtraj", reason="peptide targets need the [molecules] extra")
pytest.importorskip("openmm", reason="peptide targets need the [molecules] extra")

from boltzpath.targets.registry import make_target  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_peptide_samplers  # noqa: E402


@pytest.fixture(scope="module")
def aldp():
    return make_target("aldp-fab")


@pytest.mark.parametrize("method", ["pt", "digs"])  # the methods whose iteration costs > 1
def test_baseline_spends_the_budget(method, aldp):
    budget = 3000
    samples, opts, _ = bench_peptide_samplers.run_at_budget(method, aldp, budget, 16, 0)
    spent = int(samples.info["energy_evaluations"])
    # the split rounds down to whole iterations of (chains × cost per iteration) and adds the
    # initial evaluation of each chain (PT: of each replica): within one iteration's cost of budget
    cfg = bench_peptide_samplers.method_config(method, opts, target=aldp)
    one_iteration = opts["chains"] * bench_peptide_samplers.cost_per_iteration(method, cfg, aldp)
    assert abs(spent - budget) <= one_iteration, (method, spent, opts)
