"""Peptide figures, each panel next to the reference (SPEC §8, issue 5 item 4).

``plot_peptide(out_dir, samples, target, reference=None)`` writes
- ``ramachandran.png``: free energy F = −ln p(φ, ψ) in kT (60×60 bins, minimum set to 0) of the
  samples | the reference (first residue's φ/ψ; all-D samples flipped first, as in the metrics);
- ``tica.png``: the same free energy over the first two TICA components fitted on the reference
  (only with a reference);
- ``energy_hist_kj_mol.png``: histograms of E in kJ/mol, samples over the reference.
Agg backend, never shown, rendered to bytes and written atomically; returns the paths written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.metrics.chirality import fix_chirality  # noqa: E402
from boltzpath.metrics.peptides import _reduced_energy, _reference_parts, backbone_dihedrals  # noqa: E402
from boltzpath.report.png import save_png  # noqa: E402

MAX_POINTS = 20_000
F_MAX_KT = 10.0



def _free_energy(a: np.ndarray, b: np.ndarray, edges_a, edges_b) -> np.ndarray:
    """F = −ln p in kT on a 2-D histogram, shifted so min F = 0; empty bins are NaN (blank)."""
    h, _, _ = np.histogram2d(a, b, bins=[edges_a, edges_b])
    with np.errstate(divide="ignore"):
        f = -np.log(h / h.sum())
    f[~np.isfinite(f)] = np.nan
    return f - np.nanmin(f) if np.isfinite(f).any() else f


def _panels(title: str, fields: list[tuple[str, np.ndarray]], edges_a, edges_b, xlabel: str, ylabel: str):
    fig, axes = plt.subplots(1, len(fields), figsize=(4.8 * len(fields) + 0.8, 4.2), squeeze=False,
                             layout="constrained")
    for ax, (name, f) in zip(axes[0], fields, strict=True):
        mesh = ax.pcolormesh(edges_a, edges_b, f.T, cmap="viridis", vmin=0.0, vmax=F_MAX_KT, shading="flat")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.colorbar(mesh, ax=axes[0].tolist(), label="free energy / kT")
    fig.suptitle(title)
    return fig


def plot_peptide(out_dir: str | Path, samples: Samples, target: Any, reference=None) -> list[Path]:
    out = Path(out_dir)
    topology = target.topology
    x = samples.x.numpy()[:MAX_POINTS]
    x, _ = fix_chirality(x, topology)
    ref_x = ref_e = None
    if reference is not None:
        ref_x, ref_e = _reference_parts(reference, target)
        ref_x = ref_x[:MAX_POINTS]
        ref_e = ref_e[:MAX_POINTS] if ref_e is not None else _reduced_energy(target, ref_x)
    written = []

    edges = np.linspace(-np.pi, np.pi, 61)
    phi, psi = backbone_dihedrals(x, topology)
    fields = [(f"samples (n={x.shape[0]})", _free_energy(phi[:, 0], psi[:, 0], edges, edges))]
    if ref_x is not None:
        rphi, rpsi = backbone_dihedrals(ref_x, topology)
        fields.append((f"reference (n={ref_x.shape[0]})", _free_energy(rphi[:, 0], rpsi[:, 0], edges, edges)))
    title = f"{target.name} at {target.temperature:g} K: Ramachandran free energy"
    fig = _panels(title, fields, edges, edges, "φ (rad)", "ψ (rad)")
    written.append(save_png(fig, out / "ramachandran.png", dpi=110, tight=True))

    if ref_x is not None and ref_x.shape[0] > 20:
        from boltzpath.metrics.tica import TicaProjection

        tica = TicaProjection(ref_x, topology)
        proj, rproj = tica.transform(x), tica.transform(ref_x)
        lo = np.minimum(proj.min(0), rproj.min(0))
        hi = np.maximum(proj.max(0), rproj.max(0))
        ea, eb = np.linspace(lo[0], hi[0], 61), np.linspace(lo[1], hi[1], 61)
        fields = [
            (f"samples (n={x.shape[0]})", _free_energy(proj[:, 0], proj[:, 1], ea, eb)),
            (f"reference (n={ref_x.shape[0]})", _free_energy(rproj[:, 0], rproj[:, 1], ea, eb)),
        ]
        fig = _panels(f"{target.name} at {target.temperature:g} K: TICA free energy", fields, ea, eb,
                      "TIC 1 (dimensionless)", "TIC 2 (dimensionless)")
        written.append(save_png(fig, out / "tica.png", dpi=110, tight=True))

    kt = float(target.kt_kj_mol)
    e = samples.energy.double().numpy()[:MAX_POINTS] * kt
    e = e[np.isfinite(e)]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    pool = e if ref_e is None else np.concatenate([e, ref_e * kt])
    lo, hi = np.percentile(pool, [0.5, 99.5]) if pool.size else (0.0, 1.0)
    bins = np.linspace(lo, hi, 80)
    ax.hist(e, bins=bins, density=True, alpha=0.55, label=f"samples (n={e.size})")
    if ref_e is not None:
        ax.hist(
            ref_e * kt,
            bins=bins,
            density=True,
            histtype="step",
            lw=2,
            color="k",
            label=f"reference (n={ref_e.size})",
        )
    ax.set_xlabel("E (kJ/mol)")
    ax.set_ylabel("density")
    ax.set_title(f"{target.name} at {target.temperature:g} K: energy")
    ax.legend(loc="upper right")
    written.append(save_png(fig, out / "energy_hist_kj_mol.png", dpi=110, tight=True))
    return written


def plot_peptide_comparison(path: str | Path, sets: list[tuple[str, np.ndarray]], target: Any,
                            reference: np.ndarray) -> Path:
    """One figure for a report: the reference's and each sample set's free energy, Ramachandran
    (first residue's φ/ψ) in the top row and the reference's first two TICA components in the bottom
    row, on shared axes and colour scale. ``sets``: (label, x) with x of shape (n, dim) in nm; all-D
    samples are flipped first, as in the metrics. Written atomically; returns the path."""
    from boltzpath.metrics.tica import TicaProjection

    topology = target.topology
    ref_x, _ = _reference_parts(reference, target)
    ref_x = ref_x[:MAX_POINTS]
    columns = [(f"reference (n={ref_x.shape[0]})", ref_x)]
    for label, x in sets:
        x = np.asarray(x, dtype=np.float64).reshape(-1, target.dim)[:MAX_POINTS]
        columns.append((f"{label} (n={x.shape[0]})", fix_chirality(x, topology)[0]))
    tica = TicaProjection(ref_x, topology)
    projections = [tica.transform(x) for _, x in columns]
    margin = 0.5 * np.ptp(projections[0], axis=0)  # the reference's range, widened on both sides
    lo = np.percentile(projections[0], 0.5, axis=0) - margin
    hi = np.percentile(projections[0], 99.5, axis=0) + margin
    ea, eb = np.linspace(lo[0], hi[0], 61), np.linspace(lo[1], hi[1], 61)
    edges = np.linspace(-np.pi, np.pi, 61)
    fig, axes = plt.subplots(2, len(columns), figsize=(3.6 * len(columns) + 0.8, 6.8), squeeze=False,
                             layout="constrained")
    for j, ((label, x), proj) in enumerate(zip(columns, projections, strict=True)):
        phi, psi = backbone_dihedrals(x, topology)
        top, bottom = axes[0, j], axes[1, j]
        mesh = top.pcolormesh(edges, edges, _free_energy(phi[:, 0], psi[:, 0], edges, edges).T,
                              cmap="viridis", vmin=0.0, vmax=F_MAX_KT, shading="flat")
        top.set_title(label, fontsize=9)
        top.set_xlabel("φ (rad)")
        bottom.pcolormesh(ea, eb, _free_energy(proj[:, 0], proj[:, 1], ea, eb).T, cmap="viridis",
                          vmin=0.0, vmax=F_MAX_KT, shading="flat")
        outside = np.mean(np.any((proj[:, :2] < lo[:2]) | (proj[:, :2] > hi[:2]), axis=1))
        bottom.set_title(f"{outside:.1%} outside these axes", fontsize=8)
        bottom.set_xlabel("TIC 1")
        if j == 0:
            top.set_ylabel("ψ (rad)")
            bottom.set_ylabel("TIC 2")
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label="free energy / kT")
    fig.suptitle(f"{target.name} at {target.temperature:g} K: Ramachandran (top) and TICA (bottom) "
                 "free energy")
    return save_png(fig, Path(path), dpi=100, tight=True)
