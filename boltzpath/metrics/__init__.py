"""Metrics (SPEC §8): distances to a reference, mode statistics, noise floors and the suite.

Every metric states its convention (W2 is the square root of the OT cost) and the n it used;
``evaluate`` picks the metrics that apply to a target. See ``docs/metrics.md``.
"""

from boltzpath.metrics.distributions import (
    coordinate_w2,
    energy_w,
    high_energy_fraction,
    mmd,
    relative_error_second_moment,
    tvd_hist,
    wasserstein_1d,
)
from boltzpath.metrics.modes import exact_second_moment, mode_coverage, mode_weight_tvd, pattern_hit_ratio
from boltzpath.metrics.noise import noise_floor
from boltzpath.metrics.particles import aligned_w2, distance_tvd, distance_w2
from boltzpath.metrics.suite import evaluate

__all__ = [
    "aligned_w2",
    "coordinate_w2",
    "distance_tvd",
    "distance_w2",
    "energy_w",
    "evaluate",
    "exact_second_moment",
    "high_energy_fraction",
    "mmd",
    "mode_coverage",
    "mode_weight_tvd",
    "noise_floor",
    "pattern_hit_ratio",
    "relative_error_second_moment",
    "tvd_hist",
    "wasserstein_1d",
]
