"""``pita`` command: run (or resume) a PITA ladder from a preset (registered as ``boltzpath run pita``).

Configuration, lowest to highest precedence: ``PITAConfig`` defaults → ``presets/pita_<preset>.yaml``
→ ``presets/pita_<target>_<preset>.yaml`` (when it exists) → ``--target``/``--seed`` →
``--set key=value`` overrides → ``--stage0-data``/``--stage0-evaluations`` (``stage0.data`` /
``stage0.data_evaluations``). ``--preset`` also accepts a path to a YAML file. The command is a
thin layer over ``boltzpath.api.run_pita_config``. Progress goes to stderr (a bar on a terminal,
periodic lines otherwise); a bad input is one line on stderr and exit status 2 (the run group
turns ``BadInput`` into that).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from boltzpath.cli import interrupted, one_line_errors, threads_option
from boltzpath.config import load_yaml
from boltzpath.errors import BadInput
from boltzpath.methods.pita_config import add_references, resolve_config


@click.command("pita")
@click.option("--target", default=None,
              help="target name (lj13, dw4, gmm40, …) or module:function (required unless --preset is a "
                   ".yaml file naming one)")
@click.option("--preset", default="quick", show_default=True, help="quick | cpu | paper | path.yaml")
@click.option("--out", "out", required=True, type=click.Path(), help="run folder")
@click.option("--seed", type=int, default=None, help="overrides the preset's seed")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--resume", is_flag=True, help="continue a killed or failed run from its last completed step")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="config override (repeatable)")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:i")
@click.option("--stage0-data", "stage0_data", default=None, type=click.Path(dir_okay=False),
              help="T0 samples made elsewhere (.npy/.npz, (n, dim) or (n, atoms, 3), nm for peptides) "
                   "instead of the preset's stage-0 sampler")
@click.option("--stage0-evaluations", "stage0_evaluations", type=int, default=None,
              help="energy evaluations the --stage0-data file cost (recorded as user supplied; default 0)")
@click.option("--references", "references", default=None, type=click.Path(file_okay=False),
              help="folder of per-temperature references (<target>_T<T>_seed0.npy, as "
                   "benchmarks/particle_references.py writes them): every stage with a file at its "
                   "temperature is scored against it, and the ladder plot shows W2 stage by stage")
@click.option("--compare", type=click.Choice(["none", "pt"]), default="none", show_default=True,
              help="pt: afterwards, run parallel tempering with the same energy evaluations and compare "
                   "both with the same metrics (comparison.json)")
@threads_option
@one_line_errors
def pita(target, preset, out, seed, overwrite, resume, overrides, quiet, device, stage0_data,
         stage0_evaluations, references, compare):
    """Progressive inference-time annealing (PITA) of diffusion models down a temperature ladder."""
    from boltzpath.api import run_pita_config
    from boltzpath.metrics.convergence import smc_warning
    from boltzpath.progress import Progress

    if overwrite and resume:
        raise BadInput("--overwrite and --resume exclude each other")
    if target is None and not (preset.endswith((".yaml", ".yml")) and "target" in load_yaml(preset)):
        raise BadInput("missing --target (e.g. --target gmm40; `boltzpath targets` lists them)")
    extra: dict = {}
    if stage0_data is not None:  # an absolute path, so that --resume works from another folder
        extra["stage0"] = {"data": str(Path(stage0_data).resolve())}
    if stage0_evaluations is not None:
        if stage0_data is None:
            raise BadInput("--stage0-evaluations needs --stage0-data")
        extra.setdefault("stage0", {})["data_evaluations"] = stage0_evaluations
    cfg = resolve_config(target, preset, seed, overrides, extra)
    if references is not None:  # references named by --set keep precedence
        add_references(cfg, references)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warning is printed below, once
            samples = run_pita_config(cfg, None, out, overwrite=overwrite, resume=resume,
                                      progress=Progress(enabled=not quiet), device=device)
    except KeyboardInterrupt:
        raise interrupted(out) from None
    if samples is None:  # a torchrun worker (rank > 0): rank 0 wrote the folder and reports
        return
    metrics = samples.info["metrics"]
    ev = metrics["energy_evaluations"]
    click.echo(f"wrote {out} ({samples.n} samples at T={cfg.temperatures[-1]:g}, "
               f"{ev['total']} energy evaluations, {metrics['wall_time_s']:.1f} s)")
    warning = smc_warning(metrics)
    if warning:
        click.echo(f"WARNING {warning}", err=True)
    if compare == "pt":
        from boltzpath.methods.compare import compare_with_pt, format_comparison

        click.echo(format_comparison(compare_with_pt(out, seed=cfg.seed)))
