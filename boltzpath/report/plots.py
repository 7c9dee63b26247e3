"""Run-folder figures (issue 2, item 5): what a sampler produced, next to what it should have.

``plot_run(out_dir, samples, target, reference=None)`` writes, depending on the target:
- ``energy_hist.png`` (all targets): histogram of E/kT of the samples against the reference's
  (the exact sampler's when no reference is given and one exists);
- ``distances.png`` (particle systems): histogram of all i<j interatomic distances vs reference;
- ``density_2d.png`` (2-D mixtures such as gmm40): samples over contours of the target density;
- ``manywell_marginals.png`` (manywell): the first wells' x₁ histograms vs the exact 1-D marginal;
- peptides: whatever ``boltzpath.report.peptide_plots.plot_peptide`` writes, if importable.

Figures use the Agg backend, are never shown, are rendered to bytes and written atomically, and
are closed. Returns the paths written.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.metrics.energies import uncounted_energy  # noqa: E402
from boltzpath.metrics.modes import manywell_marginal_grid  # noqa: E402
from boltzpath.report.png import save_png  # noqa: E402,F401  (save_png: also used by callers of plots)

MAX_PLOT_POINTS = 20_000
N_EXACT_REFERENCE = 5_000


def _reference(target, reference) -> torch.Tensor | None:
    """The given reference as float64 (n, dim), or exact-sampler draws, or None."""
    if reference is not None:
        ref = torch.as_tensor(np.asarray(reference, dtype=np.float64))
        return ref.reshape(ref.shape[0], -1)
    if getattr(target, "has_exact_sampler", False):
        try:
            return target.exact_sample(N_EXACT_REFERENCE, torch.Generator().manual_seed(0))
        except BadInput:  # e.g. a re-tempered mixture: plot without a reference
            return None
    return None


def _clip_range(*arrays: np.ndarray, q: float = 0.005) -> tuple[float, float]:
    """A shared plotting range: the [q, 1 − q] quantiles of the pooled finite values."""
    pooled = np.concatenate([a[np.isfinite(a)] for a in arrays if a is not None])
    lo, hi = np.quantile(pooled, [q, 1 - q])
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def energy_hist(path: Path, e: np.ndarray, e_ref: np.ndarray | None, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    lo, hi = _clip_range(e, e_ref)
    bins = np.linspace(lo, hi, 80)
    ax.hist(e[np.isfinite(e)], bins=bins, density=True, alpha=0.6, histtype="stepfilled",
            label=f"samples (n={e.size})")
    if e_ref is not None:
        ax.hist(e_ref, bins=bins, density=True, histtype="step", lw=1.5, color="k",
                label=f"reference (n={e_ref.size})")
    ax.set_xlabel("E / kT (dimensionless)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def distance_hist(path: Path, d: np.ndarray, d_ref: np.ndarray | None, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    lo, hi = _clip_range(d, d_ref, q=0.0)
    bins = np.linspace(lo, hi, 100)
    ax.hist(d, bins=bins, density=True, alpha=0.6, histtype="stepfilled",
            label=f"samples ({d.size} distances)")
    if d_ref is not None:
        ax.hist(d_ref, bins=bins, density=True, histtype="step", lw=1.5, color="k",
                label=f"reference ({d_ref.size} distances)")
    ax.set_xlabel("interatomic distance (length units of the target)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def temperature_label(target) -> str:
    unit = " K" if getattr(target, "temperature_unit", "reduced") == "kelvin" else " (reduced)"
    return f"T={target.temperature:g}{unit}"


def density_2d(path: Path, x: np.ndarray, target) -> Path:
    """Samples over filled contours of −E/kT (= log p + const) of a 2-D target (grid energies are
    uncounted). The view holds every finite sample (plus a 5 % margin), capped at ±100."""
    lo = np.minimum(x.min(0), target.means.numpy().min(0) - 5) if hasattr(target, "means") else x.min(0)
    hi = np.maximum(x.max(0), target.means.numpy().max(0) + 5) if hasattr(target, "means") else x.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-3)
    lo, hi = np.maximum(lo - pad, -100), np.minimum(hi + pad, 100)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))
    logp = -uncounted_energy(target, grid).numpy().reshape(gx.shape)
    logp = logp - np.nanmax(logp)
    fig, ax = plt.subplots(figsize=(5.6, 5), layout="constrained")
    filled = ax.contourf(gx, gy, np.maximum(logp, -30), levels=25, cmap="viridis", alpha=0.85)
    fig.colorbar(filled, ax=ax, label="log p − max log p  (= −ΔE/kT, floored at −30)", shrink=0.85)
    ax.scatter(x[:, 0], x[:, 1], s=3, c="C3", alpha=0.6, label=f"samples (n={x.shape[0]})")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(f"{target.name} at {temperature_label(target)}: samples over log p", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return save_png(fig, path)


def manywell_marginals(path: Path, x: np.ndarray, target, n_wells: int = 4) -> Path:
    """x₁ histograms of the first ``n_wells`` wells against the exact 1-D marginal (quadrature)."""
    xs, dens = manywell_marginal_grid(target)
    step = max(1, xs.size // 2000)  # the quadrature grid is far finer than a plot needs
    xs, dens = xs[::step], dens[::step]
    keep = dens > dens.max() * 1e-6
    k = min(n_wells, target.n_wells)
    fig, axes = plt.subplots(1, k, figsize=(3 * k, 2.8), sharey=True, squeeze=False,
                             layout="constrained")
    for w, ax in enumerate(axes[0]):
        ax.hist(x[:, 2 * w], bins=np.linspace(xs[keep][0], xs[keep][-1], 60), density=True, alpha=0.6,
                histtype="stepfilled", label="samples")
        ax.plot(xs[keep], dens[keep], "k", lw=1.2, label="exact")
        ax.set_title(f"well {w + 1}")
        ax.set_xlabel(f"x₁ of well {w + 1}")
    axes[0][0].set_ylabel("density")
    fig.suptitle(f"{target.name} at {temperature_label(target)}: first wells' x₁ marginals "
                 f"(n={x.shape[0]})", fontsize=10)
    axes[0][0].legend(fontsize=8)
    return save_png(fig, path)


def plot_run(out_dir, samples, target, reference=None) -> list[Path]:
    """Write the figures that apply to ``target`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_t = samples.x.detach().double()[:MAX_PLOT_POINTS]
    e = samples.energy.detach().double().numpy()[:MAX_PLOT_POINTS]
    x = x_t[torch.isfinite(x_t).all(1)].numpy()  # a diverged chain must not break the figures
    ref = _reference(target, reference)
    if ref is not None:
        ref = ref[:MAX_PLOT_POINTS]
    written: list[Path] = []

    if getattr(target, "is_peptide", False):
        try:
            from boltzpath.report.peptide_plots import plot_peptide
        except ImportError:
            plot_peptide = None
        if plot_peptide is not None:
            written.extend(plot_peptide(out, samples, target, None if ref is None else ref.numpy()))
    e_ref = None if ref is None else uncounted_energy(target, ref).numpy()
    written.append(energy_hist(out / "energy_hist.png", e, e_ref,
                               f"{target.name} at {temperature_label(target)}: energy"))

    if target.is_particle_system:
        from boltzpath.metrics.particles import pair_distances

        d = pair_distances(x, target).ravel()
        d_ref = None if ref is None else pair_distances(ref, target).ravel()
        title = f"{target.name} at {temperature_label(target)}: distances (n={x.shape[0]})"
        written.append(distance_hist(out / "distances.png", d, d_ref, title))
    elif target.dim == 2:
        written.append(density_2d(out / "density_2d.png", x, target))
    if hasattr(target, "n_wells") and hasattr(target, "p_right"):
        written.append(manywell_marginals(out / "manywell_marginals.png", x, target))
    return written
