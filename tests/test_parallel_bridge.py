"""The tempered bridge tail (``smc.bridge``) on a population split over ranks
(``parallel.sharded_smc.ShardedPopulation``): 2 gloo processes on the wrong-model problem of
tests/test_smc_bridge.py, and the one-process path through the same hooks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from parallel_workers import (
    BRIDGE_MOVES,
    BRIDGE_PARTICLES,
    BRIDGE_REPLICAS,
    BRIDGE_UNEVEN,
    bridge_worker,
    run_job,
)
from test_smc_bridge import GAMMA, GRID, MIX, PerturbedMixture, _exact_draws, _Model, _p_positive, _Target

from boltzpath.parallel.dist import DistContext
from boltzpath.parallel.sharded_smc import ShardedPopulation
from boltzpath.smc.bridge import BridgeSettings, bridge, check_same_beta


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Both ranks' results of ``parallel_workers.bridge_worker`` (one 2-process job for the module)."""
    out = run_job(bridge_worker, tmp_path_factory.mktemp("bridge"))
    return [json.loads((out / f"bridge{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("case", ["resampling", "level_cap", "flagged", "repair", "weighted_start"])
def test_one_process_sharded_bridge_is_bridge_bit_for_bit(case):
    # world size 1 through the sharded hooks (all-reduce formulas, exchange resampling) with the
    # bridge's own generator as the shared one: the same draws in the same order as bridge()
    wrong = _Model(PerturbedMixture(MIX))
    settings = {"level_cap": BridgeSettings(moves=2, step_size=0.01, max_levels=1),
                "flagged": BridgeSettings(moves=2, step_size=0.01, high_energy=50.0),
                "repair": BridgeSettings(moves=2, step_size=0.01, high_energy=50.0),
                "weighted_start": BridgeSettings(moves=3, step_size=0.02, cess=0.7)}.get(
        case, BridgeSettings(moves=5, step_size=0.01))
    results = []
    for sharded in (False, True):
        gen = torch.Generator().manual_seed(7)
        if case == "repair":
            x0 = torch.full((300, 1), 14.0, dtype=torch.float64) + 0.1 * torch.rand(
                300, 1, generator=gen, dtype=torch.float64)
        else:
            x0 = _exact_draws(wrong, 300, gen)
        if case == "flagged":
            x0[:50] = 14.0
        w0 = torch.zeros(300, dtype=torch.float64)
        if case == "weighted_start":
            w0 = 0.5 * torch.randn(300, generator=gen, dtype=torch.float64)
        target = _Target()
        pop = ShardedPopulation(DistContext(), gen) if sharded else None
        results.append((*bridge(wrong, x0, w0, target, GAMMA, settings, gen, pop), target.evaluations))
    (x1, lw1, idx1, info1, ev1), (x2, lw2, idx2, info2, ev2) = results
    assert torch.equal(x1, x2) and torch.equal(lw1, lw2) and torch.equal(idx1, idx2)
    assert info1 == info2 and ev1 == ev2
    if case in ("resampling", "flagged", "weighted_start"):
        assert any(info1["resampled"])  # the mid-bridge resampling was exercised


def test_two_rank_bridge_recovers_p_gamma_with_one_beta_sequence(two_ranks):
    r0, r1 = (job["rows"] for job in two_ranks)
    # every rank took the same β sequence (gathered inside the job, and as saved by each rank), and
    # ends with the same whole population
    for a, b in zip(r0, r1, strict=True):
        assert a["betas_all_ranks"][0] == a["betas_all_ranks"][1] == a["betas"] == b["betas"]
        assert a["x"] == b["x"] and a["idx"] == b["idx"]
        assert len(a["x"]) == a["n"] and a["lw_shape"] == [a["n"]]
        assert a["ess"] == b["ess"] and a["final_ess_fraction"] == b["final_ess_fraction"]
        assert a["n_local"] + b["n_local"] == a["n"]
        # evaluations: each rank counts its own; the sum is N·(1 + moves·levels), as in one process
        assert a["evaluations"] == b["evaluations"] == a["evaluations_local"] + b["evaluations_local"]
        assert a["evaluations"] == a["n"] * (1 + BRIDGE_MOVES * a["levels"])
        assert a["reached_by_moves"] and a["betas"][-1] == 1.0 and a["levels"] > 1
    assert r0[-1]["n"] == BRIDGE_UNEVEN and (r0[-1]["n_local"], r1[-1]["n_local"]) == (151, 150)
    assert any(any(row["resampled"]) for row in r0)  # a global resampling (particle exchange) happened
    # P(x > 0) under the true p^γ (≈ 0.232) from a model that puts 0.007 there. Tolerance: the
    # one-process test's (tests/test_smc_bridge.py) — 4 standard errors of the replica mean, computed
    # from the replicas (MC + resampling noise), + 0.005; no discretisation allowance, since every
    # move is an exact Metropolis step. Same replicas × particles (8 × 1000, here 500 + 500).
    p_true = _p_positive(-GAMMA * MIX.energy(GRID, 0.0))
    p = torch.tensor([row["p_pos"] for row in r0[:BRIDGE_REPLICAS]], dtype=torch.float64)
    assert len(p) == BRIDGE_REPLICAS and all(row["n"] == BRIDGE_PARTICLES for row in r0[:BRIDGE_REPLICAS])
    tol = 4 * float(p.std()) / math.sqrt(len(p)) + 0.005
    assert abs(float(p.mean()) - p_true) < tol, (float(p.mean()), p_true, tol)


def test_two_rank_bridge_without_moves_is_the_one_process_bridge(two_ranks):
    # moves = 0 leaves only the population statistics (normaliser, conditional ESS in the bisection,
    # ESS) and the resamplings: on the same 301 particles split 151 + 150 the two ranks must do what
    # one process does with all of them. The all-reduced sums add the ranks' partial sums, so β and
    # the ESS may differ from one process in the last bits; the resampled particles are the same.
    f0, f1 = (job["fixed"] for job in two_ranks)
    assert f0 == f1
    wrong = _Model(PerturbedMixture(MIX))
    x0 = _exact_draws(wrong, BRIDGE_UNEVEN, torch.Generator().manual_seed(5))
    target = _Target()
    x, lw, idx, info = bridge(wrong, x0, torch.zeros(BRIDGE_UNEVEN, dtype=torch.float64), target, GAMMA,
                              BridgeSettings(moves=0), torch.Generator().manual_seed(6))
    assert len(info["betas"]) == len(f0["betas"]) > 1 and any(info["resampled"])
    assert info["resampled"] == f0["resampled"]
    for key in ("betas", "ess"):
        assert max(abs(a - b) for a, b in zip(info[key], f0[key], strict=True)) < 1e-12, key
    assert abs(info["final_ess_fraction"] - f0["final_ess_fraction"]) < 1e-12
    assert torch.allclose(lw, torch.tensor(f0["lw"], dtype=torch.float64), rtol=0, atol=1e-9)
    assert idx.tolist() == f0["idx"] and x[:, 0].tolist() == f0["x"]


def _two_rank_reductions(other_beta: float):
    """Fake all-reduces over this rank's value and another rank's β (which sends β to the max and,
    for the min = −max(−β), −β)."""
    return (lambda t: torch.maximum(t, torch.tensor(other_beta, dtype=t.dtype)),
            lambda t: torch.minimum(t, torch.tensor(other_beta, dtype=t.dtype)))


def test_beta_check_passes_when_the_ranks_agree_and_raises_when_they_do_not():
    check_same_beta(3, 0.25, *_two_rank_reductions(0.25))
    check_same_beta(0, 1.0, *_two_rank_reductions(1.0))
    # exact comparison: one ulp apart is already a disagreement (the collectives would go out of step)
    other = math.nextafter(0.25, 1.0)
    with pytest.raises(RuntimeError, match=r"level 7\b.*min 0\.25, max 0\.25000000000000006"):
        check_same_beta(7, 0.25, *_two_rank_reductions(other))
    with pytest.raises(RuntimeError, match="level 2"):
        check_same_beta(2, 0.5, *_two_rank_reductions(math.nan))


def test_sharded_population_checks_beta_only_with_several_processes():
    calls = []

    def other_rank(beta: float):
        """A fake all-reduce max with another rank at β, which sends β (max) and then −β (min)."""
        sent = iter([beta, -beta])

        def fake_max(t):
            calls.append(float(t))
            return torch.maximum(t, torch.tensor(next(sent), dtype=t.dtype))
        return fake_max

    one = ShardedPopulation(DistContext(), torch.Generator())
    one.max = other_rank(0.75)
    one.check_beta(0, 0.5)  # world size 1: no collective at all (the one-process path is unchanged)
    assert calls == []
    two = ShardedPopulation(DistContext(rank=0, world_size=2), torch.Generator())
    two.max = other_rank(0.5)
    two.check_beta(4, 0.5)  # agree: one max and one min (as −max(−β))
    assert calls == [0.5, -0.5]
    two.max = other_rank(0.75)
    with pytest.raises(RuntimeError, match=r"level 4\b.*min 0\.5, max 0\.75"):
        two.check_beta(4, 0.5)
