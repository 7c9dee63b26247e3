"""Diffusion core: VE/Karras schedule, EDM preconditioning, score and energy models, losses, training.

Interface note for PITA / DiKL (stable API):

    from boltzpath.diffusion import KarrasSchedule, NetConfig, TrainConfig, TrainingBuffer
    from boltzpath.diffusion import build_models, train, load_models

    score, energy = build_models(target, NetConfig(mode="score+energy", hidden=64, layers=4))
    buffer = TrainingBuffer.from_target(target, x_train, temperature=T)   # counted evaluations
    result = train(Models(score, energy), buffer, TrainConfig(steps=2000), generator,
                   checkpoint_path=run_dir / "model.pt")                   # resumes if the file exists
    s = result.ema.score            # EMA ScoreModel (None in "energy" mode: use −∇U)
    u = result.ema.energy           # EMA EnergyModel
    u.energy(x, sigma), u.grad_x(x, sigma), s.score(x, sigma)
    # EMA weights, rebuilt from the NetConfig saved in the checkpoint:
    score, energy = load_models(run_dir / "model.pt", target)

Conventions: x is the target's coordinate (flattened, CoM-free for particles); models do not
rescale coordinates (peptides: the caller divides x by ≈ 0.164 nm and multiplies scores by it);
σ is a float or a (batch,) tensor; temperatures (batch,) only when
``NetConfig.temperature_conditioned``.
"""

from boltzpath.diffusion.buffer import Batch, TrainingBuffer
from boltzpath.diffusion.ema import Ema
from boltzpath.diffusion.precond import EnergyModel, ScoreModel, edm_coefficients
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import (
    Models,
    NetConfig,
    TrainConfig,
    TrainResult,
    build_models,
    load_models,
    train,
)

__all__ = [
    "Batch",
    "Ema",
    "EnergyModel",
    "KarrasSchedule",
    "Models",
    "NetConfig",
    "ScoreModel",
    "TrainConfig",
    "TrainResult",
    "TrainingBuffer",
    "build_models",
    "edm_coefficients",
    "load_models",
    "train",
]
