"""The training record of a DiKL run: the curve (DSM loss, score gap ‖s_φ − ∇log p_t‖ and posterior
MALA acceptance per logged iteration) to ``training.png`` (``report.png.save_png``, atomic), and
whether the score gap was still falling when training stopped (``convergence_report``).

Convergence check: the score gap is the quantity the generator update drives down (the mismatch
between the model score and the estimated target score). Over the last half of the logged
iterations, fit log(score gap) against the iteration by least squares; the run is reported as *still
falling* when the fitted decrease over that half is at least ``min_drop`` (5 %) and the slope is at
least ``min_t`` (3) standard errors from zero. The standard error treats the logged values as
independent, which they are not quite (successive minibatch estimates of a slowly moving quantity),
hence the effect-size floor as well. Measured: the DW-4 `cpu` run (3,500 iterations) still fell by
10.8 % over its last 1,750 iterations (t = −6.1), and its samples are far from the released ones
(docs/dikl.md): more iterations were needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def convergence_report(history: list[dict], key: str = "score_gap", min_points: int = 20,
                       min_drop: float = 0.05, min_t: float = 3.0) -> dict:
    """``{"key", "window_iterations", "relative_drop", "t", "still_falling", "n"}`` from the logged
    ``history`` (records with ``iteration`` and ``key``); ``still_falling`` is None when fewer than
    ``min_points`` finite positive values fall in the last half (too short to tell)."""
    pts = [(float(h["iteration"]), float(h[key])) for h in history
           if isinstance(h.get(key), (int, float)) and math.isfinite(h[key]) and h[key] > 0]
    out: dict = {"key": key, "window": "last half of the logged iterations", "n": 0,
                 "relative_drop": None, "t": None, "still_falling": None}
    half = pts[len(pts) // 2:]
    if len(half) < min_points:
        return out
    x = np.array([p[0] for p in half])
    y = np.log([p[1] for p in half])
    xc = x - x.mean()
    sxx = float((xc**2).sum())
    if sxx <= 0:
        return out
    slope = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float((resid**2).sum()) / (len(half) - 2) / sxx)
    drop = 1.0 - math.exp(slope * float(x[-1] - x[0]))
    t = slope / se if se > 0 else (-math.inf if slope < 0 else math.inf if slope > 0 else 0.0)
    out.update(n=len(half), window_iterations=[int(x[0]), int(x[-1])], relative_drop=drop, t=t,
               still_falling=bool(drop >= min_drop and t <= -min_t))
    return out


def convergence_warning(report: dict, iterations: int) -> str | None:
    """The one-line warning for a run whose score gap was still falling, else None."""
    if not report.get("still_falling"):
        return None
    a, b = report["window_iterations"]
    return (f"the score gap was still falling when training stopped ({100 * report['relative_drop']:.1f} % "
            f"over iterations {a}-{b}, t = {report['t']:.1f}): the generator has probably not converged; "
            f"more iterations (train.iterations, {iterations} here) should improve it")


def write_training_plot(path: Path, history: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from boltzpath.report.png import save_png

    it = [h["iteration"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    panels = (("dsm_loss", "DSM loss (model score)"), ("score_gap", "mean ‖s_φ − ∇log p_t‖"),
              ("mala_accept", "posterior MALA acceptance"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(it, [h.get(key, float("nan")) for h in history])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
    axes[1].set_yscale("log")
    fig.tight_layout()
    return save_png(fig, path)
