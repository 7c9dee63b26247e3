"""TICA projection for peptides (SPEC §8): fitted on the reference, applied to samples.

Features per frame: all heavy-atom pairwise distances (nm) and sin/cos of the backbone φ/ψ
(mdtraj convention). deeptime ``TICA(lagtime, dim=2)`` is fitted on the reference *in the order
given* (a trajectory or a concatenation of trajectories); the default lag of 10 frames is a
convention (for REMD data, where slot-0 frames are not one continuous trajectory, TICA is used as a
fixed linear projection that emphasises slow coordinates, not for kinetics). TICA-W2 is the exact
OT W2 (POT ``emd2``, Euclidean cost, √cost) between the two projected 2-D point sets.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from boltzpath.errors import BadInput
from boltzpath.io.trajectories import samples_to_mdtraj

TICA_LAGTIME_FRAMES = 10


def heavy_atom_pairs(topology: Any) -> np.ndarray:
    heavy = [a.index for a in topology.atoms if a.element is None or a.element.symbol != "H"]
    return np.asarray(list(combinations(heavy, 2)), dtype=np.int64)


def tica_features(x, topology: Any) -> np.ndarray:
    """(n, n_pairs + 4·n_residues_with_phi_psi) float64 features."""
    import mdtraj as md

    traj = samples_to_mdtraj(x, topology)
    dist = md.compute_distances(traj, heavy_atom_pairs(topology))
    _, phi = md.compute_phi(traj)
    _, psi = md.compute_psi(traj)
    return np.concatenate([dist, np.sin(phi), np.cos(phi), np.sin(psi), np.cos(psi)], axis=1).astype(
        np.float64
    )


class TicaProjection:
    """deeptime TICA on the reference features; ``transform(x)`` → (n, 2)."""

    def __init__(self, reference_x, topology: Any, lagtime: int = TICA_LAGTIME_FRAMES, dim: int = 2) -> None:
        from deeptime.decomposition import TICA

        feats = tica_features(reference_x, topology)
        if feats.shape[0] <= lagtime + dim:
            raise BadInput(f"TICA needs more than {lagtime + dim} reference frames, got {feats.shape[0]}")
        self.topology = topology
        self.lagtime = int(lagtime)
        self.model = TICA(lagtime=self.lagtime, dim=dim).fit(feats).fetch_model()

    def transform(self, x) -> np.ndarray:
        return np.asarray(self.model.transform(tica_features(x, self.topology)), dtype=np.float64)
