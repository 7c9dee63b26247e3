"""Temperature replica exchange with OpenMM: one Langevin context per temperature slot.

Slot k always simulates temperature T_k (``LangevinMiddleIntegrator``); an exchange swaps the
configurations of two neighbouring slots i, j (velocities rescaled by √(T_new/T_old)) with the
Metropolis probability (SPEC §3)

    min(1, exp((β_i − β_j)(U_i − U_j))),   β = 1/(k_B T), U in kJ/mol,

so each slot keeps sampling exp(−β_k U) and the joint chain is reversible. Even pairs (0,1),(2,3)…
are tried on even iterations, odd pairs on odd ones. ``walker[k]`` tracks which of the original
replicas sits in slot k (for round-trip statistics).

State for resuming: each context's ``createCheckpoint()`` bytes (positions, velocities and the
integrator's random state), the walker map and swap counters; the exchange RNG state is kept by
the caller.
"""

from __future__ import annotations

import numpy as np

from boltzpath.errors import BadInput
from boltzpath.molecules.system import KB_KJ_MOL_K

PLATFORMS = ("Reference", "CPU", "CUDA", "OpenCL")


def geometric_ladder(t_min_kelvin: float, t_max_kelvin: float, n: int) -> np.ndarray:
    """T_k = T_min·(T_max/T_min)^{k/(n−1)}, k = 0..n−1 (a single replica: [T_min])."""
    if n < 1:
        raise BadInput(f"n_replicas must be >= 1, got {n}")
    if n == 1:
        return np.array([float(t_min_kelvin)])
    if not t_max_kelvin > t_min_kelvin:
        raise BadInput(f"t_max ({t_max_kelvin} K) must exceed the temperature ({t_min_kelvin} K)")
    return t_min_kelvin * (t_max_kelvin / t_min_kelvin) ** (np.arange(n) / (n - 1))


def pick_platform(name: str):
    """An OpenMM platform by name; 'auto' = CUDA, then OpenCL, then CPU, then Reference."""
    import openmm

    available = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name == "auto":
        for candidate in ("CUDA", "OpenCL", "CPU", "Reference"):
            if candidate in available:
                return openmm.Platform.getPlatformByName(candidate)
    if name not in PLATFORMS:
        raise BadInput(f"unknown OpenMM platform {name!r}; choose one of auto, {', '.join(PLATFORMS)}")
    if name not in available:
        raise BadInput(f"OpenMM platform {name!r} is not available here (available: {', '.join(available)})")
    return openmm.Platform.getPlatformByName(name)


