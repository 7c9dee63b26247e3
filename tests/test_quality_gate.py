"""The energy-model quality gate (``boltzpath.diffusion.quality``) and its use in the PITA ladder.

Exact answers: an energy model equal to the true energy (up to a constant) has correlation 1,
residual std 0 and reweighting ESS fraction 1; Gaussian residuals of std r give an ESS fraction of
exp(−γ²r²) in expectation (lognormal weights). A deliberately under-trained model must be reported
as failing, and ``gate.action: refuse`` must stop the ladder with a clear message.
"""

import copy
import json
import math
import statistics

import pytest
import torch
from fixtures import seeded
from test_pita import TINY

from boltzpath.config import from_dict
from boltzpath.diffusion.quality import QualityGate, energy_model_quality, sigma_min_jitter, split_holdout
from boltzpath.errors import BadInput
from boltzpath.methods.pita import run_pita
from boltzpath.methods.pita_config import PITAConfig


class _StubEnergy:
    """U(x) = ½‖x_{1..d−1}‖² + c + r·x_d against E = ½‖x_{1..d−1}‖²: exact up to a constant when
    r = 0; for x ~ N(0, I) the residual r·x_d is Gaussian with std r."""

    def __init__(self, r: float, c: float = 3.0) -> None:
        self.r, self.c = r, c

    def project(self, v):
        return v

    def energy(self, x, sigma, temperature=None):
        return 0.5 * (x[:, :-1].double() ** 2).sum(-1) + self.c + self.r * x[:, -1].double()


def test_exact_energy_model_has_perfect_quality():
    x = torch.randn(2000, 3, generator=seeded(0))
    e = 0.5 * (x[:, :-1].double() ** 2).sum(-1)
    q = energy_model_quality(None, _StubEnergy(0.0), x, e, gamma=1.5, sigma_min=0.05, generator=seeded(1))
    assert q["corr"] == pytest.approx(1.0, abs=1e-9)
    assert q["residual_std"] < 1e-9 and q["reweight_ess_fraction"] == pytest.approx(1.0, abs=1e-9)
    assert QualityGate().passes(q)
    assert q["slope"] == pytest.approx(1.0, abs=1e-9)


class _ShrunkEnergy(_StubEnergy):
    def energy(self, x, sigma, temperature=None):
        return 0.8 * 0.5 * (x.double() ** 2).sum(-1) + self.c


def test_slope_reports_an_energy_model_whose_differences_are_too_small():
    # U = 0.8 E/kT exactly (corr 1, a "hotter" model): the slope reads 0.8 however many samples
    x = torch.randn(500, 3, generator=seeded(5))
    e = 0.5 * (x.double() ** 2).sum(-1)
    q = energy_model_quality(None, _ShrunkEnergy(0.0, 3.0), x, e, gamma=1.5, sigma_min=0.05,
                             generator=seeded(6))
    assert q["corr"] == pytest.approx(1.0, abs=1e-9) and q["slope"] == pytest.approx(0.8, abs=1e-9)


@pytest.mark.parametrize("r", [0.3, 0.5])
def test_reweighting_ess_matches_lognormal_formula(r):
    # ESS/n of w = exp(−γδ), δ ~ N(0, r²): (E w)² / E w² = exp(−γ² r²). n = 20000, γr ≤ 0.75: the
    # relative s.d. of the estimate of E w² is √(exp(4γ²r²)/n) ≤ 2.2 %; tolerance 15 % (≈ 7 s.d.).
    # A gate that forgot γ (ESS of exp(−δ)) would read exp(−r²), 0.91/0.78 instead of 0.82/0.57.
    gamma = 1.5
    x = torch.randn(20000, 2, generator=seeded(2))
    e = 0.5 * (x[:, :-1].double() ** 2).sum(-1)
    q = energy_model_quality(None, _StubEnergy(r), x, e, gamma=gamma, sigma_min=0.05, generator=seeded(3))
    assert q["reweight_ess_fraction"] == pytest.approx(math.exp(-(gamma * r) ** 2), rel=0.15)
    assert q["residual_std"] == pytest.approx(r, rel=0.05)


def test_split_holdout_is_disjoint_and_seeded():
    a, b = split_holdout(100, 0.1, seeded(4))
    assert len(b) == 10 and len(a) == 90 and not set(a.tolist()) & set(b.tolist())
    a2, b2 = split_holdout(100, 0.1, seeded(4))
    assert torch.equal(b, b2)


def _undertrained(tmp_path, action: str):
    cfg = copy.deepcopy(TINY)
    cfg["train"] = {**cfg["train"], "steps": 2}  # two optimiser steps: a random energy network
    cfg["gate"] = {"min_reweight_ess": 0.5, "min_corr": 0.9, "action": action, "holdout_fraction": 0.2}
    return from_dict(PITAConfig, cfg)


