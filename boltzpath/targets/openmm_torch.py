"""OpenMM ``System`` → batched torch potential energy (kJ/mol) for positions in nm.

``SystemEnergy.from_system(system)`` reads the forces once and evaluates, for positions of shape
(batch, n_atoms, 3), the energy (batch,) with torch ops (CPU or GPU; float64 by default), so
forces come from autograd. OpenMM stays the ground truth: tests compare against its Reference
platform. Supported forces and their energies (r in nm, angles in rad):

* HarmonicBondForce     ½ k (r − r0)²
* HarmonicAngleForce    ½ k (θ − θ0)²
* PeriodicTorsionForce  k (1 + cos(nφ − φ0))
* NonbondedForce        Σ_{pairs} 4ε((σ/r)¹² − (σ/r)⁶) + k_e q_i q_j/r with Lorentz–Berthelot
  σ = (σ_i+σ_j)/2, ε = √(ε_iε_j), k_e = 138.935457… kJ nm/(mol e²); exceptions replace the pair
  with their own (q_iq_j, σ, ε) (zero = excluded). With ``CutoffNonPeriodic`` (cutoff rc) ordinary
  pairs beyond rc are dropped and Coulomb becomes OpenMM's reaction field
  k_e q_i q_j (1/r + k_rf r² − c_rf), k_rf = (ε_rf − 1)/((2ε_rf + 1) rc³), c_rf = 3ε_rf/((2ε_rf + 1) rc);
  exceptions are evaluated at every distance without reaction field (as OpenMM does; checked by
  the tests). Switching functions and periodic methods are refused.
* GBSAOBCForce and the OBC ``CustomGBForce`` of OpenMM's app layer: see ``openmm_torch_gb``.
* CMMotionRemover: no energy, ignored.

Anything else raises ``UnsupportedForce`` naming the force type(s).
"""

from __future__ import annotations

import openmm
import openmm.unit as unit
import torch

from boltzpath.errors import BadInput
from boltzpath.targets.openmm_torch_gb import ONE_4PI_EPS0, CustomOBCTerm, NativeOBCTerm
from boltzpath.targets.openmm_torch_select import difference, lengths, vectors

NM, RAD, KJ = unit.nanometer, unit.radian, unit.kilojoule_per_mole


class UnsupportedForce(BadInput):
    """The System holds a force type the translator cannot evaluate exactly."""


def _t(values, dtype, kind=None) -> torch.Tensor:
    return torch.tensor(values, dtype=kind or dtype)


class BondTerm(torch.nn.Module):
    """HarmonicBondForce: E = Σ ½ k (r − r0)²."""

    def __init__(self, force: openmm.HarmonicBondForce, dtype, n_atoms: int):
        super().__init__()
        table = [force.getBondParameters(k) for k in range(force.getNumBonds())]
        idx = _t([[a, b] for a, b, *_ in table], dtype, torch.long).reshape(-1, 2)
        self.register_buffer("vec", difference(idx[:, 0], idx[:, 1], n_atoms, dtype))
        self.register_buffer("r0", _t([p[2].value_in_unit(NM) for p in table], dtype))
        self.register_buffer("k", _t([p[3].value_in_unit(KJ / NM**2) for p in table], dtype))

    def forward(self, pos):
        r = lengths(vectors(self.vec, pos))
        return (0.5 * self.k * (r - self.r0) ** 2).sum(-1)


class AngleTerm(torch.nn.Module):
    """HarmonicAngleForce: E = Σ ½ k (θ − θ0)², θ the angle at the middle atom."""

    def __init__(self, force: openmm.HarmonicAngleForce, dtype, n_atoms: int):
        super().__init__()
        table = [force.getAngleParameters(k) for k in range(force.getNumAngles())]
        idx = _t([p[:3] for p in table], dtype, torch.long).reshape(-1, 3)
        self.register_buffer("vec_a", difference(idx[:, 0], idx[:, 1], n_atoms, dtype))
        self.register_buffer("vec_b", difference(idx[:, 2], idx[:, 1], n_atoms, dtype))
        self.register_buffer("theta0", _t([p[3].value_in_unit(RAD) for p in table], dtype))
        self.register_buffer("k", _t([p[4].value_in_unit(KJ / RAD**2) for p in table], dtype))

    def forward(self, pos):
        a = vectors(self.vec_a, pos)  # (batch, 3, m)
        b = vectors(self.vec_b, pos)
        # atan2(|a×b|, a·b) has a finite gradient at every angle, unlike acos of the cosine
        theta = torch.atan2(lengths(torch.linalg.cross(a, b, dim=1)), (a * b).sum(1))
        return (0.5 * self.k * (theta - self.theta0) ** 2).sum(-1)


