"""``evaluate`` (the metric suite) and ``noise_floor``."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch

from boltzpath import make_target
from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.metrics import evaluate, noise_floor
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.smc.weights import effective_sample_size


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _samples(target, x: torch.Tensor, **kw) -> Samples:
    return Samples(x=x.float(), energy=uncounted_energy(target, x.double()), **kw)


def _check_schema(result: dict) -> None:
    json.dumps(result, allow_nan=False)  # strictly JSON-serialisable, no NaN
    for name, m in result["metrics"].items():
        assert set(m) == {"value", "n", "convention", "noise_floor"}, name
        assert isinstance(m["value"], float) and isinstance(m["n"], int) and m["convention"]


@pytest.mark.parametrize("name", ["gmm40", "manywell32"])
def test_toys_against_exact_sampler(name):
    t = make_target(name)
    s = _samples(t, t.exact_sample(300, _gen(0)))
    res = evaluate(s, t, generator=_gen(1), max_n=300, noise_repeats=2)
    _check_schema(res)
    assert t.counter.count == 0  # metric evaluations are not charged to the sampler
    assert res["reference"] == "exact sampler" and res["n"] == 300 and res["n_reference"] == 300
    expected = {"high_energy_fraction", "energy_w1", "energy_w2", "coordinate_w2", "mmd",
                "second_moment_rel_error", "mode_coverage", "mode_weight_tvd"}
    assert expected <= set(res["metrics"])
    assert ("pattern_hit_ratio" in res["metrics"]) == (name == "manywell32")
    m = res["metrics"]
    assert m["mode_coverage"]["value"] == 1.0
    for key in ("coordinate_w2", "energy_w2", "mmd"):
        floor = m[key]["noise_floor"]
        assert floor["n"] == 300 and floor["repeats"] == 2 and floor["source"] == "exact sampler"
        # exact samples are a perfect sampler: their value is one more draw of the floor's
        # distribution; 6 floor sds + 25 % of the mean is generous for 2 repeats yet far below
        # what the one-mode set in the next test scores
        assert m[key]["value"] <= floor["mean"] + 6 * floor["std"] + 0.25 * abs(floor["mean"]) + 1e-3


def test_biased_sampler_is_far_above_its_noise_floor():
    t = make_target("gmm40")
    x = t.means[0] + t.std * torch.randn(300, 2, generator=_gen(2), dtype=torch.float64)
    res = evaluate(_samples(t, x), t, generator=_gen(3), max_n=300, noise_repeats=2)
    m = res["metrics"]
    assert m["mode_coverage"]["value"] == pytest.approx(1 / 40)
    # one mode vs forty spread over an 80×80 box: W2 is tens of units, the floor a few
    assert m["coordinate_w2"]["value"] > 3 * m["coordinate_w2"]["noise_floor"]["mean"]
    assert m["mmd"]["value"] > 10 * max(m["mmd"]["noise_floor"]["std"], 1e-6)


def test_particles_with_reference_array_and_symmetric_copy():
    t = make_target("dw4")
    ref = t.prior_sample(120, _gen(4), dtype=torch.float64)
    # samples = the reference's first half rotated by 90° and with particles 0 and 1 swapped:
    # identical energies and distances, aligned distance 0 (exact alignment for 4 particles)
    p = ref[:60].reshape(60, 4, 2)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    moved = (p[:, [1, 0, 2, 3]] @ rot.T).reshape(60, -1)
    res = evaluate(_samples(t, moved), t, reference=ref[:60], generator=_gen(5), max_n=60,
                   noise_repeats=2, reference_name="copy.npy")
    _check_schema(res)
    m = res["metrics"]
    assert res["reference"] == "copy.npy" and res["n_reference"] == 60
    assert {"energy_w1", "energy_w2", "distance_w2", "distance_tvd", "aligned_w2"} <= set(m)
    assert "coordinate_w2" not in m and "mode_coverage" not in m
    # float32 storage of the samples limits agreement to ~1e-5 relative
    assert m["energy_w1"]["value"] < 1e-4 and m["distance_w2"]["value"] < 1e-5
    assert m["aligned_w2"]["value"] < 1e-5
    # noise floors from disjoint halves of a 60-point reference: n is cut to 30 and says so
    assert m["aligned_w2"]["noise_floor"]["n"] == 30
    assert m["aligned_w2"]["noise_floor"]["source"] == "disjoint reference subsets"
    assert m["aligned_w2"]["noise_floor"]["mean"] > 0.1


def test_mean_energy_shift_has_the_sign_of_hot_and_cold_samples():
    # energy W1/W2 are unsigned; mean_energy_shift says which way: samples equal to the reference
    # give 0 (to float32 storage), samples with a larger mean E/kT a positive shift equal to the
    # difference of means computed directly
    t = make_target("dw4")
    ref = t.prior_sample(200, _gen(6), dtype=torch.float64)
    same = evaluate(_samples(t, ref[:100]), t, reference=ref[:100], generator=_gen(7), max_n=100,
                    noise_repeats=2)
    assert abs(same["metrics"]["mean_energy_shift"]["value"]) < 1e-4
    e = t.energy(ref).double()
    hot, cold = ref[e >= e.median()], ref[e < e.median()]
    res = evaluate(_samples(t, hot), t, reference=cold, generator=_gen(8), max_n=200, noise_repeats=2)
    shift = res["metrics"]["mean_energy_shift"]
    assert shift["value"] > 0
    want = float(t.energy(hot).double().mean() - t.energy(cold).double().mean())
    assert shift["value"] == pytest.approx(want, rel=1e-4)
    assert shift["noise_floor"]["mean"] >= 0  # |difference| between reference halves


def test_log_weights_give_ess_and_log_z_error():
    """Importance sampling gmm40 (log Z = 0) from q = N(0, 25² I) with unnormalised log-weights
    log w = −E/kT − log q(x); log mean exp(log w) estimates log Z with delta-method standard error
    √(1/ESS − 1/n). Tolerance 5 SE; a log-sum-exp instead of a log-mean-exp is off by log n = 9.9."""
    t = make_target("gmm40")
    n, sd = 20_000, 25.0
    x = sd * torch.randn(n, 2, generator=_gen(6), dtype=torch.float64)
    log_q = -0.5 * (x**2).sum(1) / sd**2 - math.log(2 * math.pi * sd**2)
    s = _samples(t, x)
    s.log_weights = -s.energy.double() - log_q
    res = evaluate(s, t, generator=_gen(7), max_n=200, noise_floors=False)
    m = res["metrics"]
    ess = effective_sample_size(s.log_weights)
    assert m["ess"]["value"] == pytest.approx(ess) and m["ess_fraction"]["value"] == pytest.approx(ess / n)
    assert m["log_z_error"]["value"] < 5 * math.sqrt(1 / ess - 1 / n)
    # an explicit SMC estimate in the info takes precedence
    s.info["log_z"] = 0.5
    assert evaluate(s, t, generator=_gen(7), max_n=50, noise_floors=False)["metrics"]["log_z_error"][
        "value"] == pytest.approx(0.5)


def test_non_finite_samples_are_left_out_with_a_note():
    t = make_target("gmm40")
    s = _samples(t, t.exact_sample(100, _gen(13)))
    s.x[:5] = float("nan")
    s.energy[:5] = float("inf")
    res = evaluate(s, t, generator=_gen(14), noise_floors=False)
    assert res["metrics"]["high_energy_fraction"]["value"] == pytest.approx(0.05)
    assert res["metrics"]["coordinate_w2"]["n"] == 95 and res["notes"]


def test_no_reference_and_bad_reference():
    t = make_target("lj13")
    x = t.prior_sample(20, _gen(8), dtype=torch.float64)
    res = evaluate(_samples(t, x), t)
    assert res["reference"] is None and set(res["metrics"]) == {"high_energy_fraction"}
    assert res["notes"]
    with pytest.raises(BadInput):
        evaluate(_samples(t, x), t, reference=np.zeros((10, 12)))
    with pytest.raises(BadInput):
        evaluate(_samples(t, x), make_target("dw4"))
    with pytest.raises(BadInput):
        evaluate(_samples(t, x), t, max_n=1)


def test_peptide_metrics_are_merged(monkeypatch):
    fake = types.ModuleType("boltzpath.metrics.peptide_suite")
    seen = {}

    def peptide_metrics(samples, target, reference, generator=None, max_n=5000):
        seen["reference_rows"] = None if reference is None else reference.shape[0]
        return {"torus_w2": {"value": 0.25, "n": samples.n, "convention": "fake", "noise_floor": None}}

    fake.peptide_metrics = peptide_metrics
    monkeypatch.setitem(sys.modules, "boltzpath.metrics.peptide_suite", fake)
    t = make_target("gmm40")
    monkeypatch.setattr(t, "is_peptide", True, raising=False)
    x = t.exact_sample(50, _gen(9))
    res = evaluate(_samples(t, x), t, reference=x.numpy(), generator=_gen(10), noise_floors=False)
    assert res["metrics"]["torus_w2"]["value"] == 0.25 and seen["reference_rows"] == 50
    assert "coordinate_w2" not in res["metrics"]  # peptides get their own metrics, not the toys'


def test_noise_floor_disjoint_subsets_and_sampler():
    ref = torch.arange(100, dtype=torch.float64)[:, None]

    def shared_rows(a, b):
        return float(np.intersect1d(a.numpy(), b.numpy()).size)

    out = noise_floor(shared_rows, 40, reference=ref, repeats=4, generator=_gen(11))
    assert out["mean"] == 0.0 and out["n"] == 40 and out["repeats"] == 4  # halves never overlap
    assert noise_floor(shared_rows, 80, reference=ref, repeats=2)["n"] == 50  # capped at N/2

    def mean_gap(a, b):
        return float(a.mean() - b.mean())

    def draw(n, g):
        return torch.randn(n, generator=g, dtype=torch.float64)

    out = noise_floor(mean_gap, 400, sampler=draw, repeats=30, generator=_gen(12))
    # the gap of two independent means has mean 0 and sd √(2/400) = 0.0707: the 30-repeat mean
    # lies within 4 standard errors of 0 and the sd within ±40 % (χ² with 29 dof, ≈ 3 sd)
    assert abs(out["mean"]) < 4 * 0.0707 / math.sqrt(30)
    assert 0.6 * 0.0707 < out["std"] < 1.4 * 0.0707
    with pytest.raises(BadInput):
        noise_floor(mean_gap, 10)
