"""The OpenMM view of a molecular target: System, topology, start positions, kT.

``load_molecular_system(name)`` asks the target registry first (peptide targets carry their
OpenMM ``System``); for ``aldp-fab`` it can also build openmmtools'
``AlanineDipeptideImplicit(constraints=None)`` directly (AMBER ff96 + OBC1, SPEC §2), which is
exactly what that target wraps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from boltzpath.errors import BadInput

#: molar gas constant R = k_B·N_A in kJ/(mol·K); 1 kT at 300 K = 2.494339 kJ/mol (SPEC §2)
KB_KJ_MOL_K = 0.008314462618


def kt_kj_mol(temperature_kelvin: float) -> float:
    return KB_KJ_MOL_K * float(temperature_kelvin)


@dataclass
class MolecularSystem:
    """``system`` an ``openmm.System`` (no constraints), ``topology`` an mdtraj Topology,
    ``positions_nm`` (n_atoms, 3) float64."""

    name: str
    system: Any
    topology: Any
    positions_nm: np.ndarray

    @property
    def n_atoms(self) -> int:
        return int(self.positions_nm.shape[0])


def load_molecular_system(name: str) -> MolecularSystem:
    from boltzpath.targets import make_target

    try:
        target = make_target(name)
    except BadInput:
        if name == "aldp-fab":
            return _aldp_fab_from_openmmtools()
        raise
    if not getattr(target, "is_peptide", False):
        raise BadInput(f"target {name!r} is not a molecule; reference MD needs a peptide target")
    pos = np.asarray(target.initial_positions_nm, dtype=np.float64).reshape(-1, 3)
    return MolecularSystem(name, target.openmm_system, target.topology, pos)


def _aldp_fab_from_openmmtools() -> MolecularSystem:
    import contextlib
    import io

    import mdtraj as md
    import openmm.unit as unit

    # openmmtools imports pymbar, which prints a banner; algorithms never print
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from openmmtools import testsystems

    ts = testsystems.AlanineDipeptideImplicit(constraints=None)
    if ts.system.getNumConstraints() != 0:  # pragma: no cover - guarded by constraints=None
        raise BadInput("aldp-fab must have no constraints")
    pos = np.asarray(ts.positions.value_in_unit(unit.nanometer), dtype=np.float64)
    return MolecularSystem("aldp-fab", ts.system, md.Topology.from_openmm(ts.topology), pos)
