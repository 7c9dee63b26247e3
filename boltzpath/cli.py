"""The ``boltzpath`` command line. Thin: parse, build a config, call the library.

Bad input (``BadInput``, a full disk) ends with one line on stderr and exit status 2 — never a
traceback. Commands that need optional parts (``run pita``, ``reference``) are imported lazily.
"""

from __future__ import annotations

import importlib
import sys

import click

from boltzpath.errors import BadInput
from boltzpath.io.atomic import DiskFull

EXIT_BAD_INPUT = 2


class BadInputExit(click.ClickException):
    exit_code = EXIT_BAD_INPUT


# name → (module, attribute) of click commands living next to the code they drive
LAZY_COMMANDS = {"reference": ("boltzpath.molecules.reference_cli", "reference")}
LAZY_RUN_COMMANDS = {"pita": ("boltzpath.methods.pita_cli", "pita"),
                     "dikl": ("boltzpath.methods.dikl.cli", "dikl"),
                     "dikl-sample": ("boltzpath.methods.dikl.cli", "dikl_sample")}


class Group(click.Group):
    """A click group that turns bad input into exit 2 and loads some subcommands lazily."""

    lazy: dict[str, tuple[str, str]] = {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attr = self.lazy[name]
            try:
                return getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                return _unavailable(name, str(exc))
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        return one_line_errors(super().invoke)(ctx)


def one_line_errors(fn):
    """Wrap ``fn`` so bad input, a full disk or a permission error end as one line and exit 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BadInput as exc:
            raise BadInputExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except DiskFull as exc:
            raise BadInputExit(f"disk full: {exc}") from None
        except PermissionError as exc:
            raise BadInputExit(f"permission denied: {exc.filename or exc}") from None

    return wrapper


def _unavailable(name: str, why: str) -> click.Command:
    """Stands in for a command whose optional dependencies are missing; says why when run."""

    def fail(**_):
        raise BadInputExit(f"'{name}' is unavailable here: {why}")

    return click.Command(name, callback=fail, help=f"(unavailable: {why})",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class MainGroup(Group):
    lazy = LAZY_COMMANDS


class RunGroup(Group):
    lazy = LAZY_RUN_COMMANDS


def set_threads(ctx, param, value):
    """``--threads N``: torch's intra-op threads (one thread beside a busy process is often faster)."""
    if value is None:
        return value
    if value < 1:
        raise BadInput(f"--threads must be >= 1, got {value}")
    import torch

    torch.set_num_threads(int(value))
    return value


def threads_option(f):
    return click.option("--threads", type=int, default=None, callback=set_threads, expose_value=False,
                        is_eager=True, help="torch CPU threads (default: torch's choice)")(f)


def interrupted(out) -> click.exceptions.Exit:
    """Ctrl-C: one line saying what was kept and how to continue; exit status 130."""
    click.echo(f"interrupted; {out} keeps what was finished (see its run.log) — rerun the same command "
               "with --resume to continue", err=True)
    return click.exceptions.Exit(130)


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="boltzpath")
def cli() -> None:
    """Sample Boltzmann densities with diffusion models and the baselines they are judged against."""


@cli.command("targets")
def targets_cmd() -> None:
    """List the targets and their options."""
    from boltzpath.targets.registry import TARGETS, target_options

    for name, entry in TARGETS.items():
        click.echo(f"{name:12s} {entry.summary}")
        opts = ", ".join(f"{k}={v}" for k, v in target_options(name).items())
        if opts:
            click.echo(f"{'':12s}   options: {opts}")
    click.echo(f"{'module:fn':12s} your own energy, a function (batch, dim) -> E/kT; "
               "needs --set target.dim=D")


@cli.command("methods")
def methods_cmd() -> None:
    """List the sampling methods and their options (set with --set sampler.KEY=VALUE)."""
    from boltzpath.config import to_dict
    from boltzpath.mcmc.registry import METHODS, method_config

    for name in METHODS:
        try:
            cfg = to_dict(method_config(name))
        except ImportError as exc:
            click.echo(f"{name:10s} unavailable ({exc})")
            continue
        click.echo(f"{name:10s} " + ", ".join(f"{k}={v}" for k, v in cfg.items()))


@cli.command("sample")
@click.option("--target", "target_name", help="target name (see `boltzpath targets`) or module:function")
@click.option("--method", help="mala | hmc | langevin | pt | digs")
@click.option("--n-samples", "--num-samples", "--n", "n", type=int,
              help="number of samples to return (--n is a short alias)")
