"""Peptide targets ``aldp-fab``, ``aldp-pita``, ``al3`` (SPEC §2): Cartesian, nm, reduced at T.

``energy(x) = E(x) / (k_B T)`` with E the OpenMM force field's potential energy in kJ/mol,
evaluated by the batched torch translation of the OpenMM System (``openmm_torch``), and
k_B T = R·T (R = openmm.unit.MOLAR_GAS_CONSTANT_R; 2.494339 kJ/mol at 300 K). Positions are
flattened (batch, 3·n_atoms) in nm, atom order of the OpenMM topology (for the dipeptides the
order of openmmtools' ``alanine-dipeptide.pdb``).

``project`` is the identity: the density exp(−E/kT) is translation- and rotation-invariant, so it
is not normalisable over all of R^{3N}; samplers still work because their moves stay local (the
centre of mass diffuses freely, which no metric here depends on: energies, dihedrals and
distances are invariant). We do not remove the centre of mass so that forces and Gaussian
proposals keep their plain Cartesian meaning and the OpenMM energy is compared unchanged.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.unit as unit
import torch

from boltzpath.errors import BadInput
from boltzpath.targets.base import Target
from boltzpath.targets.openmm_torch import SystemEnergy
from boltzpath.targets.peptide_systems import PEPTIDES, build_peptide_system

#: R in kJ/(mol K)
GAS_CONSTANT_KJ_MOL_K = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
#: standard deviation (nm) of the Gaussian noise ``prior_sample`` adds to the initial structure
PRIOR_NOISE_NM = 0.005
DTYPES = {"float64": torch.float64, "float32": torch.float32}

#: Sampler defaults on peptides (``PeptideTarget.sampler_defaults``; reasoning in docs/molecules.md,
#: "Sampling a peptide with the baselines"). Cartesian peptide energies are stiff: the largest
#: Hessian eigenvalue of ``aldp-fab`` at its initial structure is 5.5e5 kT/nm² (bonds), the
#: torsions that separate the Ramachandran basins are ~1 kT soft. Hence (i) step sizes in nm²
#: of the samplers' convention x += −h∇E + √(2h)ξ: MALA adapts to h ≈ 1.5e-6 and starts there,
#: not at the generic 0.01; (ii) BAOAB (unit mass, kT = 1) is stable for h·√λ_max < 2, i.e.
#: h < 2.7e-3, and runs at 2e-3; (iii) few, long chains: a chain needs ~10⁴ MALA steps (or ~10³
#: BAOAB steps) to reach the αR basin from the start, so the budget goes into chain length.
#: For n = 200 samples these cost 1.6e5 (MALA), 3.4e4 (Langevin), 2.7e5 (PT: 8 replicas) and
#: 2.7e5 (DiGS: 1 + 10 evaluations per sweep) counted evaluations, set from a few measured runs
#: so that samples reach both the C7eq/C5 and αR basins (tests/test_peptide_samplers.py).
#: DiGS's noise levels are per target name in ``mcmc.digs_schedule.DEFAULT_NOISE``.
PEPTIDE_SAMPLER_DEFAULTS: dict[str, dict] = {
    "mala": {"chains": 16, "burn_in": 10000, "thin": 20, "step_size": 1e-6},
    "hmc": {"step_size": 1e-3},
    "langevin": {"chains": 16, "burn_in": 2000, "thin": 10, "step_size": 2e-3},
    # HMC moves (5 leapfrog steps, adapting to ≈ 1.8e-3): ballistic where MALA diffuses; at the same
    # 2.7e5 evaluations αR held 0.065 / 0.035 of 200 samples (seeds 0 / 1) against MALA moves' 0.015 / 0.02
    "pt": {"chains": 16, "burn_in": 400, "thin": 2, "step_size": 1e-3, "local": "hmc", "n_leapfrog": 5},
    "digs": {"chains": 16, "burn_in": 1500, "thin": 3, "mala_steps": 10, "step_size": 1e-6},
}


def kt_kj_mol(temperature_kelvin: float) -> float:
    """k_B T in kJ/mol (= R·T)."""
    return GAS_CONSTANT_KJ_MOL_K * float(temperature_kelvin)


class PeptideTarget(Target):
    """A peptide in implicit solvent as a Cartesian Boltzmann density at ``temperature`` kelvin."""

    is_peptide = True
    reference_temperature = 300.0
    temperature_unit = "kelvin"

    def __init__(self, name: str, temperature: float = 300.0, platform: str | None = None,
                 dtype: str = "float64", device: str = "cpu"):
        if dtype not in DTYPES:
            raise BadInput(f"{name}: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if platform is not None and platform not in _platform_names():
            raise BadInput(f"{name}: unknown OpenMM platform {platform!r}; available: {_platform_names()}")
        try:
            torch_device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise BadInput(f"{name}: bad torch device {device!r}") from exc
        built = build_peptide_system(name)
        self.name = name
        self.description = built.description
        self.openmm_system = built.system
        self.openmm_topology = built.topology
        self.n_atoms = built.system.getNumParticles()
        super().__init__(3 * self.n_atoms, temperature)
        self.platform_name = platform or "Reference"
        self.dtype_name, self.device_name = dtype, str(torch_device)
        self.initial_positions_nm = built.positions_nm
        self.torch_energy = SystemEnergy.from_system(built.system, dtype=DTYPES[dtype], device=torch_device)
        self._context = None
        self._topology = None

    # ----------------------------------------------------------------- facts
    def options(self):
        return {"platform": self.platform_name, "dtype": self.dtype_name, "device": self.device_name}

    @property
    def temperature_kelvin(self) -> float:
        return self.temperature

    @property
    def kt_kj_mol(self) -> float:
        return kt_kj_mol(self.temperature)

    @property
    def topology(self):
        """The mdtraj Topology (built on first use)."""
        if self._topology is None:
            import mdtraj

            self._topology = mdtraj.Topology.from_openmm(self.openmm_topology)
        return self._topology

    @property
    def heavy_atom_indices(self) -> np.ndarray:
        return np.array([a.index for a in self.openmm_topology.atoms()
                         if a.element is not None and a.element.symbol != "H"], dtype=np.int64)

    def backbone_dihedral_indices(self) -> dict[str, np.ndarray]:
        """φ and ψ atom quadruples, mdtraj convention: φ_i = C(i−1)-N-CA-C, ψ_i = N-CA-C-N(i+1).

        Returns {"phi": (m, 4), "psi": (m, 4)} int arrays (m = 1 for ALDP, 2 for AL3).
        """
        import mdtraj

        traj = mdtraj.Trajectory(self.initial_positions_nm[None].astype(np.float32), self.topology)
        phi, _ = mdtraj.compute_phi(traj)
        psi, _ = mdtraj.compute_psi(traj)
        return {"phi": np.asarray(phi, dtype=np.int64), "psi": np.asarray(psi, dtype=np.int64)}

    def sampler_defaults(self, method: str) -> dict:
        """Peptide defaults of ``method`` (``PEPTIDE_SAMPLER_DEFAULTS``): small steps, long chains."""
        return dict(PEPTIDE_SAMPLER_DEFAULTS.get(method, {}))

    # ----------------------------------------------------------------- energies
    def to(self, device: str | torch.device) -> PeptideTarget:
        """The torch force field moved to ``device`` (energies are then computed there, no copies)."""
        other = super().to(device)
        if other is not self:
            other.device_name = str(torch.device(device))
        return other

    def as_positions(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 3·n_atoms) → (batch, n_atoms, 3), checking the shape."""
        if not isinstance(x, torch.Tensor):
            raise BadInput(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 3 and x.shape[1:] == (self.n_atoms, 3):
            return x
        return self.check_input(x).reshape(x.shape[0], self.n_atoms, 3)

    def energy_kj_mol(self, x: torch.Tensor) -> torch.Tensor:
        """Potential energy in kJ/mol, (batch,), via the torch translation. Not counted (evaluation use)."""
        pos = self.as_positions(x)
        return self.torch_energy(pos.to(self.torch_energy.dtype)).to(x.dtype)

    def _reference_energy(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        pos = x.reshape(x.shape[0], self.n_atoms, 3).to(self.torch_energy.dtype)
        if torch.device(self.device_name) != device:
            pos = pos.to(self.device_name)
        e = self.torch_energy(pos) / kt_kj_mol(self.reference_temperature)
        return e.to(device=device, dtype=x.dtype)

    def prior_sample(self, n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
        """Initial structure + N(0, PRIOR_NOISE_NM²) noise per coordinate (0.005 nm); a chain start only."""
        dev = generator.device
        x0 = torch.as_tensor(self.initial_positions_nm, dtype=torch.float64, device=dev).reshape(1, -1)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=dev)
        return (x0 + PRIOR_NOISE_NM * noise).to(dtype)

    # ----------------------------------------------------------------- ground truth
    def _openmm_context(self):
        if self._context is None:
            platform = openmm.Platform.getPlatformByName(self.platform_name)
            self._context = openmm.Context(self.openmm_system, openmm.VerletIntegrator(0.001), platform)
        return self._context

    def openmm_energy_and_forces(self, x) -> tuple[np.ndarray, np.ndarray]:
        """OpenMM's own (E kJ/mol (batch,), F kJ/mol/nm (batch, n_atoms, 3)), one frame at a time."""
        pos = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        pos = pos.reshape(-1, self.n_atoms, 3)
        context = self._openmm_context()
        energies = np.empty(pos.shape[0])
        forces = np.empty(pos.shape)
        for k, frame in enumerate(pos):
            context.setPositions(frame)
            state = context.getState(getEnergy=True, getForces=True)
            energies[k] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces[k] = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        return energies, forces

    def openmm_energy_kj_mol(self, x) -> np.ndarray:
        """Ground-truth potential energy (kJ/mol) through OpenMM (``platform``, default Reference)."""
        return self.openmm_energy_and_forces(x)[0]

    def __getstate__(self):  # OpenMM contexts cannot be copied or pickled
        state = dict(self.__dict__)
        state["_context"] = None
        return state


def _platform_names() -> list[str]:
    return [openmm.Platform.getPlatform(k).getName() for k in range(openmm.Platform.getNumPlatforms())]


def make_peptide_target(name: str, temperature: float = 300.0, platform: str | None = None,
                        dtype: str = "float64", device: str = "cpu") -> PeptideTarget:
    """Build ``aldp-fab``, ``aldp-pita`` or ``al3`` at ``temperature`` kelvin (see the module docstring)."""
    if name not in PEPTIDES:
        raise BadInput(f"unknown peptide target {name!r}; known: {', '.join(PEPTIDES)}")
    return PeptideTarget(name, temperature=temperature, platform=platform, dtype=dtype, device=device)
