"""How good is the energy model for Feynman–Kac annealing? Measured on held-out buffer samples.

PITA's weights steer particles towards exp(−γU_η); an error δ(x) = U_η(x, σ_min) − E(x)/kT − c
enters the weights multiplied by γ. For a stage whose buffer x ~ p_T (energies E/kT known) and
whose model will be annealed with γ = T/T_next, ``energy_model_quality`` reports, on samples the
model was not trained on:

* ``corr`` and ``residual_std`` of U_η(x, σ_min) against E(x)/kT (the std after removing the mean
  offset c, in units of kT at T) — the energy network's accuracy where the annealing ends;
* ``slope``: the least-squares slope of U_η on E/kT. Below 1 the model's energy differences are
  too small, and exp(−γU_η) is a *hotter* density than p^γ (slope 0.8 ≈ a temperature 1.25× too
  high) — a bias the weights then carry into the next stage, unlike random residuals;
* ``reweight_ess_fraction``: the ESS/n of the weights exp(−γ(U_η − E/kT)), i.e. of reweighting the
  stage's own samples from p_T to the model's tempered density exp(−γU_η) and back to p_{T_next}.
  1 for a perfect U_η; it falls like exp(−γ²·residual_std²) for Gaussian errors — the plainest
  measure of whether U_η is good enough for this γ;
* ``score_consistency``: median ‖s_θ + ∇U_η‖ / ‖s_θ‖ at noised points x + σε for a few σ (the
  two networks should describe the same p_σ; drift and weights use both).

``sigma_min_jitter`` asks a question about the schedule rather than the model: how much does noise of
the size σ_min move the true energy, std_ε[E(x + σ_min ε)/kT − E(x)/kT] on the stage's samples? U_η
is read at σ_min as if it were E/kT, but denoising score matching makes it −log p_{σ_min}, the
density smoothed by that noise, and log p_{σ_min} − log p varies from sample to sample on the scale
of this jitter. When the jitter is several kT (LJ-13 at T = 1.5 with σ_min = 0.05: median 4.1 kT over
64 buffer samples, 8 draws each; 0.39 kT at σ_min = 0.01 — measured, docs/pita.md),
U_η(·, σ_min) cannot match E/kT to the fraction of a nat the weights need however well it is trained:
pinning and score matching then pull U_η apart, and the residual has a floor; a smaller σ_min
narrows it (and asks the network for the stiffer, less smoothed energy).

``QualityGate`` turns this into a decision: ``passes(report)`` when the reweighting ESS fraction
and the correlation reach their thresholds. PITA trains a stage for its configured steps s, then,
while the gate fails, for s more at a time, up to ``max_factor`` × s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from boltzpath.diffusion.losses import noise_like
from boltzpath.errors import BadInput
from boltzpath.smc.weights import effective_sample_size


@dataclass
class QualityGate:
    """Thresholds and the training extension of the energy-model gate (see the module docstring)."""

    enabled: bool = True
    holdout_fraction: float = 0.1
    min_reweight_ess: float = 0.3
    min_corr: float = 0.9
    max_factor: int = 1  # train up to max_factor × the stage's steps, checking after each multiple
    action: str = "warn"  # warn | refuse: what a failed gate does after the cap
    sigmas: list[float] = field(default_factory=lambda: [0.1, 0.5, 2.0])
    # the generator check (PITA, after each stage's training): the model's own samples at T_k
    # (γ = 1, no weights) against its training energies; 0 samples: off
    model_check_n: int = 64
    # the σ_min check (PITA, after each stage's training): noise draws of size σ_min on this many
    # buffer samples, ``jitter_draws`` each (counted evaluations); 0 samples: off
    jitter_n: int = 64
    jitter_draws: int = 8
    max_jitter: float = 1.0  # above this median std of ΔE/kT (nats): WARNING in the run log
    min_in_range: float = 0.5  # below this share of samples within the buffer's energy range: WARNING
    # above this score–energy disagreement ‖s_θ + ∇U_η‖/‖s_θ‖ at any of ``sigmas`` in (σ_min, σ_data]:
    # WARNING (PITA's drift is half −∇U_η). Measured at σ = 0.1 nm on ALDP: 0.10 and 0.21 in runs with
    # sound samples, 0.37–0.51 in three whose next stage held 65–91 % cis amides; DW-4 `cpu` ≤ 0.17
    # (docs/pita.md, eleventh session)
    max_inconsistency: float = 0.3
    # what must pass before training stops (up to max_factor): "energy" — the held-out reweighting
    # ESS and correlation of U_η(·, σ_min); "generator" — the model check's in-range share (needs
    # model_check_n > 0). LJ-13 at T = 4 → 3: the generator check separated an undertrained stage-0
    # model (72 % in range; 37 % of its annealed particles overlapping) from one trained twice as long
    # (92 %; 4 %), where the energy figures could not (docs/pita.md, 2026-12-05 (day)).
    criteria: list[str] = field(default_factory=lambda: ["energy"])

    def validate(self) -> None:
        if not 0 < self.holdout_fraction < 0.5:
            raise BadInput(f"gate.holdout_fraction must be in (0, 0.5), got {self.holdout_fraction}")
        if not 0 <= self.min_reweight_ess <= 1 or not -1 <= self.min_corr <= 1:
            raise BadInput("gate.min_reweight_ess must be in [0, 1] and gate.min_corr in [-1, 1]")
        if self.max_factor < 1:
            raise BadInput(f"gate.max_factor must be >= 1 (1: report only), got {self.max_factor}")
        if self.action not in ("warn", "refuse"):
            raise BadInput(f"gate.action must be 'warn' or 'refuse', got {self.action!r}")
        if any(not s > 0 for s in self.sigmas):
            raise BadInput(f"gate.sigmas must be > 0, got {self.sigmas}")
        if self.jitter_n < 0 or self.jitter_draws < 2 or not self.max_jitter > 0:
            raise BadInput("gate.jitter_n must be >= 0, gate.jitter_draws >= 2 and gate.max_jitter > 0")
        if not self.max_inconsistency > 0:
            raise BadInput(f"gate.max_inconsistency must be > 0, got {self.max_inconsistency}")
        if self.model_check_n < 0 or not 0 <= self.min_in_range <= 1:
            raise BadInput("gate.model_check_n must be >= 0 and gate.min_in_range in [0, 1]")
        unknown = [c for c in self.criteria if c not in ("energy", "generator")]
        if unknown or not self.criteria:
            raise BadInput("gate.criteria must be a non-empty list of 'energy' and 'generator', "
                           f"got {self.criteria}")
        if "generator" in self.criteria and self.model_check_n < 1:
            raise BadInput("gate.criteria 'generator' needs the model check: gate.model_check_n >= 1")

    def passes(self, report: dict, model_check: dict | None = None) -> bool:
        """Whether every criterion in ``criteria`` passes: the energy report's reweighting ESS and
        correlation, and (``generator``) the model check's share of samples in the buffer's range."""
        return not self.failing(report, model_check)

    def failing(self, report: dict, model_check: dict | None = None) -> dict[str, str]:
        """The criteria that fail, each (``energy``/``generator``) with a short phrase for the run log
        (empty: the gate passes)."""
        out = {}
        if "energy" in self.criteria and not (report["reweight_ess_fraction"] >= self.min_reweight_ess
                                              and report["corr"] >= self.min_corr):
            out["energy"] = (f"held-out reweighting ESS {report['reweight_ess_fraction']:.2f} "
                             f"(needs {self.min_reweight_ess}), corr {report['corr']:.2f} "
                             f"(needs {self.min_corr})")
        if "generator" in self.criteria:
            if model_check is None:
                raise ValueError("the generator criterion needs the model check's report")
            if not model_check["in_range_fraction"] >= self.min_in_range:
                out["generator"] = (f"{model_check['in_range_fraction']:.0%} of the model's own samples "
                                    f"in the buffer's energy range (needs {self.min_in_range:.0%})")
        return out


def split_holdout(n: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices) of a random split; at least one sample on each side."""
    perm = torch.randperm(n, generator=generator)
    k = min(max(1, int(round(fraction * n))), n - 1)
    return perm[k:], perm[:k]


