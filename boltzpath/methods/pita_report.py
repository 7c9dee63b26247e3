"""Per-stage metrics and the ladder summary plot of a PITA run.

``stage_metrics`` runs ``boltzpath.metrics.suite.evaluate`` (against ``reference`` or the target's
exact sampler where one exists) and ``boltzpath.report.plots.plot_run`` when that module is
present, and always records the mean E/kT of the stage's samples. ``write_ladder_plot`` draws one
labelled panel per quantity — mean E/kT (with the reference's where a stage has one), every W2
measured (with its noise floor), the FK final ESS fraction — against the stages, to ``ladder.png``
(written atomically).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_write_bytes

HEADLINE = ("energy_w2", "coordinate_w2", "distance_w2", "aligned_w2")


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


MEAN_E = "mean E/kT of the stage's samples"


def _number(v) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _field(entry, key: str) -> dict:
    """``entry[key]`` when it is a mapping, else {} (stage metrics may lack a metric or its floor)."""
    v = entry.get(key) if isinstance(entry, dict) else None
    return v if isinstance(v, dict) else {}


def _series(stages: list[dict]) -> dict[str, list[float | None]]:
    """Per-stage values of each plotted quantity (None where a stage lacks it)."""
    out: dict[str, list[float | None]] = {MEAN_E: []}
    for name in HEADLINE:
        out[name] = []
    out["final FK ESS / n"] = []
    for m in stages:
        ev = m.get("evaluation", {})
        out[MEAN_E].append(ev.get("mean_energy"))
        metrics = ev.get("metrics", {})
        for name in HEADLINE:
            out[name].append(_number(_field(metrics, name).get("value")))
        out["final FK ESS / n"].append(m.get("final_ess_fraction"))
    return {k: v for k, v in out.items() if any(x is not None for x in v)}


def _guides(stages: list[dict]) -> dict[str, list[float | None]]:
    """What each panel is compared with, per stage: the reference's mean E/kT (the samples' mean minus
    ``mean_energy_shift``) on the energy panel, each W2's noise floor on its panel."""
    out: dict[str, list[float | None]] = {MEAN_E: [], **{name: [] for name in HEADLINE}}
    for m in stages:
        ev = m.get("evaluation", {})
        metrics = ev.get("metrics", {})
        mean = _number(ev.get("mean_energy"))
        d = _number(_field(metrics, "mean_energy_shift").get("value"))
        out[MEAN_E].append(None if mean is None or d is None else mean - d)
        for name in HEADLINE:
            out[name].append(_number(_field(_field(metrics, name), "noise_floor").get("mean")))
    return out


def write_ladder_plot(path: Path, stages: list[dict]) -> Path:
    """One labelled panel per quantity (mean E/kT, each W2 measured, FK ESS fraction) against the
    ladder's stages; each stage is marked with its temperature and sample count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temps = [m["temperature"] for m in stages]
    ns = [m.get("evaluation", {}).get("n") for m in stages]
    labels = [f"{k}\nT={t:g}" + (f"\nn={n}" if n else "")
              for k, (t, n) in enumerate(zip(temps, ns, strict=True))]
    series, guides = _series(stages), _guides(stages)
    fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.4), squeeze=False,
                             layout="constrained")
    for ax, (name, values) in zip(axes[0], series.items(), strict=True):
        idx = [i for i, v in enumerate(values) if v is not None]
        if name.startswith("final FK ESS"):
            ax.bar(idx, [values[i] for i in idx], color="C1")
            ax.set_ylim(0, 1)
        else:
            ax.plot(idx, [values[i] for i in idx], "o-", label="samples")
            ref = guides.get(name, [])
            gi = [i for i, v in enumerate(ref) if v is not None]
            if gi:
                label = "reference" if name == MEAN_E else "noise floor"
                ax.plot(gi, [ref[i] for i in gi], "s--" if name == MEAN_E else "_", color="0.45",
                        markersize=8, label=label)
                ax.legend(fontsize=7)
        ax.set_xticks(range(len(stages)), labels, fontsize=7)
        ax.set_xlabel("stage (temperature, samples)")
        ax.set_ylabel(name)
        ax.set_title(name, fontsize=9)
    fig.suptitle("PITA ladder, stage by stage (W2 against the reference or exact sampler)", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