def test_undertrained_model_is_reported_and_refused(tmp_path):
    run_pita(_undertrained(tmp_path, "warn"), tmp_path / "warn")
    stage0 = json.loads((tmp_path / "warn" / "stage_0" / "metrics.json").read_text())
    gate = stage0["energy_model_gate"]
    assert gate["passed"] is False and gate["checks"][-1]["corr"] < 0.9
    assert "WARNING stage 0: the energy model is too poor" in (tmp_path / "warn" / "run.log").read_text()
    final = json.loads((tmp_path / "warn" / "metrics.json").read_text())
    assert final["stages"][0]["energy_model_gate"]["passed"] is False
    with pytest.raises(BadInput, match="energy model is too poor"):
        run_pita(_undertrained(tmp_path, "refuse"), tmp_path / "refuse")


def test_gate_extends_training_until_the_cap(tmp_path):
    cfg = _undertrained(tmp_path, "warn")
    cfg.gate.min_corr, cfg.gate.max_factor = 1.0, 3  # corr 1 is never reached
    run_pita(cfg, tmp_path / "ext")
    gate = json.loads((tmp_path / "ext" / "stage_0" / "metrics.json").read_text())["energy_model_gate"]
    assert [c["step"] for c in gate["checks"]] == [2, 4, 6]


def test_generator_criterion_extends_training_on_the_model_check(tmp_path):
    # gate.criteria [generator]: training goes on while the model's own samples (model check) are
    # out of the buffer's energy range. A two-step network samples far outside (0 % in range), so
    # with min_in_range 0.99 it trains to the cap, checking after each segment; each check's
    # evaluations are counted. The energy criterion is not asked for here, so it cannot be the cause.
    cfg = _undertrained(tmp_path, "warn")
    cfg.gate.criteria, cfg.gate.min_in_range, cfg.gate.max_factor = ["generator"], 0.99, 3
    cfg.gate.model_check_n = 16
    run_pita(cfg, tmp_path / "gen")
    st0 = json.loads((tmp_path / "gen" / "stage_0" / "metrics.json").read_text())
    gate = st0["energy_model_gate"]
    assert [c["step"] for c in gate["checks"]] == [2, 4, 6]
    assert all(c["model_check"]["in_range_fraction"] < 0.99 for c in gate["checks"])
    assert gate["passed"] is False and len(gate["failing"]) == 1 and "own samples" in gate["failing"][0]
    assert st0["model_check"] == gate["checks"][-1]["model_check"]  # reused, not drawn again
    assert st0["energy_evaluations"]["model_check"] == 3 * 16
    assert gate["failing_criteria"] == ["generator"]
    log = (tmp_path / "gen" / "run.log").read_text()
    assert "own samples in the buffer's energy range" in log
    # the warning names what failed: the generator, not the energy model (not asked for here)
    assert "WARNING stage 0: the generator's own samples leave" in log
    assert "energy model is too poor" not in log
    # the same network passes a generator criterion that asks for nothing, on the first check,
    # although its energy figures would fail
    cfg.gate.min_in_range = 0.0
    run_pita(cfg, tmp_path / "pass")
    gate = json.loads((tmp_path / "pass" / "stage_0" / "metrics.json").read_text())["energy_model_gate"]
    assert gate["passed"] is True and [c["step"] for c in gate["checks"]] == [2]
    assert gate["checks"][0]["corr"] < 0.9


@pytest.mark.parametrize("gate", [{"criteria": ["fast"]}, {"criteria": []},
                                  {"criteria": ["generator"], "model_check_n": 0}])
def test_gate_criteria_are_checked(gate):
    with pytest.raises(BadInput, match="gate.criteria"):
        from_dict(PITAConfig, {**TINY, "gate": gate}).validate()


class _QuadraticTarget:
    """E/kT = ½‖x‖² with an identity projection, counting its evaluations."""

    def __init__(self) -> None:
        self.calls = 0

    def project(self, v):
        return v

    def energy(self, x):
        self.calls += x.shape[0]
        return 0.5 * (x.double() ** 2).sum(-1)


@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_sigma_min_jitter_matches_the_quadratic_formula(sigma):
    # E(x + σε) − E(x) = σ x·ε + σ²‖ε‖²/2 for E = ½‖x‖²: its variance over ε is σ²‖x‖² + σ⁴d/2 (the
    # two terms are uncorrelated; Var ‖ε‖²/2 = d/2). 4000 draws: the sample std's relative s.e. is
    # ≈ 1/√(2·3999) ≈ 1.1 %; tolerance 5 % (≈ 4.5 s.e.). Forgetting σ, or σ², reads 20× or more off.
    d, a = 6, 3.0
    x = torch.zeros(5, d)
    x[:, 0] = a
    target = _QuadraticTarget()
    jit = sigma_min_jitter(target, x, sigma, 4000, seeded(7))
    want = math.sqrt(sigma**2 * a**2 + sigma**4 * d / 2)
    assert jit["median_std"] == pytest.approx(want, rel=0.05)
    assert jit["q90_std"] == pytest.approx(want, rel=0.05)
    assert jit["evaluations"] == target.calls == 5 * 4001


