"""``PitaParallel.relax_path`` on two gloo ranks (``rung_basin_weights: path`` under torchrun): every
rank gets all particles' frozen-step energies, gathered in the particle order of the positions, so
the path weights of a sharded run are those of the particles they belong to."""

from __future__ import annotations

import torch
from parallel_workers import RELAX_ADAPT, RELAX_N, RELAX_STEPS, relax_path_worker, run_job


def test_two_rank_relax_path_gathers_the_frozen_energies_in_particle_order(tmp_path):
    out = run_job(relax_path_worker, tmp_path)
    r0, r1 = (torch.load(out / f"relax{r}.pt", weights_only=True) for r in range(2))
    for key in ("x", "energy", "frozen"):
        assert torch.equal(r0[key], r1[key]), key
    assert r0["frozen"].shape == (RELAX_STEPS - RELAX_ADAPT, RELAX_N)
    # the last frozen step's energies are the final ones, particle by particle, and belong to x
    torch.testing.assert_close(r0["frozen"][-1], r0["energy"])
    torch.testing.assert_close(r0["energy"], 0.5 * (r0["x"] ** 2).sum(-1))
    assert not torch.equal(r0["x"], r0["start"])  # the chains moved
