"""The PITA ladder (SPEC §6): train at T₀, then anneal model k−1 to T_k, relax, fine-tune, repeat.

Stage 0: sample T₀ with a baseline (``boltzpath.mcmc.registry.run_method``), evaluate true energies
and forces (the training buffer), train score + energy models. Stage k ≥ 1 (γ = T_{k−1}/T_k):
FK-SMC annealing of the stage-(k−1) EMA model (``smc.anneal``, ⌈buffer_size/n_particles⌉
populations), a final systematic resampling by the FK weights, the true energies and forces at
T_k of the resampled particles, a MALA relaxation at T_k (``smc.relax``), and — except at the last
stage — fine-tuning from the previous weights on the new buffer.

Run folder (``boltzpath.io.runs.RunDir``, every file atomic)::

    config.yaml, run.log, samples.npz (final stage, ``boltzpath sample`` format), metrics.json,
    ladder.png, COMPLETE
    stage_k/  samples.npz, buffer.npz, metrics.json, model.pt (k < K), *.png, COMPLETE

Resume: a stage with COMPLETE is never redone; a stage with samples but no COMPLETE goes straight
to training, which resumes from ``model.pt`` (bit-for-bit, see ``diffusion.train``). Every stage
draws from its own generators seeded by (seed, stage, purpose), so a resumed run reproduces an
uninterrupted one. Stage 0 may instead read the user's T₀ samples (``stage0.data``, validated before
the folder exists; their cost is ``stage0.data_evaluations``, as the user states it). Peptide stages
report their chirality (``metrics/chirality.py``); with ``chirality_fix`` (the default) samples
whose chiral centres are all D are reflected to L (same energy) and mixed-chirality samples are
dropped, counted per stage (``_chirality_fix``): the stage-0 data before its buffer, annealed
particles before and after relaxation. ``stage0.method: md`` makes the T₀ data with OpenMM MD
(``molecules/md_chains.py``, counted in ``initial_data``). ``callback(event, info)`` reports
progress (events: ``sample``, ``train``, ``anneal``, ``relax``, ``stage``); algorithms never print.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from boltzpath.config import to_dict
from boltzpath.diffusion.buffer import TrainingBuffer, rigid_shape
from boltzpath.diffusion.quality import energy_model_quality, sigma_min_jitter, split_holdout
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import Models, build_models, load_models, train
from boltzpath.errors import BadInput
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import Samples, load_reference
from boltzpath.methods.pita_config import PITAConfig
from boltzpath.methods.pita_report import stage_metrics, write_ladder_plot
from boltzpath.metrics.bundled import bundled_reference
from boltzpath.metrics.convergence import SMC_ESS_MIN
from boltzpath.parallel.pita_parallel import PitaParallel
from boltzpath.smc.annealing import anneal
from boltzpath.smc.divergence_choice import choose_divergence
from boltzpath.smc.model import NetworkModel
from boltzpath.smc.resample import systematic
from boltzpath.smc.weights import effective_sample_size
from boltzpath.targets.registry import make_target

Callback = Callable[[str, dict], None]
_PURPOSE = {"sample": 1, "train": 2, "metrics": 3, "init": 4, "holdout": 5, "quality": 6, "divergence": 7,
            "previous-model": 8, "model-check": 9, "sigma-min": 10, "reweight-rung": 11}


def _generator(seed: int, stage: int, purpose: str, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + stage * 101 + _PURPOSE[purpose])


@dataclass
class PITAResult:
    samples: Samples
    metrics: dict
    run: RunDir


def _network_model(score, energy, target, schedule, temperature: float | None = None,
                   score_from: str = "net") -> NetworkModel:
    """The annealed model of a stage's networks. ``score_from="energy"`` (``anneal.score_from``) drops the
    score network: the drift is −∇U_η, so drift and weights come from one consistent model."""
    if score_from == "energy":
        score = None
    return NetworkModel.from_diffusion(score, energy, schedule, target.dim, target.project, temperature)


def load_stage0_data(path: str | Path, target) -> torch.Tensor:
    """T₀ samples from a user's file (``stage0.data``): .npy, or .npz with an ``x`` array (or a single
    array), of shape (n, dim) — or (n, atoms, 3) for molecules — in the target's unit (nm for
    peptides), finite. Anything else is a ``BadInput`` naming the file."""
    p = Path(path)
    n_atoms = getattr(target, "n_atoms", None) or getattr(target, "n_particles", None)
    want = f"(n, {target.dim})" + (f" or (n, {n_atoms}, {target.dim // n_atoms})" if n_atoms else "")
    try:
        with open(p, "rb"):
            pass
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as data:
                keys = list(data.files)
                if "x" not in keys and len(keys) != 1:
                    raise BadInput(f"stage-0 data {p}: an .npz needs an 'x' array (keys: {', '.join(keys)})")
                arr = data["x" if "x" in keys else keys[0]]
        elif p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            raise BadInput(f"stage-0 data {p}: must be a .npy or .npz file of shape {want}")
    except (OSError, ValueError, EOFError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"stage-0 data {p}: cannot read it ({why})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise BadInput(f"stage-0 data {p}: must hold a numeric array of shape {want}")
    if arr.ndim == 3 and n_atoms and arr.shape[1] * arr.shape[2] == target.dim and arr.shape[1] == n_atoms:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2 or arr.shape[1] != target.dim or arr.shape[0] < 2:
        raise BadInput(f"stage-0 data {p}: shape {arr.shape}, expected {want} with n >= 2 "
                       f"({target.name}, nm for peptides)")
    if not np.isfinite(arr).all():
        raise BadInput(f"stage-0 data {p}: contains non-finite values")
    return torch.as_tensor(arr, dtype=torch.float32)


def stage_reference(cfg: PITAConfig, k: int, target,
                    loaded: dict | None = None) -> tuple[np.ndarray, str] | None:
    """Stage k's reference as (samples, name): the file the config names for T_k
    (``cfg.reference_at``: ``stage_references``/``--references``, or ``reference`` for the last stage),
    else, for the last stage, the shipped one (``metrics.bundled``: lj13/dw4 T = 1, al3/aldp-pita
    300 K), else None. ``loaded`` caches files read by path."""
    path = cfg.reference_at(k)
    if path is not None:
        loaded = {} if loaded is None else loaded
        if path not in loaded:
            loaded[path] = load_reference(path, target.dim)
        return loaded[path], str(path)
    if k == len(cfg.temperatures) - 1:
        return bundled_reference(target, cfg.temperatures[-1])
    return None


def _stage0_data(cfg: PITAConfig, target_t0, gen, callback: Callback, par: PitaParallel):
    """(x, provenance) of stage 0: the user's file (``stage0.data``; its cost as the user states it,
    added by the caller) or the baseline sampler's chains (counted by the target)."""
    from boltzpath.mcmc.registry import run_method

    if cfg.stage0.data is not None:
        x = load_stage0_data(cfg.stage0.data, target_t0).to(gen.device)
        return x, {"stage0_method": "user supplied", "stage0_data": str(cfg.stage0.data),
                   "stage0_evaluations_source": "user supplied (--stage0-evaluations)"
                   if cfg.stage0.data_evaluations else "user supplied, not stated (counted as 0)"}
    method = cfg.stage0.method
    if method == "md":
        return _stage0_md(cfg, target_t0, gen, callback, par)
    try:  # parallel hook: par.stage0 is run_method with one process, sharded chains with several
        samples = par.stage0(method, target_t0, cfg.stage0.n_samples, gen, cfg.stage0.options,
                             callback=lambda i, n, info: callback("sample", {"step": i, "of": n, **info}))
    except ModuleNotFoundError:  # a baseline not installed in this tree: MALA always is
        method = "mala"
        samples = run_method("mala", target_t0, cfg.stage0.n_samples, gen, {})
    return samples.x, {"stage0_method": method, "stage0_info": samples.info}


