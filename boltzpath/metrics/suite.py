"""``evaluate``: every metric that applies to a target, with n, convention and noise floor (SPEC §8).

Output (JSON-serialisable, plain floats)::

    {"n": samples given, "n_reference": reference points used, "reference": provenance,
     "metrics": {name: {"value", "n", "convention", "noise_floor"}}, "notes": [...]}

``noise_floor`` is ``{"mean", "std", "n", "repeats", "source"}`` (see ``noise.py``) or None when
there is no reference to compare with itself. Which metrics run:

- every target: ``high_energy_fraction``; ``ess``/``ess_fraction``/``log_z_error`` when the
  samples carry log-weights; with a reference also ``energy_w1``, ``energy_w2`` and
  ``mean_energy_shift`` (signed: > 0 when the samples are hotter than the reference);
- low-dimensional toys: ``coordinate_w2``, ``mmd`` (≤ ``mmd_max_n`` points), ``second_moment_rel_error``
  (against the exact E‖x‖² where known, else the reference's), and for gmm40/manywell
  ``mode_coverage``, ``mode_weight_tvd`` (+ ``pattern_hit_ratio`` for manywell);
- particle systems: ``distance_w2``, ``distance_tvd``, ``aligned_w2`` (subsampled, see particles.py);
- peptides (``target.is_peptide``): ``boltzpath.metrics.peptide_suite.peptide_metrics`` merged in.

With ``reference=None`` the target's exact sampler (if any) provides the reference and the noise
floors (fresh independent draws); a given reference array is split into disjoint halves for them.
Energies of reference points are computed on a copy of the target with its own counter: metric
evaluation is not sampler cost. Log-weights are taken to be unnormalised log importance weights
log w = −E/kT − log q(x), so log Ẑ = log mean exp(log w) estimates ``target.log_z()``; an explicit
``samples.info["log_z"]`` (e.g. accumulated by SMC) takes precedence.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.metrics import distributions as dist
from boltzpath.metrics import modes, particles
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.metrics.noise import noise_floor

ENERGY_CONV = {1: "1-D exact OT between E/kT values (finite ones); W1 = OT cost with |ΔE|",
               2: "1-D exact OT between E/kT values (finite ones); W2 = sqrt(OT cost with |ΔE|²)"}


def _entry(value: float, n: int, convention: str, floor: dict | None = None) -> dict[str, Any]:
    return {"value": float(value), "n": int(n), "convention": convention, "noise_floor": floor}


def _subsample(x: torch.Tensor, max_n: int, gen: torch.Generator) -> torch.Tensor:
    """Row indices of a random subset of size ≤ max_n (all rows, in order, when n ≤ max_n)."""
    if x.shape[0] <= max_n:
        return torch.arange(x.shape[0])
    return torch.randperm(x.shape[0], generator=gen)[:max_n]


def exact_sampler(target) -> Callable[[int, torch.Generator], torch.Tensor] | None:
    if not getattr(target, "has_exact_sampler", False):
        return None
    try:
        target.exact_sample(1, torch.Generator().manual_seed(0))
    except BadInput:  # e.g. a re-tempered mixture
        return None
    return lambda n, g: target.exact_sample(n, g, dtype=torch.float64)


def _weights_metrics(samples, target) -> dict[str, dict]:
    from boltzpath.smc.weights import effective_sample_size, log_mean_exp

    lw = samples.log_weights.detach().double()
    n = lw.numel()
    out: dict[str, dict] = {}
    ess = effective_sample_size(lw)
    out["ess"] = _entry(ess, n, "Kish ESS = (sum w)^2 / sum w^2", None)
    out["ess_fraction"] = _entry(ess / n, n, "Kish ESS / n", None)
    log_z_hat = samples.info.get("log_z")
    source = "samples.info['log_z']"
    if log_z_hat is None:
        log_z_hat, source = log_mean_exp(lw), "log mean exp(log_weights), unnormalised weights"
    try:
        truth = float(target.log_z())
    except (BadInput, NotImplementedError):
        truth = None
    if truth is not None and math.isfinite(float(log_z_hat)):
        out["log_z_error"] = _entry(abs(float(log_z_hat) - truth), n,
                                    f"|log Z_hat - log Z|, log Z_hat from {source}", None)
    return out


def evaluate(samples, target, reference=None, generator: torch.Generator | None = None,
             max_n: int = 5000, *, reference_name: str | None = None, noise_repeats: int = 3,
             noise_floors: bool = True, aligned_max_n: int | None = None, mmd_max_n: int = 2000,
             callback: Callable[[str], None] | None = None) -> dict[str, Any]:
    """All applicable metrics of ``samples`` (a ``Samples``) against ``target`` (see module doc).

    ``reference``: (N, dim) array/tensor, or None for the exact sampler; ``max_n`` caps the points
    used from each side for OT metrics; ``callback(name)`` is called after each metric.
    """
    if max_n < 2:
        raise BadInput(f"max_n must be >= 2, got {max_n}")
    t0 = time.perf_counter()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    report = callback or (lambda name: None)
    x_all = samples.x.detach().double()
    if x_all.shape[1] != target.dim:
        raise BadInput(f"samples have dimension {x_all.shape[1]}, {target.name} has {target.dim}")
    notes: list[str] = []
    metrics: dict[str, dict] = {}

    e_all = samples.energy.detach().double()
    ok = torch.isfinite(x_all).all(1)
    if not ok.all():
        notes.append(f"{int((~ok).sum())} samples with non-finite coordinates left out of all metrics "
                     "but high_energy_fraction")
        x_all, e_all = x_all[ok], e_all[ok]
        if x_all.shape[0] == 0:
            raise BadInput("every sample has non-finite coordinates")
    sampler = exact_sampler(target) if reference is None else None
    ref_pool = None  # the whole given reference (noise floors split it into disjoint halves)
    idx = _subsample(x_all, max_n, gen)
    x, e = x_all[idx], e_all[idx]
    n = x.shape[0]
    if sampler is not None:
        ref, provenance = sampler(n, gen), "exact sampler"
    elif reference is not None:
        ref_all = torch.as_tensor(np.asarray(reference, dtype=np.float64)) if not isinstance(
            reference, torch.Tensor) else reference.detach().double()
        if ref_all.ndim == 3:
            ref_all = ref_all.reshape(ref_all.shape[0], -1)
        if ref_all.ndim != 2 or ref_all.shape[1] != target.dim:
            raise BadInput(f"reference has shape {tuple(ref_all.shape)}, "
                           f"{target.name} needs (n, {target.dim})")
        ref_pool = ref_all
        ref, provenance = ref_all[_subsample(ref_all, max_n, gen)], reference_name or "reference array"
    else:
        ref, provenance = None, None
        notes.append("no reference and no exact sampler: reference-based metrics skipped")
    want_floor = noise_floors and ref is not None
    floor_src = {"sampler": sampler} if sampler is not None else {"reference": ref_pool}

    def floor(metric, size):
        if not want_floor:
            return None
        return noise_floor(metric, size, repeats=noise_repeats, generator=gen, **floor_src)

    high_conv = f"fraction of samples with E/kT > {dist.HIGH_ENERGY_THRESHOLD:g} or non-finite"
    metrics["high_energy_fraction"] = _entry(dist.high_energy_fraction(samples.energy), samples.n,
                                             high_conv, None)
    if samples.log_weights is not None:
        metrics.update(_weights_metrics(samples, target))
        report("weights")

    if getattr(target, "is_peptide", False):
        _peptide_metrics(metrics, notes, samples, target, ref_pool, gen, max_n)
        report("peptides")
    elif ref is not None:
        _energy_metrics(metrics, notes, e, ref, target, floor, report)
        if target.is_particle_system:
            _particle_metrics(metrics, x, ref, target, floor, aligned_max_n, gen, report)
    if not target.is_particle_system and not getattr(target, "is_peptide", False):
        _toy_metrics(metrics, x, ref, target, floor, mmd_max_n, gen, report)

    return {"n": int(samples.n), "n_reference": None if ref is None else int(ref.shape[0]),
            "reference": provenance, "metrics": metrics, "notes": notes,
            "evaluation_wall_time_s": time.perf_counter() - t0}


def _energy_metrics(metrics, notes, e, ref, target, floor, report) -> None:
    """Energy W1 and W2 between the finite sample energies and the reference energies."""
    finite = torch.isfinite(e)
    if not finite.all():
        notes.append(f"{int((~finite).sum())} non-finite sample energies left out of energy W1/W2")
    if not finite.any():
        return
    e_ref = uncounted_energy(target, ref)
    n_fin = int(finite.sum())
    for p in (1, 2):
        def ew(a, b, p=p):
            return dist.energy_w(uncounted_energy(target, a), uncounted_energy(target, b), p=p)

        metrics[f"energy_w{p}"] = _entry(dist.energy_w(e[finite], e_ref, p=p), n_fin, ENERGY_CONV[p],
                                         floor(ew, n_fin))
        report(f"energy_w{p}")
    # how hot (> 0) or cold the samples are: the sign W1/W2 do not give; floor: |difference| of halves
    ref_mean = e_ref[torch.isfinite(e_ref)].double().mean()
    metrics["mean_energy_shift"] = _entry(
        float(e[finite].double().mean() - ref_mean), n_fin,
        "mean E/kT of the (finite) samples minus that of the reference; > 0: hot, < 0: cold",
        floor(lambda a, b: abs(float(uncounted_energy(target, a).double().mean()
                                     - uncounted_energy(target, b).double().mean())), n_fin))


def _particle_metrics(metrics, x, ref, target, floor, aligned_max_n, gen, report) -> None:
    """Interatomic-distance W2 and TVD, symmetry-aligned W2."""
    n = x.shape[0]
    metrics["distance_w2"] = _entry(
        particles.distance_w2(x, ref, target), n,
        "1-D W2 (sqrt of OT cost) over all i<j interatomic distances",
        floor(lambda a, b: particles.distance_w2(a, b, target), n))
    report("distance_w2")
    metrics["distance_tvd"] = _entry(
        particles.distance_tvd(x, ref, target), n,
        "TVD of interatomic-distance histograms, 200 bins over the reference range + 2 overflow",
        floor(lambda a, b: particles.distance_tvd(a, b, target), n))
    report("distance_tvd")
    a_n = particles.default_aligned_max_n(target) if aligned_max_n is None else aligned_max_n
    w2, na, _ = particles.aligned_w2_with_n(x, ref, target, a_n, gen)
    metrics["aligned_w2"] = _entry(
        w2, na, "W2 (sqrt of exact OT cost), pairwise cost = min over particle permutation and proper "
        "rotation of the squared distance (Hungarian/Kabsch alternation; subsampled)",
        floor(lambda a, b: particles.aligned_w2(a, b, target, a_n, gen), na))
    report("aligned_w2")


def _toy_metrics(metrics, x, ref, target, floor, mmd_max_n, gen, report) -> None:
    """Coordinate W2, MMD, E‖x‖² error and mode metrics (non-particle targets)."""
    n = x.shape[0]
    if ref is not None:
        metrics["coordinate_w2"] = _entry(dist.coordinate_w2(x, ref), n,
                                          "exact OT (POT emd2), squared Euclidean cost; W2 = sqrt(cost)",
                                          floor(dist.coordinate_w2, n))
        report("coordinate_w2")
        nm = min(n, mmd_max_n)
        metrics["mmd"] = _entry(dist.mmd(x[:nm], ref[:nm]), nm,
                                "unbiased MMD^2, Gaussian kernel exp(-|x-y|^2/(2h^2)), h = median pooled "
                                "pairwise distance", floor(dist.mmd, nm))
        report("mmd")
    exact = modes.exact_second_moment(target)
    if exact is not None:
        metrics["second_moment_rel_error"] = _entry(
            dist.relative_error_second_moment(x, exact), n, f"|E|x|^2 - {exact:.6g}| / {exact:.6g} (exact)",
            floor(lambda a, b: dist.relative_error_second_moment(a, exact), n))
    elif ref is not None:
        metrics["second_moment_rel_error"] = _entry(
            dist.relative_error_second_moment(x, ref), n, "|E|x|^2 - E|y|^2| / E|y|^2, y = reference",
            floor(dist.relative_error_second_moment, n))
    if modes.has_modes(target):
        per_well = " (per well, 2 sides each)" if hasattr(target, "n_wells") else ""
        metrics["mode_coverage"] = _entry(modes.mode_coverage(x, target), n,
                                          "fraction of modes with >= 1% of their expected mass" + per_well,
                                          floor(lambda a, b: modes.mode_coverage(a, target), n))
        metrics["mode_weight_tvd"] = _entry(modes.mode_weight_tvd(x, target), n,
                                            "mean over wells of |P(x1>0) - p|" if hasattr(target, "n_wells")
                                            else "0.5 * sum_k |n_k/n - w_k|",
                                            floor(lambda a, b: modes.mode_weight_tvd(a, target), n))
        if hasattr(target, "n_wells"):
            metrics["pattern_hit_ratio"] = _entry(
                modes.pattern_hit_ratio(x, target), n,
                "distinct sign patterns hit / expected number for n exact samples",
                floor(lambda a, b: modes.pattern_hit_ratio(a, target), n))
        report("modes")


def _peptide_metrics(metrics, notes, samples, target, ref_pool, gen, max_n) -> None:
    """Merge ``boltzpath.metrics.peptide_suite.peptide_metrics`` (energy W, torsions, TICA, chirality)."""
    try:
        from boltzpath.metrics.peptide_suite import peptide_metrics
    except ImportError as exc:
        notes.append(f"peptide metrics unavailable: {exc}")
        return
    reference = None if ref_pool is None else ref_pool.numpy()
    metrics.update(peptide_metrics(samples, target, reference, generator=gen, max_n=max_n))
