"""``boltzpath run dikl`` (train + sample) and ``boltzpath run dikl-sample`` (fresh draws, no training).

Configuration, lowest to highest precedence: ``DiKLConfig`` defaults → ``presets/dikl_<preset>.yaml``
→ ``presets/dikl_<target>_<preset>.yaml`` (when it exists) → ``--target``/``--seed`` → ``--set
key=value``. ``--preset`` also accepts a path to a YAML file. Bad input: one line, exit status 2.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from boltzpath.cli import one_line_errors
from boltzpath.config import resolve_preset
from boltzpath.errors import BadInput


def resolve_config(target: str | None, preset: str, seed: int | None, overrides: tuple[str, ...],
                   extra: dict | None = None):
    """The ``DiKLConfig`` for these options (see the module docstring); ``extra``: a nested mapping
    of overrides applied last (the Python API's keywords)."""
    from boltzpath.methods.dikl.config import DiKLConfig

    return resolve_preset("dikl", DiKLConfig, target, preset, seed, overrides, extra=extra)


@click.command("dikl")
@click.option("--target", default=None, help="gmm40 | manywell32 | dw4 | lj13 (any registered target)")
@click.option("--preset", default="quick", show_default=True, help="quick | cpu | paper | path.yaml")
@click.option("--out", "out", required=True, type=click.Path(), help="run folder")
@click.option("--seed", type=int, default=None, help="overrides the preset's seed")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--resume", is_flag=True, help="continue a killed run from its last checkpoint")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="config override (repeatable)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:i")
@one_line_errors
def dikl(target, preset, out, seed, overwrite, resume, overrides, quiet, device):
    """Train a one-step generator with the reverse diffusive KL (DiKL), then sample it."""
    from boltzpath.methods.dikl.run import run_dikl
    from boltzpath.progress import Progress

    cfg = resolve_config(target, preset, seed, overrides)
    result = run_dikl(cfg, out, overwrite=overwrite, resume=resume,
                      callback=Progress(enabled=not quiet).steps("dikl"), device=device)
    m = result.metrics
    click.echo(f"wrote {result.run.path} ({m['n']} samples, {m['energy_evaluations']['total']} energy "
               f"evaluations in training, {m['wall_time_s']:.1f} s)")


@click.command("dikl-sample")
@click.option("--from", "source", required=True, type=click.Path(), help="a finished `run dikl` folder")
@click.option("--n", "n", type=int, required=True, help="number of samples")
@click.option("--out", "out", required=True, type=click.Path(), help="run folder to write")
@click.option("--seed", type=int, default=1, show_default=True, help="sampling seed")
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="evaluate and plot the samples")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:i")
@one_line_errors
def dikl_sample(source, n, out, seed, metrics, overwrite, device):
    """Draw fresh samples from a trained DiKL generator (zero energy evaluations, no training)."""
    rd, samples = sample_from_run(source, n, out, seed, metrics, overwrite, device)
    click.echo(f"wrote {rd.path} ({n} samples in {samples.info['sampling_time_s']:.3g} s, "
               "0 energy evaluations)")


def draw_from_run(source, n: int, seed: int = 1, device="auto", target=None):
    """(Samples, config) — ``n`` fresh generator samples of run folder ``source`` (nothing written).
    ``samples.info`` records the source, the target, 0 energy evaluations and the draw time."""
    from boltzpath.io.samples import Samples
    from boltzpath.methods.dikl.run import draw, load_generator

    if n < 1:
        raise BadInput(f"--n must be >= 1, got {n}")
    gen, target, cfg = load_generator(source, device, target)
    samples, seconds = draw(gen, target, n, seed)
    info = {"method": "dikl-sample", "source": str(source), "target": target.describe(),
            "energy_evaluations": 0, "sampling_time_s": seconds, "device": str(next(gen.parameters()).device)}
    return Samples(samples.x, samples.energy, None, info), cfg


def sample_from_run(source, n: int, out, seed: int = 1, metrics: bool = True, overwrite: bool = False,
                    device="auto", target=None):
    """Write ``n`` fresh generator samples of run ``source`` into run folder ``out``; returns
    (RunDir, Samples)."""
    from boltzpath.io.runs import RunDir
    from boltzpath.parallel.device import resolve_device

    if n < 1:
        raise BadInput(f"--n must be >= 1, got {n}")
    if Path(out).resolve() == Path(source).resolve():
        raise BadInput("--out must not be the --from run folder (it would be overwritten)")
    resolve_device(device)  # a missing GPU is reported before the folder exists
    t0 = time.perf_counter()
    samples, cfg = draw_from_run(source, n, seed, device, target)
    rd = RunDir.create(out, overwrite=overwrite)
    rd.write_config({"method": "dikl-sample", "source": str(Path(source).resolve()), "n": n, "seed": seed})
    seconds = samples.info["sampling_time_s"]
    out_metrics = {"method": "dikl-sample", "target": cfg.target, "n": n, "energy_evaluations": 0,
                   "sampling_time_s": seconds, "device": samples.info["device"],
                   "source_energy_evaluations": RunDir(source).read_metrics().get("energy_evaluations")}
    if metrics:
        import torch

        from boltzpath.methods.pita_report import stage_metrics
        from boltzpath.targets.registry import make_target

        cpu_target = make_target(cfg.target, **cfg.target_options) if target is None else target.to("cpu")
        gen = torch.Generator().manual_seed(seed)
        out_metrics["evaluation"] = stage_metrics(samples, cpu_target, None, gen, cfg.eval_max_n, rd, False,
                                                  cfg.plots)
    out_metrics["wall_time_s"] = time.perf_counter() - t0
    rd.write_samples(samples)
    rd.write_metrics(out_metrics)
    rd.log(f"dikl-sample: {n} samples from {source} in {seconds:.3g} s on {samples.info['device']}")
    rd.mark_complete()
    return rd, samples
