"""The PITA ladder (SPEC §6): train at T₀, then anneal model k−1 to T_k, relax, fine-tune, repeat.

Stage 0: sample T₀ with a baseline (``boltzpath.mcmc.registry.run_method``), evaluate true energies
and forces (the training buffer), train score + energy models. Stage k ≥ 1 (γ = T_{k−1}/T_k):
FK-SMC annealing of the stage-(k−1) EMA model (``smc.anneal``, ⌈buffer_size/n_particles⌉
populations), a final systematic resampling by the FK weights, the true energies and forces at
T_k of the resampled particles, a MALA relaxation at T_k (``smc.relax``), and — except at the last
stage — fine-tuning from the previous weights on the new buffer.

Run folder (``boltzpath.io.runs.RunDir``, every file atomic)::

    config.yaml, run.log, samples.npz (final stage, ``boltzpath sample`` format), metrics.json,
    ladder.png, COMPLETE
    stage_k/  samples.npz, buffer.npz, metrics.json, model.pt (k < K), *.png, COMPLETE

Resume: a stage with COMPLETE is never redone; a stage with samples but no COMPLETE goes straight
to training, which resumes from ``model.pt`` (bit-for-bit, see ``diffusion.train``). Every stage
draws from its own generators seeded by (seed, stage, purpose), so a resumed run reproduces an
uninterrupted one. ``callback(event, info)`` reports progress (events: ``sample``, ``train``,
``anneal``, ``relax``, ``stage``); algorithms never print.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from boltzpath.config import to_dict
from boltzpath.diffusion.buffer import TrainingBuffer
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import Models, build_models, load_models, train
from boltzpath.errors import BadInput
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import Samples, load_reference
from boltzpath.methods.pita_config import PITAConfig
from boltzpath.methods.pita_report import stage_metrics, write_ladder_plot
from boltzpath.smc.annealing import anneal
from boltzpath.smc.model import NetworkModel
from boltzpath.smc.relax import relax
from boltzpath.smc.resample import systematic
from boltzpath.targets.registry import make_target

Callback = Callable[[str, dict], None]
_PURPOSE = {"sample": 1, "train": 2, "metrics": 3, "init": 4}


def _generator(seed: int, stage: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + stage * 101 + _PURPOSE[purpose])


@dataclass
class PITAResult:
    samples: Samples
    metrics: dict
    run: RunDir


def _network_model(score, energy, target, schedule) -> NetworkModel:
    return NetworkModel.from_diffusion(score, energy, schedule, target.dim, target.project)


def _stage0_data(cfg: PITAConfig, target_t0, gen, callback: Callback) -> tuple[torch.Tensor, dict]:
    from boltzpath.mcmc.registry import run_method

    method = cfg.stage0.method
    try:
        samples = run_method(method, target_t0, cfg.stage0.n_samples, gen, cfg.stage0.options,
                             callback=lambda i, n, info: callback("sample", {"step": i, "of": n, **info}))
    except ModuleNotFoundError:  # a baseline not installed in this tree: MALA always is
        method = "mala"
        samples = run_method("mala", target_t0, cfg.stage0.n_samples, gen, {})
    return samples.x, {"stage0_method": method, "stage0_info": samples.info}


def _anneal_stage(cfg, k, models_path, target, target_k, schedule, gen, callback: Callback):
    """Anneal the stage-(k−1) model to T_k; returns resampled particles and diagnostics."""
    score, energy = load_models(models_path, target)
    model = _network_model(score, energy, target, schedule)
    acfg = type(cfg.anneal)(**{**to_dict(cfg.anneal), "gamma": cfg.gamma(k)})
    xs, logs = [], []
    for b in range(math.ceil(cfg.buffer_size / cfg.n_particles)):
        res = anneal(model, cfg.n_particles, schedule, acfg, gen, target.project,
                     callback=lambda i, n, info, b=b: callback("anneal", {"stage": k, "population": b,
                                                                         "step": i, "of": n, **info}))
        idx = systematic(gen, res.log_weights, cfg.n_particles)  # equal weights for the buffer
        xs.append(res.x[idx].detach())
        logs.append({"final_ess": res.ess, "log_z": res.log_z, **res.info.summary(cfg.n_particles),
                     "distinct_after_final_resampling": int(torch.unique(idx).numel()),
                     "ess_per_step": res.info.ess, "resampled_steps": res.info.resampled})
    x = torch.cat(xs)[: cfg.buffer_size]
    summary = {"gamma": acfg.gamma, "populations": logs,
               "final_ess_fraction": float(np.mean([p["final_ess"] for p in logs])) / cfg.n_particles}
    return x, summary


def _run_stage(cfg, k, run, target, schedule, reference, callback: Callback) -> tuple[Samples, dict]:
    """Produce (or reload) stage k's samples/buffer/metrics; train its model unless it is the last."""
    sdir = run.subdir(f"stage_{k}")
    temp = cfg.temperatures[k]
    target_k = target.at_temperature(temp)
    last = k == len(cfg.temperatures) - 1
    if sdir.file("samples.npz").is_file() and sdir.file("buffer.npz").is_file():
        samples, metrics = sdir.read_samples(), sdir.read_metrics()
        buffer = TrainingBuffer.load(sdir.file("buffer.npz"))
    else:
        gen, t0, counter = _generator(cfg.seed, k, "sample"), time.perf_counter(), target.counter
        evals: dict[str, int] = {}
        c = counter.count
        if k == 0:
            x, extra = _stage0_data(cfg, target_k, gen, callback)
            evals["initial_data"], c = counter.count - c, counter.count
            buffer = TrainingBuffer.from_target(target_k, x)
            evals["training_buffers"] = counter.count - c
            energy = buffer.energy
        else:
            x, extra = _anneal_stage(cfg, k, run.path / f"stage_{k - 1}" / "model.pt", target, target_k,
                                     schedule, gen, callback)
            evals["annealing"], c = counter.count - c, counter.count
            rel = relax(target_k, x, gen, cfg.relax, callback=lambda i, n, info: callback(
                "relax", {"stage": k, "step": i, "of": n, **info}))
            # relax evaluates the resampled particles once (the buffer's true energies/forces), then
            # once per MALA step; attribute the first evaluation to the buffer
            evals["training_buffers"] = x.shape[0]
            evals["relaxation"] = counter.count - c - x.shape[0]
            x, energy = rel.x, rel.energy
            buffer = TrainingBuffer(x, rel.energy, -rel.grad, None, target.n_particles, target.spatial_dim)
            extra["relaxation"] = rel.info
        samples = Samples(x=x.detach().float(), energy=energy.detach().double(),
                          info={"method": "pita", "stage": k, "temperature": temp,
                                "target": target_k.describe()})
        metrics = {"stage": k, "temperature": temp, "energy_evaluations": evals,
                   "sampling_wall_time_s": time.perf_counter() - t0, **extra}
        metrics["evaluation"] = stage_metrics(samples, target_k, reference if last else None,
                                              _generator(cfg.seed, k, "metrics"), cfg.eval_max_n, sdir,
                                              cfg.eval_noise_floors, cfg.stage_plots)
        buffer.save(sdir.file("buffer.npz"))
        sdir.write_metrics(metrics)
        sdir.write_samples(samples)
        run.log(f"stage {k} (T={temp}) sampled: {samples.n} samples, evaluations {evals}")
    if not last and not sdir.is_complete:
        t0 = time.perf_counter()
        prev = run.path / f"stage_{k - 1}" / "model.pt"
        if k == 0:
            with torch.random.fork_rng(devices=[]):  # network initialisation draws from the global RNG
                torch.manual_seed(int(_generator(cfg.seed, 0, "init").initial_seed()))
                score, energy = build_models(target, cfg.net)
        else:
            score, energy = load_models(prev, target)  # fine-tune from the previous EMA weights
        tcfg = cfg.train if k == 0 else cfg.finetune
        result = train(Models(score, energy, cfg.net), buffer, tcfg, _generator(cfg.seed, k, "train"),
                       callback=lambda info: callback("train", {"stage": k, "of": tcfg.steps, **info}),
                       checkpoint_path=sdir.file("model.pt"), resume=True,
                       pin_sigma_default=cfg.schedule.sigma_min)
        metrics["training"] = {"steps": result.step, "wall_time_s": time.perf_counter() - t0,
                               "final_loss": result.history[-1]["loss"] if result.history else None}
        sdir.write_metrics(metrics)
        run.log(f"stage {k} trained: {result.step} steps")
    sdir.mark_complete()
    callback("stage", {"stage": k, "temperature": temp})
    return samples, metrics


