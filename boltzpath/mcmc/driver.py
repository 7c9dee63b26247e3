"""Run a batch of chains with one kernel: warm-up with step-size adaptation, then collection.

Used by MALA, HMC and any kernel of shape ``step(potential, state, generator, step_size)``.
During ``burn_in`` each chain's log step size follows Robbins–Monro towards the target
acceptance; after warm-up step sizes are frozen, so the collected chain is a valid MCMC chain.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from boltzpath.config import to_dict
from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.mcmc.base import ChainState, StepInfo, init_state
from boltzpath.targets.base import Target

Kernel = Callable[..., tuple[ChainState, StepInfo]]
Callback = Callable[[int, int, dict], None]


@dataclass
class ChainConfig:
    chains: int = 128
    burn_in: int = 1000
    thin: int = 10
    step_size: float = 0.01
    target_accept: float = 0.574
    adapt: bool = True
    dtype: str = "float32"

    def validate(self) -> None:
        if self.chains < 1 or self.burn_in < 0 or self.thin < 1:
            raise BadInput("chains >= 1, burn_in >= 0 and thin >= 1 are required")
        if not self.step_size > 0:
            raise BadInput(f"step_size must be > 0, got {self.step_size}")
        if not 0 < self.target_accept < 1:
            raise BadInput(f"target_accept must be in (0, 1), got {self.target_accept}")
        if self.dtype not in ("float32", "float64"):
            raise BadInput(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


def adapt_step_size(log_step: torch.Tensor, accept_prob: torch.Tensor, target: float, it: int):
    """One Robbins–Monro update of per-chain log step sizes (learning rate ∝ (it+1)^-0.6)."""
    rate = 1.0 / (it + 1) ** 0.6
    return log_step + rate * (accept_prob.to(log_step) - target)


def run_chains(
    potential,
    kernel: Kernel,
    x0: torch.Tensor,
    n_samples: int,
    generator: torch.Generator,
    cfg: ChainConfig,
    callback: Callback | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Warm up, then collect ``n_samples`` (thinned, chain-interleaved). Returns (x, E, stats)."""
    chains = x0.shape[0]
    state = init_state(potential, x0)
    log_step = torch.full((chains,), math.log(cfg.step_size), dtype=torch.float64, device=x0.device)
    per_chain = math.ceil(n_samples / chains)
    total = cfg.burn_in + per_chain * cfg.thin
    xs, es = [], []
    acc_sum = torch.zeros(chains, dtype=torch.float64, device=x0.device)
    for it in range(total):
        state, info = kernel(potential, state, generator, log_step.exp().to(x0.dtype))
        if it < cfg.burn_in:
            if cfg.adapt:
                log_step = adapt_step_size(log_step, info.accept_prob, cfg.target_accept, it)
        else:
            acc_sum += info.accept_prob.to(torch.float64)
            if (it - cfg.burn_in + 1) % cfg.thin == 0:
                xs.append(state.position.clone())
                es.append(state.energy.clone())
        if callback is not None:
            callback(it + 1, total, {"accept": float(info.accept_prob.mean())})
    x = torch.stack(xs).reshape(-1, x0.shape[1])[:n_samples]
    e = torch.stack(es).reshape(-1)[:n_samples]
    steps_collected = total - cfg.burn_in
    stats = {
        "steps": total,
        "acceptance": float((acc_sum / max(steps_collected, 1)).mean()),
        "step_size_median": float(log_step.exp().median()),
        "step_size_min": float(log_step.exp().min()),
        "step_size_max": float(log_step.exp().max()),
    }
    return x, e, stats


def run_provenance(method: str, target: Target, cfg, start_count: int, t0: float) -> dict:
    """The provenance every sampler records: method, target, config, evaluations since
    ``start_count`` (counted by the target), wall time since ``t0``."""
    return {
        "method": method,
        "target": target.describe(),
        "config": to_dict(cfg),
        "energy_evaluations": target.counter.count - start_count,
        "wall_time_s": time.perf_counter() - t0,
    }


def run_kernel_sampler(
    method: str,
    kernel: Kernel,
    target: Target,
    n: int,
    generator: torch.Generator,
    cfg: ChainConfig,
    callback: Callback | None = None,
    x0: torch.Tensor | None = None,
) -> Samples:
    """Run ``kernel`` on ``target`` from its prior (or ``x0``) and package a ``Samples`` record."""
    cfg.validate()
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    if x0 is None:
        x0 = target.prior_sample(cfg.chains, generator, dtype=cfg.torch_dtype)
    x0 = target.check_input(x0.to(cfg.torch_dtype))
    start_count, t0 = target.counter.count, time.perf_counter()
    x, e, stats = run_chains(target, kernel, x0, n, generator, cfg, callback)
    info = {**run_provenance(method, target, cfg, start_count, t0), **stats}
    return Samples(x=x, energy=e, info=info)
