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
        try:
            return super().invoke(ctx)
        except BadInput as exc:
            raise BadInputExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except DiskFull as exc:
            raise BadInputExit(f"disk full: {exc}") from None


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


def progress_callback(desc: str):
    """A ``callback(it, total, info)`` drawing a tqdm bar on stderr (silent when not a terminal)."""
    from tqdm.auto import tqdm

    state: dict = {}

    def callback(it: int, total: int, info: dict) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit="step", disable=None, leave=False)
        bar.update(it - bar.n)
        if info and it % 50 == 0:
            bar.set_postfix({k: f"{v:.3g}" for k, v in info.items() if isinstance(v, float)}, refresh=False)
        if it >= total:
            bar.close()
            state.pop("bar", None)

    return callback


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
@click.option("--n", "n", type=int, help="number of samples to return")
@click.option("--seed", type=int, help="random seed (default 0)")
@click.option("--out", required=True, type=click.Path(), help="run folder to write")
@click.option("--temperature", type=float, help="target temperature (reduced units, or kelvin for peptides)")
@click.option("--reference", type=click.Path(), help="reference samples (.npy or samples.npz) for metrics")
@click.option("--config", "config_file", type=click.Path(), help="a YAML config (e.g. a run's config.yaml)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config entry, e.g. sampler.step_size=0.05 or target.pair_factor=1")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
def sample_cmd(target_name, method, n, seed, out, temperature, reference, config_file, overrides, overwrite):
    """Sample a target with a baseline or DiGS and write a run folder."""
    from boltzpath.config import deep_merge, load_yaml, parse_overrides
    from boltzpath.sampling import run_from_mapping, sample_to_folder

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
    for key, value in (("n", n), ("seed", seed), ("reference", reference)):
        if value is not None:
            cli_values[key] = value
    data = deep_merge(deep_merge(data, cli_values), parse_overrides(overrides))
    for key in ("target", "method", "n"):
        if key not in data:
            raise BadInput(f"missing --{key} (or '{key}' in --config)")
    data.setdefault("seed", 0)
    run = run_from_mapping(data)
    rd = sample_to_folder(run, out, overwrite=overwrite, progress=progress_callback(run.method))
    metrics = rd.read_metrics()
    click.echo(f"wrote {rd.path}  ({metrics.get('energy_evaluations')} energy evaluations, "
               f"{metrics.get('wall_time_s', 0):.1f} s)")


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--reference", type=click.Path(), help="reference samples (.npy (n, dim) or samples.npz)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for subsampling")
def evaluate_cmd(run_dir, reference, seed):
    """Recompute a run folder's metrics and plots against a reference set."""
    from boltzpath.sampling import evaluate_folder

    metrics = evaluate_folder(run_dir, reference, seed=seed)
    for name, entry in sorted(metrics.get("metrics", {}).items()):
        if isinstance(entry, dict) and "value" in entry:
            click.echo(f"{name:32s} {entry['value']!s:>14}  (n={entry.get('n')})")


@cli.group("run", cls=RunGroup)
def run_group() -> None:
    """Run a diffusion-based method (PITA, DiKL) end to end."""


def main() -> None:
    try:
        cli.main(prog_name="boltzpath")
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted; rerun with --resume where the command supports it", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
