"""``boltzpath sample`` and ``boltzpath evaluate`` as library calls: config → run folder.

A sampling run is described by one mapping (saved verbatim, fully resolved, as ``config.yaml``)::

    command: sample
    target: {name: gmm40, temperature: 1.0, <target options>}
    method: mala
    sampler: {<the method's config dataclass, every field>}
    n: 10000
    seed: 0
    reference: null            # optional reference file for metrics
    device: auto               # auto | cpu | cuda[:i] (where to compute; not part of the result)

Under ``torchrun --nproc_per_node R`` the chains are split over the R processes
(``boltzpath.parallel.sharded_mcmc``) and rank 0 alone writes the one run folder.

``boltzpath sample --config DIR/config.yaml --out NEW`` reruns it bit-for-bit on CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import boltzpath
from boltzpath.config import to_dict
from boltzpath.errors import BadInput
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import Samples, load_reference
from boltzpath.mcmc.registry import METHODS, method_config
from boltzpath.progress import Progress, silent
from boltzpath.targets.base import Target
from boltzpath.targets.registry import make_target

#: keys written into config.yaml for provenance that are not inputs
SAVED_ONLY = ("command", "boltzpath_version")


@dataclass
class SampleRun:
    target: dict[str, Any]
    method: str
    n: int
    seed: int = 0
    sampler: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    device: str = "auto"

    def validate(self) -> None:
        if not isinstance(self.target, dict) or not isinstance(self.target.get("name"), str):
            raise BadInput("config: target must be a mapping with a 'name'")
        if self.method not in METHODS:
            raise BadInput(f"unknown method {self.method!r}; known: {', '.join(sorted(METHODS))}")
        if self.n < 1:
            raise BadInput(f"n must be >= 1, got {self.n}")
        if self.seed < 0:
            raise BadInput(f"seed must be >= 0, got {self.seed}")


def build_target(spec: dict[str, Any] | str) -> Target:
    """``{"name": ..., **options}`` (or just the name, as PITA configs store it) → a Target."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadInput(f"config: target must be a name or a mapping with a 'name', got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    return make_target(spec["name"], **options)


def resolved_config(run: SampleRun, target: Target | None = None) -> tuple[dict[str, Any], Target, Any]:
    """Fill every default in: the target's options and the method's full config. ``target``: an
    already built target (the API's callables) instead of building it from ``run.target``."""
    target = build_target(run.target) if target is None else target
    cfg = method_config(run.method, run.sampler, target=target)  # the target's defaults under run.sampler
    target_spec = {"name": run.target["name"], **target.options(), "temperature": target.temperature}
    config = {
        "command": "sample",
        "boltzpath_version": boltzpath.__version__,
        "target": target_spec,
        "method": run.method,
        "sampler": to_dict(cfg),
        "n": run.n,
        "seed": run.seed,
        "reference": run.reference,
        "device": run.device,
    }
    return config, target, cfg


def _check_finite(samples: Samples) -> None:
    bad = int((~torch.isfinite(samples.energy)).sum()) + int((~torch.isfinite(samples.x)).any(1).sum())
    if bad:
        raise BadInput(
            f"the sampler produced {bad} non-finite sample(s) (energy or positions); samples were saved "
            "for inspection — reduce the step size or check the energy function"
        )


def probe_target(target: Target) -> None:
    """Evaluate the energy once on two prior draws (own generator) so a wrong shape or a crashing
    energy is reported before any folder is written. Counted like every evaluation; samplers
    record evaluations as differences, so their totals do not include it."""
    x = target.prior_sample(2, torch.Generator().manual_seed(12345))
    target.energy_and_grad(x)


def _same_config(saved: dict[str, Any], config: dict[str, Any]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k != "boltzpath_version"}  # noqa: E731
    return strip(saved) == strip(config)


