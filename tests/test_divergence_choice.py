"""``divergence: auto`` picks the fewest Hutchinson probes whose log-weight noise fits the budget.

For an energy-only NetworkModel of an 8-D Gaussian mixture (s = −∇U, so the probes see the full
Jacobian), V(1) is measured by the chooser; the number of probes must then scale as V(1)/budget
and turn into the exact trace once that many probes would cost as much (d = 8 VJPs).
"""

import math

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.smc.divergence_choice import choose_divergence
from boltzpath.smc.exact import GaussianMixtureVE
from boltzpath.smc.model import NetworkModel

SCHEDULE = KarrasSchedule(sigma_min=0.05, sigma_max=80.0)
D = 8
MIX = GaussianMixtureVE([0.4, 0.6], [[-1.0] * D, [1.5] * D], [0.4, 0.9], SCHEDULE)


def _energy(x, sigma):
    v = MIX.stds[None, :] ** 2 + sigma[:, None] ** 2
    sq = ((x[:, None, :] - MIX.means[None]) ** 2).sum(-1)
    ell = torch.log(MIX.weights) - 0.5 * D * torch.log(2 * math.pi * v) - sq / (2 * v)
    return -torch.logsumexp(ell, dim=1)


def _choose(budget, exact_below_t=0.0):
    model = NetworkModel(SCHEDULE, D, energy_net=_energy)
    x0 = MIX.sample(64, torch.Generator().manual_seed(0))
    return choose_divergence(model, x0, SCHEDULE, 50, 2.0, 0.1, torch.Generator().manual_seed(1), budget,
                             exact_below_t=exact_below_t)


def test_steps_made_exact_by_exact_below_t_are_not_counted():
    """The probe noise comes from the late (small-σ) steps; once exact_below_t makes those exact the
    measured noise of the remaining steps is smaller, and with every weighted step exact nothing
    is left to probe."""
    v_all = _choose(1e9)[2]["log_weight_noise_var_one_probe"]
    v_early = _choose(1e9, exact_below_t=0.5)[2]["log_weight_noise_var_one_probe"]
    assert 0 < v_early < v_all
    method, probes, report = _choose(1e9, exact_below_t=1.0)
    assert (method, probes) == ("hutchinson", 1) and "reason" in report


def test_probe_count_follows_the_measured_variance():
    method, probes, report = _choose(1e9)
    v1 = report["log_weight_noise_var_one_probe"]
    assert method == "hutchinson" and probes == 1 and v1 > 0
    method, probes, _ = _choose(v1 / 3.0)  # three probes bring the noise to the budget
    assert method == "hutchinson" and probes == 3
    method, probes, report = _choose(v1 / 100.0)  # 100 probes would cost more than d = 8 VJPs
    assert method == "exact" and report["chosen"] == "exact"


def test_pita_resolves_auto_and_records_the_choice(tmp_path):
    import json

    from test_pita import TINY

    from boltzpath.config import from_dict
    from boltzpath.methods.pita import run_pita
    from boltzpath.methods.pita_config import PITAConfig

    cfg = dict(TINY, anneal={**TINY["anneal"], "divergence": "auto"})
    run_pita(from_dict(PITAConfig, cfg), tmp_path / "run")
    choice = json.loads((tmp_path / "run" / "stage_1" / "metrics.json").read_text())["divergence_choice"]
    assert choice["chosen"] in ("exact", "hutchinson") and choice["log_weight_noise_var_one_probe"] >= 0
