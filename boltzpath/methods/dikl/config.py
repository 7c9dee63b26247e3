"""Typed configuration of a DiKL run (SPEC §7), built from presets + ``--set`` overrides.

Sections: ``target``/``target_options``; ``generator`` and ``score_net`` (``NetSpec``: backbone kind,
sizes, output scale c / data scale c_d); ``ddpm`` (the T-level linear-β VP schedule); ``posterior``
(IS/AIS + MALA of the target-score estimator); ``train`` (EM alternation: ``dsm_steps`` score-model
steps per generator step); ``select`` (which generator the run keeps: the last iterate or the
checkpoint that MALA moves least, ``selection.py``); ``n_samples`` drawn at the end; ``reference``
(an optional held-out file for metrics, evaluation only); ``eval_*``/``plots`` (final metrics and figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boltzpath.errors import BadInput
from boltzpath.methods.dikl.networks import NetSpec
from boltzpath.methods.dikl.posterior import PosteriorConfig
from boltzpath.methods.dikl.schedule import WEIGHTINGS, DDPMConfig
from boltzpath.methods.dikl.selection import SelectConfig


@dataclass
class TrainConfig:
    """EM-style alternation: per iteration ``dsm_steps`` DSM steps on fresh generator samples
    (batch ``score_batch_size``, default ``batch_size``), then one generator step (batch ``batch_size``).
    ``score_clip`` (off by default) caps each row's target-score estimate at that norm — a stabiliser
    for LJ's r⁻¹² wall, where one overlapping configuration's ∇E ~ 1e6 would set the whole batch's
    direction; it biases the rows it touches."""

    iterations: int = 1000
    batch_size: int = 256
    score_batch_size: int | None = None
    dsm_steps: int = 10
    lr_generator: float = 1e-3
    lr_score: float = 1e-4
    grad_clip: float = 10.0
    weighting: str = "inv_alpha"
    score_clip: float | None = None
    checkpoint_every: int = 100
    log_every: int = 10

    def validate(self) -> None:
        if self.iterations < 0 or self.batch_size < 1 or self.dsm_steps < 0:
            raise BadInput("train: iterations >= 0, batch_size >= 1 and dsm_steps >= 0 are required")
        if self.score_batch_size is not None and self.score_batch_size < 1:
            raise BadInput(f"train.score_batch_size must be >= 1, got {self.score_batch_size}")
        if not (self.lr_generator > 0 and self.lr_score > 0 and self.grad_clip > 0):
            raise BadInput("train: learning rates and grad_clip must be > 0")
        if self.score_clip is not None and not self.score_clip > 0:
            raise BadInput(f"train.score_clip must be > 0 or null, got {self.score_clip}")
        if self.weighting not in WEIGHTINGS:
            raise BadInput(f"train.weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise BadInput("train: checkpoint_every and log_every must be >= 1")


@dataclass
class DiKLConfig:
    target: str = "gmm40"
    target_options: dict[str, Any] = field(default_factory=dict)
    generator: NetSpec = field(default_factory=NetSpec)
    score_net: NetSpec = field(default_factory=NetSpec)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    posterior: PosteriorConfig = field(default_factory=PosteriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    n_samples: int = 1000
    reference: str | None = None
    eval_max_n: int = 2000
    eval_noise_floors: bool = True
    plots: bool = True
    seed: int = 0

    def validate(self) -> None:
        for part in (self.generator, self.score_net, self.ddpm, self.posterior, self.train, self.select):
            part.validate()
        if self.n_samples < 1:
            raise BadInput(f"n_samples must be >= 1, got {self.n_samples}")
        if self.eval_max_n < 10:
            raise BadInput(f"eval_max_n must be >= 10, got {self.eval_max_n}")


def resolve_config(target: str | None, preset: str, seed: int | None, overrides: tuple[str, ...],
                   extra: dict | None = None):
    """The ``DiKLConfig`` for these options (see the module docstring); ``extra``: a nested mapping
    of overrides applied last (the Python API's keywords). Precedence: ``DiKLConfig`` defaults →
    ``presets/dikl_<preset>.yaml`` → ``presets/dikl_<target>_<preset>.yaml`` → target/seed →
    ``overrides`` → ``extra``."""
    from boltzpath.config import resolve_preset

    return resolve_preset("dikl", DiKLConfig, target, preset, seed, overrides, extra=extra)
