"""Network backbones F(x_in, c_noise, temperature=None) → (batch, dim) for the diffusion models.

``MLP`` for low-dimensional toys, ``EGNN`` (E(n)-equivariant, CoM-free output) for particle systems,
``AtomTransformer`` (DiT-style, adaLN-Zero, not equivariant) for peptides. All take the
preconditioned input c_in·x, c_noise = ¼ ln σ of shape (batch,) and, when built with
``temperature_conditioned=True``, a per-sample temperature of shape (batch,).
"""

from boltzpath.nets.egnn import EGNN
from boltzpath.nets.embedding import NoiseEmbedding
from boltzpath.nets.mlp import MLP
from boltzpath.nets.transformer import AtomTransformer

__all__ = ["EGNN", "MLP", "AtomTransformer", "NoiseEmbedding"]
