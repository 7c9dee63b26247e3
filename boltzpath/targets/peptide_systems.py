"""Build the OpenMM Systems of the peptide targets, offline (SPEC §2).

* ``aldp-fab``: openmmtools ``AlanineDipeptideImplicit(constraints=None)`` — AMBER ff96 + OBC1 from the
  prmtop shipped inside openmmtools (NoCutoff; OBC1 as a CustomGBForce).
* ``aldp-pita``: ACE-ALA-NME (the openmmtools dipeptide PDB, same atom order as ``aldp-fab``) with
  ``amber14-all.xml`` + ``implicit/obc1.xml``, ``CutoffNonPeriodic`` 2 nm, no constraints.
* ``al3``: ACE-ALA-ALA-NME (32 atoms) from ``boltzpath/data/al3.pdb`` (built once by
  ``scripts/build_al3.py`` with PDBFixer and minimised), same force field as ``aldp-pita``.

``build_peptide_system(name)`` returns a ``PeptideSystem`` (System, OpenMM topology, positions nm).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from boltzpath.errors import BadInput

PEPTIDES = ("aldp-fab", "aldp-pita", "al3")
PITA_CUTOFF_NM = 2.0
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class PeptideSystem:
    name: str
    system: openmm.System
    topology: app.Topology
    positions_nm: np.ndarray  # (n_atoms, 3) float64
    description: str


def _quiet_openmmtools():
    """Import openmmtools without the banner its pymbar import prints (library code never prints)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import openmmtools
        import openmmtools.testsystems  # noqa: F401
    return openmmtools


def _dipeptide_pdb() -> app.PDBFile:
    openmmtools = _quiet_openmmtools()
    path = os.path.join(os.path.dirname(openmmtools.__file__), "data", "alanine-dipeptide-gbsa",
                        "alanine-dipeptide.pdb")
    return app.PDBFile(path)


def _amber14_obc1(topology: app.Topology) -> openmm.System:
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc1.xml")
    return forcefield.createSystem(topology, nonbondedMethod=app.CutoffNonPeriodic,
                                   nonbondedCutoff=PITA_CUTOFF_NM * unit.nanometer, constraints=None,
                                   rigidWater=False)


def _positions_nm(positions) -> np.ndarray:
    return np.asarray(positions.value_in_unit(unit.nanometer), dtype=np.float64).reshape(-1, 3)


def build_peptide_system(name: str) -> PeptideSystem:
    """The OpenMM System, topology and initial positions of a peptide target, by registry name."""
    if name == "aldp-fab":
        test = _quiet_openmmtools().testsystems.AlanineDipeptideImplicit(constraints=None)
        return PeptideSystem(name, test.system, test.topology, _positions_nm(test.positions),
                             "alanine dipeptide, AMBER ff96 + OBC1 (openmmtools AlanineDipeptideImplicit)")
    if name == "aldp-pita":
        pdb = _dipeptide_pdb()
        return PeptideSystem(name, _amber14_obc1(pdb.topology), pdb.topology, _positions_nm(pdb.positions),
                             "alanine dipeptide, amber14-all + implicit/obc1, CutoffNonPeriodic 2 nm")
    if name == "al3":
        pdb = app.PDBFile(str(DATA_DIR / "al3.pdb"))
        return PeptideSystem(name, _amber14_obc1(pdb.topology), pdb.topology, _positions_nm(pdb.positions),
                             "alanine tripeptide ACE-ALA-ALA-NME, amber14-all + implicit/obc1, "
                             "CutoffNonPeriodic 2 nm")
    raise BadInput(f"unknown peptide {name!r}; known: {', '.join(PEPTIDES)}")
