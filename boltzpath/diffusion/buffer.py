"""Training buffer: samples x with their true reduced energies E/kT and scores ∇log π = −∇(E/kT).

Fields (numpy-free torch tensors, float32 positions/scores, float64 energies):
  x (n, dim), energy (n,) = E/kT at each sample's temperature, score (n, dim) = −∇ₓ(E/kT)
  (the "force" in kT per length unit), temperature (n,) or None.
Particle systems also record (n_particles, spatial_dim), and molecules (n_atoms, 3) in the same
fields (``rigid_shape``): minibatches are then randomly rotated — x and score with the same
rotation (the energy is invariant) — when ``augment=True``. Only rotations: atoms, unlike
identical particles, are never permuted.

Interface note (PITA): build stage-k+1's buffer from the resampled particles with
``TrainingBuffer.from_target(target_at_T, x, temperature=T)`` (one counted evaluation per sample),
concatenate stages with ``TrainingBuffer.concat``, and persist with ``save``/``load`` (npz, atomic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from boltzpath._rotations import random_rotations  # noqa: F401  (also imported from here)
from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_save_npz


def rigid_shape(target) -> tuple[int | None, int | None]:
    """(bodies, spatial dim) a rigid rotation acts on: (n_particles, d) for particle systems,
    (n_atoms, 3) for molecules, (None, None) otherwise."""
    if getattr(target, "n_particles", None):
        return int(target.n_particles), int(target.spatial_dim)
    if getattr(target, "is_peptide", False):
        return int(target.n_atoms), 3
    return None, None


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor
    energy: torch.Tensor
    score: torch.Tensor
    temperature: torch.Tensor | None


class TrainingBuffer:
    """See the module docstring. ``sample(batch_size, generator)`` → ``Batch``."""

    def __init__(self, x, energy, score, temperature=None, n_particles=None, spatial_dim=None) -> None:
        x = torch.as_tensor(x, dtype=torch.float32)
        energy = torch.as_tensor(energy, dtype=torch.float64)
        score = torch.as_tensor(score, dtype=torch.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise BadInput(f"buffer positions must have shape (n>0, dim), got {tuple(x.shape)}")
        if energy.shape != (x.shape[0],) or score.shape != x.shape:
            raise BadInput(
                f"buffer shapes disagree: x {tuple(x.shape)}, energy {tuple(energy.shape)}, "
                f"score {tuple(score.shape)}"
            )
        if temperature is not None:
            temperature = torch.as_tensor(temperature, dtype=torch.float32)
            if temperature.ndim == 0:
                temperature = temperature.expand(x.shape[0]).clone()
            if temperature.shape != (x.shape[0],) or not bool((temperature > 0).all()):
                raise BadInput("buffer temperatures must be positive, one per sample")
        if (n_particles is None) != (spatial_dim is None):
            raise BadInput("give both n_particles and spatial_dim, or neither")
        if n_particles is not None and int(n_particles) * int(spatial_dim) != x.shape[1]:
            raise BadInput(f"n_particles·spatial_dim = {n_particles}·{spatial_dim} != dim {x.shape[1]}")
        if not (torch.isfinite(x).all() and torch.isfinite(energy).all() and torch.isfinite(score).all()):
            raise BadInput("buffer contains non-finite positions, energies or scores")
        self.x, self.energy, self.score, self.temperature = x, energy, score, temperature
        self.n_particles = None if n_particles is None else int(n_particles)
        self.spatial_dim = None if spatial_dim is None else int(spatial_dim)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    @classmethod
    def from_target(cls, target, x: torch.Tensor, temperature: float | None = None) -> TrainingBuffer:
        """Evaluate E/kT and ∇log π of ``target`` (counted) at x; records the temperature if given."""
        e, grad = target.energy_and_grad(torch.as_tensor(x, dtype=torch.float32))
        temps = None if temperature is None else torch.full((e.shape[0],), float(temperature),
                                                            device=e.device)
        return cls(x, e, -grad, temps, *rigid_shape(target))

    @classmethod
    def concat(cls, buffers: list[TrainingBuffer]) -> TrainingBuffer:
        if not buffers:
            raise BadInput("nothing to concatenate")
        b0 = buffers[0]
        if any((b.temperature is None) != (b0.temperature is None) for b in buffers):
            raise BadInput("cannot concatenate buffers with and without temperatures")
        temps = None if b0.temperature is None else torch.cat([b.temperature for b in buffers])
        return cls(
            torch.cat([b.x for b in buffers]),
            torch.cat([b.energy for b in buffers]),
            torch.cat([b.score for b in buffers]),
            temps,
            b0.n_particles,
            b0.spatial_dim,
        )

    def subset(self, idx: torch.Tensor) -> TrainingBuffer:
        """The samples at ``idx`` (a new buffer; tensors are indexed copies)."""
        temps = None if self.temperature is None else self.temperature[idx]
        return TrainingBuffer(self.x[idx], self.energy[idx], self.score[idx], temps,
                              self.n_particles, self.spatial_dim)

    def to(self, device) -> TrainingBuffer:
        """A copy on ``device`` (minibatches are then drawn there, with a generator on that device)."""
        temps = None if self.temperature is None else self.temperature.to(device)
        return TrainingBuffer(self.x.to(device), self.energy.to(device), self.score.to(device), temps,
                              self.n_particles, self.spatial_dim)

    def sample(self, batch_size: int, generator: torch.Generator, augment: bool = True) -> Batch:
        """A minibatch drawn uniformly with replacement; rotated (x and score together) for particles.
        Indices and rotations are drawn on the generator's device (keep it with the buffer)."""
        idx = torch.randint(len(self), (int(batch_size),), generator=generator, device=generator.device)
        x, score = self.x[idx], self.score[idx]
        if augment and self.n_particles is not None and self.spatial_dim > 1:
            rot = random_rotations(int(batch_size), self.spatial_dim, generator, dtype=x.dtype)
            shape = (int(batch_size), self.n_particles, self.spatial_dim)
            x = (x.reshape(shape) @ rot).reshape(x.shape)
            score = (score.reshape(shape) @ rot).reshape(score.shape)
        temps = None if self.temperature is None else self.temperature[idx]
        return Batch(x, self.energy[idx], score, temps)

    def save(self, path: str | Path) -> Path:
        arrays = {"x": self.x.cpu().numpy(), "energy": self.energy.cpu().numpy(),
                  "score": self.score.cpu().numpy()}
        if self.temperature is not None:
            arrays["temperature"] = self.temperature.cpu().numpy()
        if self.n_particles is not None:
            arrays["particle_shape"] = np.array([self.n_particles, self.spatial_dim])
        return atomic_save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> TrainingBuffer:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError as exc:
            raise BadInput(f"buffer file not found: {path}") from exc
        except (ValueError, OSError) as exc:
            raise BadInput(f"not a readable buffer file: {path} ({exc})") from exc
        missing = {"x", "energy", "score"} - set(arrays)
        if missing:
            raise BadInput(f"buffer file {path} lacks {sorted(missing)}")
        shape = arrays.get("particle_shape")
        n_p, d = (None, None) if shape is None else (int(shape[0]), int(shape[1]))
        return cls(arrays["x"], arrays["energy"], arrays["score"], arrays.get("temperature"), n_p, d)
