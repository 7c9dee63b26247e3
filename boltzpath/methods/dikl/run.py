"""``run_dikl``: train a DiKL generator into a run folder, then draw its samples (SPEC §7).

Run folder (``io.runs.RunDir``, every file atomic)::

    config.yaml, run.log, checkpoint.pt (resumable training state), generator.pt (final weights),
    samples.npz (``n_samples`` draws, E/kT evaluated off the books), metrics.json, training.png,
    energy_hist.png / distances.png / density_2d.png … (``report.plots``), COMPLETE

Counting: training evaluates the target only inside the posterior sampler (the target counts);
generator selection (``select``, off by default) counts its MALA checks apart;
drawing samples is one generator pass and zero evaluations — the energies stored with the samples
(and the metrics) come from ``metrics.energies.uncounted_energy``, as for every method's evaluation.
Resume: the state in ``checkpoint.pt`` (every ``train.checkpoint_every`` iterations) is reloaded and
training continues from it bit-for-bit; a folder with COMPLETE is returned as it is.
``callback(iteration, total, record)`` reports progress; algorithms never print.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from boltzpath.config import from_dict, to_dict
from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_torch_save
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import Samples
from boltzpath.methods.dikl.config import DiKLConfig
from boltzpath.methods.dikl.networks import build_networks
from boltzpath.methods.dikl.report import convergence_report, convergence_warning, write_training_plot
from boltzpath.methods.dikl.schedule import VPSchedule
from boltzpath.methods.dikl.selection import mala_shift, selection_rng
from boltzpath.methods.dikl.trainer import DiKLState, init_state, iterate, read_checkpoint
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.parallel.device import resolve_device
from boltzpath.sampling import reference_or_bundled
from boltzpath.targets.registry import make_target

Callback = Callable[[int, int, dict], None]
GENERATOR_FORMAT = "boltzpath-dikl-generator-v1"


@dataclass
class DiKLResult:
    samples: Samples
    metrics: dict
    run: RunDir


def _open(cfg: DiKLConfig, out, overwrite: bool, resume: bool) -> RunDir:
    run = RunDir.create(out, overwrite=overwrite, resume=resume)
    run.claim_config(to_dict(cfg), to_dict(DiKLConfig()))
    return run


def draw(generator, target, n: int, seed: int, block: int = 4096, fast: bool = True,
         precision: str = "float32") -> tuple[Samples, float]:
    """n generator samples (no energy evaluation counted) and the seconds the generator took;
    energies for metrics are computed off the books afterwards. The latent z is drawn ``block``
    rows at a time from one seeded generator on the network's device. ``fast``: through
    ``inference.FastGenerator`` (the same function, inference-only; its set-up is timed too;
    ``precision="bfloat16"``: its edge MLPs in bfloat16, see inference.py);
    False: ``Generator.sample`` under ``torch.no_grad`` (the reference)."""
    from boltzpath.methods.dikl.inference import FastGenerator

    device = next(generator.parameters()).device
    rng = torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + 5)
    t0 = time.perf_counter()
    if precision != "float32" and not fast:
        raise BadInput(f"precision {precision!r} needs the fast sampling path")
    sampler = FastGenerator(generator, precision=precision) if fast else generator
    try:
        with torch.no_grad():
            x = torch.cat([sampler.sample(min(block, n - s), rng) for s in range(0, n, block)])
    finally:
        if fast:
            sampler.close()
    seconds = time.perf_counter() - t0
    return Samples(x=x.float().cpu(), energy=uncounted_energy(target, x).cpu()), seconds


def run_dikl(cfg: DiKLConfig, out: str | Path, overwrite: bool = False, resume: bool = False,
             callback: Callback | None = None, device: str | torch.device | None = "auto",
             target=None) -> DiKLResult:
    """Train (or resume) and sample into run folder ``out``; see the module docstring.

    ``device``: auto | cpu | cuda[:i] (``parallel.device.resolve_device``; a CUDA request without a
    GPU is ``BadInput`` before anything is written): networks, RNG and target live there; files and
    metrics on the CPU. ``target``: an already built target instead of ``cfg.target``."""
    cfg.validate()
    dev = resolve_device(device)
    callback = callback or (lambda i, n, info: None)
    run = _open(cfg, out, overwrite, resume)
    if run.is_complete:
        return DiKLResult(run.read_samples(), run.read_metrics(), run)
    target = (make_target(cfg.target, **cfg.target_options) if target is None else target).to(dev)
    # the user's file, else the certified set shipped with the package (lj13/dw4 at T = 1)
    reference, reference_name = reference_or_bundled(cfg.reference, target)
    if cfg.reference is None and reference is not None:
        run.log(f"no reference given: scoring against the {reference_name}")
    state = init_state(target, cfg, dev)
    ckpt = run.file("checkpoint.pt")
    if ckpt.is_file():
        state.load(ckpt)
    run.log(f"dikl: {cfg.target} on {dev}, from iteration {state.iteration} of {cfg.train.iterations}")
    t0, c0 = time.perf_counter(), target.counter.count
    evals = lambda: state.evaluations + target.counter.count - c0  # noqa: E731
    wall = lambda: state.wall_time_s + time.perf_counter() - t0  # noqa: E731
    total = cfg.train.iterations
    while state.iteration < total:
        record = iterate(state, target, cfg)
        callback(state.iteration, total, record)
        due = state.iteration % cfg.select.every == 0 or state.iteration == total
        if cfg.select.method != "last" and due:
            check = _select_check(state, target, cfg)
            run.log(f"selection: iteration {state.iteration}, shift {check['shift']:.4g} kT "
                    f"(best {state.best['shift']:.4g} at {state.best['iteration']})")
        if state.iteration % cfg.train.checkpoint_every == 0 or state.iteration == total:
            state.save(ckpt, evals(), wall())
            run.log(_progress_line(state.iteration, total, evals(), wall(), record))
    n_evals, train_wall = evals(), wall()
    weights = {k: v.cpu() for k, v in state.generator.state_dict().items()}
    chosen = state.iteration
    if cfg.select.method != "last" and state.best is not None:  # the selected checkpoint's generator
        weights, chosen = state.best["weights"], int(state.best["iteration"])
        state.generator.load_state_dict(weights)
    atomic_torch_save(run.file("generator.pt"), {"format": GENERATOR_FORMAT, "iterations": state.iteration,
                                                 "selected_iteration": chosen, "weights": weights})
    samples, seconds = draw(state.generator, target, cfg.n_samples, cfg.seed)
    return _finish(run, cfg, target.to("cpu"), state, samples, seconds, n_evals, train_wall, reference, dev)


def _select_check(state: DiKLState, target, cfg: DiKLConfig) -> dict:
    """One generator check (``selection.mala_shift``, counted apart); the best one's weights are kept."""
    c0 = target.counter.count
    rng = selection_rng(cfg.seed, state.iteration, state.rng.device)
    with torch.no_grad():
        x = state.generator.sample(cfg.select.n, rng)
    check = {"iteration": state.iteration, **mala_shift(target, x, rng, cfg.select)}
    state.selection_evaluations += target.counter.count - c0
    state.selection.append(check)
    if state.best is None or check["shift"] < state.best["shift"]:
        weights = {k: v.detach().cpu().clone() for k, v in state.generator.state_dict().items()}
        state.best = {"iteration": state.iteration, "shift": check["shift"], "weights": weights}
    return check


