"""One rung of a finished PITA run, loaded for the rung diagnostics (``pita_one_step``,
``pita_weight_terms``, ``pita_stage_basins``): the run's config, stage K's trained model and the
anneal options with which it goes to T_{K+1}, with one-line ``BadInput`` errors for a folder that
is not a run, a stage without a next temperature, or a missing checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from boltzpath.config import from_dict, load_yaml
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import load_models
from boltzpath.errors import BadInput
from boltzpath.methods.pita import _network_model
from boltzpath.methods.pita_config import PITAConfig
from boltzpath.smc.annealing import AnnealConfig
from boltzpath.targets.registry import make_target


@dataclass
class Rung:
    cfg: PITAConfig
    stage: int
    target: object
    schedule: KarrasSchedule
    model_file: Path
    model: object  # smc.model.NetworkModel of stage K's networks
    anneal: AnnealConfig  # cfg.anneal_for(K + 1): the rung's options, γ = T_K / T_{K+1}, no overshoot applied

    @property
    def t_next(self) -> float:
        return self.cfg.temperatures[self.stage + 1]


def config_of(run: Path) -> PITAConfig:
    cfg_file = Path(run) / "config.yaml"
    if not cfg_file.is_file():
        raise BadInput(f"--run {run}: no config.yaml (not a PITA run folder)")
    return from_dict(PITAConfig, load_yaml(cfg_file))


def load_rung(run: Path, stage: int, model_file: Path | None = None, *, cfg: PITAConfig | None = None,
              require=None) -> Rung:
    """Stage ``stage``'s model (``stage_K/model.pt`` unless ``model_file``) of the run in ``run``
    (``cfg``: its config when already read). ``require(cfg, target)`` may refuse the target (raise
    ``BadInput``) before any checkpoint is read."""
    cfg = cfg or config_of(run)
    last = len(cfg.temperatures) - 2
    if not 0 <= stage <= last:
        raise BadInput(f"--stage {stage}: the run's ladder has stages 0..{last} that anneal")
    model_file = Path(model_file or Path(run) / f"stage_{stage}" / "model.pt")
    if not model_file.is_file():
        raise BadInput(f"{model_file}: no such model checkpoint")
    target = make_target(cfg.target, **cfg.target_options)
    if require is not None:
        require(cfg, target)
    schedule = KarrasSchedule(cfg.schedule.sigma_min, cfg.schedule.sigma_max, cfg.schedule.rho)
    acfg = cfg.anneal_for(stage + 1)
    model = _network_model(*load_models(model_file, target), target, schedule, score_from=acfg.score_from)
    return Rung(cfg, stage, target, schedule, model_file, model, acfg)
