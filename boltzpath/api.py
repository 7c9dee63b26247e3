"""The public Python API: ``Target``, ``sample``, ``pita``, ``dikl``, ``dikl_sample``, ``evaluate``,
``Samples``.

Notebooks and the ``boltzpath`` command run the same code: the CLI parses arguments and calls these
functions. Writing a run folder is optional (``out=``); without it nothing touches the disk.
See docs/api.md for examples (they run as doctests).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples, load_reference
from boltzpath.progress import Progress, silent
from boltzpath.targets.base import Target as _BaseTarget
from boltzpath.targets.custom import CustomTarget
from boltzpath.targets.registry import make_target


class ConvergenceWarning(UserWarning):
    """An MCMC run whose chains disagree (R-hat) or are too short (ESS), or an SMC run whose
    weights collapsed: the samples may be biased. The message says what to raise."""


class _TargetMeta(type):
    def __call__(cls, energy, dim: int | None = None, **options) -> _BaseTarget:
        if isinstance(energy, _BaseTarget):
            if dim is not None and dim != energy.dim:
                raise BadInput(f"dim={dim} given for a target of dimension {energy.dim}")
            t = options.pop("temperature", None)
            if options:
                raise BadInput(f"options {sorted(options)} cannot be applied to a built target")
            return energy if t is None else energy.at_temperature(t)
        if isinstance(energy, str):
            if dim is not None:
                options["dim"] = dim
            return make_target(energy, **options)
        if callable(energy):
            return CustomTarget(energy, dim=dim, **options)
        raise BadInput(f"a target is a name, a 'module:function' string or a callable, not "
                       f"{type(energy).__name__}")

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _BaseTarget)


class Target(metaclass=_TargetMeta):
    """A target distribution p(x) ∝ exp(−E(x)/kT).

    ``Target("gmm40")`` / ``Target("lj13", temperature=1.5)`` builds a registered target;
    ``Target(fn, dim=2)`` wraps a function mapping a (batch, dim) tensor to E/kT of shape (batch,).
    The result has ``.energy(x)``, ``.energy_and_grad(x)``, ``.dim``, ``.at_temperature(T)`` and
    counts its evaluations in ``.counter.count``.
    """


def as_target(target: Any, dim: int | None = None, temperature: float | None = None) -> _BaseTarget:
    options = {} if temperature is None else {"temperature": temperature}
    return Target(target, dim=dim, **options)


def _warn(message: str | None) -> None:
    if message:
        warnings.warn(message, ConvergenceWarning, stacklevel=3)


def _config_and_target(resolve_config, target, dim, preset, seed, overrides: dict):
    """(config, target) of a trained method: a registered name resolves its preset first (the
    config names the target's options); anything else is built first and its options recorded."""
    if isinstance(target, str) and dim is None:
        cfg = resolve_config(target, preset, seed, (), extra=overrides)
        return cfg, make_target(cfg.target, **cfg.target_options)
    t = as_target(target, dim)
    if isinstance(t, CustomTarget):
        overrides.setdefault("target_options", {"energy": t.spec, "dim": t.dim})
    else:
        overrides.setdefault("target_options", t.options())
    return resolve_config(_target_spec(t)["name"], preset, seed, (), extra=overrides), t


def _target_spec(target: _BaseTarget) -> dict[str, Any]:
    name = target.spec if isinstance(target, CustomTarget) else target.name
    return {"name": name, **target.options(), "temperature": target.temperature}


def sample(target: Any, method: str = "mala", n: int = 1000, seed: int = 0, *, dim: int | None = None,
           temperature: float | None = None, out: str | Path | None = None, overwrite: bool = False,
           resume: bool = False, reference: str | Path | None = None,
           progress: Progress | bool | None = None, device: str = "auto", **options) -> Samples:
    """Draw ``n`` samples of ``target`` with ``method`` (mala | hmc | langevin | pt | digs).

    ``target``: a name (``"gmm40"``), ``"module:function"``, a callable with ``dim=``, or a Target.
    ``options``: the method's settings (``boltzpath methods`` lists them), e.g. ``chains=64``.
    With ``out=`` a run folder is written (samples, metrics, plots, config, run.log). Convergence
    diagnostics (R-hat, ESS) are in ``samples.info["diagnostics"]``; a ``ConvergenceWarning`` is
    issued when they fail.
    """
    from boltzpath.sampling import SampleRun, probe_target, resolved_config, run_samples, sample_to_folder

    progress = _progress(progress)
    t = as_target(target, dim, temperature)
    if out is not None and isinstance(t, CustomTarget) and ":" not in t.spec:
        warnings.warn(f"the energy {t.spec} is not importable as module:function, so {out}/config.yaml "
                      "records its name only and cannot be rerun with --config", UserWarning, stacklevel=2)
    run = SampleRun(target=_target_spec(t), method=method, n=int(n), seed=int(seed), sampler=dict(options),
                    reference=None if reference is None else str(reference), device=device)
    run.validate()
    if out is not None:
        result = sample_to_folder(run, out, overwrite=overwrite, progress=progress, resume=resume, target=t)
        if result is None:  # a torchrun worker (rank > 0)
            return None
        samples = result[1]
    else:
        from boltzpath.parallel.dist import init_from_env

        config, _, cfg = resolved_config(run, target=t)
        probe_target(t)
        samples = run_samples(run, config, t, cfg, progress, init_from_env(device))
    _warn((samples.info.get("diagnostics") or {}).get("warning"))
    return samples


def run_sample_config(data: dict[str, Any], out: str | Path, overwrite: bool = False, resume: bool = False,
                      progress: Progress | None = None):
    """The CLI's entry: a (merged) config mapping → a run folder. Returns (RunDir, Samples, metrics)."""
    from boltzpath.sampling import run_from_mapping, sample_to_folder

    run = run_from_mapping(data)
    return sample_to_folder(run, out, overwrite=overwrite, progress=progress, resume=resume)


def pita(target: Any, preset: str = "quick", seed: int | None = None, *, dim: int | None = None,
         out: str | Path | None = None, overwrite: bool = False, resume: bool = False,
         progress: Progress | bool | None = None, device: str = "auto", **overrides) -> Samples:
    """Run the PITA ladder on ``target`` and return the final samples (at the last temperature).

    ``preset``: quick | cpu | paper | a .yaml path. ``overrides``: config sections as keywords, e.g.
    ``temperatures=[4, 2, 1]``, ``train={"steps": 200}``, ``n_particles=256``. Without ``out`` the
    ladder runs in a temporary folder that is deleted afterwards. The per-stage metrics are in
    ``samples.info["metrics"]``; a ``ConvergenceWarning`` is issued when the FK weights collapsed.
    """
    from boltzpath.methods.pita_config import resolve_config

    progress = _progress(progress)
    cfg, t = _config_and_target(resolve_config, target, dim, preset, seed, overrides)
    return run_pita_config(cfg, t, out, overwrite, resume, progress, device)


def run_pita_config(cfg, t: _BaseTarget | None = None, out: str | Path | None = None,
                    overwrite: bool = False, resume: bool = False,
                    progress: Progress | None = None, device: str | None = "auto") -> Samples | None:
    """Run a resolved ``PITAConfig`` (the CLI's entry). Checks everything that can be checked
    first, then runs the ladder (in a temporary folder when ``out`` is None). A failure or Ctrl-C
    after the folder exists is recorded in its run.log. Under torchrun, ranks > 0 return None."""
    from boltzpath.io.runs import RunDir
    from boltzpath.methods.pita import run_pita, stage_reference
    from boltzpath.metrics.convergence import smc_warning
    from boltzpath.sampling import probe_target

    progress = _progress(progress)
    cfg.validate()
    t = make_target(cfg.target, **cfg.target_options) if t is None else t
    probe_target(t)
    if cfg.reference is not None:
        load_reference(cfg.reference, t.dim)
    callback = _pita_callback(progress)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="boltzpath-pita-") as tmp:
            samples = _detach(run_pita(cfg, Path(tmp) / "run", callback=callback, target=t, device=device))
    else:
        hint = f"rerun with --resume to continue (or --overwrite to start again) into {out}"
        try:
            samples = _detach(run_pita(cfg, out, overwrite=overwrite, resume=resume, callback=callback,
                                       target=t, device=device))
        except KeyboardInterrupt:
            _record(out, "interrupted (Ctrl-C / SIGINT)", hint)
            raise
        except BadInput as exc:
            if (Path(out) / "config.yaml").is_file() and "different config" not in str(exc) \
                    and "not empty" not in str(exc) and "finished run" not in str(exc):
                _record(out, str(exc), hint)
                raise BadInput(f"{str(exc).splitlines()[0]} [{hint}]") from None
            raise
        except Exception as exc:
            _record(out, f"{type(exc).__name__}: {exc}", hint)
            raise
    if samples is None:  # a torchrun worker (rank > 0)
        return None
    warning = smc_warning(samples.info["metrics"])
    if out is not None:
        _final_figures(RunDir(out), samples, t.at_temperature(cfg.temperatures[-1]),
                       stage_reference(cfg, len(cfg.temperatures) - 1, t), progress)
        if warning:
            RunDir(out).log(f"WARNING {warning}")
    _warn(warning)
    return samples


