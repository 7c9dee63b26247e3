"""DiKL: a one-step neural sampler trained with the reverse diffusive KL (SPEC §7, docs/dikl.md).

``run_dikl(DiKLConfig, out)`` trains and samples into a run folder; ``load_generator(run_dir)`` and
``draw`` give fresh samples from a finished run without retraining.
"""

from boltzpath.methods.dikl.config import DiKLConfig, TrainConfig
from boltzpath.methods.dikl.run import DiKLResult, draw, load_generator, run_dikl

__all__ = ["DiKLConfig", "DiKLResult", "TrainConfig", "draw", "load_generator", "run_dikl"]
