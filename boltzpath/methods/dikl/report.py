"""The training curve of a DiKL run: DSM loss, score gap ‖s_φ − ∇log p_t‖ and posterior MALA
acceptance per logged iteration, to ``training.png`` (``report.png.save_png``, atomic)."""

from __future__ import annotations

from pathlib import Path


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
