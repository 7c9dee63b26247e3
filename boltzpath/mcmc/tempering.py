"""Parallel tempering (replica exchange) over a geometric temperature ladder (SPEC §3).

Replica k samples p_k(x) ∝ exp(−β_k u(x)), u = E/kT at the target's own temperature T₀ and
β_k = T₀/T_k, with T_k = T₀·(T_max/T₀)^{k/(K−1)} (k = 0 … K−1; replica 0 is the target). Each
replica is ``target.at_temperature(T_k)``, sharing the target's evaluation counter, so every
replica's energy call is counted.

One iteration: a local MALA or HMC step in every replica (per-replica step sizes, adapted to the
target acceptance during warm-up and frozen afterwards), then — every ``swap_every`` iterations —
swaps between adjacent pairs (k, k+1), even pairs and odd pairs alternately, accepted with

    min(1, exp((β_k − β_{k+1})(u_k − u_{k+1})))

in *reference* energies u (a replica's state energy is β_k·u, so u = E_k/β_k). The ladder's joint
chain is exact, so replica 0 samples the target without bias. A swap moves positions, their
energies and gradients (rescaled by β ratios): no extra evaluations.

Cost: per iteration K·chains counted evaluations (MALA) or K·chains·n_leapfrog (HMC), plus K·chains
at initialisation.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.mcmc.base import ChainState, init_state, metropolis
from boltzpath.mcmc.driver import ChainConfig, adapt_step_size, run_provenance
from boltzpath.mcmc.hmc import hmc_step
from boltzpath.mcmc.mala import mala_step


def geometric_ladder(t_min: float, t_max: float, n_replicas: int) -> list[float]:
    """T_k = t_min·(t_max/t_min)^{k/(K−1)}, k = 0 … K−1 (a single replica is just t_min)."""
    if n_replicas == 1:
        return [float(t_min)]
    r = t_max / t_min
    return [float(t_min * r ** (k / (n_replicas - 1))) for k in range(n_replicas)]


class LadderPotential:
    """All replicas as one potential over stacked positions (K·chains, dim), replica-major."""

    def __init__(self, replicas: list, chains: int):
        self.replicas = replicas
        self.chains = chains
        self.project = replicas[0].project

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        es, gs = [], []
        for k, replica in enumerate(self.replicas):
            e, g = replica.energy_and_grad(x[k * self.chains : (k + 1) * self.chains])
            es.append(e)
            gs.append(g)
        return torch.cat(es), torch.cat(gs)


def replica_swap(
    state: ChainState, betas: torch.Tensor, parity: int, generator: torch.Generator
) -> tuple[ChainState, torch.Tensor]:
    """Attempt swaps of pairs (k, k+1), k ≡ parity (mod 2), for every chain.

    ``state`` holds K·chains chains, replica-major; ``betas`` (K,) are T₀/T_k. Returns the new
    state and the acceptance probabilities (K−1, chains), NaN for pairs not attempted.
    """
    k_rep = betas.shape[0]
    pos = state.position.reshape(k_rep, -1, state.position.shape[-1])
    chains = pos.shape[1]
    beta = betas.to(state.energy).reshape(-1, 1)
    u = state.energy.reshape(k_rep, chains) / beta
    dev = state.position.device
    probs = torch.full((max(k_rep - 1, 0), chains), math.nan, dtype=torch.float64, device=dev)
    lows = torch.arange(parity, k_rep - 1, 2, device=dev)
    if len(lows) == 0:
        return state, probs
    log_r = (beta[lows] - beta[lows + 1]) * (u[lows] - u[lows + 1])
    accept_prob, accepted = metropolis(log_r, generator)
    probs[lows] = accept_prob.to(torch.float64)
    perm = torch.arange(k_rep, device=dev).reshape(-1, 1).repeat(1, chains)
    perm[lows] = torch.where(accepted, lows.reshape(-1, 1) + 1, perm[lows])
    perm[lows + 1] = torch.where(accepted, lows.reshape(-1, 1), perm[lows + 1])
    new_pos = pos.gather(0, perm[..., None].expand_as(pos))
    new_u = u.gather(0, perm)
    grad = state.grad.reshape(pos.shape)
    rescale = beta / beta.reshape(-1)[perm]  # β_k / β_source: gradients of β_k·u
    new_grad = grad.gather(0, perm[..., None].expand_as(grad)) * rescale[..., None]
    new_state = ChainState(
        new_pos.reshape(state.position.shape), (beta * new_u).reshape(-1), new_grad.reshape(state.grad.shape)
    )
    return new_state, probs


@dataclass
class PTConfig(ChainConfig):
    """Parallel tempering: ``chains`` chains per replica, ``n_replicas`` temperatures up to ``t_max``.

    ``t_max`` is in the target's temperature unit (None: 10 × the target temperature).
    ``temperatures``: an explicit ladder instead (first entry = the target temperature, increasing;
    ``n_replicas`` and ``t_max`` are then ignored) — e.g. to include every temperature of a PITA
    ladder, so that one run gives a reference at each (``run_pt(..., return_all=True)``).
    """

    n_replicas: int = 8
    t_max: float | None = None
    temperatures: list[float] | None = None
    local: str = "mala"  # "mala" or "hmc"
    n_leapfrog: int = 5
    swap_every: int = 1

    def validate(self) -> None:
        super().validate()
        if self.n_replicas < 1:
            raise BadInput(f"n_replicas must be >= 1, got {self.n_replicas}")
        if self.local not in ("mala", "hmc"):
            raise BadInput(f"pt local move must be 'mala' or 'hmc', got {self.local!r}")
        if self.n_leapfrog < 1 or self.swap_every < 1:
            raise BadInput("n_leapfrog >= 1 and swap_every >= 1 are required")

    def ladder(self, t_min: float) -> list[float]:
        if self.temperatures is not None:
            temps = [float(t) for t in self.temperatures]
            increasing = all(b > a for a, b in zip(temps, temps[1:], strict=False))
            if abs(temps[0] - t_min) > 1e-9 * t_min or not increasing:
                raise BadInput(f"pt temperatures must start at the target temperature {t_min} and "
                               f"increase, got {temps}")
            return temps
        t_max = 10.0 * t_min if self.t_max is None else float(self.t_max)
        if not t_max >= t_min:
            raise BadInput(f"t_max ({t_max}) must be >= the target temperature ({t_min})")
        return geometric_ladder(t_min, t_max, self.n_replicas)


def run_pt(target, n, generator, cfg: PTConfig, callback=None, x0=None, return_all: bool = False):
    """Run parallel tempering; return the T₀ samples, or with ``return_all`` a list of ``Samples``
    per temperature (T₀ first). ``x0``: (chains, dim), copied to every replica, or (K·chains, dim).
    """
    cfg.validate()
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    temps = cfg.ladder(target.temperature)
    k_rep, chains = len(temps), cfg.chains
    replicas = [target.at_temperature(t) for t in temps]
    ladder = LadderPotential(replicas, chains)
    dtype = cfg.torch_dtype
    if x0 is None:
        x0 = target.prior_sample(k_rep * chains, generator, dtype=dtype)
    x0 = target.check_input(x0.to(dtype))
    dev = x0.device
    betas = torch.tensor([target.temperature / t for t in temps], dtype=torch.float64, device=dev)
    if x0.shape[0] == chains:
        x0 = x0.repeat(k_rep, 1)
    if x0.shape[0] != k_rep * chains:
        raise BadInput(f"x0 must have {chains} or {k_rep * chains} rows, got {x0.shape[0]}")
    local = mala_step if cfg.local == "mala" else functools.partial(hmc_step, n_leapfrog=cfg.n_leapfrog)

    start_count, t0 = target.counter.count, time.perf_counter()
    state = init_state(ladder, x0)
    log_step = torch.full((k_rep,), math.log(cfg.step_size), dtype=torch.float64, device=dev)
    per_chain = math.ceil(n / chains)
    total = cfg.burn_in + per_chain * cfg.thin
    xs, es = [], []
    acc_local = torch.zeros(k_rep, dtype=torch.float64, device=dev)
    swap_sum = torch.zeros(max(k_rep - 1, 0), dtype=torch.float64, device=dev)
    swap_tries = torch.zeros(max(k_rep - 1, 0), dtype=torch.float64, device=dev)
    parity = 0
    for it in range(total):
        step = log_step.exp().repeat_interleave(chains).to(dtype)
        state, info = local(ladder, state, generator, step)
        acc = info.accept_prob.to(torch.float64).reshape(k_rep, chains).mean(1)
        if it < cfg.burn_in and cfg.adapt:
            log_step = adapt_step_size(log_step, acc, cfg.target_accept, it)
        if (it + 1) % cfg.swap_every == 0 and k_rep > 1:
            state, probs = replica_swap(state, betas, parity, generator)
            tried = ~torch.isnan(probs[:, 0])
            if it >= cfg.burn_in:
                swap_sum[tried] += probs[tried].mean(1)
                swap_tries[tried] += 1
            parity = 1 - parity
        if it >= cfg.burn_in:
            acc_local += acc
            if (it - cfg.burn_in + 1) % cfg.thin == 0:
                xs.append(state.position.reshape(k_rep, chains, -1).clone())
                es.append(state.energy.reshape(k_rep, chains).clone())
        if callback is not None:
            callback(it + 1, total, {"accept": float(acc[0])})

    collected = max(total - cfg.burn_in, 1)
    x_all = torch.stack(xs, dim=1)  # (K, steps, chains, dim)
    e_all = torch.stack(es, dim=1)
    info = {
        **run_provenance("pt", target, cfg, start_count, t0),
        "steps": total,
        "temperatures": temps,
        "swap_acceptance": (swap_sum / swap_tries.clamp(min=1)).tolist(),
        "acceptance_per_replica": (acc_local / collected).tolist(),
        "acceptance": float(acc_local[0] / collected),
        "step_size_per_replica": log_step.exp().tolist(),
    }
    out = [
        Samples(
            x=x_all[k].reshape(-1, target.dim)[:n],
            energy=e_all[k].reshape(-1)[:n],
            info={**info, "temperature": temps[k], "replica": k},
        )
        for k in range(k_rep if return_all else 1)
    ]
    return out if return_all else out[0]
