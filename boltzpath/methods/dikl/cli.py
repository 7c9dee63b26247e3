"""``boltzpath run dikl`` (train + sample) and ``boltzpath run dikl-sample`` (fresh draws, no training).

Configuration, lowest to highest precedence: ``DiKLConfig`` defaults → ``presets/dikl_<preset>.yaml``
→ ``presets/dikl_<target>_<preset>.yaml`` (when it exists) → ``--target``/``--seed`` → ``--set
key=value``. ``--preset`` also accepts a path to a YAML file. Bad input: one line, exit status 2.
"""

from __future__ import annotations

import click

from boltzpath.cli import one_line_errors
from boltzpath.methods.dikl.config import resolve_config
from boltzpath.methods.dikl.sampling import sample_from_run


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
    for warning in m.get("warnings", []):
        click.echo(f"WARNING {warning}", err=True)


@click.command("dikl-sample")
@click.option("--from", "source", required=True, type=click.Path(), help="a finished `run dikl` folder")
@click.option("--n", "n", type=int, required=True, help="number of samples")
@click.option("--out", "out", required=True, type=click.Path(), help="run folder to write")
@click.option("--seed", type=int, default=1, show_default=True, help="sampling seed")
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="evaluate and plot the samples")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:i")
@click.option("--precision", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
              help="the EGNN generator's edge MLPs in bfloat16: faster on CPUs with AVX512-BF16/AMX and on "
                   "GPUs, samples within bfloat16 resolution of float32's (docs/dikl.md)")
@one_line_errors
def dikl_sample(source, n, out, seed, metrics, overwrite, device, precision):
    """Draw fresh samples from a trained DiKL generator (zero energy evaluations, no training)."""
    rd, samples = sample_from_run(source, n, out, seed, metrics, overwrite, device, precision=precision)
    click.echo(f"wrote {rd.path} ({n} samples in {samples.info['sampling_time_s']:.3g} s, "
               "0 energy evaluations)")