def dikl(target: Any, preset: str = "quick", seed: int | None = None, *, dim: int | None = None,
         out: str | Path | None = None, overwrite: bool = False, resume: bool = False,
         progress: Progress | bool | None = None, device: str = "auto", **overrides) -> Samples:
    """Train a DiKL one-step generator on ``target`` (docs/dikl.md) and return its samples.

    ``preset``: quick | cpu | paper | a .yaml path. ``overrides``: config sections as keywords, e.g.
    ``train={"iterations": 200}``, ``generator={"hidden": 32}``, ``n_samples=5000``. With ``out=`` the
    run folder (checkpoint.pt, generator.pt, samples, metrics, plots) is written and ``resume=True``
    continues a killed run from its checkpoint; fresh samples then come from ``dikl_sample(out, n)``.
    Without ``out`` training runs in a temporary folder that is deleted afterwards. The run's
    metrics.json is in ``samples.info["metrics"]``.
    """
    from boltzpath.methods.dikl.config import resolve_config
    from boltzpath.methods.dikl.run import run_dikl
    from boltzpath.sampling import probe_target

    progress = _progress(progress)
    cfg, t = _config_and_target(resolve_config, target, dim, preset, seed, overrides)
    cfg.validate()
    probe_target(t)
    callback = progress.steps("dikl")
    if out is None:
        with tempfile.TemporaryDirectory(prefix="boltzpath-dikl-") as tmp:
            result = run_dikl(cfg, Path(tmp) / "run", callback=callback, device=device, target=t)
    else:
        result = run_dikl(cfg, out, overwrite=overwrite, resume=resume, callback=callback, device=device,
                          target=t)
    s = result.samples
    return Samples(s.x.clone(), s.energy.clone(), None, {**s.info, "metrics": result.metrics})