@torch.no_grad()
def energy_model_quality(score_model, energy_model, x, energy, gamma: float, sigma_min: float,
                         generator: torch.Generator, sigmas=(0.1, 0.5, 2.0), temperature=None,
                         mask_above: float | None = 1000.0) -> dict:
    """The report of the module docstring for samples x (n, dim) with true E/kT ``energy`` (n,)
    (``temperature`` (n,): the labels a temperature-conditioned model is read at; samples with E/kT
    above ``mask_above`` are left out, as in the pinning loss)."""
    x = x.to(torch.float32)
    e = energy.to(torch.float64)
    # the samples pinning masks out (TrainConfig.pin_mask_above) are not what U_η is asked to match
    keep = e <= mask_above if mask_above is not None else torch.ones_like(e, dtype=torch.bool)
    x, e = x[keep], e[keep]
    temperature = None if temperature is None else temperature[keep].to(x.dtype)
    n = x.shape[0]
    if n < 2:
        return {"n": n, "corr": math.nan, "slope": math.nan, "residual_std": math.nan,
                "reweight_ess_fraction": 0.0, "score_consistency": {}}
    sig = torch.full((n,), float(sigma_min), device=x.device)
    u = energy_model.energy(x, sig, temperature).to(torch.float64)
    consistency = {}
    if score_model is not None:
        for s in sigmas:
            eps = energy_model.project(torch.randn(x.shape, generator=generator, device=x.device))
            xt = x + s * eps
            st = torch.full((n,), float(s), device=x.device)
            s_theta = score_model.score(xt, st, temperature)
            grad_u = energy_model.grad_x(xt, st, temperature)
            ratio = (s_theta + grad_u).norm(dim=-1) / s_theta.norm(dim=-1).clamp_min(1e-12)
            consistency[str(s)] = float(ratio.median())
    return {"n": n, **residual_report(u, e, gamma), "gamma": float(gamma), "score_consistency": consistency}