def test_pita_reports_the_sigma_min_check_and_warns(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["gate"] = {"jitter_n": 16, "jitter_draws": 4, "max_jitter": 1e-9}  # any jitter warns
    run_pita(from_dict(PITAConfig, cfg), tmp_path / "run")
    for k in (0, 1):  # stages that train; the last one does not
        m = json.loads((tmp_path / "run" / f"stage_{k}" / "metrics.json").read_text())
        jit = m["sigma_min_check"]
        assert jit["n"] == 16 and jit["evaluations"] == 16 * 5 and jit["median_std"] > 0
        assert m["energy_evaluations"]["sigma_min_check"] == 80
        # the gate reads score–energy consistency at σ_min too, where the anneal ends
        assert set(m["energy_model_gate"]["checks"][-1]["score_consistency"]) == {"0.05", "0.1", "0.5", "2.0"}
    assert "sigma_min_check" not in json.loads((tmp_path / "run" / "stage_2" / "metrics.json").read_text())
    # how much of the training law lies below σ_min, in the metrics and the warning
    pcfg = from_dict(PITAConfig, cfg)
    below = statistics.NormalDist(pcfg.train.p_mean, pcfg.train.p_std).cdf(math.log(pcfg.schedule.sigma_min))
    jit0 = json.loads((tmp_path / "run" / "stage_0" / "metrics.json").read_text())["sigma_min_check"]
    assert jit0["training_draws_below"] == pytest.approx(below, rel=1e-9)
    log = (tmp_path / "run" / "run.log").read_text()
    assert "A smaller schedule.sigma_min narrows it only if training sees" in log
    assert f"{100 * below:.1f} % of this stage's training draws" in log
    with pytest.raises(BadInput, match="jitter_draws"):
        QualityGate(jitter_draws=1).validate()


def test_drift_disagreement_names_the_sigmas_above_the_limit_and_leaves_sigma_min_out():
    """The stage-0 gate reports of four ALDP `cpu` runs (docs/pita.md, eleventh session): the
    12,000-step baseline (sound samples) raises no warning; the energy networks with the pair head
    whose next stage held 65–91 % cis amides do; one with the head that made sound samples does not,
    below σ_data. σ_min (0.99 in the baseline) never counts."""
    from boltzpath.methods.pita import _drift_disagreement, _drift_warning

    def gate(cons):
        return {"checks": [{"score_consistency": cons}]}

    base = {"0.00164": 0.999, "0.1": 0.104, "0.5": 0.018, "2.0": 0.006}
    pair = {"0.00164": 0.615, "0.1": 0.432, "0.5": 0.240, "2.0": 0.367}
    faded = {"0.00164": 0.686, "0.1": 0.509, "0.5": 0.199, "2.0": 0.022}
    kept = {"0.00164": 0.731, "0.1": 0.205, "0.5": 0.274, "2.0": 0.393}  # sound samples one rung later
    assert _drift_disagreement(gate(base), 0.00164, 0.3) == {}
    assert _drift_disagreement(gate(pair), 0.00164, 0.3) == {"0.1": 0.432, "2.0": 0.367}
    assert _drift_disagreement(gate(faded), 0.00164, 0.3) == {"0.1": 0.509}
    # up to σ_data (what PITA passes; ALDP 0.164 nm): the sound "kept" network is not flagged at 2 nm
    assert _drift_disagreement(gate(pair), 0.00164, 0.3, 0.164) == {"0.1": 0.432}
    assert _drift_disagreement(gate(kept), 0.00164, 0.3, 0.164) == {}
    assert _drift_disagreement(gate(kept), 0.00164, 0.3) == {"2.0": 0.393}
    assert _drift_disagreement(None, 0.00164, 0.3) == {}
    assert _drift_disagreement({"checks": []}, 0.1, 0.3) == {}
    text = _drift_warning(0, {"0.1": 0.509}, 0.3)
    assert "0.51 at σ = 0.1" in text and "half −∇U_η" in text
    with pytest.raises(BadInput, match="max_inconsistency"):
        QualityGate(max_inconsistency=0.0).validate()


def test_a_run_records_and_logs_the_drift_disagreement_of_its_gate(tmp_path):
    """Wiring: a tiny run's stage-0 metrics hold ``drift_disagreement`` exactly when its gate report
    has a σ above σ_min over ``gate.max_inconsistency``, and the run log warns then (a limit of 1e-6
    makes every σ count; the default of a tiny, untrained model is not relied on)."""
    from boltzpath.methods.pita import _drift_disagreement

    cfg = from_dict(PITAConfig, copy.deepcopy(TINY))
    cfg.gate.max_inconsistency = 1e-6
    run_pita(cfg, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "stage_0" / "metrics.json").read_text())
    expected = _drift_disagreement(m["energy_model_gate"], cfg.schedule.sigma_min, 1e-6, cfg.net.sigma_data)
    assert expected and m["drift_disagreement"] == expected
    assert "gradient disagrees with the score network" in (tmp_path / "run" / "run.log").read_text()
