"""Sequential Monte Carlo: weights, resampling, and the Feynman–Kac annealed reverse SDE (SPEC §6)."""

from boltzpath.smc.annealing import AnnealConfig, AnnealInfo, AnnealResult, anneal
from boltzpath.smc.model import DiffusionModel, NetworkModel
from boltzpath.smc.resample import RESAMPLERS, multinomial, systematic
from boltzpath.smc.weights import effective_sample_size, log_mean_exp, normalised_weights

__all__ = [
    "AnnealConfig",
    "AnnealInfo",
    "AnnealResult",
    "DiffusionModel",
    "NetworkModel",
    "RESAMPLERS",
    "anneal",
    "effective_sample_size",
    "log_mean_exp",
    "multinomial",
    "normalised_weights",
    "systematic",
]
