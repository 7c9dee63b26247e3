"""The one ``Samples`` record that flows out of every sampler, into every metric, onto disk.

On disk (``samples.npz``): ``x`` float32 (n, dim) — particle systems flattened —, ``energy``
float64 (n,) E/kT at the sampling temperature, optional ``log_weights`` float64 (n,), and
``info`` a JSON string with provenance (method, target, temperature, energy evaluations, …).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzpath.errors import BadInput
from boltzpath.io.atomic import _json_default, atomic_save_npz


@dataclass
class Samples:
    x: torch.Tensor
    energy: torch.Tensor
    log_weights: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise BadInput(f"samples must have shape (n, dim), got {tuple(self.x.shape)}")
        n = self.x.shape[0]
        if self.energy.shape != (n,):
            raise BadInput(f"energy must have shape ({n},), got {tuple(self.energy.shape)}")
        if self.log_weights is not None and self.log_weights.shape != (n,):
            raise BadInput(f"log_weights must have shape ({n},), got {tuple(self.log_weights.shape)}")

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    def __repr__(self) -> str:
        weights = ", weighted" if self.log_weights is not None else ""
        what = self.info.get("method", "?")
        return f"Samples(n={self.n}, dim={self.dim}, method={what}{weights})"

    def to_numpy(self) -> dict[str, np.ndarray]:
        """``{"x": (n, dim) float32, "energy": (n,) float64[, "log_weights": (n,) float64]}``."""
        out = {"x": self.x.detach().cpu().numpy().astype(np.float32),
               "energy": self.energy.detach().cpu().numpy().astype(np.float64)}
        if self.log_weights is not None:
            out["log_weights"] = self.log_weights.detach().cpu().numpy().astype(np.float64)
        return out

    def to_mdtraj(self, topology: Any = None):
        """An ``mdtraj.Trajectory`` of peptide samples (positions in nm).

        ``topology``: an mdtraj Topology; by default the one of the peptide target named in
        ``info["target"]`` (needs the [molecules] extra).
        """
        from boltzpath.io.trajectories import samples_to_mdtraj

        if topology is None:
            spec = self.info.get("target") or {}
            name = spec.get("name") if isinstance(spec, dict) else spec
            from boltzpath.targets.registry import make_target

            if not isinstance(name, str):
                raise BadInput("these samples name no target; pass topology=")
            options = dict(spec.get("options") or {}) if isinstance(spec, dict) else {}
            target = make_target(name, **options)
            if not getattr(target, "is_peptide", False):
                raise BadInput(f"to_mdtraj needs a molecule; {name} is not one (pass topology=)")
            topology = target.topology
        return samples_to_mdtraj(self, topology)

    def save(self, path: str | Path) -> Path:
        arrays = {
            "x": self.x.detach().cpu().numpy().astype(np.float32),
            "energy": self.energy.detach().cpu().numpy().astype(np.float64),
            "info": np.array(json.dumps(self.info, sort_keys=True, default=_json_default)),
        }
        if self.log_weights is not None:
            arrays["log_weights"] = self.log_weights.detach().cpu().numpy().astype(np.float64)
        return atomic_save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Samples:
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"no samples file at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                x = torch.from_numpy(data["x"].astype(np.float32))
                energy = torch.from_numpy(data["energy"].astype(np.float64))
                lw = torch.from_numpy(data["log_weights"]) if "log_weights" in data else None
                info = json.loads(str(data["info"])) if "info" in data else {}
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadInput(f"{path} is not a readable boltzpath samples file ({why})") from None
        return cls(x=x, energy=energy, log_weights=lw, info=info)


def load_reference(path: str | Path, dim: int | None = None) -> np.ndarray:
    """A reference set from ``.npy`` (n, dim) or (n, particles, d), or a ``samples.npz``."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"reference file not found: {path}")
    if path.suffix.lower() not in (".npy", ".npz"):
        raise BadInput(f"reference {path} must be a .npy array (n, dim) or a samples.npz, not "
                       f"{path.suffix or 'a file without extension'}")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "x" not in data:
                    raise BadInput(f"reference {path} holds no 'x' array (keys: {', '.join(data.files)})")
                arr = data["x"]
        else:
            arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickled" in why:
            why = "not a NumPy .npy file"
        raise BadInput(f"cannot read reference {path}: {why}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise BadInput(f"reference {path} must hold a numeric array")
    if arr.ndim == 3:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2:
        raise BadInput(f"reference {path} must have shape (n, dim), got {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise BadInput(f"reference {path} has dimension {arr.shape[1]}, the target has {dim}")
    if not np.isfinite(arr).all():
        raise BadInput(f"reference {path} contains non-finite values")
    return arr
