"""R-hat/ESS diagnostics: they flag chains stuck in different modes and pass well-mixed ones."""

import numpy as np
import pytest
import torch

from boltzpath.io.samples import Samples
from boltzpath.metrics.convergence import (
    RHAT_MAX,
    mcmc_diagnostics,
    samples_diagnostics,
    smc_warning,
    split_chains,
)


def interleave(per_chain: np.ndarray) -> torch.Tensor:
    """(chains, draws, dim) → the samplers' layout: sample i is chain i % chains."""
    flat = np.ascontiguousarray(per_chain.transpose(1, 0, 2)).reshape(-1, per_chain.shape[2])
    return torch.from_numpy(flat)


def test_split_chains_inverts_the_interleaved_layout():
    v = np.arange(12.0)  # 3 chains x 4 draws: chain c holds c, c+3, c+6, c+9
    assert split_chains(v, 3).tolist() == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]


def test_well_mixed_chains_pass():
    rng = np.random.default_rng(0)
    x = interleave(rng.normal(size=(8, 500, 2)))  # 8 independent N(0, I) chains: exactly mixed
    d = mcmc_diagnostics(x, 0.5 * (x.double() ** 2).sum(1), chains=8)
    # R-hat of iid draws from one distribution is 1 + O(1/draws); 1.01 is the Vehtari et al. bar
    assert d["rhat_max"] < RHAT_MAX and d["ess_bulk_min"] > 400
    assert d["warning"] is None


def test_two_chains_stuck_in_different_modes_are_flagged():
    rng = np.random.default_rng(1)
    per = rng.normal(scale=0.3, size=(8, 500, 2))
    per[:4, :, 0] += 3.0  # half the chains in the mode at x0 = +3, half at -3: never cross
    per[4:, :, 0] -= 3.0
    x = interleave(per)
    d = mcmc_diagnostics(x, 0.5 * (x.double() ** 2).sum(1), chains=8)
    assert d["quantities"]["x[0]"]["rhat"] > 1.5  # between-chain variance dwarfs within-chain
    assert d["warning"] is not None and "R-hat" in d["warning"] and "burn_in" in d["warning"]
    # the energy is symmetric in the two modes: R-hat on it alone would miss this; x[0] catches it
    assert d["quantities"]["energy"]["rhat"] < 1.05


def test_samples_without_a_chain_layout_or_with_weights_get_no_mcmc_diagnostics():
    x = torch.randn(40, 2)
    assert samples_diagnostics(Samples(x, x.pow(2).sum(1), info={})) is None
    s = Samples(x, x.pow(2).sum(1), torch.zeros(40), info={"chains": 4})
    assert samples_diagnostics(s) is None
    few = samples_diagnostics(Samples(x, x.pow(2).sum(1), info={"chains": 20}))
    assert "not enough" in few["note"] and "not checked" in few["warning"]


@pytest.mark.parametrize("frac, flagged", [(0.013, True), (0.6, False)])
def test_smc_warning_reads_the_final_ess_fraction(frac, flagged):
    metrics = {"stages": [{"stage": 0, "temperature": 4.0, "final_ess_fraction": None},
                          {"stage": 1, "temperature": 1.0, "final_ess_fraction": frac}]}
    w = smc_warning(metrics)
    assert (w is not None) == flagged
    if flagged:
        assert "1.3 %" in w and "train.steps" in w
    gate = smc_warning({"stages": [], "energy_model_gate": {"passed": False, "reason": "pinning"}})
    assert gate is not None and "gate" in gate
    # the per-stage summary PITA writes into its final metrics
    staged = smc_warning({"stages": [{"stage": 1, "temperature": 2.0, "final_ess_fraction": 0.8,
                                      "energy_model_gate": {"passed": False, "corr": 0.41,
                                                            "reweight_ess_fraction": 0.03}}]})
    assert staged is not None and "stage 1" in staged and "corr 0.41" in staged
    # a failed gate with healthy weights is not called a collapse (the ESS was 80 %)
    assert "collapsed" not in staged and "quality gate" in staged
    # rung: reweight puts no U_eta into the samples: the same gate failure is not a warning there
    stage = {"stage": 1, "temperature": 2.0, "final_ess_fraction": 0.8,
             "energy_model_gate": {"passed": False, "corr": 0.41}}
    assert smc_warning({"rung": "reweight", "stages": [stage]}) is None


def test_smc_warning_names_a_stage_whose_anneal_was_replaced_by_the_repair():
    # LJ-13 cpu seed 1 with 200 SMC steps (2026-12-05): at stage 1 all 1000 annealed particles
    # overlapped, the bridge repaired them by descent, and the stage came out 9 kT too cold with a
    # healthy final ESS (98.6 %) — only the repaired fraction shows it
    stages = [{"stage": 1, "temperature": 3.0, "final_ess_fraction": 0.986, "repaired_fraction": 1.0},
              {"stage": 2, "temperature": 2.0, "final_ess_fraction": 0.013}]
    w = smc_warning({"stages": stages})
    assert w is not None and "repaired" in w and "stage 1 (T=3.0) 100 %" in w and "stage 2" not in w
    assert smc_warning({"stages": [{**stages[0], "repaired_fraction": 0.0}]}) is None


def test_the_warning_does_not_send_a_multimodal_sampler_to_itself():
    from boltzpath.metrics.convergence import next_step

    assert "pt/digs" in next_step("mala") and "pt/digs" in next_step("hmc")
    for method in ("pt", "digs"):
        assert "pt/digs" not in next_step(method) and "sampler." in next_step(method)
