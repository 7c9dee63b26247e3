"""A user's own energy, plugged in as ``module:function`` or as a Python callable.

The function maps a float tensor of shape (batch, dim) to energies E/kT of shape (batch,) at
temperature 1 (reduced units). Example, in ``my_energies.py`` in the current folder (or anywhere
on the Python path)::

    def banana(x):
        return 0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 1] - x[:, 0] ** 2) ** 2

then ``boltzpath sample --target my_energies:banana --set target.dim=2 --method mala``, or from
Python ``boltzpath.Target(banana, dim=2)``. A ``module:function`` target is saved in run configs by
its spec, so ``--config RUN/config.yaml`` and ``boltzpath evaluate RUN`` rebuild it; a callable
defined in a notebook is saved by name only (it cannot be re-imported).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable

import torch

from boltzpath.errors import BadInput
from boltzpath.targets.base import Target

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
EnergyFn = Callable[[torch.Tensor], torch.Tensor]


def _import(module_name: str):
    """Import ``module_name``; the current folder is searched last (``python -m`` would search it)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def load_energy_function(spec: str) -> EnergyFn:
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise BadInput(f"custom energy must be written 'module:function', got {spec!r}")
    module_name, func_name = spec.split(":")
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise BadInput(f"cannot import module {module_name!r} for custom energy {spec}: {exc} "
                       "(the module must be in the current folder or on PYTHONPATH)") from None
    except Exception as exc:  # the user's module raised while importing: say so, briefly
        raise BadInput(f"importing {module_name!r} for custom energy {spec} failed: "
                       f"{type(exc).__name__}: {exc}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise BadInput(f"{module_name!r} has no callable {func_name!r}")
    return fn


def callable_spec(fn: EnergyFn) -> str:
    """``module:function`` of an importable top-level function, else its bare name."""
    module, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if isinstance(module, str) and isinstance(qual, str) and module != "__main__" and _SPEC.match(
            f"{module}:{qual}"):
        return f"{module}:{qual}"
    return getattr(fn, "__name__", type(fn).__name__)


class CustomTarget(Target):
    """A target from an energy function (``module:function`` string or callable) and its ``dim``."""

    name = "custom"

    def __init__(self, energy: str | EnergyFn | None = None, dim: int | None = None,
                 temperature: float | None = None):
        if energy is None:
            raise BadInput("a custom target needs an energy: 'module:function' or a callable")
        label = energy if isinstance(energy, str) else callable_spec(energy)
        if dim is None:
            raise BadInput(f"custom target {label} needs its dimension: --set target.dim=D "
                           "(or dim=D in Python)")
        if isinstance(dim, bool) or not isinstance(dim, int | float) or int(dim) != dim or int(dim) < 1:
            raise BadInput(f"custom target {label} needs an integer dim >= 1, got {dim!r}")
        super().__init__(int(dim), temperature)
        if isinstance(energy, str):
            self.fn = load_energy_function(energy)
        elif callable(energy):
            self.fn = energy
        else:
            raise BadInput("custom energy must be 'module:function' or a callable, got "
                           f"{type(energy).__name__}")
        self.spec = label
        self.name = label

    def _reference_energy(self, x):
        try:
            e = self.fn(x)
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(f"energy {self.spec} raised {type(exc).__name__} on a batch of shape "
                           f"{tuple(x.shape)}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        if not isinstance(e, torch.Tensor) or e.shape != (x.shape[0],):
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise BadInput(f"energy {self.spec} must return a tensor of shape ({x.shape[0]},) for a batch "
                           f"of shape {tuple(x.shape)}, got {shape}")
        return e

    def options(self):
        return {"energy": self.spec, "dim": self.dim}