@click.option("--seed", type=int, help="random seed (default 0)")
@click.option("--out", required=True, type=click.Path(), help="run folder to write")
@click.option("--temperature", type=float, help="target temperature (reduced units, or kelvin for peptides)")
@click.option("--reference", type=click.Path(), help="reference samples (.npy or samples.npz) for metrics")
@click.option("--config", "config_file", type=click.Path(), help="a YAML config (e.g. a run's config.yaml)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config entry, e.g. sampler.step_size=0.05 or target.pair_factor=1")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--resume", is_flag=True, help="continue an interrupted or failed run in --out")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
@click.option("--device", help="auto | cpu | cuda | cuda:i (default auto: a GPU when present)")
@threads_option
def sample_cmd(target_name, method, n, seed, out, temperature, reference, config_file, overrides, overwrite,
               resume, quiet, device):
    """Sample a target with a baseline or DiGS and write a run folder."""
    from boltzpath.api import run_sample_config
    from boltzpath.config import deep_merge, load_yaml, parse_overrides
    from boltzpath.progress import Progress

    if overwrite and resume:
        raise BadInput("--overwrite and --resume exclude each other")
    data = load_yaml(config_file) if config_file else {}
    cli_values: dict = {}
    if target_name is not None:
        if isinstance(data.get("target"), dict) and data["target"].get("name") != target_name:
            data["target"] = {}
        cli_values["target"] = {"name": target_name}
    if temperature is not None:
        cli_values.setdefault("target", {})["temperature"] = temperature
    if method is not None:
        if data.get("method") not in (None, method):
            data.pop("sampler", None)
        cli_values["method"] = method
    for key, value in (("n", n), ("seed", seed), ("reference", reference), ("device", device)):
        if value is not None:
            cli_values[key] = value
    data = deep_merge(deep_merge(data, cli_values), parse_overrides(overrides))
    for key, flag in (("target", "--target"), ("method", "--method"), ("n", "--n-samples")):
        if key not in data:
            raise BadInput(f"missing {flag} (or '{key}' in --config)")
    data.setdefault("seed", 0)
    progress = Progress(enabled=not quiet)
    try:
        result = run_sample_config(data, out, overwrite=overwrite, resume=resume, progress=progress)
    except KeyboardInterrupt:
        raise interrupted(out) from None
    if result is None:  # a torchrun worker (rank > 0): rank 0 wrote the folder and reports
        return
    rd, samples, metrics = result
    timings = metrics.get("timings_s", {})
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
    click.echo(f"wrote {rd.path}: {samples.n} samples, {metrics.get('energy_evaluations')} energy "
               f"evaluations; {parts} (total {timings.get('total', 0):.1f} s)")
    warning = (metrics.get("diagnostics") or {}).get("warning")
    if warning:
        click.echo(f"WARNING {warning}", err=True)


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--reference", type=click.Path(), help="reference samples (.npy (n, dim) or samples.npz)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for subsampling")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
@threads_option
def evaluate_cmd(run_dir, reference, seed, quiet):
    """Recompute a run folder's metrics and plots against a reference set."""
    from boltzpath.api import evaluate_run
    from boltzpath.io.runs import RunDir
    from boltzpath.progress import Progress

    metrics = evaluate_run(run_dir, reference, seed=seed, progress=Progress(enabled=not quiet))
    shown = RunDir.final_evaluation(metrics)
    click.echo(f"reference: {shown.get('reference') or 'none (reference-free metrics only)'}")
    for name, entry in sorted(shown.get("metrics", {}).items()):
        if isinstance(entry, dict) and "value" in entry:
            click.echo(f"{name:32s} {entry['value']!s:>14}  (n={entry.get('n')})")


@cli.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="the HTML file to write")
@threads_option
def report_cmd(run_dirs, out):
    """One self-contained HTML page comparing run folders (metrics, cost-quality plots, figures)."""
    from boltzpath.report.html import write_report

    path = write_report([str(d) for d in run_dirs], out)
    click.echo(f"wrote {path} ({len(run_dirs)} runs)")


@cli.group("run", cls=RunGroup)
def run_group() -> None:
    """Run a diffusion-based method (PITA, DiKL) end to end."""


def main() -> None:
    try:
        cli.main(prog_name="boltzpath")
    except KeyboardInterrupt:  # pragma: no cover - interactive (outside a command body)
        click.echo("interrupted; rerun with --resume where the command supports it", err=True)
        sys.exit(130)
    finally:  # parallel hook: under torchrun, leave the process group before exiting
        if "torch.distributed" in sys.modules:
            from boltzpath.parallel.dist import leave_process_group

            leave_process_group()


if __name__ == "__main__":  # pragma: no cover
    main()
