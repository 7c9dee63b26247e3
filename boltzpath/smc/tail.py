"""The end of an annealing run: the final importance correction on the true energy (``AnnealConfig.tail``).

The FK weights of ``smc.anneal`` make the particles target exp(−γU_η(·, σ_min)) at t = 0 — the
*model's* tempered density. The quantity wanted is the true p_target(x) ∝ exp(−E(x)/kT_target) =
exp(−γE(x)/kT_prev). Since the target energy is evaluated at t = 0 anyway (the next stage's buffer
needs it), one importance step fixes the model's remaining error at σ_min exactly:

    log w ← log w − E(x₀)/kT_target + γ U_η(x₀, σ_min)            (``tail = "true_energy"``)

It leaves an exact model untouched (the two terms then differ by a constant) and removes any error
δ(x) of U_η(·, σ_min) from the result (tests/test_smc_tail.py). The released PITA code instead
evaluates U_η at σ(t_stop), after increments stopped at t_stop (``tail = "released"``), and clamps
the combined log-weight at its 90 % quantile — a variance-reduction heuristic that is not exact:
the unweighted tail below t_stop is not corrected for, and the clamp biases. With the perturbed model
of tests/test_smc_tail.py (γ = 2, true P(x > 0) = 0.232) 8 replicas gave 0.10 ± 0.04 (mean ± s.e.)
for ``released``, 0.006 for plain ``fk`` weights and 0.25 ± 0.03 for ``true_energy``.
"""

from __future__ import annotations

import torch

from boltzpath.smc.annealing import AnnealConfig

RELEASED_CLAMP_QUANTILE = 0.9


def final_log_weights(
    model, x: torch.Tensor, log_w: torch.Tensor, target_energy: torch.Tensor, cfg: AnnealConfig
) -> torch.Tensor:
    """The log-weights (float64) used for the final resampling under ``cfg.tail``.

    ``target_energy`` is E(x)/kT_target (float64, (n,)) of the particles x at t = 0.
    """
    log_w = log_w.to(torch.float64)
    if not cfg.reweights_on_true_energy:
        return log_w
    t_eval = 0.0 if cfg.tail == "true_energy" else float(cfg.stop_resampling_t)
    u = model.energy(x, t_eval).to(torch.float64)
    out = log_w - target_energy.to(torch.float64) + cfg.gamma * u
    out = torch.where(torch.isfinite(out), out, torch.full_like(out, -torch.inf))
    if cfg.tail == "released":
        finite = out[torch.isfinite(out)]
        if finite.numel():
            out = torch.minimum(out, torch.quantile(finite, RELEASED_CLAMP_QUANTILE))
    return out