def _progress_line(iteration: int, total: int, evals: int, wall: float, record: dict) -> str:
    """One run.log line per checkpoint, so a long run shows where it is and how it is doing."""
    parts = [f"checkpoint: iteration {iteration}/{total}", f"{evals:,} energy evaluations",
             f"{wall:.0f} s ({wall / max(iteration, 1):.2f} s/iteration)"]
    for key in ("dsm_loss", "score_gap", "mala_accept", "importance_ess", "dropped_rows"):
        if isinstance(record.get(key), (int, float)):
            parts.append(f"{key} {record[key]:.4g}")
    return ", ".join(parts)


def _finish(run, cfg, target, state: DiKLState, samples, seconds, n_evals, train_wall, reference, device):
    from boltzpath.methods.pita_report import stage_metrics  # generic: suite metrics + run plots

    info = {"method": "dikl", "target": target.describe(), "energy_evaluations": n_evals,
            "wall_time_s": train_wall, "sampling_time_s": seconds}
    samples = Samples(samples.x, samples.energy, None, info)
    last = state.history[-1] if state.history else {}
    convergence = convergence_report(state.history)
    warning = convergence_warning(convergence, state.iteration)
    n_select = int(state.selection_evaluations)
    training = {"iterations": state.iteration, "last_logged": last, "convergence": convergence}
    if cfg.select.method != "last":
        training["selection"] = {
            "method": cfg.select.method, "every": cfg.select.every, "n": cfg.select.n,
            "mala_steps": cfg.select.mala_steps,
            "selected_iteration": None if state.best is None else int(state.best["iteration"]),
            "selected_shift": None if state.best is None else float(state.best["shift"]),
            "checks": state.selection}
    metrics = {
        "method": "dikl", "target": cfg.target, "n": samples.n,
        "energy_evaluations": {"training": n_evals - n_select, "selection": n_select, "sampling": 0,
                               "total": n_evals},
        "wall_time_s": train_wall, "sampling_time_s": seconds, "device": str(device),
        "training": training,
        "warnings": [warning] if warning else [],
        "evaluation": stage_metrics(samples, target, reference, torch.Generator().manual_seed(cfg.seed + 3),
                                    cfg.eval_max_n, run, cfg.eval_noise_floors, cfg.plots),
    }
    run.write_samples(samples)
    run.write_metrics(metrics)
    if cfg.plots and state.history:
        write_training_plot(run.file("training.png"), state.history)
    if warning:
        run.log(f"WARNING {warning}")
    if cfg.select.method != "last" and state.best is not None:
        run.log(f"selected the generator of iteration {state.best['iteration']} (shift "
                f"{state.best['shift']:.4g} kT; {n_select} evaluations in {len(state.selection)} checks)")
    run.log(f"dikl finished: {state.iteration} iterations, {n_evals} energy evaluations, {train_wall:.1f} s")
    run.mark_complete()
    return DiKLResult(samples, metrics, run)


