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
from collections.abc import Callable
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
from boltzpath.targets.base import Target
from boltzpath.targets.registry import make_target

Progress = Callable[[int, int, dict], None]
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


def resolved_config(run: SampleRun) -> tuple[dict[str, Any], Target, Any]:
    """Fill every default in: the target's options and the method's full config."""
    target = build_target(run.target)
    cfg = method_config(run.method, run.sampler)
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


def sample_to_folder(
    run: SampleRun,
    out: str | Path,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RunDir | None:
    """Run a sampler and write a complete run folder (see ``boltzpath.io.runs``).

    Under torchrun every rank calls this; rank 0 returns the ``RunDir``, the others ``None``."""
    run.validate()
    # --- parallel hook: device policy + torchrun process group; ranks > 0 only sample
    from boltzpath.parallel.dist import init_from_env
    from boltzpath.parallel.sharded_mcmc import sample_shard

    ctx = init_from_env(run.device)
    config, target, cfg = resolved_config(run)
    on_device = target.to(ctx.device)  # metrics and plots below use the CPU target
    if not ctx.is_main:
        sample_shard(run.method, on_device, run.n, run.seed, cfg, ctx, device=ctx.device)
        return None
    # --- end parallel hook
    reference = load_reference(run.reference, target.dim) if run.reference else None
    rd = RunDir.create(out, overwrite=overwrite)
    rd.write_config(config)
    rd.log(f"sample {run.method} on {config['target']} n={run.n} seed={run.seed} on {ctx.describe()}")
    t0 = time.perf_counter()
    samples = sample_shard(run.method, on_device, run.n, run.seed, cfg, ctx, callback=progress,
                           device=ctx.device)
    samples = Samples(samples.x.cpu(), samples.energy.cpu(), None, samples.info)
    wall = time.perf_counter() - t0
    samples.info.setdefault("seed", run.seed)
    rd.write_samples(samples)
    rd.log(f"sampled in {wall:.2f} s with {samples.info.get('energy_evaluations')} energy evaluations")
    _check_finite(samples)
    metrics = {
        "energy_evaluations": samples.info.get("energy_evaluations"),
        "wall_time_s": wall,
        "sampler": {k: v for k, v in samples.info.items() if k not in ("target", "config")},
    }
    metrics.update(compute_metrics(samples, target, reference, run.reference, run.seed))
    rd.write_metrics(metrics)
    write_plots(rd, samples, target, reference)
    _method_report(run.method, rd, samples, target, cfg, run.seed)
    rd.log("done")
    rd.mark_complete()
    return rd


def compute_metrics(
    samples: Samples, target: Target, reference: np.ndarray | None, reference_name: str | None, seed: int
) -> dict[str, Any]:
    from boltzpath.metrics.suite import evaluate

    ref = torch.as_tensor(reference) if reference is not None else None
    gen = torch.Generator().manual_seed(seed + 1)
    return evaluate(samples, target, ref, generator=gen, reference_name=reference_name)


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


def evaluate_folder(run_dir: str | Path, reference: str | Path | None, seed: int = 0) -> dict[str, Any]:
    """Recompute the metrics (and plots) of a run folder against a reference file."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise BadInput(f"no run folder at {rd.path}")
    config = rd.read_config()
    if "target" not in config:
        raise BadInput(f"{rd.file('config.yaml')} names no target")
    target = build_target(config["target"])
    samples = rd.read_samples()
    if samples.dim != target.dim:
        raise BadInput(f"samples have dimension {samples.dim}, the target {target.dim}")
    ref = load_reference(reference, target.dim) if reference else None
    metrics = rd.read_metrics()
    metrics.update(compute_metrics(samples, target, ref, str(reference) if reference else None, seed))
    rd.write_metrics(metrics)
    write_plots(rd, samples, target, ref)
    rd.log(f"evaluated against {reference}")
    return metrics


def run_from_mapping(data: dict[str, Any]) -> SampleRun:
    """A ``SampleRun`` from a (possibly saved) config mapping; extra saved keys are dropped."""
    from boltzpath.config import from_dict

    if data.get("command", "sample") != "sample":
        raise BadInput(f"this config is for 'boltzpath {data['command']}', not 'sample'")
    keep = {k: v for k, v in data.items() if k not in SAVED_ONLY}
    return from_dict(SampleRun, keep, where="sample config")


__all__ = ["SampleRun", "evaluate_folder", "run_from_mapping", "sample_to_folder"]
