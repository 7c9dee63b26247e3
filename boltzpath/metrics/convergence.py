"""Convergence diagnostics: rank-normalised split R-hat and bulk/tail ESS (ArviZ) per quantity.

MCMC samplers return chains interleaved (sample i is chain i % C at collected time i // C, with C
= ``info["chains"]`` or ``info["config"]["chains"]``), so the (C, draws) array of any scalar
quantity q is ``q[: draws·C].reshape(draws, C).T``. For each monitored quantity ArviZ computes

    R̂ (rank-normalised, split, folded: Vehtari et al. 2021) — ≈ 1 when the chains agree,
    ESS_bulk, ESS_tail — the number of independent draws the chains are worth.

Quantities: the energy E/kT, and either ‖x‖² and the first three coordinates (toys and custom
energies, named x[0], x[1], x[2] — for ManyWell the x₁, x₂ of well 1 and x₁ of well 2, the mode
indicators) or, for
particle systems, permutation/rotation-invariant ones (mean pair distance, radius of gyration).
A run is flagged when max R̂ > 1.01 or min ESS_bulk/ESS_tail < 400 (the thresholds of Vehtari et
al.), and the flag names what to raise.

For SMC/PITA (weighted populations, no chains) ``smc_warning`` reads the final ESS fraction of
each stage (and an ``energy_model_gate`` record when the run wrote one).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

RHAT_MAX = 1.01
ESS_MIN = 400.0
MIN_DRAWS = 4
SMC_ESS_MIN = 0.1


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def chains_of(info: dict[str, Any]) -> int | None:
    """The number of interleaved chains a sampler recorded, or None (not an MCMC layout)."""
    chains = info.get("chains")
    if chains is None and isinstance(info.get("config"), dict):
        chains = info["config"].get("chains")
    return int(chains) if isinstance(chains, int | float) and chains >= 1 else None


def split_chains(values: np.ndarray, chains: int) -> np.ndarray:
    """(n,) chain-interleaved values → (chains, draws), dropping an incomplete last row."""
    draws = values.shape[0] // chains
    return values[: draws * chains].reshape(draws, chains).T


def _quantities(x: torch.Tensor, energy: torch.Tensor, target=None) -> dict[str, np.ndarray]:
    q = {"energy": energy.detach().double().numpy()}
    x = x.detach().double()
    n_particles = getattr(target, "n_particles", None)
    if n_particles:
        p = x.reshape(x.shape[0], n_particles, -1)
        i, j = torch.triu_indices(n_particles, n_particles, offset=1)
        q["mean_pair_distance"] = (p[:, i] - p[:, j]).norm(dim=-1).mean(1).numpy()
        q["radius_of_gyration"] = (p - p.mean(1, keepdim=True)).pow(2).sum(-1).mean(1).sqrt().numpy()
    else:
        q["squared_norm"] = x.pow(2).sum(1).numpy()
        for k in range(min(3, x.shape[1])):
            q[f"x[{k}]"] = x[:, k].numpy()
    return q


def rhat_ess(draws: np.ndarray) -> dict[str, float]:
    """R̂ (rank), ESS_bulk, ESS_tail of a (chains, draws) array."""
    az = _arviz()
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"rhat": float(az.rhat(draws, method="rank")),
                "ess_bulk": float(az.ess(draws, method="bulk")),
                "ess_tail": float(az.ess(draws, method="tail"))}


def mcmc_diagnostics(x: torch.Tensor, energy: torch.Tensor, chains: int, target=None) -> dict[str, Any]:
    """R̂ and ESS of every monitored quantity, a summary, and ``warning`` (None when converged)."""
    draws = x.shape[0] // chains
    out: dict[str, Any] = {"chains": chains, "draws_per_chain": draws, "rhat_max_allowed": RHAT_MAX,
                           "ess_min_required": ESS_MIN, "method": "arviz rank-normalised split R-hat"}
    if chains < 2 or draws < MIN_DRAWS:
        out["note"] = (f"not enough chains/draws for R-hat ({chains} chains x {draws} draws; need >= 2 "
                       f"chains and >= {MIN_DRAWS} draws each)")
        out["warning"] = (f"convergence not checked: {chains} chains x {draws} draws per chain is too few "
                          f"for R-hat; raise the number of samples to >= {MIN_DRAWS * max(chains, 2)} "
                          "or lower sampler.chains")
        return out
    per = {}
    for name, values in _quantities(x, energy, target).items():
        if not np.isfinite(values).all():
            per[name] = {"rhat": float("nan"), "ess_bulk": float("nan"), "ess_tail": float("nan")}
            continue
        per[name] = rhat_ess(split_chains(values, chains))
    out["quantities"] = per
    finite = [v for v in per.values() if np.isfinite(v["rhat"])]
    out["rhat_max"] = max((v["rhat"] for v in finite), default=float("nan"))
    out["ess_bulk_min"] = min((v["ess_bulk"] for v in finite), default=float("nan"))
    out["ess_tail_min"] = min((v["ess_tail"] for v in finite), default=float("nan"))
    out["warning"] = _mcmc_warning(out, per)
    return out


def _mcmc_warning(d: dict, per: dict) -> str | None:
    if not per or all(not np.isfinite(v["rhat"]) for v in per.values()):
        return "convergence unknown: non-finite samples"
    worst_r = max(per, key=lambda k: per[k]["rhat"] if np.isfinite(per[k]["rhat"]) else -1)
    worst_e = min(per, key=lambda k: min(per[k]["ess_bulk"], per[k]["ess_tail"])
                  if np.isfinite(per[k]["ess_bulk"]) else np.inf)
    problems = []
    if d["rhat_max"] > RHAT_MAX:
        problems.append(f"R-hat {d['rhat_max']:.3f} > {RHAT_MAX} on {worst_r}")
    ess = min(d["ess_bulk_min"], d["ess_tail_min"])
    if ess < ESS_MIN:
        problems.append(f"ESS {ess:.0f} < {ESS_MIN:.0f} on {worst_e}")
    if not problems:
        return None
    return ("not converged: " + ", ".join(problems) + " — the chains disagree or are too short; raise "
            "sampler.burn_in and the number of samples (or sampler.thin)")


# what else to try when a sampler's chains have not converged (appended to the warning by method)
NEXT_STEP = {
    "pt": "or more replicas and a hotter top (sampler.n_replicas, sampler.t_max)",
    "digs": "or more Gibbs sweeps between draws (sampler.thin)",
}
NEXT_STEP_DEFAULT = "or use pt/digs for multimodal targets"


def next_step(method: str | None) -> str:
    """The last clause of a non-convergence warning for ``method`` (pt/digs are the multimodal
    samplers, so they are not suggested to themselves)."""
    return NEXT_STEP.get(str(method), NEXT_STEP_DEFAULT)


def samples_diagnostics(samples, target=None) -> dict[str, Any] | None:
    """``mcmc_diagnostics`` for a ``Samples`` record from an MCMC sampler, else None."""
    chains = chains_of(samples.info)
    if chains is None or samples.log_weights is not None:
        return None
    return mcmc_diagnostics(samples.x, samples.energy, chains, target)


def _gate_failure(gate: Any) -> str | None:
    """A short reason when an ``energy_model_gate`` record (PITA) says the energy model failed."""
    if gate is False:
        return "see metrics.json"
    if not isinstance(gate, dict) or gate.get("passed") is not False:
        return None
    detail = [f"{k} {gate[k]:.2f}" for k in ("reweight_ess_fraction", "corr")
              if isinstance(gate.get(k), float)]
    return ", ".join(detail) or str(gate.get("reason", "see metrics.json"))


def smc_warning(metrics: dict[str, Any]) -> str | None:
    """A one-line warning for a PITA/SMC run whose weights collapsed (or whose energy model failed
    its gate), from the metrics the run wrote; None when nothing looks wrong."""
    collapsed, gates, repaired = [], [], []
    # rung: reweight puts no U_eta into the samples, so its gate says nothing about them
    read_gate = _gate_failure if metrics.get("rung") != "reweight" else (lambda gate: None)
    inserts = []  # the temperatures the previous stage's buffer suggests before a collapsed rung
    previous: dict = {}
    for stage in metrics.get("stages", []):
        where = f"stage {stage.get('stage')} (T={stage.get('temperature')})"
        rep = stage.get("repaired_fraction")
        if isinstance(rep, int | float) and rep > 0:  # the bridge repairs only when < 10 % are below the flag
            repaired.append(f"{where} {100 * rep:.0f} %")
        frac = stage.get("final_ess_fraction")
        if isinstance(frac, int | float) and frac < SMC_ESS_MIN:
            collapsed.append(f"{where} final ESS {100 * frac:.1f} % < {100 * SMC_ESS_MIN:.0f} %")
            inserts += (previous.get("next_rung_overlap") or {}).get("insert") or []
        previous = stage
        gate = read_gate(stage.get("energy_model_gate"))
        if gate:
            gates.append(f"{where} ({gate})")
    gate = read_gate(metrics.get("energy_model_gate"))
    if gate:
        gates.append(f"the run ({gate})")
    if repaired:  # the anneal itself failed there: its particles overlapped and were replaced by descent
        return ("annealed particles overlapped and were repaired by descent at " + "; ".join(repaired)
                + " — those stages' samples come from the repair, not from the anneal (run.log says more); "
                "raise train.steps, add temperatures to the ladder or change the seed")
    if collapsed:
        gate_part = f"; energy model gate failed at {'; '.join(gates)}" if gates else ""
        where_to = (" (the buffers' energies suggest T = " + ", ".join(f"{t:.4g}" for t in inserts) + ")"
                    if inserts else "")
        return ("weights collapsed: " + "; ".join(collapsed) + gate_part + " — the samples are unreliable; "
                "raise train.steps / n_particles / anneal.n_steps or add temperatures to the ladder"
                + where_to)
    if gates:  # the weights did not collapse, but U_eta is too poor for gamma by the held-out check
        return ("energy model below its quality gate at " + "; ".join(gates) + " — weights built on "
                "U_eta alone may be biased (the true_energy and bridge tails correct the final weights on "
                "the true energy); check the final metrics against a reference or raise train.steps")
    return None
