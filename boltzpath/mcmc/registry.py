"""Sampling methods by name: each has a typed config dataclass and a ``run`` function

``run(target, n, generator, cfg, callback=None) -> Samples``. Modules are imported when a method
is first used, so importing boltzpath stays light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.targets.base import Target


def _mala():
    from boltzpath.mcmc.mala import MALAConfig, run_mala

    return MALAConfig, run_mala


def _hmc():
    from boltzpath.mcmc.hmc import HMCConfig, run_hmc

    return HMCConfig, run_hmc


def _langevin():
    from boltzpath.mcmc.langevin import LangevinConfig, run_langevin

    return LangevinConfig, run_langevin


def _pt():
    from boltzpath.mcmc.tempering import PTConfig, run_pt

    return PTConfig, run_pt


def _digs():
    from boltzpath.mcmc.digs import DiGSConfig, run_digs

    return DiGSConfig, run_digs


METHODS: dict[str, Callable[[], tuple[type, Callable[..., Samples]]]] = {
    "mala": _mala,
    "hmc": _hmc,
    "langevin": _langevin,
    "pt": _pt,
    "digs": _digs,
}


def method_config(name: str, options: dict[str, Any] | None = None, target: Target | None = None):
    """The typed config of method ``name`` with ``options`` applied (unknown keys are errors).

    With ``target``, the target's own defaults (``target.sampler_defaults(name)``, e.g. the small
    steps and long chains of a peptide) fill the keys that ``options`` leaves unset; without it
    (or for targets that define none) the config dataclass's defaults apply.
    """
    if name not in METHODS:
        raise BadInput(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    config_cls, _ = METHODS[name]()
    from boltzpath.config import deep_merge, from_dict

    defaults = target.sampler_defaults(name) if target is not None else {}
    return from_dict(config_cls, deep_merge(defaults, options or {}), where=f"sampler ({name})")


def run_method(
    name: str,
    target: Target,
    n: int,
    generator: torch.Generator,
    options: dict[str, Any] | Any | None = None,
    callback=None,
    x0: torch.Tensor | None = None,
) -> Samples:
    """Run method ``name`` for ``n`` samples; ``options`` is a dict or the method's config.

    ``options=None`` means the method's defaults *for this target* (``target.sampler_defaults``);
    a mapping (even ``{}``) is applied over the config dataclass's own defaults, as before.
    """
    if dataclasses.is_dataclass(options):
        cfg = options
    else:
        cfg = method_config(name, options, target=target if options is None else None)
    _, run = METHODS[name]()
    kwargs = {"x0": x0} if x0 is not None else {}
    return run(target, n, generator, cfg, callback=callback, **kwargs)