def run_samples(run: SampleRun, config: dict, target: Target, cfg, progress: Progress, ctx=None) -> Samples:
    """Run the sampler (no files); diagnostics are added to ``samples.info``. ``ctx``: the torchrun
    context (``parallel.dist``; None: one process on the CPU). The chains are split over its ranks —
    with one process ``sample_shard`` is ``run_method`` with the generator seeded by ``run.seed``."""
    from boltzpath.metrics.convergence import next_step, samples_diagnostics
    from boltzpath.parallel.dist import DistContext
    from boltzpath.parallel.sharded_mcmc import sample_shard

    ctx = ctx or DistContext()
    samples = sample_shard(run.method, target.to(ctx.device), run.n, run.seed, cfg, ctx,
                           callback=progress.steps(run.method), device=ctx.device)
    samples = Samples(samples.x.cpu(), samples.energy.cpu(), None, samples.info)
    samples.info.setdefault("seed", run.seed)
    progress.note("diagnostics: R-hat and ESS per chain (ArviZ)")
    diag = samples_diagnostics(samples, target)
    if diag is not None:
        if diag.get("warning"):
            sc = config["sampler"]
            diag["warning"] += (f", {next_step(run.method)} (now n={run.n}, burn_in={sc.get('burn_in')}, "
                                f"thin={sc.get('thin')}, chains={sc.get('chains')})")
        samples.info["diagnostics"] = diag
    return samples


