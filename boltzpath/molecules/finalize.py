"""Turn a replica-exchange run's chunks into the final files (see ``reference.py``).

Writes topology.pdb, trajectory.dcd (slot 0), energies.npz (U in kJ/mol and U/k_BT per slot),
samples.npz (``Samples`` at the target temperature), decorrelation.json and metrics.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from boltzpath.io.atomic import atomic_save_npz, atomic_write_json
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import Samples
from boltzpath.io.trajectories import export_trajectory
from boltzpath.molecules.decorrelation import decorrelation_report
from boltzpath.molecules.system import KB_KJ_MOL_K, MolecularSystem


def load_chunks(run_dir: RunDir, chunks: list[str]) -> dict[str, np.ndarray]:
    """Concatenate the frame chunks: iteration (n,), positions_nm (n, slots, atoms, 3), energy_kj_mol
    (n, slots), walker (n, slots)."""
    parts: dict[str, list[np.ndarray]] = {
        "iteration": [],
        "positions_nm": [],
        "energy_kj_mol": [],
        "walker": [],
    }
    for name in chunks:
        with np.load(run_dir.file(name), allow_pickle=False) as data:
            for key in parts:
                parts[key].append(data[key])
    if not parts["iteration"]:
        raise RuntimeError("the run kept no frames (equilibration covers every iteration?)")
    return {k: np.concatenate(v) for k, v in parts.items()}


def _samples_at(frames: dict, slot: int, temp: float, mol: MolecularSystem, info: dict) -> Samples:
    pos = frames["positions_nm"][:, slot]
    reduced = frames["energy_kj_mol"][:, slot] / (KB_KJ_MOL_K * temp)
    return Samples(
        x=torch.from_numpy(pos.reshape(pos.shape[0], -1).astype(np.float32)),
        energy=torch.from_numpy(reduced.astype(np.float64)),
        info={**info, "temperature_kelvin": float(temp)},
    )


def _decorrelation(samples: Samples, energy_kj_mol: np.ndarray, mol: MolecularSystem) -> dict:
    from boltzpath.metrics.peptides import backbone_dihedrals

    phi, psi = backbone_dihedrals(samples.x.numpy(), mol.topology)
    series: dict[str, np.ndarray] = {"energy_kj_mol": energy_kj_mol}
    for r in range(phi.shape[1]):
        series[f"sin_phi{r}"], series[f"cos_phi{r}"] = np.sin(phi[:, r]), np.cos(phi[:, r])
        series[f"sin_psi{r}"], series[f"cos_psi{r}"] = np.sin(psi[:, r]), np.cos(psi[:, r])
        series[f"phi{r}_positive"] = (phi[:, r] > 0).astype(np.float64)
    return decorrelation_report(series)


def finalize_run(
    run_dir: RunDir, cfg: Any, resolved: dict, mol: MolecularSystem, state: dict, engine: Any
) -> dict:
    temps = np.asarray(resolved["temperatures_kelvin"], dtype=np.float64)
    frames = load_chunks(run_dir, state["chunks"])
    steps = int(state["iteration"]) * int(cfg.steps_per_exchange)
    info = {
        "method": "openmm-remd",
        "target": cfg.target,
        "platform": resolved["platform_used"],
        "n_replicas": int(cfg.n_replicas),
        "timestep_fs": float(cfg.timestep_fs),
        "energy_evaluations": steps * int(cfg.n_replicas),
    }
    slots = range(len(temps)) if cfg.save_all_temperatures else [0]
    report: dict[str, Any] = {}
    for slot in slots:
        out = run_dir if slot == 0 else run_dir.subdir(f"temperatures/{temps[slot]:.1f}K")
        samples = _samples_at(frames, slot, temps[slot], mol, info)
        out.write_samples(samples)
        export_trajectory(samples, mol.topology, out.file("trajectory.dcd"))
        dec = _decorrelation(samples, frames["energy_kj_mol"][:, slot], mol)
        atomic_write_json(out.file("decorrelation.json"), dec)
        report[f"{temps[slot]:.1f}K"] = {"n_frames": samples.n, "n_effective": dec["n_effective"]}
    export_trajectory(
        _samples_at(frames, 0, temps[0], mol, info).x[:1], mol.topology, run_dir.file("topology.pdb")
    )
    atomic_save_npz(
        run_dir.file("energies.npz"),
        iteration=frames["iteration"],
        energy_kj_mol=frames["energy_kj_mol"],
        energy_reduced=frames["energy_kj_mol"] / (KB_KJ_MOL_K * temps[None, :]),
        temperatures_kelvin=temps,
        walker=frames["walker"],
    )
    e0 = frames["energy_kj_mol"][:, 0]
    wall = float(state["wall_s"])
    metrics = {
        "n": int(e0.shape[0]),
        "temperatures_kelvin": temps.tolist(),
        "iterations": int(state["iteration"]),
        "simulated_ns_per_replica": steps * cfg.timestep_fs * 1e-6,
        "energy_evaluations": steps * len(temps),
        "wall_time_s": wall,
        "ns_per_day": float(state["sim_ns"]) / wall * 86400.0 if wall > 0 else None,
        "ns_per_day_convention": "simulated ns summed over replicas per wall-clock day",
        "swap_acceptance": (engine.swap_accepts / np.maximum(engine.swap_attempts, 1)).tolist(),
        "mean_energy_kj_mol": float(e0.mean()),
        "sd_energy_kj_mol": float(e0.std(ddof=1)) if e0.shape[0] > 1 else None,
        "decorrelation": report,
    }
    run_dir.write_metrics(metrics)
    return metrics
