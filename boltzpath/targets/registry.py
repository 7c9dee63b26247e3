"""``make_target(name, **options)``: every target by name, with its options documented."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from boltzpath.errors import BadInput
from boltzpath.targets.base import Target
from boltzpath.targets.custom import CustomTarget
from boltzpath.targets.particles import DoubleWellParticles, LennardJones
from boltzpath.targets.toy import GMM40, ManyWell


def _peptide(name: str) -> Callable[..., Target]:
    def build(**options) -> Target:
        try:
            from boltzpath.targets.peptides import make_peptide_target
        except ImportError as exc:  # the [molecules] extra is not installed
            raise BadInput(
                f"target {name!r} needs OpenMM: pip install 'boltzpath[molecules]' ({exc})"
            ) from exc
        return make_peptide_target(name, **options)

    return build


@dataclass(frozen=True)
class TargetEntry:
    build: Callable[..., Target]
    summary: str
    defaults: dict


TARGETS: dict[str, TargetEntry] = {
    "gmm40": TargetEntry(GMM40, "2-D mixture of 40 Gaussians (FAB/DEM/DiKL/DiGS), exact sampler", {}),
    "manywell32": TargetEntry(ManyWell, "16 independent 2-D double wells, exact sampler, 2^16 modes",
                              {"dim": 32}),
    "dw4": TargetEntry(DoubleWellParticles, "4 particles in 2-D with a double-well pair potential",
                       {}),
    "lj13": TargetEntry(lambda **o: LennardJones(**{"n_particles": 13, **o}),
                        "Lennard-Jones 13 in 3-D + harmonic CoM term (pair factor f=2 default)",
                        {"pair_factor": 2.0, "oscillator": 1.0}),
    "lj55": TargetEntry(lambda **o: LennardJones(**{"n_particles": 55, **o}),
                        "Lennard-Jones 55 in 3-D + harmonic CoM term (pair factor f=2 default)",
                        {"pair_factor": 2.0, "oscillator": 1.0}),
    "aldp-fab": TargetEntry(_peptide("aldp-fab"), "alanine dipeptide, ff96 + OBC1 (openmmtools), "
                            "66-D Cartesian, kelvin", {"temperature": 300.0}),
    "aldp-pita": TargetEntry(_peptide("aldp-pita"), "alanine dipeptide, amber14 + OBC1, "
                             "66-D Cartesian, kelvin", {"temperature": 300.0}),
    "al3": TargetEntry(_peptide("al3"), "alanine tripeptide, amber14 + OBC1, Cartesian, kelvin",
                       {"temperature": 300.0}),
}


def make_target(name: str, **options) -> Target:
    """Build a target by registry name, or a user energy given as ``module:function``.

    ``options`` are the target's constructor options (``temperature`` for every target).
    """
    if not isinstance(name, str):
        raise BadInput(f"a target name must be a string, got {type(name).__name__}")
    if ":" in name or name == "custom":
        if ":" in name:
            energy = options.pop("energy", name)  # saved configs repeat the spec as 'energy'
            if energy != name:
                raise BadInput(f"target {name!r} was given a different energy {energy!r}")
            options["energy"] = name
        try:
            return CustomTarget(**options)
        except TypeError as exc:
            raise BadInput(f"bad options for custom target {name!r}: {exc}; allowed: energy, dim, "
                           "temperature") from None
    entry = TARGETS.get(name)
    if entry is None:
        raise BadInput(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
    try:
        return entry.build(**options)
    except TypeError as exc:
        raise BadInput(f"bad options for target {name!r}: {exc}") from exc


def target_options(name: str) -> dict:
    """Options a target accepts, with defaults (for ``boltzpath targets``)."""
    entry = TARGETS[name]
    build = entry.build
    params = {}
    if inspect.isclass(build):
        for p in list(inspect.signature(build.__init__).parameters.values())[1:]:
            params[p.name] = None if p.default is inspect.Parameter.empty else p.default
    params.update(entry.defaults)
    params.setdefault("temperature", None)  # every target can be re-tempered
    return params
