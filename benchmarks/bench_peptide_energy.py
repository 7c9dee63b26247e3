"""Energy + forces throughput of the torch peptide energy vs OpenMM (issue 5 benchmark).

For each peptide target: conformations/s of energy+forces with
  * OpenMM's Reference platform, one conformation per ``setPositions``/``getState`` call (the
    ground truth the torch energy is tested against),
  * OpenMM's CPU platform, same loop,
  * the torch translation (``SystemEnergy``, float64 and float32, autograd forces) at several
    batch sizes,
and the speed-up of each torch batch size over the Reference loop measured in the same run.
Conformations are the initial structure + 0.005 nm Gaussian noise (thermal-scale energies).

    python benchmarks/bench_peptide_energy.py --quick      # batches 1, 64, 256, 1024; ~2 min
    python benchmarks/bench_peptide_energy.py              # batches 1, 64, 256, 1024, 4096
Writes benchmarks/results/peptide_energy.json (rows per benchmarks/render.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import torch

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.targets.openmm_torch import SystemEnergy
from boltzpath.targets.peptides import make_peptide_target

RESULTS = Path(__file__).resolve().parent / "results" / "peptide_energy.json"
TARGETS = ("aldp-fab", "aldp-pita", "al3")


def openmm_rate(target, frames: np.ndarray, platform: str) -> tuple[float, float]:
    """(conformations/s, wall s) of an OpenMM energy+forces loop over ``frames``."""
    properties = {"Threads": str(torch.get_num_threads())} if platform == "CPU" else {}
    context = openmm.Context(target.openmm_system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName(platform), properties)
    context.setPositions(frames[0])
    context.getState(getEnergy=True, getForces=True)  # warm-up (kernel compilation on CPU)
    start = time.perf_counter()
    for frame in frames:
        context.setPositions(frame)
        context.getState(getEnergy=True, getForces=True).getPotentialEnergy().value_in_unit(
            unit.kilojoule_per_mole)
    wall = time.perf_counter() - start
    return len(frames) / wall, wall


def torch_rate(energy, frames: np.ndarray, batch: int, min_seconds: float, device: str):
    """(conformations/s, conformations timed, wall s) of batched torch energy+forces."""
    x = torch.tensor(np.resize(frames, (batch, *frames.shape[1:])), dtype=energy.dtype, device=device)
    energy.energy_and_forces(x)  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        e, f = energy.energy_and_forces(x)
        if device != "cpu":
            torch.cuda.synchronize()
        done += batch
        wall = time.perf_counter() - start
        if wall >= min_seconds:
            return done / wall, done, wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and conformations")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and OpenMM-CPU threads (1: fair on a shared machine; both sides equal)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batches = (1, 64, 256, 1024) if args.quick else (1, 64, 256, 1024, 4096)
    n_openmm = 200 if args.quick else 1000
    min_seconds = 1.0 if args.quick else 3.0
    command = ("python benchmarks/bench_peptide_energy.py" + (" --quick" if args.quick else "")
               + f" --threads {args.threads}")
    machine = describe_machine()
    rows = []

    def row(method, target, metric, value, n, wall):
        rows.append({"benchmark": "peptide_energy", "method": method, "target": target, "metric": metric,
                     "value": round(float(value), 4), "n": n, "noise_floor": None,
                     "energy_evaluations": n, "wall_time_s": round(wall, 3), "machine": machine,
                     "command": command})

    rng = np.random.default_rng(0)
    for name in TARGETS:
        target = make_peptide_target(name)
        noise = rng.standard_normal((n_openmm, target.n_atoms, 3))
        frames = target.initial_positions_nm[None] + 0.005 * noise
        ref_rate, ref_wall = openmm_rate(target, frames, "Reference")
        row("openmm-reference (loop)", name, "conformations_per_s", ref_rate, n_openmm, ref_wall)
        cpu_rate, cpu_wall = openmm_rate(target, frames, "CPU")
        row("openmm-cpu (loop)", name, "conformations_per_s", cpu_rate, n_openmm, cpu_wall)
        for dtype in (torch.float64, torch.float32):
            energy = SystemEnergy.from_system(target.openmm_system, dtype=dtype, device=args.device)
            for batch in batches:
                rate, n, wall = torch_rate(energy, frames, batch, min_seconds, args.device)
                method = f"torch-{str(dtype)[6:]} {args.device} batch={batch}"
                row(method, name, "conformations_per_s", rate, n, wall)
                row(method, name, "speedup_vs_openmm_reference", rate / ref_rate, n, wall)
                print(f"{name:10s} {method:32s} {rate:10.1f} conf/s ({rate / ref_rate:5.1f}x Reference "
                      f"{ref_rate:.0f}/s; OpenMM CPU {cpu_rate:.0f}/s)", file=sys.stderr)
    atomic_write_json(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