def dihedral_angles(pos: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Dihedral φ ∈ (−π, π] of atom quadruples ``idx`` (m, 4) for positions (batch, n, 3).

    IUPAC sign convention (as OpenMM and mdtraj): φ = atan2(|b2| b1·(n2), n1·n2),
    b1 = x1 − x0, b2 = x2 − x1, b3 = x3 − x2, n1 = b1×b2, n2 = b2×b3.
    """
    return _dihedral_from_bonds(pos[:, idx[:, 1]] - pos[:, idx[:, 0]], pos[:, idx[:, 2]] - pos[:, idx[:, 1]],
                                pos[:, idx[:, 3]] - pos[:, idx[:, 2]], dim=-1)


def _dihedral_from_bonds(b1: torch.Tensor, b2: torch.Tensor, b3: torch.Tensor, dim: int) -> torch.Tensor:
    n1 = torch.linalg.cross(b1, b2, dim=dim)
    n2 = torch.linalg.cross(b2, b3, dim=dim)
    y = (b2 * b2).sum(dim).sqrt() * (b1 * n2).sum(dim)
    x = (n1 * n2).sum(dim)
    return torch.atan2(y, x)


class TorsionTerm(torch.nn.Module):
    """PeriodicTorsionForce: E = Σ k (1 + cos(n φ − φ0))."""

    def __init__(self, force: openmm.PeriodicTorsionForce, dtype, n_atoms: int):
        super().__init__()
        table = [force.getTorsionParameters(k) for k in range(force.getNumTorsions())]
        idx = _t([p[:4] for p in table], dtype, torch.long).reshape(-1, 4)
        # several periodicities share one quadruple: compute each distinct dihedral once
        unique, which = torch.unique(idx, dim=0, return_inverse=True)
        self.register_buffer("which", which.reshape(-1))
        for k, name in enumerate(("b1", "b2", "b3")):
            self.register_buffer(name, difference(unique[:, k + 1], unique[:, k], n_atoms, dtype))
        self.register_buffer("n", _t([p[4] for p in table], dtype))
        self.register_buffer("phi0", _t([p[5].value_in_unit(RAD) for p in table], dtype))
        self.register_buffer("k", _t([p[6].value_in_unit(KJ) for p in table], dtype))

    def forward(self, pos):
        b1, b2, b3 = (vectors(m, pos) for m in (self.b1, self.b2, self.b3))
        phi = _dihedral_from_bonds(b1, b2, b3, dim=1)[:, self.which]
        return (self.k * (1 + torch.cos(self.n * phi - self.phi0))).sum(-1)


class NonbondedTerm(torch.nn.Module):
    """NonbondedForce (NoCutoff or CutoffNonPeriodic with reaction field); see the module docstring."""

    def __init__(self, force: openmm.NonbondedForce, dtype, n_atoms: int):
        super().__init__()
        method = force.getNonbondedMethod()
        if method not in (openmm.NonbondedForce.NoCutoff, openmm.NonbondedForce.CutoffNonPeriodic):
            raise UnsupportedForce(f"NonbondedForce: nonbonded method {method} is periodic; only NoCutoff "
                                   "and CutoffNonPeriodic are supported")
        if method == openmm.NonbondedForce.CutoffNonPeriodic and force.getUseSwitchingFunction():
            raise UnsupportedForce("NonbondedForce: the LJ switching function is not supported")
        if force.getNumGlobalParameters() or force.getNumParticleParameterOffsets() \
                or force.getNumExceptionParameterOffsets():
            raise UnsupportedForce("NonbondedForce: global parameters / parameter offsets are not supported")
        n = force.getNumParticles()
        p = [force.getParticleParameters(k) for k in range(n)]
        q = torch.tensor([x[0].value_in_unit(unit.elementary_charge) for x in p], dtype=torch.float64)
        sig = torch.tensor([x[1].value_in_unit(NM) for x in p], dtype=torch.float64)
        eps = torch.tensor([x[2].value_in_unit(KJ) for x in p], dtype=torch.float64)
        exc = [force.getExceptionParameters(k) for k in range(force.getNumExceptions())]
        special = {(min(a, b), max(a, b)) for a, b, *_ in exc}
        i, j = torch.triu_indices(n, n, offset=1)
        keep = torch.tensor([(a, b) not in special for a, b in zip(i.tolist(), j.tolist(), strict=True)],
                            dtype=torch.bool)
        i, j = i[keep], j[keep]
        self.register_buffer("pair_vec", difference(i, j, n_atoms, dtype))
        self.register_buffer("qq", (ONE_4PI_EPS0 * q[i] * q[j]).to(dtype))
        self.register_buffer("sigma", ((sig[i] + sig[j]) / 2).to(dtype))
        self.register_buffer("epsilon", torch.sqrt(eps[i] * eps[j]).to(dtype))
        # exceptions with any interaction left (all-zero ones are pure exclusions)
        live = [e for e in exc if e[2].value_in_unit(unit.elementary_charge**2) != 0
                or e[4].value_in_unit(KJ) != 0]
        pairs = torch.tensor([[e[0], e[1]] for e in live], dtype=torch.long)
        pairs = pairs.reshape(-1, 2)
        self.register_buffer("exc_vec", difference(pairs[:, 0], pairs[:, 1], n_atoms, dtype))
        self.register_buffer("exc_qq", torch.tensor(
            [ONE_4PI_EPS0 * e[2].value_in_unit(unit.elementary_charge**2) for e in live], dtype=dtype))
        self.register_buffer("exc_sigma", torch.tensor([e[3].value_in_unit(NM) for e in live], dtype=dtype))
        self.register_buffer("exc_epsilon", torch.tensor([e[4].value_in_unit(KJ) for e in live], dtype=dtype))
        self.cutoff_nm = None
        if method == openmm.NonbondedForce.CutoffNonPeriodic:
            rc = force.getCutoffDistance().value_in_unit(NM)
            eps_rf = force.getReactionFieldDielectric()
            self.cutoff_nm = rc
            self.k_rf = (eps_rf - 1) / ((2 * eps_rf + 1) * rc**3)
            self.c_rf = 3 * eps_rf / ((2 * eps_rf + 1) * rc)

    @staticmethod
    def _lj(r, sigma, epsilon):
        s6 = (sigma / r) ** 6
        return 4 * epsilon * (s6 * s6 - s6)

    def forward(self, pos):
        r = lengths(vectors(self.pair_vec, pos))
        if self.cutoff_nm is None:
            pair = self._lj(r, self.sigma, self.epsilon) + self.qq / r
        else:
            pair = self._lj(r, self.sigma, self.epsilon) + self.qq * (1 / r + self.k_rf * r**2 - self.c_rf)
            within = r < self.cutoff_nm
            if not bool(within.all()):  # skip the masking pass when every pair is inside the cutoff
                pair = torch.where(within, pair, torch.zeros_like(pair))
        e = pair.sum(-1)
        if self.exc_vec.shape[0]:
            re = lengths(vectors(self.exc_vec, pos))
            e = e + (self._lj(re, self.exc_sigma, self.exc_epsilon) + self.exc_qq / re).sum(-1)
        return e


TERMS = {
    openmm.HarmonicBondForce: BondTerm,
    openmm.HarmonicAngleForce: AngleTerm,
    openmm.PeriodicTorsionForce: TorsionTerm,
    openmm.NonbondedForce: NonbondedTerm,
    openmm.GBSAOBCForce: NativeOBCTerm,
    openmm.CustomGBForce: CustomOBCTerm,
}
IGNORED = (openmm.CMMotionRemover,)


class SystemEnergy(torch.nn.Module):
    """Batched potential energy of an OpenMM System: positions (batch, n_atoms, 3) nm → (batch,) kJ/mol."""

    def __init__(self, terms: list[torch.nn.Module], n_atoms: int, force_names: list[str]):
        super().__init__()
        self.terms = torch.nn.ModuleList(terms)
        self.n_atoms = n_atoms
        self.force_names = force_names
        self.dtype = torch.float64

    @classmethod
    def from_system(cls, system: openmm.System, dtype=torch.float64, device="cpu") -> SystemEnergy:
        unsupported = sorted({type(f).__name__ for f in system.getForces()
                              if type(f) not in TERMS and not isinstance(f, IGNORED)})
        if unsupported:
            raise UnsupportedForce(
                f"cannot translate OpenMM force type(s) {', '.join(unsupported)} to torch; supported: "
                f"{', '.join(sorted(t.__name__ for t in TERMS))} (CMMotionRemover is ignored)")
        if system.getNumConstraints():
            raise UnsupportedForce(f"the System has {system.getNumConstraints()} constraints; build it "
                                   "with constraints=None (targets are unconstrained Cartesian densities)")
        if any(system.isVirtualSite(k) for k in range(system.getNumParticles())):
            raise UnsupportedForce("virtual sites are not supported")
        forces = [f for f in system.getForces() if not isinstance(f, IGNORED)]
        terms = [TERMS[type(f)](f, dtype, system.getNumParticles()) for f in forces]
        module = cls(terms, system.getNumParticles(), [type(f).__name__ for f in forces])
        module.dtype = dtype
        return module.to(device=device)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        if pos.ndim != 3 or pos.shape[1:] != (self.n_atoms, 3):
            raise BadInput(f"expected positions of shape (batch, {self.n_atoms}, 3) in nm, "
                           f"got {tuple(pos.shape)}")
        pos = pos.to(self.dtype)
        energy = self.terms[0](pos)
        for term in self.terms[1:]:
            energy = energy + term(pos)
        return energy

    def energy_and_forces(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E kJ/mol (batch,), F = −∂E/∂x kJ/mol/nm (batch, n_atoms, 3)), detached."""
        with torch.enable_grad():
            x = pos.detach().requires_grad_(True)
            e = self(x)
            (g,) = torch.autograd.grad(e.sum(), x)
        return e.detach(), -g.detach()