def residual_report(u: torch.Tensor, e: torch.Tensor, gamma: float | None) -> dict:
    """corr, slope, residual_std and reweight_ess_fraction (module docstring) of model energies ``u``
    against true energies ``e`` (both (n,), float64); the ESS is None without a ``gamma``."""
    resid = u - e
    ec = e - e.mean()
    return {"corr": float(torch.corrcoef(torch.stack([u, e]))[0, 1]),
            "slope": float((ec * (u - u.mean())).sum() / (ec * ec).sum().clamp_min(1e-300)),
            "residual_std": float((resid - resid.mean()).std()),
            "reweight_ess_fraction": (None if gamma is None
                                      else effective_sample_size(-gamma * resid) / len(resid))}


@torch.no_grad()
def sigma_min_jitter(target, x: torch.Tensor, sigma: float, draws: int, generator: torch.Generator) -> dict:
    """The σ_min check of the module docstring: for each row of x, the std over ``draws`` noise draws
    ε (projected like the target's samples) of E(x + σε)/kT − E(x)/kT, with ``target`` at the
    stage's temperature; reported as the median and 90th percentile over the rows. Costs
    len(x)·(draws + 1) counted evaluations."""
    x = x.to(torch.float32)
    n = x.shape[0]
    rows = x.repeat_interleave(draws, 0)
    e0 = target.energy(x).double()
    noised = rows + float(sigma) * noise_like(rows, generator, target.project)
    e = target.energy(noised).double().view(n, draws)
    std = (e - e0[:, None]).std(dim=1)
    # a row with a non-finite energy (an overlap) has a NaN or infinite std: read it as infinite jitter
    std = torch.where(torch.isfinite(std), std, torch.full_like(std, float("inf")))
    return {"sigma": float(sigma), "n": n, "draws": draws, "evaluations": n * (draws + 1),
            "median_std": float(std.median()), "q90_std": float(torch.quantile(std, 0.9))}