def run_pita(cfg: PITAConfig, out: str | Path, overwrite: bool = False, resume: bool = False,
             callback: Callback | None = None, target=None) -> PITAResult:
    """Run (or resume) the whole ladder into run folder ``out``; see the module docstring.
    ``target``: an already built target (e.g. a Python callable) instead of ``cfg.target``."""
    cfg.validate()
    callback = callback or (lambda event, info: None)
    run = RunDir.create(out, overwrite=overwrite, resume=resume)
    resolved = to_dict(cfg)
    if run.file("config.yaml").is_file():
        if run.read_config() != resolved:
            raise BadInput(f"{run.path} holds a run with a different config; use --overwrite or a new --out")
    else:
        run.write_config(resolved)
    target = make_target(cfg.target, **cfg.target_options) if target is None else target
    schedule = KarrasSchedule(cfg.schedule.sigma_min, cfg.schedule.sigma_max, cfg.schedule.rho)
    reference = None if cfg.reference is None else load_reference(cfg.reference, target.dim)
    run.log(f"pita: {cfg.target}, ladder {cfg.temperatures}, resume={resume}")
    t0 = time.perf_counter()
    stages = []
    for k in range(len(cfg.temperatures)):
        samples, metrics = _run_stage(cfg, k, run, target, schedule, reference, callback)
        stages.append(metrics)
    totals: dict[str, int] = {}
    for m in stages:
        for key, v in m["energy_evaluations"].items():
            totals[key] = totals.get(key, 0) + int(v)
    wall = sum(m.get("sampling_wall_time_s", 0.0) + m.get("training", {}).get("wall_time_s", 0.0)
               for m in stages)
    final = {
        "method": "pita", "target": cfg.target, "temperature": cfg.temperatures[-1], "n": samples.n,
        "energy_evaluations": {**totals, "total": sum(totals.values())},
        "wall_time_s": wall, "wall_time_this_invocation_s": time.perf_counter() - t0,
        "evaluation": stages[-1]["evaluation"],
        "stages": [{"stage": m["stage"], "temperature": m["temperature"],
                    "energy_evaluations": m["energy_evaluations"],
                    "final_ess_fraction": m.get("final_ess_fraction"),
                    "evaluation": m["evaluation"]} for m in stages],
    }
    info = {**samples.info, "energy_evaluations": final["energy_evaluations"]["total"], "wall_time_s": wall}
    final_samples = Samples(samples.x, samples.energy, None, info)
    run.write_samples(final_samples)
    run.write_metrics(final)
    write_ladder_plot(run.file("ladder.png"), stages)
    run.log(f"pita finished: {final['energy_evaluations']}")
    run.mark_complete()
    return PITAResult(final_samples, final, run)