def _stage0_md(cfg: PITAConfig, target_t0, gen, callback: Callback, par: PitaParallel):
    """``stage0.method: md``: OpenMM Langevin MD chains at T₀ (``molecules.md_chains``) on rank 0 (not
    sharded), the positions sent to every rank; their force evaluations (not the target's: OpenMM's)
    are returned as ``md_evaluations`` for the caller to add to ``initial_data``."""
    from boltzpath.molecules.md_chains import md_chains
    from boltzpath.parallel.dist import broadcast_object, broadcast_tensor

    n = cfg.stage0.n_samples
    x, info = np.zeros((n, target_t0.dim), np.float32), None
    if par.is_main:
        x, info = md_chains(target_t0, n, gen.initial_seed() % 100_000, cfg.stage0.options,
                            callback=lambda i, m, inf: callback("sample", {"step": i, "of": m, **inf}))
    info = broadcast_object(info, par.ctx)
    x = broadcast_tensor(torch.as_tensor(x, device=gen.device), par.ctx)
    return x, {"stage0_method": "md", "stage0_info": info, "md_evaluations": info["energy_evaluations"]}


def _populations(cfg, k, model, schedule, acfg, gen, callback: Callback, par: PitaParallel, target_at,
                 n_total: int | None = None):
    """The stage's ⌈n_total / n_particles⌉ populations (n_total: ``buffer_size`` unless given) of
    ``model`` under ``acfg``, each annealed, tail-corrected on ``target_at`` and resampled (parallel
    hook: with several processes one sharded population and a resampling every rank agrees on) →
    [(result, final log-weights, indices, x)]."""
    return [par.anneal_population(
                model, cfg.n_particles, schedule, acfg, gen, target_at.project,
                callback=lambda i, n, info, b=b: callback("anneal", {"stage": k, "population": b,
                                                                    "step": i, "of": n, **info}),
                target=target_at)
            for b in range(math.ceil((n_total or cfg.buffer_size) / cfg.n_particles))]


def reweight_log_weights(energy_prev: torch.Tensor, gamma: float) -> torch.Tensor:
    """Log-weights that take samples of exp(−E/kT_{k−1}) to exp(−E/kT_k), γ = T_{k−1}/T_k, from their
    E/kT_{k−1}: −(γ − 1)·E/kT_{k−1} (float64; normalisation left to the resampler)."""
    return -(float(gamma) - 1.0) * energy_prev.double()


def ladder_overlap(energy: torch.Tensor, t_from: float, t_to: float, ess_goal: float,
                   max_insert: int = 8) -> dict:
    """How well samples of exp(−E/kT_from) with E/kT_from = ``energy`` cover exp(−E/kT_to): the ESS
    fraction of the energy-only weights −(T_from/T_to − 1)·E/kT_from (a reweight rung's weights
    without strata, and the overlap every kind of rung needs), and the fewest temperatures to insert,
    equally spaced in 1/T, for the first inserted rung's ESS fraction to reach ``ess_goal`` (at most
    ``max_insert``; the later ones are assumed alike, which holds where the heat capacity is flat).
    Costs no evaluation: the buffer's own energies. Returns {"ess_fraction", "insert"} where "insert"
    lists the suggested temperatures (empty when the rung already reaches ``ess_goal``)."""
    e = energy.detach().double().reshape(-1)
    e = e[torch.isfinite(e)]
    if e.numel() < 2:
        return {"ess_fraction": None, "insert": []}
    slope = float(t_from) / float(t_to) - 1.0  # γ − 1 of the whole rung; λ ∈ (0, 1] goes along 1/T

    def ess(lam: float) -> float:  # the reweight rung's own weights, for a rung of γ = 1 + λ·slope
        return float(effective_sample_size(reweight_log_weights(e, 1.0 + lam * slope))) / e.numel()

    out = {"ess_fraction": ess(1.0), "insert": []}
    if out["ess_fraction"] >= ess_goal:
        return out
    b_from, b_to = 1.0 / float(t_from), 1.0 / float(t_to)
    for m in range(1, max_insert + 1):
        if ess(1.0 / (m + 1)) >= ess_goal or m == max_insert:
            out["insert"] = [1.0 / (b_from + j * (b_to - b_from) / (m + 1)) for j in range(1, m + 1)]
            break
    return out


def strata_log_weights(labels: np.ndarray, reference_labels: np.ndarray) -> tuple[torch.Tensor, dict]:
    """Log-weights log(f_ref(b)/f(b)) that give samples with stratum labels ``labels`` the stratum
    fractions of ``reference_labels`` (a sample whose stratum the reference lacks: −inf), and a
    summary: both sets' fractions and ``missing_mass``, the reference's share in strata that no
    sample occupies (no weighting can restore it; the weighted fractions are then renormalised)."""
    labels, reference_labels = np.asarray(labels), np.asarray(reference_labels)
    strata, counts = np.unique(labels, return_counts=True)
    ref_strata, ref_counts = np.unique(reference_labels, return_counts=True)
    f_ref = dict(zip(ref_strata.tolist(), (ref_counts / ref_counts.sum()).tolist(), strict=True))
    f = dict(zip(strata.tolist(), (counts / counts.sum()).tolist(), strict=True))
    log_w = torch.full((len(labels),), -math.inf, dtype=torch.float64)
    for b, fb in f.items():
        if f_ref.get(b, 0.0) > 0:
            log_w[torch.as_tensor(labels == b)] = math.log(f_ref[b] / fb)
    summary = {"samples": {str(b): v for b, v in f.items()},
               "reference": {str(b): v for b, v in f_ref.items()},
               "missing_mass": float(sum(v for b, v in f_ref.items() if b not in f))}
    return log_w, summary


