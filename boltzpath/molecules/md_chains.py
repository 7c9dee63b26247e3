"""Independent OpenMM Langevin MD chains at one temperature: PITA's ``stage0.method: md``.

The reference machinery's engine (``remd.ReplicaExchange``) with every slot at the same temperature
and no exchanges is exactly ``chains`` independent ``LangevinMiddleIntegrator`` trajectories of the
target's own OpenMM ``System`` (no constraints, so ``timestep_fs`` = 1 as for ``boltzpath
reference``). Every chain starts from the target's initial structure (optionally minimised), gets
Maxwell–Boltzmann velocities from its own seed, runs ``burn_in`` steps, then keeps one frame every
``thin`` steps until ``n`` frames are gathered (chain-major interleaving: frame j of every chain,
then frame j+1, …).

Cost, counted as energy evaluations: one force evaluation per MD step per chain, plus one energy
read per kept frame per chain (``getState(getEnergy=True)``), plus the minimiser's evaluations when
``minimize_max_iterations`` > 0 (OpenMM does not report them: counted as the iteration cap, an upper
bound). All deterministic given ``seed`` on the Reference platform; CPU/CUDA are deterministic up to
the platforms' own floating-point summation order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from boltzpath.errors import BadInput
from boltzpath.molecules.remd import ReplicaExchange
from boltzpath.molecules.system import kt_kj_mol


@dataclass
class MDChainsConfig:
    chains: int = 16
    burn_in: int = 2000
    thin: int = 250
    timestep_fs: float = 1.0
    collision_rate_per_ps: float = 1.0
    platform: str = "auto"
    threads: int = 1
    minimize_max_iterations: int = 0

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> MDChainsConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options or {}) - known)
        if unknown:
            raise BadInput(f"stage0.options for method md: unknown {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known))})")
        cfg = cls(**(options or {}))
        for key in ("chains", "thin", "threads"):
            if int(getattr(cfg, key)) < 1:
                raise BadInput(f"stage0.options.{key} must be >= 1 for method md, got {getattr(cfg, key)}")
        if cfg.burn_in < 0 or cfg.minimize_max_iterations < 0:
            raise BadInput("stage0.options.burn_in and minimize_max_iterations must be >= 0 for method md")
        if not (0 < float(cfg.timestep_fs) <= 4.0) or not float(cfg.collision_rate_per_ps) > 0:
            raise BadInput("stage0.options: md needs 0 < timestep_fs <= 4 (no constraints) and "
                           "collision_rate_per_ps > 0")
        return cfg


def md_chains(target, n: int, seed: int, options: dict[str, Any] | None = None,
              callback: Callable[[int, int, dict], Any] | None = None) -> tuple[np.ndarray, dict]:
    """``n`` MD frames of ``target`` (a peptide target) at its temperature (kelvin).

    Returns (x (n, 3·n_atoms) float32 nm, info) with ``info["energy_evaluations"]`` the counted cost
    (see the module docstring) and the settings. ``callback(frame, n_frames, info)`` after each frame
    round."""
    system = getattr(target, "openmm_system", None)
    if system is None or not getattr(target, "is_peptide", False):
        raise BadInput(f"stage0.method md needs a molecular target with an OpenMM System, "
                       f"not {target.name!r}")
    cfg = MDChainsConfig.from_options(options)
    temp = float(target.temperature_kelvin)
    rounds = math.ceil(n / cfg.chains)
    engine = ReplicaExchange(system, np.asarray(target.initial_positions_nm, dtype=np.float64).reshape(-1, 3),
                             np.full(cfg.chains, temp), cfg.timestep_fs, cfg.collision_rate_per_ps,
                             cfg.platform, seed, cfg.threads)
    engine.minimize_and_thermalize(seed, cfg.minimize_max_iterations)
    if cfg.burn_in:
        engine.run_md(cfg.burn_in)
    frames, energies = [], []
    for r in range(rounds):
        engine.run_md(cfg.thin)
        pos, _, pot = engine.snapshot()
        if not np.isfinite(pos).all() or not np.isfinite(pot).all():
            raise BadInput(f"stage0 md at {temp:g} K blew up (non-finite positions/energies after "
                           f"{cfg.burn_in + (r + 1) * cfg.thin} steps); lower stage0.options.timestep_fs")
        frames.append(pos.astype(np.float32))
        energies.append(pot)
        if callback is not None:
            callback(r + 1, rounds, {"mean_energy_kj_mol": float(np.mean(pot))})
    x = np.stack(frames, axis=0).reshape(rounds * cfg.chains, -1)[:n]  # frame-major: round r, chain c
    steps = cfg.burn_in + rounds * cfg.thin
    evals = cfg.chains * (steps + rounds + cfg.minimize_max_iterations)
    pot_all = np.concatenate(energies)
    info = {**asdict(cfg), "temperature_kelvin": temp, "steps_per_chain": steps,
            "simulated_ps_per_chain": steps * cfg.timestep_fs * 1e-3, "frames_per_chain": rounds,
            "platform_used": engine.platform.getName(), "energy_evaluations": int(evals),
            "mean_energy_kj_mol": float(np.mean(pot_all)),
            "mean_energy_kt": float(np.mean(pot_all)) / kt_kj_mol(temp)}
    return np.ascontiguousarray(x, dtype=np.float32), info
