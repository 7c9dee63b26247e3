"""benchmarks/pita_weight_terms.py (the FK log-weight split into its terms along one population) and
benchmarks/pita_stage_basins.py (input checks)."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from boltzpath.config import from_dict
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import load_models
from boltzpath.errors import BadInput
from boltzpath.methods.pita import _network_model, run_pita
from boltzpath.methods.pita_config import PITAConfig
from boltzpath.smc.annealing import anneal
from boltzpath.targets.registry import make_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pita_weight_terms  # noqa: E402
from test_bench_one_step import TINY_DW4 as ONE_STEP_DW4  # noqa: E402

# pita_one_step's two-rung DW-4 ladder, with a Hutchinson anneal whose weights stop at t = 0.3
TINY_DW4 = {**ONE_STEP_DW4,
            "anneal": {"n_steps": 6, "divergence": "hutchinson", "stop_resampling_t": 0.3},
            "relax": {"n_steps": 2, "adapt_steps": 1, "step_size": 0.01},
            "n_particles": 16, "buffer_size": 16, "eval_max_n": 16}


def test_bad_divergence_variants_are_refused():
    assert pita_weight_terms.parse_variants("hutchinson:1, exact,hutchinson:8") == [
        ("hutchinson", 1), ("exact", 1), ("hutchinson", 8)]
    for bad in ("", "hutchinson", "hutchinson:0", "hutchinson:x", "exakt"):
        with pytest.raises(BadInput):
            pita_weight_terms.parse_variants(bad)


def test_the_exact_parts_sum_to_the_weights_of_the_anneal_without_resampling(tmp_path):
    run = tmp_path / "run"
    cfg = from_dict(PITAConfig, TINY_DW4)
    run_pita(cfg, run)
    target = make_target("dw4")
    schedule = KarrasSchedule(cfg.schedule.sigma_min, cfg.schedule.sigma_max, cfg.schedule.rho)
    model = _network_model(*load_models(run / "stage_0" / "model.pt", target), target, schedule)
    acfg = replace(cfg.anneal_for(1), overshoot=1.0)  # γ = T_0/T_1
    sums, per_step = pita_weight_terms.term_sums(model, acfg, schedule, 24, torch.Generator().manual_seed(3),
                                                 target.project, 1, torch.Generator().manual_seed(4))
    assert len(per_step) == 6 and any(not s["weighted"] for s in per_step)  # the released stop applies
    no_resampling = replace(acfg, divergence="exact", ess_threshold=0.0)
    res = anneal(model, 24, schedule, no_resampling, torch.Generator().manual_seed(3), target.project)
    total = sums["du_dt"] + sums["divergence"] + sums["inner"]
    assert total.var() > 0  # not a vacuous comparison
    torch.testing.assert_close(res.log_weights, total, rtol=1e-5, atol=1e-5)
    assert sums["probe_noise"].abs().max() > 0  # one probe is not the exact trace

    out = tmp_path / "terms.json"
    assert pita_weight_terms.main(["--run", str(run), "--stage", "0", "--n", "8", "--threads", "1",
                                   "--divergence", "hutchinson:2,exact", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    metrics = [r["metric"] for r in rows]
    parts = ("du_dt", "divergence", "inner", "probe_noise", "total_exact", "total_with_probes")
    assert metrics[:6] == [f"log_weight_var_{p}" for p in parts]
    assert metrics[6:] == ["n_resampling_events"] * 2 and all(r["energy_evaluations"] == 0 for r in rows)


    # the exact-model reference: a Gaussian's weights spread too, and it needs no trained model
    out2 = tmp_path / "gauss.json"
    assert pita_weight_terms.main(["--run", str(run), "--stage", "0", "--n", "64", "--threads", "1",
                                   "--skip-model", "--gaussian-std", "0.5", "--gamma", "1.5",
                                   "--out", str(out2)]) == 0
    rows = json.loads(out2.read_text())["rows"]
    assert [r["method"].split(":")[0] for r in rows] == ["exact Gaussian, std 0.5"] * 7
    assert rows[0]["gamma"] == 1.5 and rows[4]["metric"] == "log_weight_var_total_exact"
    assert rows[4]["value"] > 0
    assert rows[3]["value"] == 0  # the Gaussian's divergence is exact: no probe noise
    assert rows[6]["method"].endswith("weighted SMC, divergence exact")


def test_a_run_without_a_model_for_the_stage_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("target: dw4\ntemperatures: [2.0, 1.0]\n")
    with pytest.raises(BadInput, match="no such model"):
        pita_weight_terms.main(["--run", str(tmp_path), "--stage", "0", "--out", str(tmp_path / "o.json")])
    with pytest.raises(BadInput, match="gamma >= 1"):
        pita_weight_terms.main(["--run", str(tmp_path), "--stage", "0", "--gamma", "0.5"])
    with pytest.raises(BadInput, match="stages 0..0"):
        pita_weight_terms.main(["--run", str(tmp_path), "--stage", "1", "--out", str(tmp_path / "o.json")])


def test_stage_basins_refuses_a_run_it_cannot_read(tmp_path):
    import pita_stage_basins

    with pytest.raises(BadInput, match="no config.yaml"):
        pita_stage_basins.main(["--run", str(tmp_path), "--stage", "0", "--out", str(tmp_path / "o.json")])
    for bad in (["--gamma", "0.9"], ["--gamma", "1.1", "--gamma-one"]):
        with pytest.raises(BadInput, match="--gamma"):
            pita_stage_basins.main(["--run", str(tmp_path), "--stage", "0", *bad])
    with pytest.raises(BadInput, match="--reweight-true"):
        pita_stage_basins.main(["--run", str(tmp_path), "--stage", "0", "--reweight-true", "--no-weights"])
    (tmp_path / "config.yaml").write_text("target: dw4\ntemperatures: [2.0, 1.0]\n")
    with pytest.raises(BadInput, match="stages 0..0"):
        pita_stage_basins.main(["--run", str(tmp_path), "--stage", "1", "--out", str(tmp_path / "o.json")])
    with pytest.raises(BadInput, match="no such model"):
        pita_stage_basins.main(["--run", str(tmp_path), "--stage", "0", "--out", str(tmp_path / "o.json")])
    (tmp_path / "stage_0").mkdir()
    (tmp_path / "stage_0" / "model.pt").write_bytes(b"")
    with pytest.raises(BadInput, match="not a peptide"):
        pita_stage_basins.main(["--run", str(tmp_path), "--stage", "0", "--out", str(tmp_path / "o.json")])
