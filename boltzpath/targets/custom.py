"""A user's own energy, plugged in as ``module:function`` without editing the package.

The function maps a float tensor of shape (batch, dim) to energies E/kT of shape (batch,) at
temperature 1 (reduced units). Example, in ``my_energies.py`` on the Python path::

    def banana(x):
        return 0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2

then ``boltzpath sample --target my_energies:banana --set target.dim=2 --method mala``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

import torch

from boltzpath.errors import BadInput
from boltzpath.targets.base import Target

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_energy_function(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if not _SPEC.match(spec):
        raise BadInput(f"custom energy must be written 'module:function', got {spec!r}")
    module_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInput(f"cannot import module {module_name!r} for custom energy: {exc}") from exc
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise BadInput(f"{module_name!r} has no callable {func_name!r}")
    return fn


class CustomTarget(Target):
    name = "custom"

    def __init__(self, energy: str, dim: int, temperature: float | None = None):
        if int(dim) < 1:
            raise BadInput(f"custom target needs dim >= 1, got {dim}")
        super().__init__(int(dim), temperature)
        self.spec = energy
        self.fn = load_energy_function(energy)
        self.name = energy

    def _reference_energy(self, x):
        e = self.fn(x)
        if not isinstance(e, torch.Tensor) or e.shape != (x.shape[0],):
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise BadInput(f"{self.spec} must return energies of shape ({x.shape[0]},), got {shape}")
        return e

    def options(self):
        return {"energy": self.spec, "dim": self.dim}