def path_stratum_log_correction(labels: np.ndarray, log_w: torch.Tensor,
                                log_w_path: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Per-sample log-corrections that give each stratum the total weight of the path estimator
    (``rung_basin_weights: path``) while the samples inside it keep their instantaneous weights.

    ``log_w``: each sample's log-weight from its final state, −(γ − 1)·E_i/kT_{k−1}; ``log_w_path``:
    log w̄_i, w̄_i = mean_t e^{−(γ − 1)·E_i(t)/kT_{k−1}} over the frozen MALA steps of the same chain.
    For exact (frozen-step) chains started in equilibrium both Σ_{i∈b} w_i and Σ_{i∈b} w̄_i estimate
    n_b·⟨e^{−(γ−1)E/kT_{k−1}}⟩_b without bias; w̄_i averages the fast modes' energy fluctuations (bond
    and angle vibrations, most of E's variance inside a basin) over the path, so the strata's odds
    to T_k — what a rung carries to every later stage — are less noisy. The correction is the
    constant log(Σ_{i∈b} w̄_i / Σ_{i∈b} w_i) on every sample of stratum b. Returns it and a summary
    ({stratum: correction})."""
    labels = np.asarray(labels)
    log_w, log_w_path = log_w.double().cpu(), log_w_path.double().cpu()
    corr = torch.zeros_like(log_w)
    summary = {}
    for b in np.unique(labels).tolist():
        mask = torch.as_tensor(labels == b)
        c = float(torch.logsumexp(log_w_path[mask], 0) - torch.logsumexp(log_w[mask], 0))
        corr[mask] = c
        summary[str(b)] = c
    return corr, summary


def stratum_log_mean_weights(labels: np.ndarray, log_w: torch.Tensor) -> dict:
    """Per stratum b: its sample count, log of the mean weight ⟨e^{log_w}⟩_b (what a rung's odds to T_k
    multiply the stratum's share by) and that log-mean's standard error by the delta method,
    sd(w)/(√n_b·mean(w)) over the stratum's samples (independent model draws, each relaxed on its own
    chain; with ``path`` weights each sample's w̄_i). Rungs' errors add in quadrature down the ladder."""
    labels, log_w = np.asarray(labels), log_w.double().cpu()
    out = {}
    for b in np.unique(labels).tolist():
        lw = log_w[torch.as_tensor(labels == b)]
        lw = lw[torch.isfinite(lw)]
        n = int(lw.numel())
        if n == 0:
            continue
        w = torch.exp(lw - lw.max())
        se = float(w.std() / (w.mean() * math.sqrt(n))) if n > 1 else float("inf")
        out[str(b)] = {"n": n, "log_mean_weight": float(torch.logsumexp(lw, 0) - math.log(n)), "se": se}
    return out


def stage0_strata_errors(labels: np.ndarray, chains: int) -> dict | None:
    """Standard errors of the stage-0 buffer's stratum log-shares against its most populated stratum,
    ln(f_b / f_ref), between ``chains`` independent MD chains (``molecules.md_chains`` keeps frames
    round-major: frame j of every chain, then j + 1): the delta method on each chain's own
    f_b,i/f_b − f_ref,i/f_ref, so the strata's anticorrelation is kept and the frames' autocorrelation
    (a hot peptide keeps its basin for picoseconds) is respected. Every later stage inherits this error
    through ``rung_strata: backbone``. None with fewer than two full rounds or two chains."""
    labels = np.asarray(labels)
    rounds = len(labels) // chains
    if rounds < 2 or chains < 2:
        return None
    lab = labels[: rounds * chains].reshape(rounds, chains)
    strata, counts = np.unique(lab, return_counts=True)
    ref = strata[np.argmax(counts)]
    f_ref_i = (lab == ref).mean(0)
    se = {}
    for b in strata.tolist():
        if b == ref:
            continue
        f_i = (lab == b).mean(0)
        lin = f_i / f_i.mean() - f_ref_i / f_ref_i.mean()
        se[str(b)] = float(lin.std(ddof=1) / math.sqrt(chains))
    return {"reference_stratum": str(ref), "chains": int(chains), "se": se}


def ladder_odds_errors(stages: list[dict]) -> dict | None:
    """The standard error left in each stratum's log share against the most populated one,
    ln(share_b / share_ref), at the last temperature: the rungs' independent importance-weight errors
    (``strata_odds``) added in quadrature (``se``), and with the stage-0 MD buffer's between-chain error
    (``stage0_strata_se``, when recorded with the same reference stratum) in ``total_se``. Not counted:
    the relaxations' own basin changes. None without strata rungs; a stratum missing from some rung is
    left out."""
    rungs = [m["strata_odds"] for m in stages if m.get("strata_odds")]
    if not rungs:
        return None
    ref = max(rungs[-1], key=lambda b: rungs[-1][b]["n"])
    se = {}
    for b in rungs[-1]:
        if b != ref and all(b in r and ref in r for r in rungs):
            se[b] = math.sqrt(sum(r[b]["se"] ** 2 + r[ref]["se"] ** 2 for r in rungs))
    out = {"reference_stratum": ref, "rungs": len(rungs), "se": se}
    s0 = stages[0].get("stage0_strata_se") if stages else None
    if s0 and s0.get("reference_stratum") == ref:
        out["stage0_se"] = s0se = {b: s0["se"][b] for b in se if b in s0["se"]}
        out["total_se"] = {b: math.hypot(v, s0se[b]) for b, v in se.items() if b in s0se}
    return out


def _odds_error_line(odds_se: dict) -> str:
    n = odds_se["rungs"]
    s0 = odds_se.get("stage0_se", {})
    parts = ", ".join(
        f"{b}: ± {odds_se['total_se'][b]:.3f} (stage-0 data ± {s0[b]:.3f}, rungs ± {v:.3f})" if b in s0
        else f"{b}: ± {v:.3f} (rungs; the stage-0 data's error not recorded)"
        for b, v in sorted(odds_se["se"].items())) or "nothing (one stratum)"
    return (f"basin odds: after the stage-0 data and {n} rung{'s' if n != 1 else ''}, ln(share / share of "
            f"stratum {odds_se['reference_stratum']}) is uncertain by {parts} (standard errors)")


def backbone_strata_log_weights(x: torch.Tensor, reference_x: torch.Tensor,
                                topology) -> tuple[torch.Tensor, dict]:
    """``strata_log_weights`` over the backbone-basin strata (``metrics.peptides.backbone_strata``) of
    configurations ``x`` against ``reference_x`` (``rung_strata: backbone``)."""
    from boltzpath.metrics.peptides import backbone_strata

    return strata_log_weights(backbone_strata(x.detach().cpu().numpy(), topology),
                              backbone_strata(reference_x.detach().cpu().numpy(), topology))


def _reweight_rung(cfg, k, model, target, schedule, gen, callback: Callback, par: PitaParallel,
                   previous_buffer_x: torch.Tensor | None = None):
    """``rung: reweight``: the stage-(k−1) model sampled at its own temperature T_{k−1} (γ = 1, no
    weights: the gate's model check anneal), relaxed there with ``cfg.relax``, then one systematic
    resampling to T_k on the true energy, log w = −(γ_k − 1)·E/kT_{k−1} (the relaxation's energies: no
    extra evaluation); with ``cfg.rung_samples`` the model draws that many samples, all relaxed and
    weighted, and the resampling draws ``buffer_size`` of them (the strata's odds from all).
    ``_run_stage`` relaxes the result at T_k as for an annealed rung. No FK weight
    and no U_η enter the samples. With ``cfg.rung_strata`` "backbone" the log-weights also carry
    ``strata_log_weights`` of the relaxed samples' backbone basins against ``previous_buffer_x`` (the
    stage-(k−1) buffer): the model's basin fractions are replaced by its training data's; with
    ``cfg.rung_basin_weights`` "path" each stratum's total weight comes from the T_{k−1} relaxation's
    frozen MALA path (``path_stratum_log_correction``). Returns
    (x, summary); the T_{k−1} relaxation's evaluations are ``summary["relaxation_before_evaluations"]``."""
    t_prev = cfg.temperatures[k - 1]
    target_prev = target.at_temperature(t_prev)
    acfg = model_check_anneal(cfg.anneal_for(k))
    n_pool = cfg.rung_samples or cfg.buffer_size
    pops = _populations(cfg, k, model, schedule, acfg, gen, callback, par, target_prev, n_pool)
    x = torch.cat([x_eq.detach() for *_, x_eq in pops])[:n_pool]
    c0 = par.count(target.counter)
    path = cfg.rung_basin_weights == "path"
    relax_fn = par.relax_path if path else par.relax
    out = relax_fn(target_prev, x, gen, cfg.relax, callback=lambda i, n, info: callback(
        "relax", {"stage": k, "step": i, "of": n, "at": t_prev, **info}))
    rx, e_prev, _, rinfo = out[:4]
    before = par.count(target.counter) - c0
    log_w = reweight_log_weights(e_prev.detach().cpu(), cfg.gamma(k))
    strata, path_summary = None, None
    if cfg.rung_strata == "backbone":
        from boltzpath.metrics.peptides import backbone_strata

        labels = backbone_strata(rx.detach().cpu().numpy(), target.topology)
        log_s, strata = strata_log_weights(
            labels, backbone_strata(previous_buffer_x.detach().cpu().numpy(), target.topology))
        if path:
            frozen = out[4].detach().double().cpu()  # (frozen steps, n) E/kT_{k−1}
            log_w_path = torch.logsumexp(-(cfg.gamma(k) - 1.0) * frozen, 0) - math.log(frozen.shape[0])
            log_c, per = path_stratum_log_correction(labels, log_w, log_w_path)
            log_w = log_w + log_c
            path_summary = {"frozen_steps": int(frozen.shape[0]), "log_correction": per}
        odds = stratum_log_mean_weights(labels, log_w_path if path else log_w)
        log_w = log_w + log_s
        if not torch.isfinite(log_w).any():
            raise BadInput(f"stage {k}: none of the model's samples lies in a backbone basin of the "
                           "previous stage's buffer (rung_strata=backbone); raise finetune.steps")
    # the same on every rank; buffer_size of the n_pool relaxed samples
    idx = systematic(_generator(cfg.seed, k, "reweight-rung"), log_w, cfg.buffer_size)
    ess = effective_sample_size(log_w)
    summary = {"rung": "reweight", "gamma": cfg.gamma(k), "tail": None, "relaxation_before": rinfo,
               "relaxation_before_evaluations": before, "rung_samples": int(x.shape[0]),
               "final_ess_fraction": float(ess) / x.shape[0],
               "distinct_after_final_resampling": int(torch.unique(idx).numel())}
    if strata is not None:
        summary["strata"] = strata
        summary["strata_odds"] = odds  # the rung's odds per stratum with standard errors
    if path_summary is not None:
        summary["path_basin_weights"] = path_summary
    return rx.detach()[idx.to(rx.device)], summary


def _anneal_stage(cfg, k, models_path, target, target_k, schedule, gen, callback: Callback,
                  par: PitaParallel):
    """Anneal the stage-(k−1) model to T_k; returns resampled particles, diagnostics and the energy
    model it annealed (read again by ``_previous_model_here``).

    Each population ends with the tail correction of ``cfg.anneal.tail`` (``smc.tail``; for
    ``true_energy`` and ``released`` the true E/kT_k of every particle is evaluated, counted by the
    target as ``final_reweighting``) and one systematic resampling to equal weights.
    """
    score, energy = load_models(models_path, target, device=par.device)
    read_at = cfg.temperatures[k - 1] if cfg.train_on_all_buffers else None  # conditioned model: at T_{k−1}
    acfg = cfg.anneal_for(k)  # anneal with this stage's anneal_stages options merged over it
    model = _network_model(score, energy, target, schedule, read_at, acfg.score_from)
    if cfg.rung == "reweight":
        prev_x = (TrainingBuffer.load(Path(models_path).parent / "buffer.npz").x
                  if cfg.rung_strata != "none" else None)
        return (*_reweight_rung(cfg, k, model, target, schedule, gen, callback, par, prev_x), energy)
    if acfg.reweights_on_true_energy:  # overshoot: anneal below T_k, the true-energy tail returns to it
        acfg.gamma = cfg.gamma(k) * acfg.overshoot
    choice = None
    if acfg.divergence == "auto":  # probes chosen by their measured variance on noised buffer data
        prev = TrainingBuffer.load(Path(models_path).parent / "buffer.npz").x[:128].to(par.device)
        acfg.divergence, acfg.n_probes, choice = choose_divergence(
            model, prev, schedule, acfg.n_steps, acfg.gamma, acfg.weights_stop_t,
            _generator(cfg.seed, k, "divergence", par.device), acfg.divergence_budget,
            exact_below_t=acfg.exact_below_t)
    pops = _populations(cfg, k, model, schedule, acfg, gen, callback, par, target_k)
    logs = [{"final_ess": res.ess, "log_z": res.log_z, **res.info.summary(cfg.n_particles),
             "ess_after_tail_correction": effective_sample_size(lw),
             "distinct_after_final_resampling": int(torch.unique(idx).numel()),
             "ess_per_step": res.info.ess, "resampled_steps": res.info.resampled,
             **({"bridge": res.info.tail} if res.info.tail else {})} for res, lw, idx, _ in pops]
    x = torch.cat([x_eq.detach() for *_, x_eq in pops])[: cfg.buffer_size]
    summary = {"gamma": acfg.gamma, "overshoot": acfg.gamma / cfg.gamma(k), "tail": acfg.tail,
               "divergence_choice": choice, "populations": logs,
               "final_ess_fraction": float(np.mean([p["ess_after_tail_correction"] for p in logs]))
               / cfg.n_particles,
               # bridge tail: annealed particles above the high-energy flag that had to be moved below
               # it by steepest descent before the bridge (its approximate fallback; 0 when it ran as is)
               "repaired_fraction": sum(p.get("bridge", {}).get("repaired_before_bridge", 0) for p in logs)
               / (cfg.n_particles * len(logs))}
    if any("bridge" in p for p in logs):  # annealed particles above the flag, left out or repaired
        summary["overlap_fraction"] = (sum(p["bridge"]["excluded_high_energy"] for p in logs)
                                       / (cfg.n_particles * len(logs)))
    return x, summary, energy


def _run_stage(cfg, k, run, target, schedule, references: dict, reference_names: dict,
               callback: Callback, par: PitaParallel) -> tuple[Samples, dict]:
    """Produce (or reload) stage k's samples/buffer/metrics; train its model unless it is the last."""
    sdir = run.subdir(f"stage_{k}")
    temp = cfg.temperatures[k]
    target_k = target.at_temperature(temp)
    last = k == len(cfg.temperatures) - 1
    if sdir.file("samples.npz").is_file() and sdir.file("buffer.npz").is_file():
        samples, metrics = sdir.read_samples(), sdir.read_metrics()
        buffer = TrainingBuffer.load(sdir.file("buffer.npz")).to(par.device)
    else:
        gen, t0, counter = _generator(cfg.seed, k, "sample", par.device), time.perf_counter(), target.counter
        par.reset_streams()
        evals: dict[str, int] = {}
        c = par.count(counter)  # parallel hook: counts are sums over processes (collective)
        chir: list[dict] = []  # the stage's chirality fixes (peptides)
        if k == 0:
            x, extra = _stage0_data(cfg, target_k, gen, callback, par)
            if cfg.rung_strata == "backbone" and extra.get("stage0_method") == "md":  # chains' own error
                from boltzpath.metrics.peptides import backbone_strata
                from boltzpath.molecules.md_chains import MDChainsConfig

                s0 = stage0_strata_errors(backbone_strata(x.detach().cpu().numpy(), target.topology),
                                          MDChainsConfig.from_options(cfg.stage0.options).chains)
                if s0 is not None:
                    extra["stage0_strata_se"] = s0
            now = par.count(counter)
            evals["initial_data"], c = now - c + (cfg.stage0.data_evaluations if cfg.stage0.data else 0), now
            evals["initial_data"] += extra.pop("md_evaluations", 0)  # OpenMM's, outside the target's counter
            if getattr(target, "is_peptide", False):
                x, _, _, extra["chirality_stage0_data"] = _chirality_fix(cfg, k, x, target)
                chir.append(extra["chirality_stage0_data"])
            buffer = par.buffer(target_k, x)  # parallel hook: evaluations split over processes
            evals["training_buffers"] = par.count(counter) - c
            energy = buffer.energy
        else:
            prev_model = run.path / f"stage_{k - 1}" / "model.pt"
            x, extra, annealed_energy = _anneal_stage(cfg, k, prev_model, target, target_k, schedule, gen,
                                                      callback, par)
            now = par.count(counter)
            before = extra.pop("relaxation_before_evaluations", 0)  # rung "reweight": the T_{k−1} relaxation
            if before:
                evals["relaxation_before"] = before
            evals["final_reweighting"], c = now - c - before, now  # 0 for tail "fk"
            if getattr(target, "is_peptide", False):
                x, _, _, extra["chirality_before_relaxation"] = _chirality_fix(cfg, k, x, target)
                chir.append(extra["chirality_before_relaxation"])
            rx, re, rg, rinfo = par.relax(target_k, x, gen, cfg.relax, callback=lambda i, n, info: callback(
                "relax", {"stage": k, "step": i, "of": n, **info}))
            # relax evaluates the resampled particles once (the buffer's true energies/forces), then
            # once per MALA step; attribute the first evaluation to the buffer
            evals["training_buffers"] = x.shape[0]
            evals["relaxation"] = par.count(counter) - c - x.shape[0]
            if getattr(target, "is_peptide", False):  # the repair/MALA can move a centre across
                rx, rg, keep, extra["chirality_after_relaxation"] = _chirality_fix(cfg, k, rx, target, rg)
                re = re[keep]
                chir.append(extra["chirality_after_relaxation"])
            x, energy = rx, re
            buffer = TrainingBuffer(x, re, -rg, None, *rigid_shape(target))
            extra["relaxation"] = rinfo
            still = _drift_line(k, temp, rinfo, cfg.relax)
            if still:
                run.log("WARNING " + still)
        samples = Samples(x=x.detach().float().cpu(), energy=energy.detach().double().cpu(),
                          info={"method": "pita", "stage": k, "temperature": temp,
                                "target": target_k.describe()})
        metrics = {"stage": k, "temperature": temp, "energy_evaluations": evals,
                   "sampling_wall_time_s": time.perf_counter() - t0, **extra}
        if getattr(target, "is_peptide", False) and par.is_main:
            # the samples that feed training, after the stage's fixes, and how many were fixed
            from boltzpath.metrics.chirality import chirality_report

            metrics["chirality"] = {**chirality_report(samples.x.numpy(), target.topology),
                                    "flipped_for_training": sum(r["flipped"] for r in chir),
                                    "dropped_mixed": sum(r["dropped_mixed"] for r in chir),
                                    "chirality_fix": cfg.chirality_fix}
            run.log(_chirality_line(k, chir, metrics["chirality"]))
        metrics["evaluation"] = {} if not par.is_main else stage_metrics(  # parallel hook: rank 0 only
            samples, target_k.to("cpu"), references.get(k), _generator(cfg.seed, k, "metrics"),
            cfg.eval_max_n, sdir, cfg.eval_noise_floors, cfg.stage_plots)
        if k in reference_names:
            metrics["evaluation"]["reference_file"] = reference_names[k]
        cis = metrics["evaluation"].get("metrics", {}).get("cis_peptide_fraction", {}).get("value")
        if cis and k == 0:  # the T₀ data's own isomers (MD at 1200 K crosses the amide barrier)
            run.log(f"stage 0: {cis:.1%} of the T={temp:g} samples have a cis peptide bond — the stage-0 "
                    "data's own isomers (hot MD crosses the amide barrier); the models learn them as part of "
                    "this temperature, and the ladder must shed them on the way down")
        elif cis:  # a cis amide is another isomer: ~80 kJ/mol from trans, no relaxation here crosses it
            run.log(f"WARNING stage {k}: {cis:.1%} of the samples at T={temp:g} have a cis peptide bond "
                    f"(another isomer than the target's all-trans molecule; the relaxation cannot undo it) — "
                    "the model's samples are not yet valid molecules: train longer or use a larger model")
        if metrics.get("repaired_fraction"):
            run.log(f"WARNING stage {k}: {metrics['repaired_fraction']:.1%} of the annealed particles "
                    "overlapped (E/kT above the high-energy flag) and were moved below it by steepest "
                    "descent before the bridge, so this stage's samples come from that repair, not from the "
                    f"anneal (they can come out too cold); the stage-{k - 1} model anneals badly at "
                    f"gamma={cfg.gamma(k):.3g}: train it longer, add a temperature between the two, or "
                    "change the seed")
        if k > 0:
            metrics["previous_model_here"] = _previous_model_here(cfg, k, annealed_energy, buffer, par)
            pm = metrics["previous_model_here"]
            if pm["slope"] < 0.9 and cfg.energy_model_in_weights:
                run.log(f"WARNING stage {k}: on this stage's samples the annealed model's energy differences "
                        f"are {pm['slope']:.2f}x the true ones — its tempered density is ≈ T = "
                        f"{pm['implied_temperature']:.3g}, not {temp:g} (FK weights alone target that; "
                        "the true_energy and bridge tails correct it on the true energy)")
        if not last:  # does this buffer overlap the next temperature? (its own energies, no evaluation)
            ov = ladder_overlap(buffer.energy, temp, cfg.temperatures[k + 1], 2 * SMC_ESS_MIN)
            metrics["next_rung_overlap"] = ov
            # a reweight rung's weights are these (× its strata): predicted 1.4 / 10.7 / 16.6 % where
            # the LJ-13 rungs 3→2, 1.5→1.2, 1.2→1 kept 1.8 / 7.9 / 22.6 % (docs/pita.md, twenty-fourth
            # session); an annealed rung carries the gap with its model, so there it is only recorded
            if cfg.rung == "reweight" and ov["ess_fraction"] is not None and ov["ess_fraction"] < SMC_ESS_MIN:
                temps = ", ".join(f"{t:.4g}" for t in ov["insert"])
                run.log(f"WARNING stage {k}: reweighted by energy alone, this stage's samples at T={temp:g} "
                        f"keep an ESS of {ov['ess_fraction']:.1%} at T={cfg.temperatures[k + 1]:g} "
                        f"(< {SMC_ESS_MIN:.0%}): the next rung's weights will collapse; inserting T = "
                        f"{temps} (equal steps in 1/T) would give each step ≈ {2 * SMC_ESS_MIN:.0%} or more")
        if par.is_main:
            buffer.save(sdir.file("buffer.npz"))
        sdir.write_metrics(metrics)
        sdir.write_samples(samples)
        run.log(f"stage {k} (T={temp}) sampled: {samples.n} samples, evaluations {evals}")
    if not last and not sdir.is_complete:
        t0 = time.perf_counter()
        prev = run.path / f"stage_{k - 1}" / "model.pt"
        if k == 0:
            with torch.random.fork_rng(devices=[]):  # network initialisation draws from the global RNG
                torch.manual_seed(int(_generator(cfg.seed, 0, "init").initial_seed()))
                score, energy = build_models(target, cfg.net, device=par.device)
        else:
            score, energy = load_models(prev, target, device=par.device)  # fine-tune from the previous EMA
        tcfg = cfg.train if k == 0 else cfg.finetune
        earlier = [_labelled(TrainingBuffer.load(run.path / f"stage_{j}" / "buffer.npz").to(par.device),
                             cfg.temperatures[j]) for j in range(k)] if cfg.train_on_all_buffers else []
        models = Models(score, energy, cfg.net)
        result, gate, n_train, check = _train_with_gate(cfg, k, models, buffer, earlier, tcfg, sdir, callback,
                                                        par, target, schedule)
        metrics["training"] = {"steps": result.step, "wall_time_s": time.perf_counter() - t0,
                               "n_train": n_train,
                               "final_loss": result.history[-1]["loss"] if result.history else None}
        metrics["energy_model_gate"] = gate
        if cfg.gate.model_check_n and par.is_main:  # can the model make its own training data?
            metrics["model_check"] = check or _model_check(cfg, k, result.ema, target, buffer, schedule, par)
            # the gate's generator checks ran on every process, one per training segment
            gated = [c["model_check"]["n"] for c in (gate or {}).get("checks", []) if "model_check" in c]
            metrics["energy_evaluations"]["model_check"] = (sum(gated) * par.ctx.world_size if gated
                                                            else metrics["model_check"]["n"])
            if metrics["model_check"]["in_range_fraction"] < cfg.gate.min_in_range:
                if cfg.rung == "reweight":  # by design: the next rung relaxes these samples before weighting
                    run.log(f"stage {k}: model check: {_model_check_line(metrics['model_check'])} (rung: "
                            f"reweight relaxes the model's samples at T={temp:g} before it weights them)")
                else:
                    run.log("WARNING " + _model_check_warning(k, temp, metrics["model_check"]))
        if cfg.gate.jitter_n and par.is_main:  # can U_η(·, σ_min) be E/kT at all? (quality.sigma_min_jitter)
            rows = buffer.x[: cfg.gate.jitter_n]
            jit = sigma_min_jitter(target_k, rows, cfg.schedule.sigma_min, cfg.gate.jitter_draws,
                                   _generator(cfg.seed, k, "sigma-min", par.device))
            # how often did this stage's training (tcfg, above) see noise this small?
            jit["training_draws_below"] = KarrasSchedule.training_sigma_cdf(cfg.schedule.sigma_min,
                                                                             tcfg.p_mean, tcfg.p_std)
            metrics["sigma_min_check"] = jit
            metrics["energy_evaluations"]["sigma_min_check"] = jit["evaluations"]
            if jit["median_std"] > cfg.gate.max_jitter and cfg.energy_model_in_weights:
                run.log("WARNING " + _jitter_warning(k, temp, jit))
        drift = _drift_disagreement(gate, cfg.schedule.sigma_min, cfg.gate.max_inconsistency,
                                    cfg.net.sigma_data)
        if drift:
            metrics["drift_disagreement"] = drift
            run.log("WARNING " + _drift_warning(k, drift, cfg.gate.max_inconsistency))
        sdir.write_metrics(metrics)
        run.log(f"stage {k} trained: {result.step} steps")
        if gate and not gate["passed"]:
            last_q = gate["checks"][-1]
            msg = (f"stage {k}: {_gate_subject(gate['failing_criteria'], last_q['gamma'])}"
                   f" after {result.step} steps ({'; '.join(gate['failing'])}); "
                   "raise the training steps or gate.max_factor")
            run.log("WARNING " + msg)
            if cfg.gate.action == "refuse":
                raise BadInput(msg)
    sdir.mark_complete()
    par.barrier()  # parallel hook: no process starts stage k+1 before rank 0 finished writing stage k
    callback("stage", {"stage": k, "temperature": temp})
    return samples, metrics


def _drift_line(k: int, temp: float, rinfo: dict, rcfg) -> str | None:
    """The relaxation's drift check failed (``smc.relax``): the stage's samples were still moving
    toward lower (or higher) energy when it stopped — they are not yet exp(−E/kT_k)."""
    d = rinfo.get("drift")
    if not d or abs(d["z"]) <= rcfg.drift_z:
        return None
    ext = rinfo.get("extended_steps", 0)
    fix = ("raise relax.extend_max_steps" if rcfg.extend_max_steps else
           "raise relax.n_steps or set relax.extend_max_steps (more steps until the check passes)")
    return (f"stage {k}: its samples at T={temp:g} were still relaxing when the relaxation stopped "
            f"({rinfo.get('steps')} MALA steps{f', {ext} of them added by the drift check' if ext else ''}): "
            f"their mean E/kT moved by {d['mean_change']:+.3g} ± {d['standard_error']:.2g} between the two "
            f"halves of the last {2 * d['window_steps']} steps (z = {d['z']:.1f}), so they are not yet "
            f"from the target at this temperature; {fix}")


def _drift_disagreement(gate: dict | None, sigma_min: float, limit: float,
                        sigma_max: float = float("inf")) -> dict[str, float]:
    """{σ: ‖s_θ + ∇U_η‖/‖s_θ‖} of the gate's last check at the σ in (σ_min, ``sigma_max``] where it
    exceeds ``limit``. PITA's drift is γ(Δh/2)(s_θ − ∇U_η): half of it comes from the energy network,
    so where U_η's gradient disagrees with the score the annealed particles go astray whatever the
    weights do. σ_min is left out: there ‖s_θ‖ is dominated by bond terms that U_η(·, σ_min) reads only
    through pinning (ALDP `cpu`: 0.99 at σ_min in runs whose samples were fine). PITA passes
    ``sigma_max`` = net.sigma_data: on ALDP (five stage-0 networks, docs/pita.md eleventh session) the
    disagreement at σ = 0.1 nm (< σ_data = 0.164) separated the three whose next stage held 65–91 % cis
    amides (0.37–0.51) from the two with sound samples (0.10, 0.21), while one sound network read 0.39
    at σ = 2 nm."""
    if not gate or not gate.get("checks"):
        return {}
    cons = gate["checks"][-1].get("score_consistency", {})
    return {s: v for s, v in cons.items()
            if sigma_min * (1 + 1e-9) < float(s) <= sigma_max and v > limit}


def _drift_warning(k: int, bad: dict[str, float], limit: float) -> str:
    where = ", ".join(f"{v:.2f} at σ = {s}" for s, v in bad.items())
    return (f"stage {k}: the energy network's gradient disagrees with the score network "
            f"(‖s_θ + ∇U_η‖/‖s_θ‖ {where}; above {limit:g}); the annealing drift is half −∇U_η (all of it "
            "with anneal.score_from=energy), so the next "
            "stage's samples inherit it (ALDP with the pair head: 65–91 % cis amides one rung later, "
            "docs/pita.md, eleventh session) — train the energy network longer or drop the option that "
            "made it disagree")


def _gate_subject(criteria: list[str], gamma: float) -> str:
    """What the failed gate says is wrong: the energy model (its weights at ``gamma``), the generator
    (the score model's own samples), or both."""
    parts = []
    if "energy" in criteria:
        parts.append(f"the energy model is too poor for gamma={gamma:.3g}")
    if "generator" in criteria:
        parts.append("the generator's own samples leave the buffer's energy range")
    return " and ".join(parts)


def _chirality_fix(cfg: PITAConfig, k: int, x: torch.Tensor, target, grad: torch.Tensor | None = None):
    """Peptide samples' chirality report and, with ``cfg.chirality_fix``, the fix: samples whose
    chiral centres are all D are reflected about their centroid (``metrics.chirality.reflect``; the
    force field is achiral, so E is unchanged and the force reflects with x: ``grad`` too), samples
    with mixed centres (a diastereomer, outside the L ensemble and not reachable by a reflection) are
    dropped. Returns (x, grad, kept row indices, report with the counts ``flipped`` and
    ``dropped_mixed``); fewer than two samples left is a ``BadInput``."""
    from boltzpath.metrics.chirality import chirality_masks, reflect

    report, all_d, mixed = chirality_masks(x.detach().cpu().numpy(), target.topology)
    keep = torch.arange(x.shape[0], device=x.device)
    report.update(flipped=0, dropped_mixed=0)
    if not cfg.chirality_fix:
        return x, grad, keep, report
    flip = torch.as_tensor(all_d, device=x.device)[:, None]
    x = torch.where(flip, reflect(x, target.n_atoms), x)
    if grad is not None:
        grad = torch.where(flip.to(grad.device), reflect(grad, target.n_atoms, centre=False), grad)
    report["flipped"] = int(all_d.sum())
    if mixed.any():
        if int((~mixed).sum()) < 2:
            raise BadInput(f"stage {k}: {int(mixed.sum())} of {x.shape[0]} samples have mixed chirality "
                           "(some centres D, some L); the sampler failed here "
                           "(chirality_fix=false keeps them)")
        keep = torch.as_tensor(np.flatnonzero(~mixed), device=x.device)
        x, grad = x[keep], None if grad is None else grad[keep.to(grad.device)]
        report["dropped_mixed"] = int(mixed.sum())
    return x, grad, keep, report


def _chirality_line(k: int, fixes: list[dict], final: dict) -> str:
    """One run-log line: the stage's chirality fixes and its samples' chirality after them."""
    steps = "; ".join(f"{r['n']} in: mirrored {r['mirrored_fraction']:.3f} (flipped {r['flipped']}), "
                      f"mixed {r['mixed_fraction']:.3f} (dropped {r['dropped_mixed']})" for r in fixes)
    off = "" if final["chirality_fix"] else " (report only, chirality_fix off)"
    return (f"stage {k} chirality{off}: {steps or 'no fix'}; samples: L {final['l_fraction']:.3f}, mirrored "
            f"{final['mirrored_fraction']:.3f}, mixed {final['mixed_fraction']:.3f} (n={final['n']})")


def _previous_model_here(cfg, k, energy, buffer: TrainingBuffer, par) -> dict:
    """The energy model that was annealed into stage k (``energy``), read on stage k's own
    (relaxed) samples.

    The stage's energy-model report checks U_η on held-out samples at *its own* temperature; the
    weights need it on the colder configurations of T_k, which it rarely saw. Here, afterwards:
    corr and slope of U_η(x, σ_min) against E/kT_{k−1} on the new buffer, and the temperature the
    model's tempered density exp(−γU_η) effectively has there, T_k / slope (slope < 1: too hot).
    """
    t_prev, t_k = cfg.temperatures[k - 1], cfg.temperatures[k]
    labels = (torch.full((buffer.x.shape[0],), float(t_prev), device=buffer.x.device)
              if cfg.train_on_all_buffers else None)
    q = energy_model_quality(None, energy, buffer.x, buffer.energy.double() * (t_k / t_prev), cfg.gamma(k),
                             cfg.schedule.sigma_min, _generator(cfg.seed, k, "previous-model", par.device),
                             (), labels, cfg.finetune.pin_mask_above)
    slope = q["slope"]
    implied = t_k / slope if slope > 0 else math.inf
    return {"corr": q["corr"], "slope": slope, "residual_std": q["residual_std"],
            "reweight_ess_fraction": q["reweight_ess_fraction"], "implied_temperature": implied, "n": q["n"]}


def _labelled(buffer: TrainingBuffer, temperature: float) -> TrainingBuffer:
    """The buffer with every sample labelled by ``temperature`` (temperature-conditioned training)."""
    temps = torch.full((len(buffer),), float(temperature), device=buffer.x.device)
    return TrainingBuffer(buffer.x, buffer.energy, buffer.score, temps,
                          buffer.n_particles, buffer.spatial_dim)


def _train_with_gate(cfg, k, models, buffer, earlier, tcfg, sdir, callback: Callback, par: PitaParallel,
                     target, schedule):
    """Train stage k's models; with the gate on, hold out part of the buffer, report the energy
    model's quality for γ = T_k/T_{k+1} on it, and extend training by the stage's steps at a time up
    to ``gate.max_factor`` times them until the gate passes (``diffusion.quality``; with the
    ``generator`` criterion the model check, ``_model_check`` on the whole buffer, must pass too: it
    runs on every process from the same generator, so all agree). ``earlier``: labelled buffers of
    stages < k trained on too (``train_on_all_buffers``).
    Returns (TrainResult, gate report or None, number of training samples, last model check or None)."""
    gcfg = cfg.gate
    temp_k = cfg.temperatures[k] if cfg.train_on_all_buffers else None
    if temp_k is not None:
        buffer = _labelled(buffer, temp_k)
    train_buf, hold = buffer, None
    if gcfg.enabled:
        tr_idx, ho_idx = split_holdout(len(buffer), gcfg.holdout_fraction, _generator(cfg.seed, k, "holdout"))
        train_buf, hold = buffer.subset(tr_idx), buffer.subset(ho_idx)
    if earlier:
        train_buf = TrainingBuffer.concat([*earlier, train_buf])
    steps, checks = tcfg.steps, []
    cap = gcfg.max_factor * tcfg.steps
    while True:
        def report(info, of=steps):
            callback("train", {"stage": k, "of": of, **info})

        gen_train = _generator(cfg.seed, k, "train", par.device)
        result = train(models, train_buf, replace(tcfg, steps=steps), gen_train, callback=report,
                       checkpoint_path=sdir.file("model.pt"), resume=True,
                       pin_sigma_default=cfg.schedule.sigma_min, hooks=par.hooks())
        if hold is None:
            return result, None, len(train_buf), None
        if result.step > steps:  # resumed past this check: it had failed (training went on), skip it
            steps = min(steps + tcfg.steps, cap)
            continue
        q = energy_model_quality(result.ema.score, result.ema.energy, hold.x, hold.energy,
                                 cfg.gamma(k + 1), cfg.schedule.sigma_min,
                                 _generator(cfg.seed, k, "quality", par.device),
                                 sorted({float(cfg.schedule.sigma_min), *map(float, gcfg.sigmas)}),
                                 hold.temperature, tcfg.pin_mask_above)
        mc = None
        if "generator" in gcfg.criteria:
            mc = _model_check(cfg, k, result.ema, target, buffer, schedule, par)
        checks.append({"step": result.step, **q, **({"model_check": mc} if mc else {})})
        failing = gcfg.failing(q, mc)
        if not cfg.energy_model_in_weights:  # the energy criterion is reported only
            failing.pop("energy", None)
        if not failing or steps >= cap:
            return result, {"passed": not failing, "failing": list(failing.values()),
                            "failing_criteria": list(failing), "criteria": list(gcfg.criteria),
                            "not_applied": [] if cfg.energy_model_in_weights else ["energy"],
                            "checks": checks, "min_reweight_ess": gcfg.min_reweight_ess,
                            "min_corr": gcfg.min_corr, "min_in_range": gcfg.min_in_range}, len(train_buf), mc
        steps = min(steps + tcfg.steps, cap)


def model_check_anneal(acfg):
    """The anneal of the gate's model check from a stage's anneal options: γ = 1 and no weights (the
    model at its own temperature), so the cheapest divergence (one probe, never the exact trace)."""
    return replace(acfg, gamma=1.0, use_weights=False, divergence="hutchinson", n_probes=1, exact_below_t=0.0)


def _model_check(cfg: PITAConfig, k: int, models: Models, target, buffer: TrainingBuffer, schedule,
                 par: PitaParallel) -> dict:
    """Stage k's trained model sampled at its own temperature T_k (γ = 1, no weights, the anneal's
    steps and drift): the true E/kT_k of ``gate.model_check_n`` samples (counted) against the
    stage's buffer. ``in_range_fraction``: the share at or below the buffer's 99th energy percentile.
    A model that cannot make its own training data cannot be annealed to T_{k+1}: the weights and the
    relaxation would have to do all the work. Peptides add the cis-peptide and mirrored fractions."""
    read_at = cfg.temperatures[k] if cfg.train_on_all_buffers else None
    model = _network_model(models.score, models.energy, target, schedule, read_at, cfg.anneal.score_from)
    acfg = model_check_anneal(cfg.anneal)
    n = int(cfg.gate.model_check_n)
    res = anneal(model, n, schedule, acfg, _generator(cfg.seed, k, "model-check", par.device), target.project)
    target_k = target.at_temperature(cfg.temperatures[k])
    with torch.no_grad():
        e = target_k.energy(res.x.detach().to(torch.float64)).double().cpu()
    e = torch.where(torch.isfinite(e), e, torch.full_like(e, float("inf")))
    ref = buffer.energy.double().cpu()
    q99 = float(torch.quantile(ref, 0.99))
    out = {"n": n, "temperature": cfg.temperatures[k], "median_energy": float(e.median()),
           "buffer_median_energy": float(ref.median()), "buffer_q99_energy": q99,
           "in_range_fraction": float((e <= q99).double().mean())}
    if getattr(target, "is_peptide", False):
        from boltzpath.metrics.amides import cis_report
        from boltzpath.metrics.chirality import chirality_report

        x = res.x.detach().float().cpu().numpy()
        out["cis_peptide_fraction"] = cis_report(x, target.topology)["cis_fraction"]
        out["mirrored_fraction"] = chirality_report(x, target.topology)["mirrored_fraction"]
    return out


def _jitter_warning(k: int, temp: float, jit: dict) -> str:
    return (f"stage {k}: noise of size sigma_min={jit['sigma']:g} moves E/kT by {jit['median_std']:.3g} nats "
            f"(median std over {jit['n']} samples at T={temp:g}); U_eta(., sigma_min) is the energy of the "
            "density smoothed by that noise, so it cannot match E/kT much better than that, and the gate and "
            "the FK weights inherit the gap. A smaller schedule.sigma_min narrows it only if training sees "
            f"noise that small: {100 * jit['training_draws_below']:.1f} % of this stage's training draws are "
            "below sigma_min now; lower p_mean or raise p_std with it (LJ-13 cpu: sigma_min 0.01 with 0.2 % "
            "broke stage 1) (docs/pita.md, 'The sigma_min check')")


def _model_check_line(check: dict) -> str:
    return (f"{check['in_range_fraction']:.0%} of {check['n']} model samples lie within the buffer's energy "
            f"range (median E/kT {check['median_energy']:.4g} vs {check['buffer_median_energy']:.4g})")


def _model_check_warning(k: int, temp: float, check: dict) -> str:
    return (f"stage {k}: the trained model does not reproduce its own training data at T={temp:g}: "
            f"{_model_check_line(check)}; annealing it to the next temperature leaves the work to the "
            "weights and the relaxation — train longer or use a larger model")


def _gate_summary(gate: dict | None) -> dict | None:
    if not gate:
        return None
    last = gate["checks"][-1]
    return {"passed": gate["passed"], "steps": last["step"], "corr": last["corr"], "slope": last.get("slope"),
            "residual_std": last["residual_std"], "reweight_ess_fraction": last["reweight_ess_fraction"]}


def _check_ladder_fits(cfg: PITAConfig, target) -> None:
    """Refuse a ladder in the wrong unit: a peptide's temperatures are kelvin (300 K; its presets
    pita_<peptide>_<preset>.yaml carry kelvin ladders), the particle ladders are reduced units
    (4 → 1). A factor of ten between the ladder's last entry and the target's natural temperature
    can only be a unit mistake (e.g. a particle ladder set on a peptide, or the reverse)."""
    natural = float(getattr(target, "reference_temperature", 1.0))
    last = float(cfg.temperatures[-1])
    if last < natural / 10 or last > natural * 10:
        unit = getattr(target, "temperature_unit", "reduced units")
        raise BadInput(f"the ladder {cfg.temperatures} does not fit {cfg.target}: its temperature is in "
                       f"{unit} (natural {natural:g}); set temperatures=[...] in {unit} for this target")


def run_pita(cfg: PITAConfig, out: str | Path, overwrite: bool = False, resume: bool = False,
             callback: Callback | None = None, device: str | None = "auto", target=None) -> PITAResult | None:
    """Run (or resume) the whole ladder into run folder ``out``; see the module docstring.

    Under torchrun the R processes share the work (``boltzpath.parallel.pita_parallel``); rank 0
    writes the run folder and returns the result, the others return None. ``device``: auto | cpu |
    cuda[:i] (networks, buffers, particles and generators live there; files and metrics on the CPU).
    ``target``: an already built target (e.g. a Python callable) instead of ``cfg.target``.
    """
    cfg.validate()
    from boltzpath.parallel.dist import init_from_env  # parallel hook: process group, rank-0 writes

    ctx = init_from_env(device)
    par = PitaParallel(ctx)
    callback = (callback if par.is_main else None) or (lambda event, info: None)
    if target is None:
        target = make_target(cfg.target, **cfg.target_options)
    target = target.to(ctx.device)  # device hook
    _check_ladder_fits(cfg, target)  # before anything is written
    if cfg.rung_strata == "backbone" and not getattr(target, "is_peptide", False):
        raise BadInput(f"rung_strata=backbone needs a peptide target (backbone basins), not {cfg.target}")
    with torch.random.fork_rng(devices=[]):  # a network option that does not fit: refused before stage 0
        build_models(target, cfg.net)
    if cfg.stage0.data is not None:
        load_stage0_data(cfg.stage0.data, target)  # a bad file is refused before the folder exists
    elif cfg.stage0.method == "md":  # OpenMM MD needs a molecule; bad options refused here too
        from boltzpath.molecules.md_chains import MDChainsConfig

        if not getattr(target, "is_peptide", False):
            raise BadInput(f"stage0.method md (OpenMM MD) needs a peptide target, not {cfg.target}")
        MDChainsConfig.from_options(cfg.stage0.options)
    loaded: dict[str, np.ndarray] = {}
    references, reference_names = {}, {}
    for k in range(len(cfg.temperatures)):
        if (ref := stage_reference(cfg, k, target, loaded)) is not None:
            references[k], reference_names[k] = ref
    run = par.run_dir(out, overwrite=overwrite, resume=resume)
    run.claim_config(to_dict(cfg), to_dict(type(cfg)()))
    schedule = KarrasSchedule(cfg.schedule.sigma_min, cfg.schedule.sigma_max, cfg.schedule.rho)
    run.log(f"pita: {cfg.target}, ladder {cfg.temperatures}, resume={resume}")
    t0 = time.perf_counter()
    stages = []
    for k in range(len(cfg.temperatures)):
        samples, metrics = _run_stage(cfg, k, run, target, schedule, references, reference_names,
                                      callback, par)
        stages.append(metrics)
    totals: dict[str, int] = {}
    for m in stages:
        for key, v in m["energy_evaluations"].items():
            totals[key] = totals.get(key, 0) + int(v)
    wall = sum(m.get("sampling_wall_time_s", 0.0) + m.get("training", {}).get("wall_time_s", 0.0)
               for m in stages)
    final = {
        "method": "pita", "target": cfg.target, "temperature": cfg.temperatures[-1], "n": samples.n,
        "rung": cfg.rung, "rung_strata": cfg.rung_strata, "rung_basin_weights": cfg.rung_basin_weights,
        "rung_samples": cfg.rung_samples or (cfg.buffer_size if cfg.rung == "reweight" else None),
        "energy_evaluations": {**totals, "total": sum(totals.values())},
        "wall_time_s": wall, "wall_time_this_invocation_s": time.perf_counter() - t0,
        "evaluation": stages[-1]["evaluation"],
        "stages": [{"stage": m["stage"], "temperature": m["temperature"],
                    "energy_evaluations": m["energy_evaluations"],
                    "final_ess_fraction": m.get("final_ess_fraction"),
                    **({"next_rung_overlap": m["next_rung_overlap"]} if "next_rung_overlap" in m else {}),
                    **({"repaired_fraction": m["repaired_fraction"]} if m.get("repaired_fraction") else {}),
                    **({"overlap_fraction": m["overlap_fraction"]} if "overlap_fraction" in m else {}),
                    "energy_model_gate": _gate_summary(m.get("energy_model_gate")),
                    **({"model_check": m["model_check"]} if "model_check" in m else {}),
                    **({"mirrored_fraction": m["chirality"]["mirrored_fraction"],
                        "flipped_for_training": m["chirality"]["flipped_for_training"],
                        "dropped_mixed": m["chirality"]["dropped_mixed"]} if "chirality" in m else {}),
                    "evaluation": m["evaluation"]} for m in stages],
    }
    if "chirality" in stages[-1]:  # peptides: the final samples' chirality and every stage's fixes
        final["chirality"] = {
            **stages[-1]["chirality"],
            "flipped_all_stages": sum(m["chirality"]["flipped_for_training"] for m in stages),
            "dropped_mixed_all_stages": sum(m["chirality"]["dropped_mixed"] for m in stages)}
    odds_se = ladder_odds_errors(stages)
    if odds_se is not None:
        final["basin_log_odds_se_from_rungs"] = odds_se
        if par.is_main:
            run.log(_odds_error_line(odds_se))
    info = {**samples.info, "energy_evaluations": final["energy_evaluations"]["total"], "wall_time_s": wall}
    final_samples = Samples(samples.x, samples.energy, None, info)
    run.write_samples(final_samples)
    run.write_metrics(final)
    if not par.is_main:  # parallel hook: ranks > 0 are done
        return None
    write_ladder_plot(run.file("ladder.png"), stages)
    run.log(f"pita finished: {final['energy_evaluations']}")
    run.mark_complete()
    return PITAResult(final_samples, final, run)
