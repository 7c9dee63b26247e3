"""Generalized-Born implicit solvent (OBC) terms of an OpenMM System as batched torch energies.

Two OpenMM forms are supported:

* ``GBSAOBCForce`` (native, OBC2: α = 1, β = 0.8, γ = 4.85). With offset radius ρ̃_i = ρ_i − 0.009 nm
  and scaled radius s_j ρ̃_j, the Born radii are
  B_i = 1 / (1/ρ̃_i − tanh(αΨ_i − βΨ_i² + γΨ_i³)/ρ_i),  Ψ_i = ρ̃_i · ½Σ_{j≠i} H_ij,
  H_ij = 1/L − 1/U + ¼ r (1/U² − 1/L²) + ½ ln(L/U)/r + ¼ (s_jρ̃_j)²/r (1/L² − 1/U²)
         [+ 2(1/ρ̃_i − 1/L) when atom i lies inside j's scaled sphere],
  for ρ̃_i < r + s_jρ̃_j (else 0), U = r + s_jρ̃_j, L = max(ρ̃_i, |r − s_jρ̃_j|). Energy
  E = −k(1/ε_in − 1/ε_out)[½Σ_i q_i²/B_i + Σ_{i<j} q_i q_j / f_ij],  f_ij = √(r² + B_iB_j e^{−r²/4B_iB_j}),
  plus the ACE surface term Σ_i 4π γ_SA (ρ_i + 0.14)² (ρ_i/B_i)⁶ (γ_SA = getSurfaceAreaEnergy()).
  With a cutoff rc, pairs beyond rc are dropped and 1/f becomes 1/f − 1/rc.
* ``CustomGBForce`` in the OBC family that OpenMM's app layer writes (``implicit/obc1.xml``,
  ``implicit/obc2.xml``, AMBER prmtop ``implicitSolvent=OBC1``): per-particle parameters
  (charge, or, sr), computed values I (pair) and B (single). Its expressions are read from the
  force itself and evaluated by ``openmm_torch_expr``, so the OBC1 constants (α = 0.8, β = 0,
  γ = 2.909125), the ACE term and any cutoff shift are exactly those OpenMM uses. Other
  CustomGBForces are refused.

Positions are (batch, n_atoms, 3) in nm; energies (batch,) in kJ/mol.
"""

from __future__ import annotations

import math

import openmm
import torch

from boltzpath.errors import BadInput
from boltzpath.targets.openmm_torch_expr import parse
from boltzpath.targets.openmm_torch_select import difference, lengths, rows, scatter_sum, selection, vectors

#: OpenMM's Coulomb constant 1/(4π ε0) in kJ·nm/(mol·e²) (NonbondedForce / GBSAOBCForce)
ONE_4PI_EPS0 = 138.93545764438198
OBC2_ALPHA, OBC2_BETA, OBC2_GAMMA = 1.0, 0.8, 4.85
DIELECTRIC_OFFSET_NM = 0.009
PROBE_RADIUS_NM = 0.14

OBC_PARAMETER_NAMES = ("charge", "or", "sr")
OBC_COMPUTED_VALUES = ("I", "B")