def sample_to_folder(
    run: SampleRun,
    out: str | Path,
    overwrite: bool = False,
    progress: Progress | None = None,
    resume: bool = False,
    target: Target | None = None,
) -> tuple[RunDir, Samples, dict[str, Any]] | None:
    """Run a sampler and write a complete run folder (see ``boltzpath.io.runs``). Under torchrun
    every rank calls this; rank 0 returns (run folder, samples, metrics), the others None.

    Everything checkable is checked before the folder is created (config, target, reference, one
    energy evaluation), so bad input leaves nothing behind. A failure or Ctrl-C later is recorded in
    ``run.log``; ``resume=True`` then reuses the saved samples (or resamples: a seed reproduces them
    bit-for-bit) and redoes what is missing. Returns (run folder, samples, metrics).
    """
    progress = progress or silent()
    run.validate()
    config, target, cfg = resolved_config(run, target)
    # --- parallel hook: device policy + torchrun process group; ranks > 0 only sample
    from boltzpath.parallel.dist import init_from_env
    from boltzpath.parallel.sharded_mcmc import sample_shard

    ctx = init_from_env(run.device)
    if not ctx.is_main:
        sample_shard(run.method, target.to(ctx.device), run.n, run.seed, cfg, ctx, device=ctx.device)
        return None
    # --- end parallel hook
    reference, reference_name = reference_or_bundled(run.reference, target)
    probe_target(target)
    rd = RunDir.create(out, overwrite=overwrite, resume=resume)
    hint = f"rerun with --resume to continue (or --overwrite to start again) into {rd.path}"
    try:
        if resume and rd.file("config.yaml").is_file():
            if not _same_config(rd.read_config(), config):
                raise BadInput(f"{rd.path} holds a run with a different config; use --overwrite or a new "
                               "--out")
            if rd.is_complete:
                rd.log("resume: already complete")
                return rd, rd.read_samples(), rd.read_metrics()
        rd.write_config(config)
        rd.log(f"sample {run.method} on {config['target']} n={run.n} seed={run.seed}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if resume and rd.file("samples.npz").is_file():
            samples = rd.read_samples()
            rd.log("resume: samples.npz kept")
            timings["sampling"] = float(samples.info.get("wall_time_s", 0.0))
        else:
            samples = run_samples(run, config, target, cfg, progress, ctx)
            timings["sampling"] = time.perf_counter() - t0
            rd.write_samples(samples)
            rd.log(f"sampled in {timings['sampling']:.2f} s with {samples.info.get('energy_evaluations')} "
                   "energy evaluations")
        _check_finite(samples)
        warning = (samples.info.get("diagnostics") or {}).get("warning")
        if warning:
            rd.log(f"WARNING {warning}")
        t1 = time.perf_counter()
        progress.note("metrics: computing")
        metrics = {
            "energy_evaluations": samples.info.get("energy_evaluations"),
            "wall_time_s": timings["sampling"],
            "sampler": {k: v for k, v in samples.info.items()
                        if k not in ("target", "config", "diagnostics")},
            "diagnostics": samples.info.get("diagnostics"),
        }
        metrics.update(compute_metrics(samples, target, reference, reference_name, run.seed, progress))
        timings["metrics"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        progress.note("plots: drawing")
        write_plots(rd, samples, target, reference)
        _method_report(run.method, rd, samples, target, cfg, run.seed)
        timings["plots"] = time.perf_counter() - t2
        metrics["timings_s"] = {**timings, "total": sum(timings.values())}
        rd.write_metrics(metrics)
        rd.log("done")
        rd.mark_complete()
    except KeyboardInterrupt:
        rd.record_failure("interrupted (Ctrl-C / SIGINT)", hint)
        raise
    except BadInput as exc:
        rd.record_failure(str(exc), hint)
        raise BadInput(f"{str(exc).splitlines()[0]} [{hint}]") from None
    except Exception as exc:
        rd.record_failure(f"{type(exc).__name__}: {exc}", hint)
        raise
    return rd, samples, metrics


def compute_metrics(
    samples: Samples, target: Target, reference: np.ndarray | None, reference_name: str | None, seed: int,
    progress: Progress | None = None, **options,
) -> dict[str, Any]:
    from boltzpath.metrics.suite import evaluate

    progress = progress or silent()
    ref = torch.as_tensor(reference) if reference is not None else None
    gen = torch.Generator().manual_seed(seed + 1)
    return evaluate(samples, target, ref, generator=gen, reference_name=reference_name,
                    callback=lambda name: progress.note(f"metrics: {name} done"), **options)


def write_plots(rd: RunDir, samples: Samples, target: Target, reference: np.ndarray | None) -> list[Path]:
    from boltzpath.report.plots import plot_run

    ref = torch.as_tensor(reference) if reference is not None else None
    return plot_run(rd.path, samples, target, ref)


def _method_report(method: str, rd: RunDir, samples: Samples, target: Target, cfg, seed: int) -> None:
    """Extra, method-specific figures (DiGS: mode traces next to MALA at equal cost)."""
    if method != "digs" or not hasattr(target, "mode_index"):
        return
    from boltzpath.report.mixing import digs_report

    gen = torch.Generator().manual_seed(seed + 2)
    for path in digs_report(rd.path, samples, target, cfg, gen):
        rd.log(f"wrote {Path(path).name}")


def reference_or_bundled(path: str | Path | None, target: Target) -> tuple[np.ndarray | None, str | None]:
    """(reference samples, their name) for the metrics: the user's file when one is given, else the
    certified set shipped for this target at its temperature (``metrics/bundled.py``: LJ-13 and DW-4
    at T = 1, AL3 and aldp-pita at 300 K — what ``run pita`` scores its last stage against), else
    (None, None)."""
    if path:
        return load_reference(path, target.dim), str(path)
    from boltzpath.metrics.bundled import bundled_reference

    bundled = bundled_reference(target)
    return bundled if bundled is not None else (None, None)


def folder_target(config: dict[str, Any]) -> Target:
    """The target a run folder's config names (sample configs: a mapping; PITA: name + options)."""
    spec = config["target"]
    if isinstance(spec, str) and isinstance(config.get("target_options"), dict):
        spec = {"name": spec, **config["target_options"]}
        if config.get("temperatures"):
            spec.setdefault("temperature", config["temperatures"][-1])
    return build_target(spec)


def evaluate_folder(run_dir: str | Path, reference: str | Path | None, seed: int = 0,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Recompute the metrics (and plots) of a run folder against a reference file."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise BadInput(f"no run folder at {rd.path}")
    config = rd.read_config()
    if "target" not in config:
        raise BadInput(f"{rd.file('config.yaml')} names no target")
    target = folder_target(config)
    samples = rd.read_samples()
    if samples.dim != target.dim:
        raise BadInput(f"samples have dimension {samples.dim}, the target {target.dim}")
    ref, name = reference_or_bundled(reference, target)
    metrics = rd.read_metrics()
    fresh = compute_metrics(samples, target, ref, name, seed, progress)
    if RunDir.final_evaluation(metrics) is metrics:
        metrics.update(fresh)
    else:  # PITA, DiKL: the old entry, scored against another reference, is replaced whole (stages kept)
        metrics["evaluation"] = {"mean_energy": float(samples.energy.double().mean()), **fresh}
    rd.write_metrics(metrics)
    write_plots(rd, samples, target, ref)
    rd.log(f"evaluated against {name}")
    return metrics


def run_from_mapping(data: dict[str, Any]) -> SampleRun:
    """A ``SampleRun`` from a (possibly saved) config mapping; extra saved keys are dropped."""
    from boltzpath.config import from_dict

    if data.get("command", "sample") != "sample":
        raise BadInput(f"this config is for 'boltzpath {data['command']}', not 'sample'")
    keep = {k: v for k, v in data.items() if k not in SAVED_ONLY}
    return from_dict(SampleRun, keep, where="sample config")


__all__ = ["SampleRun", "evaluate_folder", "folder_target", "reference_or_bundled", "run_from_mapping",
           "run_samples", "sample_to_folder"]
