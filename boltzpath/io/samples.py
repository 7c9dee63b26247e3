"""The one ``Samples`` record that flows out of every sampler, into every metric, onto disk.

On disk (``samples.npz``): ``x`` float32 (n, dim) — particle systems flattened —, ``energy``
float64 (n,) E/kT at the sampling temperature, optional ``log_weights`` float64 (n,), and
``info`` a JSON string with provenance (method, target, temperature, energy evaluations, …).
"""

from __future__ import annotations

import json
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
        except (KeyError, ValueError, OSError) as exc:
            raise BadInput(f"{path} is not a boltzpath samples file: {exc}") from exc
        return cls(x=x, energy=energy, log_weights=lw, info=info)


def load_reference(path: str | Path, dim: int | None = None) -> np.ndarray:
    """A reference set from ``.npy`` (n, dim) or (n, particles, d), or a ``samples.npz``."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"reference file not found: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arr = data["x"]
        else:
            arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, KeyError) as exc:
        raise BadInput(f"cannot read reference {path}: {exc}") from exc
    if arr.ndim == 3:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2:
        raise BadInput(f"reference {path} must have shape (n, dim), got {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise BadInput(f"reference {path} has dimension {arr.shape[1]}, the target has {dim}")
    if not np.isfinite(arr).all():
        raise BadInput(f"reference {path} contains non-finite values")
    return arr