def load_generator(run_dir: str | Path, device: str | torch.device | None = "cpu", target=None):
    """(generator with the run's final weights, target, config) of a finished DiKL run folder; the
    generator and the target on ``device`` (auto | cpu | cuda[:i]). ``target``: an already built
    target (for energies that cannot be rebuilt from config.yaml)."""
    dev = resolve_device(device)
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise BadInput(f"{run.path} is not a folder")
    cfg = from_dict(DiKLConfig, run.read_config(), where=f"{run.path}/config.yaml")
    f = run.file("generator.pt")
    if not f.is_file():
        raise BadInput(f"{run.path} has no generator.pt (unfinished or not a DiKL run)")
    try:
        saved = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"not a readable DiKL generator: {f} ({type(exc).__name__})") from exc
    if not isinstance(saved, dict) or saved.get("format") != GENERATOR_FORMAT:
        raise BadInput(f"{f} is not a {GENERATOR_FORMAT} file")
    target = make_target(cfg.target, **cfg.target_options) if target is None else target
    gen, _ = build_networks(target, cfg.generator, cfg.score_net, VPSchedule(cfg.ddpm))
    gen.load_state_dict(saved["weights"])
    return gen.eval().to(dev), target.to(dev), cfg


__all__ = ["DiKLResult", "draw", "load_generator", "read_checkpoint", "run_dikl"]
