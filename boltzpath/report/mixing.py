"""Mixing figure for DiGS runs: mode traces of a few chains, next to MALA at equal cost.

``digs_report(run_dir_path, samples, target, cfg, generator)`` (targets with ``mode_index``:
gmm40 → index of the nearest mode; manywell → sign pattern of the first wells read as a binary
number) re-runs MALA from the same starting points (``samples.info["x0_head"]``) with the same
number of energy evaluations per chain and the same collection times, and writes
``mixing.png``. The DiGS samples are chain-interleaved (sample i = chain i % chains at collected
time i // chains), so the traces come straight out of ``samples.x``.

The MALA re-run uses a private copy of the target with its own evaluation counter, so the run's
counted cost is untouched.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.report.plots import plt
from boltzpath.report.png import save_png
from boltzpath.targets.base import EvaluationCounter

TRACE_CHAINS = 4
PATTERN_WELLS = 4


def mode_label(target, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Per-sample mode label (batch,) and the axis label that explains it."""
    idx = target.mode_index(x)
    if idx.ndim == 1:
        return idx, "mode index"
    wells = min(PATTERN_WELLS, idx.shape[1])
    weights = 2 ** torch.arange(wells, device=idx.device)
    return (idx[:, :wells] * weights).sum(1), f"sign pattern of wells 1–{wells} (binary, x₁ > 0 = 1)"


def plot_mode_traces(out_path, traces: dict[str, torch.Tensor], ylabel: str,
                     x_axis: np.ndarray | None = None, xlabel: str = "collected sample",
                     title: str | None = None) -> Path:
    """One panel per method, each a step plot of (steps, chains) mode labels, shared y-axis."""
    if not traces:
        raise BadInput("plot_mode_traces needs at least one trace")
    fig, axes = plt.subplots(1, len(traces), figsize=(5.2 * len(traces), 3.8), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, (name, tr) in zip(axes[0], traces.items(), strict=True):
        tr = torch.as_tensor(tr).detach().cpu().numpy()
        if tr.ndim != 2:
            raise BadInput(f"trace {name!r} must have shape (steps, chains), got {tr.shape}")
        xs = np.arange(tr.shape[0]) if x_axis is None else np.asarray(x_axis)[: tr.shape[0]]
        for c in range(tr.shape[1]):
            ax.step(xs, tr[:, c] + 0.08 * c, where="post", lw=1.0, label=f"chain {c}")
        visited = np.mean([len(np.unique(tr[:, c])) for c in range(tr.shape[1])])
        ax.set_title(f"{name}: {visited:.1f} distinct modes per chain")
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, Path(out_path))


def digs_report(run_dir_path, samples, target, cfg, generator: torch.Generator) -> list[Path]:
    """Write ``mixing.png`` into ``run_dir_path`` (nothing for targets without modes)."""
    if not hasattr(target, "mode_index"):
        return []
    if isinstance(cfg, dict):
        from boltzpath.config import from_dict
        from boltzpath.mcmc.digs import DiGSConfig

        cfg = from_dict(DiGSConfig, cfg, where="digs config")
    info = samples.info
    for key in ("chains", "x0_head", "evaluations_per_sweep", "burn_in_sweeps", "thin_sweeps"):
        if key not in info:
            raise BadInput(f"digs_report: samples.info lacks {key!r} (not a DiGS run?)")
    chains, per_sweep = int(info["chains"]), int(info["evaluations_per_sweep"])
    x0 = torch.tensor(info["x0_head"], dtype=cfg.torch_dtype)[:TRACE_CHAINS]
    shown = x0.shape[0]
    steps = samples.n // chains
    if steps < 2:
        return []
    x_digs = samples.x[: steps * chains].reshape(steps, chains, -1)[:, :shown]
    label_digs, ylabel = mode_label(target, x_digs.reshape(-1, samples.dim))

    from boltzpath.mcmc.mala import MALAConfig, run_mala

    private = copy.copy(target)
    private.counter = EvaluationCounter()
    mala_cfg = MALAConfig(chains=shown, burn_in=int(info["burn_in_sweeps"]) * per_sweep,
                          thin=int(info["thin_sweeps"]) * per_sweep, step_size=cfg.step_size,
                          target_accept=cfg.target_accept, dtype=cfg.dtype)
    mala = run_mala(private, steps * shown, generator, mala_cfg, x0=x0)
    label_mala, _ = mode_label(target, mala.x)
    evals = 1 + per_sweep * (int(info["burn_in_sweeps"]) + int(info["thin_sweeps"]) * np.arange(1, steps + 1))
    path = plot_mode_traces(
        Path(run_dir_path) / "mixing.png",
        {"DiGS": label_digs.reshape(steps, shown),
         "MALA (same evaluations)": label_mala.reshape(steps, shown)},
        ylabel, x_axis=evals, xlabel="energy evaluations per chain",
        title=f"{target.name} at T={target.temperature:g}: mode traces of {shown} chains "
              f"({steps} collected samples each, n={samples.n})",
    )
    return [path]
