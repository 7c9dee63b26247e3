"""``pita`` command: run (or resume) a PITA ladder from a preset (registered as ``boltzpath run pita``).

Configuration, lowest to highest precedence: ``PITAConfig`` defaults → ``presets/pita_<preset>.yaml``
→ ``presets/pita_<target>_<preset>.yaml`` (when it exists) → ``--target``/``--seed`` →
``--set key=value`` overrides. ``--preset`` also accepts a path to a YAML file. Progress goes to
stderr (tqdm); a bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from boltzpath.config import deep_merge, from_dict, load_yaml, parse_overrides
from boltzpath.errors import BadInput

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
PRESETS = ("quick", "cpu", "paper")


class _BadInput(click.ClickException):
    exit_code = 2


def resolve_config(target: str | None, preset: str, seed: int | None, overrides: tuple[str, ...]):
    """The ``PITAConfig`` for these options (see the module docstring)."""
    from boltzpath.methods.pita_config import PITAConfig

    if preset in PRESETS:
        data = load_yaml(PRESET_DIR / f"pita_{preset}.yaml")
    elif preset.endswith((".yaml", ".yml")):
        data = load_yaml(preset)
    else:
        raise BadInput(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)} or a .yaml file")
    over = parse_overrides(list(overrides))
    name = target or over.get("target") or data.get("target") or PITAConfig.target
    if not isinstance(name, str):
        raise BadInput(f"target must be a name, got {name!r}")
    specific = PRESET_DIR / f"pita_{name.replace('-', '_')}_{preset}.yaml"
    if preset in PRESETS and specific.is_file():
        data = deep_merge(data, load_yaml(specific))
    data = deep_merge(data, {"target": name})
    if seed is not None:
        data["seed"] = int(seed)
    return from_dict(PITAConfig, deep_merge(data, over), where=f"pita preset {preset!r}")


class _Progress:
    """One tqdm bar on stderr whose description follows the ladder's events."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1, disable=not enabled, leave=False, dynamic_ncols=True)
        self.key = None

    def __call__(self, event: str, info: dict) -> None:
        if event == "stage":
            self.bar.write(f"stage {info['stage']} done (T={info['temperature']:g})", file=sys.stderr)
            return
        key = (event, info.get("stage"), info.get("population"))
        total, step = info.get("of"), info.get("step")
        if total is None or step is None:
            return
        if key != self.key:
            self.key = key
            self.bar.reset(total=total)
            self.bar.set_description(f"{event} stage {info.get('stage', 0)}")
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


@click.command("pita")
@click.option("--target", default=None, help="registered target name (lj13, dw4, gmm40, …)")
@click.option("--preset", default="quick", show_default=True, help="quick | cpu | paper | path.yaml")
@click.option("--out", "out", required=True, type=click.Path(), help="run folder")
@click.option("--seed", type=int, default=None, help="overrides the preset's seed")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--resume", is_flag=True, help="continue a killed run from its last completed step")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="config override (repeatable)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:i")
def pita(target, preset, out, seed, overwrite, resume, overrides, quiet, device):
    """Progressive inference-time annealing (PITA) of diffusion models down a temperature ladder."""
    from boltzpath.methods.pita import run_pita

    try:
        cfg = resolve_config(target, preset, seed, overrides)
        progress = _Progress(not quiet)
        try:
            result = run_pita(cfg, out, overwrite=overwrite, resume=resume, callback=progress, device=device)
        finally:
            progress.close()
    except BadInput as exc:
        raise _BadInput(str(exc).splitlines()[0]) from None
    if result is None:  # a torchrun worker (rank > 0): rank 0 wrote the folder and reports
        return
    ev = result.metrics["energy_evaluations"]
    click.echo(f"wrote {result.run.path} ({result.samples.n} samples at T={cfg.temperatures[-1]:g}, "
               f"{ev['total']} energy evaluations, {result.metrics['wall_time_s']:.1f} s)")
