"""Certified reference sets shipped with the package, for targets that have no exact sampler.

LJ-13 and DW-4 have no exact sampler, so a run on them has nothing to be measured against unless
the user brings a reference. The package ships one certified set per target at T = 1 with the
default target options: ``boltzpath/data/references/<target>_T1.npy`` (float32, (2000, dim),
CoM-free), a random subset of the seed-0 run of ``python benchmarks/particle_references.py
--target <target>`` (parallel tempering whose ladder holds every PITA temperature; certified by a
second independent run agreeing at the noise floor — BENCHMARKS.md, particle_references_*). Any
other temperature or option gives None: a reference of the wrong distribution is worse than none.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "references"
BUNDLED = {"lj13": "lj13_T1.npy", "dw4": "dw4_T1.npy"}


def bundled_reference(target, temperature: float | None = None) -> tuple[np.ndarray, str] | None:
    """``(samples (n, dim), description)`` of the shipped reference for ``target`` at ``temperature``
    (default: the target's own), or None. Nothing is built or read for other targets."""
    from boltzpath.io.samples import load_reference
    from boltzpath.targets.registry import make_target

    name = BUNDLED.get(getattr(target, "name", None))
    temp = target.temperature if temperature is None else temperature
    if name is None or temp is None or not math.isclose(float(temp), 1.0):
        return None
    if target.options() != make_target(target.name).options():
        return None
    path = DATA_DIR / name
    if not path.is_file():
        return None
    ref = load_reference(path, target.dim)
    return ref, (f"bundled certified PT reference boltzpath/data/references/{name} (n = {ref.shape[0]}, "
                 "benchmarks/particle_references.py seed 0)")
