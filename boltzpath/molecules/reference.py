"""Reference data for peptide targets: OpenMM replica-exchange MD, resumable (SPEC §2, §3, §8).

``run_reference(cfg, run_dir)`` simulates a geometric temperature ladder
T_k = T·(T_max/T)^{k/(n−1)} (``remd.ReplicaExchange``): each iteration runs
``steps_per_exchange`` Langevin steps in every slot, then one round of neighbour swaps. After
``equilibration_iterations`` a frame of every slot is kept every ``save_every`` iterations.

Kill-safety: every ``checkpoint_every`` iterations the frames gathered since the last checkpoint go
to ``chunks/frames_<iteration>.npz`` and then ``checkpoint.npz`` (OpenMM context checkpoints, the
exchange RNG state as JSON, walker map, swap counters, list of chunks) is replaced atomically. A
resumed run loads the checkpoint and continues from its iteration; no pickle anywhere.

Run folder (``RunDir``)::

    config.yaml  run.log  checkpoint.npz  chunks/        (while running)
    topology.pdb trajectory.dcd energies.npz samples.npz decorrelation.json metrics.json COMPLETE
    temperatures/<T>K/{trajectory.dcd, samples.npz}       (``save_all_temperatures``)

Samples are at slot 0 (the target temperature): x = positions in nm flattened to (n, 3·n_atoms)
float32, energy = U/(k_B T) float64.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_save_npz
from boltzpath.io.runs import RunDir
from boltzpath.molecules.remd import ReplicaExchange, geometric_ladder
from boltzpath.molecules.system import load_molecular_system

#: config fields that define the simulated chain; a resume with different values is refused
_PHYSICS_KEYS = (
    "target",
    "temperature_kelvin",
    "n_replicas",
    "t_max_kelvin",
    "timestep_fs",
    "collision_rate_per_ps",
    "steps_per_exchange",
    "save_every",
    "equilibration_iterations",
    "seed",
    "platform",
    "minimize_max_iterations",
)


@dataclass
class ReferenceConfig:
    """Replica-exchange MD settings.

    ``timestep_fs`` = 1: the targets have no constraints, so X–H bonds (period ≈ 11 fs) must be
    integrated; 1 fs gives ~11 steps per period with LangevinMiddle (2 fs would need HBonds
    constraints, which change the target distribution). ``t_max_kelvin`` None means 2·T.
    """

    target: str = "aldp-fab"
    temperature_kelvin: float = 300.0
    n_replicas: int = 4
    t_max_kelvin: float | None = None
    timestep_fs: float = 1.0
    collision_rate_per_ps: float = 1.0
    steps_per_exchange: int = 500
    n_iterations: int = 2000
    equilibration_iterations: int = 100
    save_every: int = 1
    checkpoint_every: int = 50
    platform: str = "auto"
    seed: int = 0
    save_all_temperatures: bool = False
    minimize_max_iterations: int = 200

    def validate(self) -> None:
        for key in ("n_replicas", "steps_per_exchange", "n_iterations", "save_every", "checkpoint_every"):
            if int(getattr(self, key)) < 1:
                raise BadInput(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.equilibration_iterations < 0 or self.equilibration_iterations >= self.n_iterations:
            raise BadInput(
                f"equilibration_iterations must be in [0, n_iterations), got {self.equilibration_iterations}"
            )
        if self.minimize_max_iterations < 0:
            raise BadInput(f"minimize_max_iterations must be >= 0, got {self.minimize_max_iterations}")
        for key in ("temperature_kelvin", "timestep_fs", "collision_rate_per_ps"):
            value = float(getattr(self, key))
            if not (np.isfinite(value) and value > 0):
                raise BadInput(f"{key} must be a positive number, got {getattr(self, key)}")
        if self.timestep_fs > 4.0:
            raise BadInput(f"timestep_fs={self.timestep_fs} is unstable without constraints (use <= 4 fs)")

    def ladder(self) -> np.ndarray:
        t_max = self.t_max_kelvin if self.t_max_kelvin is not None else 2.0 * self.temperature_kelvin
        return geometric_ladder(self.temperature_kelvin, t_max, int(self.n_replicas))


def run_reference(
    cfg: ReferenceConfig, run_dir: RunDir, callback: Callable[[dict], Any] | None = None, resume: bool = True
) -> dict:
    """Run (or continue) replica exchange and write the run folder; returns metrics.json's dict.

    ``callback(info)`` is called after every iteration with ``iteration``, ``n_iterations``,
    ``ns_per_day`` (simulated ns over all replicas per wall-clock day, this session),
    ``swap_acceptance`` and ``phase`` ('equilibration' | 'production').
    """
    from boltzpath.molecules.finalize import finalize_run

    cfg.validate()
    temps = cfg.ladder()
    mol = load_molecular_system(cfg.target)
    engine = ReplicaExchange(
        mol.system,
        mol.positions_nm,
        temps,
        cfg.timestep_fs,
        cfg.collision_rate_per_ps,
        cfg.platform,
        cfg.seed,
    )
    ckpt_path = run_dir.file("checkpoint.npz")
    # "target" as a {name, options} mapping, the run-folder convention `boltzpath evaluate` reads
    resolved = {
        "command": "reference",
        **asdict(cfg),
        "target": {"name": cfg.target, "temperature": float(cfg.temperature_kelvin)},
        "temperatures_kelvin": temps.tolist(),
        "platform_used": engine.platform.getName(),
    }
    state = {"iteration": 0, "chunks": [], "wall_s": 0.0, "sim_ns": 0.0}
    rng = np.random.default_rng(cfg.seed)
    if resume and ckpt_path.is_file():
        state, rng = _load_checkpoint(ckpt_path, cfg, engine)
        run_dir.log(f"resumed from iteration {state['iteration']}")
    else:
        engine.minimize_and_thermalize(cfg.seed, cfg.minimize_max_iterations)
        run_dir.log(f"started: ladder {np.round(temps, 2).tolist()} K on {engine.platform.getName()}")
    state["config"] = {k: getattr(cfg, k) for k in _PHYSICS_KEYS}
    run_dir.write_config(resolved)

    buffer: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    ns_per_step = cfg.timestep_fs * 1e-6
    t_session = time.perf_counter()
    sim_session_ns = 0.0
    while state["iteration"] < cfg.n_iterations:
        engine.run_md(cfg.steps_per_exchange)
        it = state["iteration"]
        pos, vel, pot = engine.snapshot()
        engine.exchange(rng, it % 2, pos, vel, pot)
        state["iteration"] = it = it + 1
        sim_session_ns += cfg.steps_per_exchange * engine.n_slots * ns_per_step
        if it > cfg.equilibration_iterations and (it - cfg.equilibration_iterations) % cfg.save_every == 0:
            buffer.append((it, pos.astype(np.float32), pot.copy(), engine.walker.copy()))
        if it % cfg.checkpoint_every == 0 or it == cfg.n_iterations:
            wall = time.perf_counter() - t_session
            _write_checkpoint(run_dir, ckpt_path, state, buffer, engine, rng, wall, sim_session_ns)
            state["wall_s"] += wall
            state["sim_ns"] += sim_session_ns
            t_session, sim_session_ns = time.perf_counter(), 0.0
            buffer = []
        if callback is not None:
            elapsed = state["wall_s"] + (time.perf_counter() - t_session)
            total_ns = state["sim_ns"] + sim_session_ns
            attempts = np.maximum(engine.swap_attempts, 1)
            callback(
                {
                    "iteration": it,
                    "n_iterations": cfg.n_iterations,
                    "phase": "equilibration" if it <= cfg.equilibration_iterations else "production",
                    "ns_per_day": total_ns / elapsed * 86400.0 if elapsed > 0 else 0.0,
                    "swap_acceptance": (engine.swap_accepts / attempts).tolist(),
                }
            )
    metrics = finalize_run(run_dir, cfg, resolved, mol, state, engine)
    run_dir.mark_complete()
    return metrics


def _write_checkpoint(
    run_dir: RunDir,
    path: Path,
    state: dict,
    buffer: list,
    engine: ReplicaExchange,
    rng: np.random.Generator,
    wall_s: float,
    sim_ns: float,
) -> None:
    """Chunk first, then the checkpoint that lists it: a kill in between leaves an ignored orphan."""
    chunks = list(state["chunks"])
    if buffer:
        name = f"chunks/frames_{state['iteration']:09d}.npz"
        atomic_save_npz(
            run_dir.file(name),
            iteration=np.array([b[0] for b in buffer], dtype=np.int64),
            positions_nm=np.stack([b[1] for b in buffer]),
            energy_kj_mol=np.stack([b[2] for b in buffer]),
            walker=np.stack([b[3] for b in buffer]),
        )
        chunks.append(name)
    meta = {
        "iteration": state["iteration"],
        "chunks": chunks,
        "wall_s": state["wall_s"] + wall_s,
        "sim_ns": state["sim_ns"] + sim_ns,
        "rng_state": rng.bit_generator.state,
        "config": state["config"],
    }
    blobs = {f"context_{k}": b for k, b in enumerate(engine.checkpoint_blobs())}
    atomic_save_npz(
        path,
        meta=np.array(json.dumps(meta)),
        walker=engine.walker,
        swap_attempts=engine.swap_attempts,
        swap_accepts=engine.swap_accepts,
        **blobs,
    )
    state["chunks"] = chunks


def _load_checkpoint(path: Path, cfg: ReferenceConfig, engine: ReplicaExchange):
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            blobs = [data[f"context_{k}"] for k in range(engine.n_slots) if f"context_{k}" in data]
            walker, att, acc = data["walker"], data["swap_attempts"], data["swap_accepts"]
    except (KeyError, ValueError, OSError) as exc:
        raise BadInput(f"{path} is not a readable reference checkpoint: {exc}") from None
    saved = meta.get("config", {})
    changed = [k for k in _PHYSICS_KEYS if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        raise BadInput(
            f"cannot resume: settings differ from the checkpoint ({', '.join(changed)}); use --overwrite"
        )
    engine.restore(blobs, walker, att, acc)
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng_state"]
    state = {k: meta[k] for k in ("iteration", "chunks", "wall_s", "sim_ns")}
    return state, rng
