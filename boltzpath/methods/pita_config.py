"""Typed configuration of a PITA run (SPEC §6), built from presets + ``--set`` overrides.

Sections: ``target``/``target_options``; ``temperatures`` (the ladder T₀ > T₁ > … > T_K, the last is
the target temperature); ``stage0`` (the baseline sampler that makes the T₀ training data); ``net``
and ``train`` / ``finetune`` (``boltzpath.diffusion`` NetConfig / TrainConfig for stage 0 and for
stages ≥ 1); ``schedule`` (the Karras σ(t)); ``anneal`` (FK-SMC; its ``gamma`` is set per stage to
T_{k−1}/T_k and must be left at 1 in the config); ``relax`` (MALA at T_k); ``n_particles`` (one SMC
population) and ``buffer_size`` (particles per stage, made by ⌈buffer_size / n_particles⌉
independent populations); ``reference`` (an optional held-out file for the final stage's metrics,
evaluation only); ``stage_references`` (temperature → file: a reference for the metrics of the stage
at that temperature, e.g. MD at 555.52 K); ``anneal_stages`` (temperature → anneal options for the
stage that anneals to it, merged over ``anneal``: e.g. the increment clamp on the first step only);
``eval_max_n``/``eval_noise_floors``/``stage_plots``
(per-stage metrics and plots — plotting costs seconds per stage); ``gate`` (the energy-model quality
gate, ``boltzpath.diffusion.quality``: a held-out split of each buffer, the report, and whether
training is extended until U_η is good enough for the next γ); ``train_on_all_buffers`` (with
``net.temperature_conditioned``: stage k fine-tunes one temperature-conditioned model on the buffers
of stages 0…k, each labelled with its temperature — the released LJ-13 setup — instead of on the
newest buffer alone); ``chirality_fix`` (peptides, on by default: samples whose chiral centres are all
D are reflected to L — the force field is achiral, so this maps them onto the L half of the density at
the same energy — and samples with mixed centres are dropped, at stage 0 before the buffer and at every
later stage before and after relaxation; the counts are reported per stage and in the final metrics;
``false`` only reports).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boltzpath.config import from_dict, resolve_preset, to_dict
from boltzpath.diffusion.quality import QualityGate
from boltzpath.diffusion.train import NetConfig, TrainConfig
from boltzpath.errors import BadInput
from boltzpath.smc.annealing import AnnealConfig
from boltzpath.smc.relax import RelaxConfig


@dataclass
class Stage0Config:
    """The T₀ sampler: a method of ``boltzpath.mcmc.registry`` (mala, hmc, pt, …) and its options, or
    ``md`` for peptides (OpenMM Langevin MD chains, ``molecules.md_chains.MDChainsConfig`` options;
    its force evaluations are counted in ``initial_data``) — or ``data``: a file of T₀ samples made
    elsewhere (.npy/.npz, (n, dim) or (n, atoms, 3), in the target's unit; every row is used and
    ``n_samples``/``method`` are then ignored), whose cost the user states in ``data_evaluations``
    (recorded as user supplied; 0 when not stated)."""

    method: str = "mala"
    n_samples: int = 2000
    options: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    data_evaluations: int = 0

    def validate(self) -> None:
        if self.n_samples < 1:
            raise BadInput(f"stage0.n_samples must be >= 1, got {self.n_samples}")
        if self.data_evaluations < 0:
            raise BadInput(f"stage0.data_evaluations must be >= 0, got {self.data_evaluations}")
        if self.data_evaluations and self.data is None:
            raise BadInput("stage0.data_evaluations (--stage0-evaluations) needs stage0.data (--stage0-data)")


@dataclass
class ScheduleConfig:
    """σ(t) = (σ_min^{1/ρ} + t(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ (SPEC §5)."""

    sigma_min: float = 0.05
    sigma_max: float = 80.0
    rho: float = 7.0


@dataclass
class PITAConfig:
    target: str = "gmm40"
    target_options: dict[str, Any] = field(default_factory=dict)
    temperatures: list[float] = field(default_factory=lambda: [4.0, 2.0, 1.0])
    stage0: Stage0Config = field(default_factory=Stage0Config)
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    anneal: AnnealConfig = field(default_factory=AnnealConfig)
    relax: RelaxConfig = field(default_factory=RelaxConfig)
    gate: QualityGate = field(default_factory=QualityGate)
    train_on_all_buffers: bool = False
    # how a rung reaches T_k from the stage-(k−1) model: "anneal" (PITA: the tempered, FK-weighted
    # anneal to T_k) or "reweight" (the model sampled at its own T_{k−1} with γ = 1 and no weights,
    # relaxed there, importance-resampled to T_k on the true energy; docs/pita.md, twelfth session)
    rung: str = "anneal"
    # rung "reweight" only: "backbone" (peptides) also weights the model's samples so that their
    # backbone-basin fractions match the previous stage's buffer (``methods.pita.strata_log_weights``):
    # the model's basin errors are not carried into the next stage; "none": off
    rung_strata: str = "none"
    # rung "reweight" with strata only: how each stratum's total weight (its share at T_k) is estimated.
    # "instant": from the relaxed samples' final energies (one energy per sample); "path": from every
    # frozen MALA step of the T_{k−1} relaxation, w̄_i = mean_t e^{−(γ−1)·E_i(t)/kT_{k−1}} (no extra
    # evaluation; averages out the fast modes' energy noise). Within a stratum the samples keep their
    # instantaneous weights either way (``methods.pita.path_stratum_log_correction``).
    rung_basin_weights: str = "instant"
    # rung "reweight" only: how many stage-(k−1) model samples each rung draws and relaxes at T_{k−1}
    # (None: ``buffer_size``). All of them set the strata's weights to T_k and the resampling draws
    # ``buffer_size`` from them: more samples per rung, less noise in the basin odds every later
    # stage inherits, at ``relax.n_steps`` evaluations per extra sample
    rung_samples: int | None = None
    chirality_fix: bool = True
    n_particles: int = 1000
    buffer_size: int = 1000
    reference: str | None = None
    stage_references: dict[str, str] = field(default_factory=dict)
    # per-stage anneal options, keyed by the temperature a stage anneals to (not T0), e.g.
    # {3.0: {clamp_quantile: 0.9}}: merged over ``anneal`` for that stage only (``anneal_for``)
    anneal_stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_max_n: int = 2000
    eval_noise_floors: bool = True
    stage_plots: bool = True
    seed: int = 0

    def validate(self) -> None:
        temps = [float(t) for t in self.temperatures]
        if len(temps) < 2:
            raise BadInput("temperatures needs at least two entries (T0 > ... > target temperature)")
        if any(not t > 0 for t in temps):
            raise BadInput(f"temperatures must be > 0, got {temps}")
        if any(a <= b for a, b in zip(temps, temps[1:], strict=False)):
            raise BadInput(f"temperatures must decrease strictly, got {temps}")
        if self.anneal.gamma != 1.0:
            raise BadInput("anneal.gamma is set per stage (T_{k-1}/T_k); leave it at 1 in the config")
        if self.n_particles < 1 or self.buffer_size < 1:
            raise BadInput("n_particles and buffer_size must be >= 1")
        if self.eval_max_n < 10:
            raise BadInput(f"eval_max_n must be >= 10, got {self.eval_max_n}")
        self.temperatures = temps
        for key in self.stage_references:
            try:
                t = float(key)
            except (TypeError, ValueError):
                raise BadInput(f"stage_references keys are temperatures, got {key!r}") from None
            if not any(math.isclose(t, x, rel_tol=1e-6) for x in temps):
                raise BadInput(f"stage_references: {key} is not a temperature of the ladder {temps}")
        stages = {}
        for key, over in self.anneal_stages.items():
            try:
                t = float(key)
            except (TypeError, ValueError):
                raise BadInput(f"anneal_stages keys are temperatures, got {key!r}") from None
            if not any(math.isclose(t, x, rel_tol=1e-6) for x in temps[1:]):
                raise BadInput(f"anneal_stages: {key} is not a temperature the ladder anneals to {temps[1:]}")
            if not isinstance(over, dict) or "gamma" in over:
                raise BadInput(f"anneal_stages.{key} must be a mapping of anneal options "
                               "(gamma is set per stage)")
            stages[f"{t:g}"] = dict(over)
        self.anneal_stages = stages
        for k in range(1, len(temps)):
            self.anneal_for(k)  # every stage's merged options are valid (BadInput names the stage)
        self.gate.validate()
        if self.rung not in ("anneal", "reweight"):
            raise BadInput(f"rung must be 'anneal' or 'reweight', got {self.rung!r}")
        if self.rung_strata not in ("none", "backbone"):
            raise BadInput(f"rung_strata must be 'none' or 'backbone', got {self.rung_strata!r}")
        if self.rung_strata != "none" and self.rung != "reweight":
            raise BadInput(f"rung_strata={self.rung_strata!r} needs rung=reweight")
        if self.rung_samples is not None:
            if self.rung != "reweight":
                raise BadInput(f"rung_samples={self.rung_samples} needs rung=reweight")
            if int(self.rung_samples) < self.buffer_size:
                raise BadInput(f"rung_samples ({self.rung_samples}) must be >= buffer_size "
                               f"({self.buffer_size}): the rung resamples buffer_size of them")
        if self.rung_basin_weights not in ("instant", "path"):
            raise BadInput(f"rung_basin_weights must be 'instant' or 'path', got {self.rung_basin_weights!r}")
        if self.rung_basin_weights == "path":
            if self.rung_strata == "none":
                raise BadInput("rung_basin_weights=path needs rung=reweight and rung_strata=backbone")
            if self.relax.n_steps <= self.relax.adapt_steps:
                raise BadInput("rung_basin_weights=path needs frozen MALA steps: relax.n_steps "
                               f"({self.relax.n_steps}) > relax.adapt_steps ({self.relax.adapt_steps})")
        if self.train_on_all_buffers and not self.net.temperature_conditioned:
            raise BadInput("train_on_all_buffers needs net.temperature_conditioned: true "
                           "(one model for every temperature reached)")

    @property
    def energy_model_in_weights(self) -> bool:
        """Whether U_η's values enter the samples' weights: true for the FK-weighted anneal, false for
        rung "reweight" (γ = 1, no FK weights, resampled on the true energy). The checks that concern
        only U_η's values (the gate's energy criterion, the σ_min check, the annealed model's energy
        slope) warn and gate only when it is true."""
        return self.rung != "reweight"

    def reference_at(self, stage: int) -> str | None:
        """The reference file for stage k's metrics: ``stage_references`` at T_k, else ``reference``
        for the last stage, else None."""
        temp = self.temperatures[stage]
        for key, path in self.stage_references.items():
            if math.isclose(float(key), temp, rel_tol=1e-6):
                return path
        return self.reference if stage == len(self.temperatures) - 1 else None

    def anneal_for(self, stage: int) -> AnnealConfig:
        """Stage k's anneal options (k ≥ 1): ``anneal`` with ``anneal_stages`` at T_k merged over it
        and γ = T_{k−1}/T_k. Overshoot is applied by the caller (it needs the tail)."""
        temp = self.temperatures[stage]
        over = next((v for key, v in self.anneal_stages.items()
                     if math.isclose(float(key), temp, rel_tol=1e-6)), {})
        merged = {**to_dict(self.anneal), **over, "gamma": self.gamma(stage)}
        return from_dict(AnnealConfig, merged, f"anneal_stages.{temp:g}" if over else "anneal")

    def gamma(self, stage: int) -> float:
        """γ of stage k ≥ 1: T_{k−1} / T_k (anneals the stage-(k−1) model to temperature T_k)."""
        return self.temperatures[stage - 1] / self.temperatures[stage]


def add_references(cfg: PITAConfig, folder: str | Path) -> None:
    """Fill ``cfg.stage_references`` from a folder of per-temperature references, named as
    ``benchmarks/particle_references.py`` writes them: ``<target>_T<T:g>_seed0.npy`` (absolute paths,
    keyed by the ladder's temperatures; temperatures without a file are left out). References the
    config already names (``stage_references``, or ``reference`` for the last stage) keep precedence.
    A missing folder, or one that holds a file for none of the temperatures, is a ``BadInput`` naming
    what was looked for."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"--references: {folder} is not a folder")
    names = {f"{float(t):g}": f"{cfg.target}_T{float(t):g}_seed0.npy" for t in cfg.temperatures}
    found = {t: str((folder / name).resolve()) for t, name in names.items() if (folder / name).is_file()}
    if not found:
        raise BadInput(f"--references: {folder} holds none of {', '.join(names.values())} "
                       f"(python benchmarks/particle_references.py --target {cfg.target} writes them)")
    named = [float(t) for t in cfg.stage_references]
    named += [cfg.temperatures[-1]] if cfg.reference else []
    cfg.stage_references = {**{t: p for t, p in found.items()
                               if not any(math.isclose(float(t), x, rel_tol=1e-6) for x in named)},
                            **cfg.stage_references}
    cfg.validate()


def resolve_config(target: str | None, preset: str, seed: int | None, overrides: tuple[str, ...] = (),
                   extra: dict | None = None) -> PITAConfig:
    """The ``PITAConfig`` of a preset: ``PITAConfig`` defaults → ``presets/pita_<preset>.yaml`` (or a
    .yaml path) → ``presets/pita_<target>_<preset>.yaml`` when it exists → ``target``/``seed`` →
    ``overrides`` (``key=value``) → ``extra`` (a nested mapping, the Python API's keywords)."""
    return resolve_preset("pita", PITAConfig, target, preset, seed, overrides, extra)