def dikl_sample(run_dir: str | Path, n: int = 1000, seed: int = 1, *, out: str | Path | None = None,
                overwrite: bool = False, metrics: bool = True, device: str = "auto",
                target: Any = None, precision: str = "float32") -> Samples:
    """``n`` fresh samples from the trained DiKL generator in run folder ``run_dir`` (one generator
    pass, zero energy evaluations, no training). With ``out=`` a run folder is written as
    ``boltzpath run dikl-sample`` writes it (``metrics``: evaluate and plot the samples there).
    ``target``: pass the energy again when the run used a callable that cannot be re-imported.
    ``precision="bfloat16"``: the EGNN generator's edge MLPs in bfloat16 (faster, not bit-equal)."""
    from boltzpath.methods.dikl.sampling import draw_from_run, sample_from_run

    t = None if target is None else as_target(target)
    if out is not None:
        return sample_from_run(run_dir, int(n), out, int(seed), metrics, overwrite, device, t, precision)[1]
    return draw_from_run(run_dir, int(n), int(seed), device, t, precision)[0]


def _final_figures(rd, samples: Samples, target: _BaseTarget, reference: tuple | None,
                   progress: Progress) -> None:
    """The final samples' figures in the PITA folder's top level (as ``boltzpath sample`` draws),
    against the reference the last stage was scored against (``methods.pita.stage_reference``)."""
    from boltzpath.report.plots import plot_run

    progress.note("plots: final samples")
    ref = None if reference is None else torch.as_tensor(reference[0])
    for path in plot_run(rd.path, samples, target, ref):
        rd.log(f"wrote {Path(path).name}")