def _pairs(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def _cutoff_of(force, no_cutoff_value) -> float | None:
    method = force.getNonbondedMethod()
    if method == no_cutoff_value:
        return None
    if method != 1:  # CutoffNonPeriodic == 1 for all three force types
        raise BadInput(f"{type(force).__name__}: only NoCutoff and CutoffNonPeriodic are supported "
                       f"(periodic systems are not), got nonbonded method {method}")
    return float(force.getCutoffDistance().value_in_unit(openmm.unit.nanometer))


class NativeOBCTerm(torch.nn.Module):
    """OpenMM ``GBSAOBCForce`` (OBC2 + ACE), see the module docstring for the equations."""

    def __init__(self, force: openmm.GBSAOBCForce, dtype=torch.float64, n_atoms: int | None = None):
        super().__init__()
        params = [force.getParticleParameters(k) for k in range(force.getNumParticles())]
        q = [float(p[0].value_in_unit(openmm.unit.elementary_charge)) for p in params]
        rho = [float(p[1].value_in_unit(openmm.unit.nanometer)) for p in params]
        scale = [float(p[2]) for p in params]
        self.register_buffer("charge", torch.tensor(q, dtype=dtype))
        self.register_buffer("radius_nm", torch.tensor(rho, dtype=dtype))
        offset = torch.tensor(rho, dtype=dtype) - DIELECTRIC_OFFSET_NM
        self.register_buffer("offset_radius_nm", offset)
        self.register_buffer("scaled_radius_nm", offset * torch.tensor(scale, dtype=dtype))
        self.cutoff_nm = _cutoff_of(force, openmm.GBSAOBCForce.NoCutoff)
        eps_in, eps_out = force.getSoluteDielectric(), force.getSolventDielectric()
        self.prefactor = -ONE_4PI_EPS0 * (1.0 / eps_in - (1.0 / eps_out if eps_out != 0 else 0.0))
        kj_nm2 = openmm.unit.kilojoule_per_mole / openmm.unit.nanometer**2
        sa = force.getSurfaceAreaEnergy().value_in_unit(kj_nm2)
        self.surface_factor = 4.0 * math.pi * float(sa)
        i, j = _pairs(len(q), None)
        self.register_buffer("pair_i", i)
        self.register_buffer("pair_j", j)
        self.register_buffer("pair_vec", difference(i, j, len(q), dtype))
        self.register_buffer("sel_i", selection(i, len(q), dtype))
        self.register_buffer("sel_j", selection(j, len(q), dtype))

    def _h(self, r, rho_i, sr_j):
        """H_ij of the Born-radius sum for atom i seeing atom j at distance r."""
        upper = r + sr_j
        lower = torch.maximum(rho_i.expand_as(r), (r - sr_j).abs())
        h = (1 / lower - 1 / upper + 0.25 * r * (1 / upper**2 - 1 / lower**2)
             + 0.5 * torch.log(lower / upper) / r + 0.25 * sr_j**2 / r * (1 / lower**2 - 1 / upper**2))
        h = h + torch.where(rho_i < sr_j - r, 2.0 * (1 / rho_i - 1 / lower), torch.zeros_like(h))
        keep = rho_i < upper
        if self.cutoff_nm is not None:
            keep = keep & (r < self.cutoff_nm)
        return torch.where(keep, h, torch.zeros_like(h))

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        i, j = self.pair_i, self.pair_j
        r = lengths(vectors(self.pair_vec, pos))
        rho_t, sr = self.offset_radius_nm, self.scaled_radius_nm
        total = (scatter_sum(self._h(r, rho_t[i], sr[j]), self.sel_i)
                 + scatter_sum(self._h(r, rho_t[j], sr[i]), self.sel_j))
        psi = 0.5 * total * rho_t
        born = 1 / (1 / rho_t - torch.tanh(OBC2_ALPHA * psi - OBC2_BETA * psi**2 + OBC2_GAMMA * psi**3)
                    / self.radius_nm)
        q = self.charge
        bb = rows(self.sel_i, born) * rows(self.sel_j, born)
        f = torch.sqrt(r**2 + bb * torch.exp(-(r**2) / (4 * bb)))
        inv = 1 / f
        if self.cutoff_nm is not None:
            inv = torch.where(r < self.cutoff_nm, inv - 1 / self.cutoff_nm, torch.zeros_like(inv))
        e_pair = self.prefactor * (q[i] * q[j] * inv).sum(-1)
        e_self = 0.5 * self.prefactor * (q**2 / born).sum(-1)
        e_sa = self.surface_factor * ((self.radius_nm + PROBE_RADIUS_NM) ** 2
                                      * (self.radius_nm / born) ** 6).sum(-1)
        return e_pair + e_self + e_sa


class CustomOBCTerm(torch.nn.Module):
    """An OBC-family ``CustomGBForce`` evaluated from its own expression strings.

    Computed values: SingleParticle v_i = g(params_i, earlier values_i); ParticlePair
    v_i = Σ_{j≠i, r<rc, not excluded} g(r, params1=i, params2=j). Energy terms: SingleParticle
    Σ_i g_i; ParticlePair Σ_{i<j, r<rc, not excluded} g(r, ·1=i, ·2=j) (OpenMM's CustomGBForce
    semantics). NoExclusions variants ignore the exclusion list.
    """

    def __init__(self, force: openmm.CustomGBForce, dtype=torch.float64, n_atoms: int | None = None):
        super().__init__()
        n_par = force.getNumPerParticleParameters()
        names = tuple(force.getPerParticleParameterName(k) for k in range(n_par))
        cvs = tuple(force.getComputedValueParameters(k)[0] for k in range(force.getNumComputedValues()))
        if names != OBC_PARAMETER_NAMES or cvs != OBC_COMPUTED_VALUES:
            raise BadInput(
                f"unsupported CustomGBForce (per-particle parameters {names}, computed values {cvs}); "
                f"only the OBC form of OpenMM's app layer {OBC_PARAMETER_NAMES}/{OBC_COMPUTED_VALUES} "
                "is translated")
        if force.getNumTabulatedFunctions() or force.getNumEnergyParameterDerivatives():
            raise BadInput("unsupported CustomGBForce: tabulated functions / parameter derivatives")
        self.cutoff_nm = _cutoff_of(force, openmm.CustomGBForce.NoCutoff)
        self.globals = {force.getGlobalParameterName(k): float(force.getGlobalParameterDefaultValue(k))
                        for k in range(force.getNumGlobalParameters())}
        table = [force.getParticleParameters(k) for k in range(force.getNumParticles())]
        self.param_names = names
        self.register_buffer("params", torch.tensor(table, dtype=dtype).reshape(len(table), len(names)))
        pair_kinds = (openmm.CustomGBForce.ParticlePair, openmm.CustomGBForce.ParticlePairNoExclusions)
        self.values = []
        for k in range(force.getNumComputedValues()):
            name, text, kind = force.getComputedValueParameters(k)
            self.values.append((name, parse(text), kind in pair_kinds, kind == pair_kinds[0]))
        self.terms = []
        for k in range(force.getNumEnergyTerms()):
            text, kind = force.getEnergyTermParameters(k)
            self.terms.append((parse(text), kind in pair_kinds, kind == pair_kinds[0]))
        if not any("tanh" in e.text for n, e, *_ in self.values if n == "B"):
            raise BadInput("unsupported CustomGBForce: B is not an OBC tanh rescaling")
        n = len(table)
        i, j = _pairs(n, None)
        excluded = {tuple(sorted(force.getExclusionParticles(k))) for k in range(force.getNumExclusions())}
        keep = torch.tensor([(a, b) not in excluded for a, b in zip(i.tolist(), j.tolist(), strict=True)],
                            dtype=torch.bool)
        self.register_buffer("pair_i", i)
        self.register_buffer("pair_j", j)
        self.register_buffer("pair_not_excluded", keep)
        self.register_buffer("pair_vec", difference(i, j, n, dtype))
        self.register_buffer("sel_i", selection(i, n, dtype))
        self.register_buffer("sel_j", selection(j, n, dtype))

    def _particle_env(self, side: str | None, suffix: str, values: dict) -> dict:
        """Per-particle parameters and computed values, per atom (side None) or per pair side i/j."""
        idx = {"i": self.pair_i, "j": self.pair_j, None: None}[side]
        sel = {"i": self.sel_i, "j": self.sel_j, None: None}[side]
        env = {}
        for k, name in enumerate(self.param_names):
            env[name + suffix] = self.params[idx, k] if idx is not None else self.params[:, k]
        for name, v in values.items():
            env[name + suffix] = rows(sel, v) if sel is not None else v
        return env

    def _pair_mask(self, r, honour_exclusions: bool):
        """Pairs that interact, or None when all do (skips a masking pass, the common case)."""
        mask = None
        if self.cutoff_nm is not None:
            within = r < self.cutoff_nm
            mask = None if bool(within.all()) else within
        if honour_exclusions and not bool(self.pair_not_excluded.all()):
            mask = self.pair_not_excluded if mask is None else mask & self.pair_not_excluded
        return mask

    @staticmethod
    def _masked(mask, g):
        return g if mask is None else torch.where(mask, g, torch.zeros_like(g))

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        r = lengths(vectors(self.pair_vec, pos))
        values: dict[str, torch.Tensor] = {}
        shape = (pos.shape[0], pos.shape[1])
        for name, expr, is_pair, honour in self.values:
            if is_pair:
                mask = self._pair_mask(r, honour)
                acc = torch.zeros(shape, dtype=pos.dtype, device=pos.device)
                for a, b in (("i", "j"), ("j", "i")):  # value of atom a, summed over partners b
                    env = {**self.globals, "r": r, **self._particle_env(a, "1", values),
                           **self._particle_env(b, "2", values)}
                    g = self._masked(mask, torch.as_tensor(expr.evaluate(env)).expand_as(r))
                    acc = acc + scatter_sum(g, self.sel_i if a == "i" else self.sel_j)
                values[name] = acc
            else:
                env = {**self.globals, **self._particle_env(None, "", values)}
                values[name] = torch.as_tensor(expr.evaluate(env)).expand(shape)
        energy = torch.zeros(pos.shape[0], dtype=pos.dtype, device=pos.device)
        for expr, is_pair, honour in self.terms:
            if is_pair:
                env = {**self.globals, "r": r, **self._particle_env("i", "1", values),
                       **self._particle_env("j", "2", values)}
                g = torch.as_tensor(expr.evaluate(env)).expand_as(r)
                energy = energy + self._masked(self._pair_mask(r, honour), g).sum(-1)
            else:
                env = {**self.globals, **self._particle_env(None, "", values)}
                energy = energy + torch.as_tensor(expr.evaluate(env)).expand(shape).sum(-1)
        return energy
