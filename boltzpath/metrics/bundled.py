"""Certified reference sets shipped with the package, for targets that have no exact sampler.

LJ-13 and DW-4 have no exact sampler, so a run on them has nothing to be measured against unless
the user brings a reference. The package ships one certified set per target at T = 1 with the
default target options: ``boltzpath/data/references/<target>_T1.npy`` (float32, (2000, dim),
CoM-free), a random subset of the seed-0 run of ``python benchmarks/particle_references.py
--target <target>`` (parallel tempering whose ladder holds every PITA temperature; certified by a
second independent run agreeing at the noise floor — BENCHMARKS.md, particle_references_*). Any
other temperature or option gives None: a reference of the wrong distribution is worse than none.

Peptides without a held-out set (``al3``, ``aldp-pita``) get the same treatment at 300 K:
``<target>_300K.npy`` (float32 nm, (n, 3·n_atoms), every k-th frame of the seed-0 REMD run of
``benchmarks/peptide_references.py`` in time order, which TICA needs), certified by an independent
seed-1 run (BENCHMARKS.md, peptide_references) — a weaker certificate than the particles' (AL3: 78
effective samples, basin fractions to about ±0.06; aldp-pita: 110, its rare φ > 0 basin to about
±0.02; each description says so). Options that only
choose how the energy is computed (OpenMM platform, dtype, device) do not change the distribution
and are ignored.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "references"
#: target → (file, temperature in the target's units, kind of reference, what made it)
BUNDLED = {
    "lj13": ("lj13_T1.npy", 1.0, "certified PT reference", "benchmarks/particle_references.py seed 0"),
    "dw4": ("dw4_T1.npy", 1.0, "certified PT reference", "benchmarks/particle_references.py seed 0"),
    "al3": ("al3_300K.npy", 300.0, "two-seed REMD reference (n_eff 78)",
            "benchmarks/peptide_references.py seed 0"),
    "aldp-pita": ("aldp-pita_300K.npy", 300.0, "two-seed REMD reference (n_eff 110; φ > 0 to ±0.02)",
                  "benchmarks/peptide_references.py seed 0, 8 replicas 300-1200 K"),
}
#: target options that choose how E is computed, not what E is
COMPUTE_ONLY = frozenset({"platform", "dtype", "device"})


def _physics(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in COMPUTE_ONLY}


def bundled_reference(target, temperature: float | None = None) -> tuple[np.ndarray, str] | None:
    """``(samples (n, dim), description)`` of the shipped reference for ``target`` at ``temperature``
    (default: the target's own), or None. Nothing is built or read for other targets."""
    from boltzpath.io.samples import load_reference
    from boltzpath.targets.registry import make_target

    entry = BUNDLED.get(getattr(target, "name", None))
    temp = target.temperature if temperature is None else temperature
    if entry is None or temp is None or not math.isclose(float(temp), entry[1]):
        return None
    name, _, kind, origin = entry
    if _physics(target.options()) != _physics(make_target(target.name).options()):
        return None
    path = DATA_DIR / name
    if not path.is_file():
        return None
    ref = load_reference(path, target.dim)
    return ref, f"bundled {kind} boltzpath/data/references/{name} (n = {ref.shape[0]}, {origin})"
