"""Targets: energies in reduced units, counted, re-temperable (SPEC §1–2)."""

from boltzpath.targets.base import EvaluationCounter, ParticleTarget, Target
from boltzpath.targets.registry import TARGETS, make_target

__all__ = ["EvaluationCounter", "ParticleTarget", "Target", "TARGETS", "make_target"]
