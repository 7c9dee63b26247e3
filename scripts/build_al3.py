"""Build the alanine-tripeptide (ACE-ALA-ALA-NME) structure shipped in boltzpath/data/al3.pdb.

Run once, offline: ``.venv/bin/python scripts/build_al3.py``. Starts from the openmmtools alanine
dipeptide (ACE-ALA-NME), renumbers NME so that PDBFixer sees one missing ALA between ALA and NME,
lets PDBFixer build the missing residue and hydrogens, then minimises the result under the
``al3`` force field (amber14-all + implicit/obc1, CutoffNonPeriodic 2 nm, no constraints) so the
shipped structure is a low-energy starting point. Writes boltzpath/data/al3.pdb.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as unit
import openmmtools
from pdbfixer import PDBFixer
from pdbfixer.pdbfixer import Sequence

DIPEPTIDE = Path(os.path.dirname(openmmtools.__file__)) / "data/alanine-dipeptide-gbsa/alanine-dipeptide.pdb"
OUT = Path(__file__).resolve().parents[1] / "boltzpath" / "data" / "al3.pdb"


def main() -> int:
    lines = []
    for line in DIPEPTIDE.read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")) and line[17:20] == "NME":
            line = line[:22] + f"{4:4d}" + line[26:]
        if line.startswith(("ATOM", "HETATM")) and line[12:16].strip().startswith("H"):
            continue  # PDBFixer re-adds all hydrogens with consistent names
        lines.append(line)
    fixer = PDBFixer(pdbfile=io.StringIO("\n".join(lines) + "\n"))
    chain_id = next(fixer.topology.chains()).id
    fixer.sequences = [Sequence(chain_id, ["ACE", "ALA", "ALA", "NME"])]
    fixer.findMissingResidues()
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc1.xml")
    system = forcefield.createSystem(fixer.topology, nonbondedMethod=app.CutoffNonPeriodic,
                                     nonbondedCutoff=2.0 * unit.nanometer, constraints=None,
                                     rigidWater=False)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(fixer.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 5000)
    state = context.getState(getEnergy=True, getPositions=True)
    residues = [r.name for r in fixer.topology.residues()]
    print(f"residues {residues}, atoms {fixer.topology.getNumAtoms()}, minimised energy "
          f"{state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole):.3f} kJ/mol")
    with open(OUT, "w") as handle:
        app.PDBFile.writeFile(fixer.topology, state.getPositions(), handle, keepIds=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
