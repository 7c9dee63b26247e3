"""Samples ↔ mdtraj trajectories (for VMD, PyMOL, nglview) and reference trajectories → arrays.

Positions are nm. A ``Samples`` record stores them flattened, x of shape (n, 3·n_atoms);
``samples_to_mdtraj`` reshapes to mdtraj's (n, n_atoms, 3). ``export_trajectory`` picks the format
from the extension (.dcd, .pdb, .h5, .xtc) and writes atomically: mdtraj writes into a temporary
folder, the bytes then go through ``atomic_write_bytes``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_write_bytes

FORMATS = (".dcd", ".pdb", ".h5", ".xtc")


def positions_nm(samples: Any, n_atoms: int) -> np.ndarray:
    """(n, n_atoms, 3) float32 nm from a Samples record, a flat (n, 3·n_atoms) or (n, n_atoms, 3) array."""
    x = getattr(samples, "x", samples)  # a Samples record (read by its .x: io.samples imports us)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] == 3 * n_atoms:
        x = x.reshape(x.shape[0], n_atoms, 3)
    if x.ndim != 3 or x.shape[1:] != (n_atoms, 3):
        raise BadInput(f"expected positions of shape (n, {3 * n_atoms}) or (n, {n_atoms}, 3), got {x.shape}")
    if not np.isfinite(x).all():
        raise BadInput("positions contain non-finite values")
    return x


def samples_to_mdtraj(samples: Any, topology: Any):
    """An ``md.Trajectory`` of the samples on ``topology`` (an mdtraj Topology)."""
    import mdtraj as md

    return md.Trajectory(positions_nm(samples, topology.n_atoms), topology)


def dihedrals_of(samples: Any, topology: Any, quads: np.ndarray) -> np.ndarray:
    """(n, len(quads)) dihedral angles in radians (mdtraj) of the atom quadruples ``quads`` in every
    sample; (n, 0) when there are none."""
    import mdtraj as md

    if len(quads) == 0:
        return np.zeros((positions_nm(samples, topology.n_atoms).shape[0], 0))
    return md.compute_dihedrals(samples_to_mdtraj(samples, topology), quads)


def export_trajectory(samples: Any, topology: Any, path: str | Path) -> Path:
    """Write the samples as a trajectory; the format follows the extension (.dcd/.pdb/.h5/.xtc)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise BadInput(f"unknown trajectory format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    if path.suffix.lower() == ".h5":
        try:
            import tables  # noqa: F401
        except ImportError:
            raise BadInput("the .h5 format needs PyTables (pip install tables); use .dcd or .pdb") from None
    traj = samples_to_mdtraj(samples, topology)
    with tempfile.TemporaryDirectory(
        prefix=".traj", dir=path.parent if path.parent.is_dir() else None
    ) as tmp:
        tmp_file = Path(tmp) / f"out{path.suffix.lower()}"
        traj.save(str(tmp_file))
        data = tmp_file.read_bytes()
    return atomic_write_bytes(path, data)


def load_trajectory(path: str | Path, topology: str | Path | Any | None = None) -> np.ndarray:
    """A trajectory file (or a .npy of positions) as an (n, 3·n_atoms) float32 array in nm.

    ``topology``: a PDB path or an mdtraj Topology (needed for .dcd/.xtc, not for .pdb/.h5/.npy).
    """
    import mdtraj as md

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"trajectory file not found: {path}")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim == 3 else arr
        if arr.ndim != 2 or arr.shape[1] % 3:
            raise BadInput(f"{path}: expected (n, n_atoms, 3) or (n, 3·n_atoms) positions, got {arr.shape}")
        return arr.astype(np.float32)
    kwargs = {}
    if topology is not None:
        kwargs["top"] = str(topology) if isinstance(topology, (str, Path)) else topology
    elif path.suffix.lower() in (".dcd", ".xtc"):
        raise BadInput(f"{path.name} holds no topology; pass a topology (e.g. the run's topology.pdb)")
    try:
        traj = md.load(str(path), **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise BadInput(f"cannot read trajectory {path}: {exc}") from None
    return traj.xyz.reshape(traj.n_frames, -1).astype(np.float32)
