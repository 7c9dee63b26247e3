"""``boltzpath reference``: replica-exchange MD reference data for a peptide target.

    boltzpath reference --target aldp-fab --temperature 300 --out runs/aldp300 --n-iterations 2000

Bad input (unknown target, a non-empty folder without --overwrite/--resume, bad numbers) ends with
one line on stderr and exit status 2. Progress: a bar on stderr (periodic lines when not a
terminal) with ns/day.
"""

from __future__ import annotations

import click

from boltzpath.errors import BadInput
from boltzpath.io.atomic import DiskFull


class _BadInputExit(click.ClickException):
    exit_code = 2


def _progress():
    """REMD progress: a bar on a terminal, a line every 10 s otherwise (``boltzpath.progress``)."""
    from boltzpath.progress import Progress

    steps = Progress().steps("REMD")

    def callback(info: dict) -> None:
        acc = info["swap_acceptance"]
        steps(info["iteration"], info["n_iterations"],
              {"ns_day": float(info["ns_per_day"]), "min_swap": float(min(acc)) if acc else float("nan")})

    return callback


@click.command("reference")
@click.option("--target", "target", default="aldp-fab", show_default=True, help="peptide target name")
@click.option("--temperature", type=float, default=300.0, show_default=True, help="target temperature (K)")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="run folder")
@click.option("--n-iterations", type=int, default=2000, show_default=True, help="exchange iterations")
@click.option("--steps-per-exchange", type=int, default=500, show_default=True, help="MD steps per iteration")
@click.option("--equilibration", type=int, default=100, show_default=True, help="iterations discarded")
@click.option("--save-every", type=int, default=1, show_default=True, help="keep a frame every N iterations")
@click.option("--replicas", type=int, default=4, show_default=True, help="replicas (1 = plain Langevin MD)")
@click.option(
    "--t-max", type=float, default=None, help="top of the geometric ladder (K); default 2x temperature"
)
@click.option("--checkpoint-every", type=int, default=50, show_default=True, help="iterations per checkpoint")
@click.option("--minimize-iterations", type=int, default=200, show_default=True, help="0 skips minimisation")
@click.option("--timestep-fs", type=float, default=1.0, show_default=True)
@click.option("--all-temperatures", is_flag=True, help="also write samples for every ladder temperature")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--platform", default="auto", show_default=True, help="auto | Reference | CPU | CUDA | OpenCL")
@click.option("--overwrite", is_flag=True, help="replace an existing run folder")
@click.option("--resume", is_flag=True, help="continue the run in an existing folder from its checkpoint")
def reference(
    target,
    temperature,
    out,
    n_iterations,
    steps_per_exchange,
    equilibration,
    save_every,
    replicas,
    t_max,
    checkpoint_every,
    minimize_iterations,
    timestep_fs,
    all_temperatures,
    seed,
    platform,
    overwrite,
    resume,
) -> None:
    """Run OpenMM replica-exchange MD and write reference samples, trajectory and statistics."""
    from boltzpath.io.runs import RunDir
    from boltzpath.molecules.reference import ReferenceConfig, run_reference

    try:
        if overwrite and resume:
            raise BadInput("--overwrite and --resume exclude each other")
        cfg = ReferenceConfig(
            target=target,
            temperature_kelvin=temperature,
            n_replicas=replicas,
            t_max_kelvin=t_max,
            timestep_fs=timestep_fs,
            steps_per_exchange=steps_per_exchange,
            n_iterations=n_iterations,
            equilibration_iterations=equilibration,
            save_every=save_every,
            platform=platform,
            seed=seed,
            save_all_temperatures=all_temperatures,
            checkpoint_every=checkpoint_every,
            minimize_max_iterations=minimize_iterations,
        )
        cfg.validate()
        cfg.ladder()
        run_dir = RunDir.create(out, overwrite=overwrite, resume=resume)
        metrics = run_reference(cfg, run_dir, callback=_progress(), resume=resume)
    except BadInput as exc:
        raise _BadInputExit(str(exc).splitlines()[0] if str(exc) else "bad input") from None
    except DiskFull as exc:
        raise _BadInputExit(f"disk full: {exc}") from None
    dec = metrics["decorrelation"]
    first = next(iter(dec.values()))
    click.echo(
        f"{out}: {metrics['n']} frames at {temperature:g} K, ~{first['n_effective']:.0f} effective; "
        f"mean E {metrics['mean_energy_kj_mol']:.1f} kJ/mol; {metrics['ns_per_day'] or 0:.1f} ns/day"
    )