def _record(out, why: str, hint: str) -> None:
    from boltzpath.io.runs import RunDir

    if Path(out).is_dir():
        RunDir(out).record_failure(why, hint)


def _detach(result) -> Samples | None:
    if result is None:  # a torchrun worker (rank > 0)
        return None
    s = result.samples
    return Samples(s.x.clone(), s.energy.clone(), None if s.log_weights is None else s.log_weights.clone(),
                   {**s.info, "metrics": result.metrics})


def _pita_callback(progress: Progress) -> Callable[[str, dict], None]:
    bars: dict = {}

    def callback(event: str, info: dict) -> None:
        if event == "stage":
            progress.note(f"stage {info['stage']} done (T={info['temperature']:g})")
            return
        if info.get("step") is None or info.get("of") is None:
            return
        key = (event, info.get("stage"), info.get("population"))
        if key not in bars:
            bars.clear()
            bars[key] = progress.steps(f"{event} stage {info.get('stage', 0)}")
        bars[key](int(info["step"]), int(info["of"]), {k: v for k, v in info.items()
                                                        if isinstance(v, float)})

    return callback


def evaluate(samples: Samples | str | Path, reference: Any = None, target: Any = None, seed: int = 0,
             max_n: int = 5000, noise_floors: bool = True) -> dict[str, Any]:
    """Metrics of ``samples`` (a Samples or a samples.npz path) against ``reference`` (an array
    (n, dim), a .npy/.npz path or Samples) or, when ``target`` has one, its exact sampler.

    ``target`` defaults to the one recorded in ``samples.info``. Returns the metrics mapping of
    docs/metrics.md (each entry with its value, n and noise floor).
    """
    from boltzpath.metrics.suite import evaluate as suite_evaluate
    from boltzpath.sampling import build_target

    if isinstance(samples, str | Path):
        samples = Samples.load(samples)
    if not isinstance(samples, Samples):
        raise BadInput(f"evaluate needs Samples or a samples.npz path, got {type(samples).__name__}")
    if target is None:
        spec = samples.info.get("target")
        if not isinstance(spec, dict) or "name" not in spec:
            raise BadInput("these samples record no target; pass target=")
        options = {k: v for k, v in (spec.get("options") or {}).items()}
        target = build_target({"name": spec["name"], **options, "temperature": spec.get("temperature")})
    else:
        target = as_target(target)
    ref = None
    if reference is not None:
        if isinstance(reference, Samples):
            ref = reference.x.detach().double()
        elif isinstance(reference, str | Path):
            ref = torch.as_tensor(load_reference(reference, target.dim))
        else:
            ref = torch.as_tensor(np.asarray(reference, dtype=np.float64))
            ref = ref.reshape(ref.shape[0], -1)
            if ref.shape[1] != target.dim:
                raise BadInput(f"reference has dimension {ref.shape[1]}, the target has {target.dim}")
    gen = torch.Generator().manual_seed(seed + 1)
    return suite_evaluate(samples, target, ref, generator=gen, max_n=max_n, noise_floors=noise_floors)


def evaluate_run(run_dir: str | Path, reference: str | Path | None = None, seed: int = 0,
                 progress: Progress | bool | None = None) -> dict[str, Any]:
    """Recompute a run folder's metrics and plots (``boltzpath evaluate``); returns metrics.json."""
    from boltzpath.sampling import evaluate_folder

    return evaluate_folder(run_dir, reference, seed=seed, progress=_progress(progress))


def compare_pt(run_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Parallel tempering with a finished PITA run's energy evaluations, both measured with the same
    metrics against the same reference; writes and returns ``comparison.json`` (``run pita --compare
    pt``; boltzpath/methods/compare.py)."""
    from boltzpath.methods.compare import compare_with_pt

    return compare_with_pt(run_dir, seed=seed)


def _progress(progress: Progress | bool | None) -> Progress:
    if isinstance(progress, Progress):
        return progress
    return Progress() if progress else silent()


__all__ = ["ConvergenceWarning", "Samples", "Target", "compare_pt", "dikl", "dikl_sample", "evaluate",
           "evaluate_run", "pita", "run_pita_config", "run_sample_config", "sample"]
