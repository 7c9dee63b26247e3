"""Per-stage metrics and the ladder summary plot of a PITA run.

``stage_metrics`` runs ``boltzpath.metrics.suite.evaluate`` (against ``reference`` or the target's
exact sampler where one exists) and ``boltzpath.report.plots.plot_run`` when that module is
present, and always records the mean E/kT of the stage's samples. ``write_ladder_plot`` draws, per
stage, the headline metric (energy W2 if measured, else coordinate W2, else mean E/kT) and the FK
final ESS fraction, to ``ladder.png`` (written atomically).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_write_bytes

HEADLINE = ("energy_w2", "coordinate_w2", "aligned_w2")


def stage_metrics(samples, target, reference, generator: torch.Generator, max_n: int, sdir,
                  noise_floors: bool = True, plots: bool = True) -> dict:
    out: dict = {"mean_energy": float(samples.energy.double().mean()), "n": samples.n}
    try:
        from boltzpath.metrics.suite import evaluate
    except ImportError:  # metrics not installed in this tree
        return out
    try:
        out.update(evaluate(samples, target, reference=reference, generator=generator, max_n=max_n,
                            noise_floors=noise_floors))
    except BadInput as exc:
        out["error"] = str(exc)
    if not plots:
        return out
    try:
        from boltzpath.report.plots import plot_run
    except ImportError:
        return out
    ref = None if reference is None else torch.as_tensor(reference)
    out["plots"] = [str(Path(p).name) for p in plot_run(sdir.path, samples, target, reference=ref)]
    return out


def headline(evaluation: dict) -> tuple[str, float]:
    metrics = evaluation.get("metrics", {})
    for name in HEADLINE:
        if name in metrics and metrics[name].get("value") is not None:
            return name, float(metrics[name]["value"])
    return "mean E/kT", float(evaluation.get("mean_energy", float("nan")))


def write_ladder_plot(path: Path, stages: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps = [m["temperature"] for m in stages]
    heads = [headline(m["evaluation"]) for m in stages]
    ess = [m.get("final_ess_fraction") for m in stages]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = [f"{k}\nT={t:g}" for k, t in enumerate(temps)]
    ax1.plot(range(len(stages)), [h[1] for h in heads], "o-")
    for i, (name, _) in enumerate(heads):
        ax1.annotate(name, (i, heads[i][1]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax1.set_xticks(range(len(stages)), labels)
    ax1.set_title("headline metric per stage")
    idx = [i for i, e in enumerate(ess) if e is not None]
    ax2.bar([labels[i] for i in idx], [ess[i] for i in idx])
    ax2.set_ylim(0, 1)
    ax2.set_title("final FK ESS / n per stage")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
