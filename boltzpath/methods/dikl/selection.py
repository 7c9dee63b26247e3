"""Which generator a DiKL run keeps: its last iterate, or the one that MALA on the target moves least.

The released DiKL code (DW-4) checks its generator every few iterations: it draws samples, runs 50
MALA steps on the target from them, compares the energy histograms before and after, and keeps the
checkpoint with the smallest difference. The reasoning: samples of p are a fixed point of any
p-invariant kernel, so their energies do not move; a generator that runs hot sees its energies
fall, one that sits too low (collapsed into the deepest wells) sees them rise.

``select.method: mala_shift`` does that here, every ``select.every`` iterations and at the last one:
``select.n`` fresh generator samples, ``select.mala_steps`` MALA steps from them (``smc.relax``,
per-chain steps adapted during the first ``adapt_steps``, no overlap repair), and the shift is the
W1 distance (in kT) between the energies before and after, each capped at ``cap`` so that overlaps
count as far but finite (histogram bins are not needed: W1 of two equal-size samples is the mean
absolute difference of their order statistics). Every target evaluation this takes is counted, and
reported apart from training (``energy_evaluations.selection``). Its random numbers come from a
generator of their own, seeded by the run's seed and the iteration, so training is the same with
or without selection and a resumed run repeats the same checks.

The shift is noisy (n samples, a short chain) and blind to what 50 local steps cannot reach (mode
weights): it ranks checkpoints of one run, it is not a metric of quality. ``method: last`` (the
default) keeps the final iterate and evaluates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput
from boltzpath.smc.relax import RelaxConfig, relax

METHODS = ("last", "mala_shift")


@dataclass
class SelectConfig:
    method: str = "last"
    every: int = 100
    n: int = 1000
    mala_steps: int = 50
    adapt_steps: int = 25
    step_size: float = 1e-3
    cap: float = 1000.0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"select.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.every < 1 or self.n < 2 or self.mala_steps < 1 or self.adapt_steps < 0:
            raise BadInput("select: every >= 1, n >= 2, mala_steps >= 1 and adapt_steps >= 0 are required")
        if not (self.step_size > 0 and self.cap > 0):
            raise BadInput("select: step_size and cap must be > 0")


def _capped(e: torch.Tensor, cap: float) -> torch.Tensor:
    """E/kT in float64 with NaN and values above ``cap`` set to ``cap`` (overlaps: far but finite)."""
    return torch.nan_to_num(e.detach().double(), nan=cap, posinf=cap).clamp(max=cap)


def energy_w1(a: torch.Tensor, b: torch.Tensor, cap: float) -> float:
    """W1 between two equal-size energy samples, each value capped at ``cap`` (NaN counts as ``cap``)."""
    if a.shape != b.shape:
        raise ValueError("energy_w1 needs two samples of the same size")
    return float((torch.sort(_capped(a, cap)).values - torch.sort(_capped(b, cap)).values).abs().mean())


def mala_shift(target, x: torch.Tensor, generator: torch.Generator, cfg: SelectConfig) -> dict:
    """The energy shift of samples ``x`` under ``cfg.mala_steps`` MALA steps on ``target`` (counted:
    n·(mala_steps + 1), the starting energies included)."""
    res = relax(target, x, generator, RelaxConfig(n_steps=cfg.mala_steps, adapt_steps=cfg.adapt_steps,
                                                  step_size=cfg.step_size, repair_above=None))
    before = res.initial_energy
    return {"shift": energy_w1(before, res.energy, cfg.cap),
            "mean_energy_before": float(_capped(before, cfg.cap).mean()),
            "mean_energy_after": float(_capped(res.energy, cfg.cap).mean()),
            "acceptance": float(res.info["acceptance"])}


def selection_rng(seed: int, iteration: int, device) -> torch.Generator:
    """The random stream of the check at ``iteration`` (independent of training's)."""
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + 500_009 + int(iteration))


__all__ = ["METHODS", "SelectConfig", "energy_w1", "mala_shift", "selection_rng"]
