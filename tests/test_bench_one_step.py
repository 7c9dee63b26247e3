"""benchmarks/pita_one_step.py: one PITA step, weighted + bridge vs the ablation at matched evaluations."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzpath.config import from_dict
from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.methods.pita import run_pita
from boltzpath.methods.pita_config import PITAConfig
from boltzpath.metrics.convergence import smc_warning

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pita_one_step  # noqa: E402

TINY_DW4 = {
    "target": "dw4",
    "temperatures": [2.0, 1.0],
    "stage0": {"method": "mala", "n_samples": 64, "options": {"chains": 32, "burn_in": 20, "thin": 2}},
    "net": {"hidden": 8, "layers": 1, "emb_dim": 8},
    "train": {"steps": 10, "batch_size": 32, "checkpoint_every": 10, "log_every": 10},
    "finetune": {"steps": 10, "batch_size": 32, "checkpoint_every": 10, "log_every": 10},
    "anneal": {"n_steps": 5, "divergence": "exact", "tail": "bridge", "bridge_moves": 2,
               "bridge_step_size": 0.01},
    "relax": {"n_steps": 4, "adapt_steps": 2, "step_size": 0.01},
    "n_particles": 32, "buffer_size": 32, "eval_max_n": 32, "eval_noise_floors": False,
    "stage_plots": False, "gate": {"enabled": False, "model_check_n": 0, "jitter_n": 0},
}


def test_variants_parse_and_bad_ones_are_refused():
    v = pita_one_step.parse_variants("weighted:10:0.9:500,ablation:matched,ablation:7")
    assert v == [{"kind": "weighted", "moves": 10, "cess": 0.9, "relax": 500},
                 {"kind": "ablation", "relax": "matched"}, {"kind": "ablation", "relax": 7}]
    for bad in ("ablation:matched", "weighted:10:0.9", "weighted:x:0.9:5", "bridge:1", "ablation:many"):
        with pytest.raises(BadInput):
            pita_one_step.parse_variants(bad)


def test_one_step_matches_the_ablations_evaluations(tmp_path, capsys):
    run = tmp_path / "run"
    run_pita(from_dict(PITAConfig, TINY_DW4), run)
    refs = tmp_path / "refs"
    refs.mkdir()
    x = Samples.load(run / "stage_1" / "samples.npz").x.numpy()  # stand-in references at T = 1
    for s in (0, 1):
        np.save(refs / f"dw4_T1_seed{s}.npy", x)
    out = tmp_path / "one_step.json"
    args = ["--run", str(run), "--stage", "0", "--references", str(refs), "--seeds", "3", "--n", "16",
            "--variants", "weighted:2:0.9:3,ablation:matched,ablation:0", "--out", str(out)]
    assert pita_one_step.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 9  # energy W2, distance W2, mean E/kT for each variant
    w, a, a0 = rows[::3]
    assert w["method"].startswith("pita weighted, bridge 2x0.9 + relax 3")
    assert a["method"].endswith("(matched)") and a0["method"] == "pita-score-scaling + relax 0"
    # the bridge's evaluations plus the relaxation's (one per particle, then one per step)
    assert w["energy_evaluations"] == w["bridge_evaluations"] + 16 * 4
    # the matched ablation spends them all on MALA steps (to within half a step of the population);
    # repairing its overlapping particles first costs it more, counted: it never gets less
    assert a["relax_steps"] == round(w["energy_evaluations"] / 16) - 1
    assert a["energy_evaluations"] >= w["energy_evaluations"] - 8
    assert a0["energy_evaluations"] == 16  # no relaxation: the buffer's energies only
    for r in rows:
        assert np.isfinite(r["value"]) and r["gamma"] == 2.0 and r["target"] == "dw4"
    assert rows[0]["metric"].startswith("energy_w2 at T=1, one step from stage 0")
    # bad input: exit 2 and one line naming it
    assert pita_one_step.main([*args[:6], "--references", str(tmp_path / "none")]) == 2
    assert pita_one_step.main(["--run", str(run), "--stage", "1", "--references", str(refs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --stage 1") and "Traceback" not in "".join(err)


def test_a_reweight_rung_samples_the_model_at_its_own_temperature_and_resamples_on_the_true_energy(tmp_path):
    """rung: reweight — stage 1 comes from the stage-0 model at T0 (γ = 1), relaxed at T0 and resampled
    to T1 on −(γ − 1)·E/kT0; the T0 relaxation's evaluations are counted apart, and the stage's
    metrics say which rung made it. A rung name it does not know is refused."""
    cfg = from_dict(PITAConfig, {**TINY_DW4, "rung": "reweight",
                                 "anneal": {"n_steps": 5, "divergence": "exact"}})
    res = run_pita(cfg, tmp_path / "run")
    m1 = json.loads((tmp_path / "run" / "stage_1" / "metrics.json").read_text())
    assert m1["rung"] == "reweight" and m1["gamma"] == 2.0
    ev = m1["energy_evaluations"]
    assert ev["relaxation_before"] == 32 * (1 + 4) and ev["relaxation"] == 32 * 4
    assert 0 < m1["final_ess_fraction"] <= 1 and res.samples.n == 32
    # stage 0's buffer says how well it covers T1: below 10 % ESS the log warns before the rung and
    # names temperatures to insert, all between the two
    ov = json.loads((tmp_path / "run" / "stage_0" / "metrics.json").read_text())["next_rung_overlap"]
    warned = "the next rung's weights will collapse" in (tmp_path / "run" / "run.log").read_text()
    assert warned == (ov["ess_fraction"] < 0.1) and all(1.0 < t < 2.0 for t in ov["insert"])
    assert bool(ov["insert"]) == (ov["ess_fraction"] < 0.2)
    # a rung eight-fold in temperature: the buffer predicts the collapse (3 % with this seed), the log
    # says so before the rung runs, and the run's final warning names the temperatures to insert
    cfg = from_dict(PITAConfig, {**TINY_DW4, "temperatures": [4.0, 0.5], "rung": "reweight",
                                 "anneal": {"n_steps": 5, "divergence": "exact"}})
    run_pita(cfg, tmp_path / "wide")
    ov = json.loads((tmp_path / "wide" / "stage_0" / "metrics.json").read_text())["next_rung_overlap"]
    assert ov["ess_fraction"] < 0.1 and len(ov["insert"]) >= 1 and all(0.5 < t < 4.0 for t in ov["insert"])
    assert "the next rung's weights will collapse" in (tmp_path / "wide" / "run.log").read_text()
    final = json.loads((tmp_path / "wide" / "metrics.json").read_text())
    if final["stages"][1]["final_ess_fraction"] < 0.1:
        assert f"T = {ov['insert'][0]:.4g}" in smc_warning(final)
    with pytest.raises(BadInput, match="rung"):
        from_dict(PITAConfig, {**TINY_DW4, "rung": "bridge"}).validate()


def test_reweight_log_weights_take_a_gaussian_to_the_colder_temperature():
    """The reweight rung's resampling step is exact: samples of N(0, 1) = exp(−x²/2) at T0 (E/kT0 =
    x²/2), resampled systematically by reweight_log_weights at γ = 2, have variance 1/γ = 1/2.
    Tolerance: 5 standard errors of a sample variance at the weights' ESS (≈ 0.87 n, n = 40,000:
    SE ≈ 0.5·√(2/34,600) ≈ 0.0038); a factor γ instead of γ − 1 would give 1/3, a wrong sign 1."""
    from boltzpath.methods.pita import reweight_log_weights
    from boltzpath.smc.resample import systematic

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40_000, generator=gen, dtype=torch.float64)
    lw = reweight_log_weights(x**2 / 2, 2.0)
    y = x[systematic(gen, lw, x.numel())]
    assert abs(float(y.var()) - 0.5) < 5 * 0.0038
    assert abs(float(y.mean())) < 5 * (0.5 / 34_600) ** 0.5


def test_strata_log_weights_give_the_reference_fractions_and_report_missing_mass():
    """Samples in strata 0/1/2 with fractions 0.5/0.3/0.2, reference 0.6/0.2/0/(stratum 7: 0.2):
    weighted fractions must be the reference's over the strata both hold, renormalised (0.75/0.25),
    stratum 2 gets weight 0 (−inf) and the missing mass is 0.2. Exact arithmetic, no tolerance beyond
    rounding."""
    from boltzpath.methods.pita import strata_log_weights

    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    ref = np.array([0] * 60 + [1] * 20 + [7] * 20)
    log_w, summary = strata_log_weights(labels, ref)
    w = torch.exp(log_w)
    w = w / w.sum()
    assert abs(float(w[:50].sum()) - 0.75) < 1e-12 and abs(float(w[50:80].sum()) - 0.25) < 1e-12
    assert torch.isneginf(log_w[80:]).all() and summary["missing_mass"] == pytest.approx(0.2)
    assert summary["samples"] == {"0": 0.5, "1": 0.3, "2": 0.2}


def test_rung_strata_needs_the_reweight_rung_and_a_peptide(tmp_path):
    with pytest.raises(BadInput, match="rung_strata"):
        from_dict(PITAConfig, {**TINY_DW4, "rung_strata": "backbone"}).validate()
    with pytest.raises(BadInput, match="rung_strata"):
        from_dict(PITAConfig, {**TINY_DW4, "rung": "reweight", "rung_strata": "dihedrals"}).validate()
    cfg = from_dict(PITAConfig, {**TINY_DW4, "rung": "reweight", "rung_strata": "backbone"})
    with pytest.raises(BadInput, match="peptide"):
        run_pita(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