class ReplicaExchange:
    """Slots of OpenMM contexts at a temperature ladder. Positions in nm, energies in kJ/mol."""

    def __init__(
        self,
        system,
        positions_nm: np.ndarray,
        temperatures_kelvin: np.ndarray,
        timestep_fs: float,
        collision_rate_per_ps: float,
        platform: str,
        seed: int,
        threads: int | None = 1,
    ) -> None:
        import openmm
        import openmm.unit as unit

        self.temperatures_kelvin = np.asarray(temperatures_kelvin, dtype=np.float64)
        self.betas = 1.0 / (KB_KJ_MOL_K * self.temperatures_kelvin)
        self.platform = pick_platform(platform)
        props = {"Threads": str(threads)} if self.platform.getName() == "CPU" and threads else {}
        self.contexts = []
        self.integrators = []
        for k, temp in enumerate(self.temperatures_kelvin):
            integ = openmm.LangevinMiddleIntegrator(
                temp * unit.kelvin, collision_rate_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
            )
            integ.setRandomNumberSeed(int(seed) * 1009 + k + 1)  # 0 would mean "pick at random"
            ctx = openmm.Context(system, integ, self.platform, props)
            ctx.setPositions(np.asarray(positions_nm, dtype=np.float64) * unit.nanometer)
            self.contexts.append(ctx)
            self.integrators.append(integ)
        n = len(self.contexts)
        self.walker = np.arange(n)
        self.swap_attempts = np.zeros(max(n - 1, 0), dtype=np.int64)
        self.swap_accepts = np.zeros(max(n - 1, 0), dtype=np.int64)

    @property
    def n_slots(self) -> int:
        return len(self.contexts)

    def minimize_and_thermalize(self, seed: int, max_iterations: int = 200) -> None:
        """Local energy minimisation (skipped for ``max_iterations`` 0), then Maxwell–Boltzmann velocities."""
        import openmm

        for k, ctx in enumerate(self.contexts):
            if max_iterations > 0:
                openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, int(max_iterations))
            ctx.setVelocitiesToTemperature(float(self.temperatures_kelvin[k]), int(seed) * 7919 + k + 1)

    def run_md(self, steps: int) -> None:
        for integ in self.integrators:
            integ.step(int(steps))

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions nm (slots, atoms, 3), velocities nm/ps (same), potential energies kJ/mol (slots,))."""
        import openmm.unit as unit

        pos, vel, pot = [], [], []
        for ctx in self.contexts:
            st = ctx.getState(getPositions=True, getVelocities=True, getEnergy=True)
            pos.append(st.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
            vel.append(st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
            pot.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        return np.asarray(pos), np.asarray(vel), np.asarray(pot, dtype=np.float64)

    def exchange(self, rng: np.random.Generator, parity: int, pos, vel, pot) -> np.ndarray:
        """Try swaps between pairs (k, k+1), k ≡ parity mod 2; returns the accepted mask per pair.

        ``pos``, ``vel``, ``pot`` from ``snapshot()`` are updated in place to the post-swap state.
        """
        import openmm.unit as unit

        accepted = np.zeros(max(self.n_slots - 1, 0), dtype=bool)
        for i in range(parity % 2, self.n_slots - 1, 2):
            j = i + 1
            self.swap_attempts[i] += 1
            log_acc = (self.betas[i] - self.betas[j]) * (pot[i] - pot[j])
            # draw for every attempt (also when log_acc >= 0) so the RNG stream is reproducible
            if np.log(rng.uniform()) < log_acc:
                accepted[i] = True
                self.swap_accepts[i] += 1
                scale = np.sqrt(self.temperatures_kelvin[j] / self.temperatures_kelvin[i])
                pos[[i, j]] = pos[[j, i]]
                vel[[i, j]] = vel[[j, i]] * np.array([1.0 / scale, scale])[:, None, None]
                pot[[i, j]] = pot[[j, i]]
                self.walker[[i, j]] = self.walker[[j, i]]
                for k in (i, j):
                    self.contexts[k].setPositions(pos[k] * unit.nanometer)
                    self.contexts[k].setVelocities(vel[k] * unit.nanometer / unit.picosecond)
        return accepted

    # ------------------------------------------------------------------ checkpointing
    def checkpoint_blobs(self) -> list[np.ndarray]:
        return [np.frombuffer(ctx.createCheckpoint(), dtype=np.uint8).copy() for ctx in self.contexts]

    def restore(
        self, blobs: list[np.ndarray], walker: np.ndarray, attempts: np.ndarray, accepts: np.ndarray
    ) -> None:
        if len(blobs) != self.n_slots:
            raise BadInput(f"checkpoint has {len(blobs)} replicas, the run has {self.n_slots}")
        for ctx, blob in zip(self.contexts, blobs, strict=True):
            try:
                ctx.loadCheckpoint(blob.tobytes())
            except Exception as exc:  # noqa: BLE001 - OpenMM raises its own exception type
                raise BadInput(
                    f"cannot restore the OpenMM checkpoint on platform {self.platform.getName()} "
                    f"(resume on the platform that wrote it): {exc}"
                ) from None
        self.walker = np.asarray(walker, dtype=np.int64).copy()
        self.swap_attempts = np.asarray(attempts, dtype=np.int64).copy()
        self.swap_accepts = np.asarray(accepts, dtype=np.int64).copy()
