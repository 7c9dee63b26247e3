"""A small DiT-style transformer over atoms, the peptide backbone (SPEC §5).

Input x (batch, n·3) — the preconditioned, centred coordinates c_in·x_c — c_noise = ¼ ln σ (batch,),
optional temperature (batch,). Output F (batch, n·3): one 3-vector per atom, the network output
F_θ of the EDM preconditioning, used exactly as ``MLP`` and ``EGNN`` outputs are (``build_models``,
mode ``score+energy``): the score model reads D_θ = c_skip·x + c_out·F_θ, the energy model the
scalar U_η = ‖x‖²/(2(σ_d²+σ²)) − σ_d⟨F_η, c_in x⟩/σ (a sum over atoms of per-atom readouts
⟨F_η,i, c_in x_i⟩).

Architecture (Peebles & Xie's DiT with adaLN-Zero, written for this project):

    token_i = W_x·(c_in x_i) + e_i                e_i: learned embedding of atom index i
    c       = NoiseEmbedding(c_noise, T)           (sinusoidal + MLP; ln T added when conditioned)
    block:  (β₁, γ₁, α₁, β₂, γ₂, α₂) = W_mod·SiLU(c)          W_mod initialised to zero
            h ← h + α₁ · Attention(LN(h)·(1 + γ₁) + β₁)
            h ← h + α₂ · MLP(LN(h)·(1 + γ₂) + β₂)
    out:    (β, γ) = W_fin·SiLU(c);  F_i = W_out·(LN(h_i)·(1 + γ) + β)  W_fin, W_out zero

With every gate α and the read-out at zero, each block starts as the identity and F = 0, so an
untrained denoiser is D = c_skip·x (the optimal denoiser of N(0, σ_d² I) data), as for the MLP.
Attention is written out (softmax(QKᵀ/√d_h)V) rather than through a fused kernel: the
distillation loss differentiates U_η twice (double backprop), which every op here supports.

**Not equivariant.** The network sees absolute orientations, so training must rotate samples and
their scores together (``TrainingBuffer.sample(augment=True)``; the peptide buffers carry the
(n_atoms, 3) shape for that). Translations are handled by centring: the diffusion models of a
peptide centre x themselves (``precond``, ``centre=True``), so F only ever sees centred input.

**Units and the data scale** (``net.sigma_data`` = s, ≈ 0.164 nm for ALDP). Positions, σ and the
schedule are all in the target's unit (nm). The EDM preconditioning with σ_data = s is the same
model as a σ_data = 1 model on scaled coordinates y = x/s with noise level σ_y = σ/s:
c_in·x = y/√(σ_y² + 1) and c_skip, c_out·F/s are those of the scaled model; only the network's
noise input c_noise = ¼ ln σ is read in nm, a constant shift ¼ ln s from the scaled model's, which
the learned noise embedding absorbs (tested exactly with that shift). Hence

* the energy U_η is a scalar and stays in E/kT: U(x; σ) = U_y(x/s; σ/s), and energy pinning
  compares U_η(x₀, σ_pin) with the true E/kT directly (no factor);
* the score transforms with 1/s: ∇ₓU = (1/s)∇_yU, so s_θ in nm⁻¹ is compared with the true
  −∇ₓ(E/kT) in nm⁻¹ (the buffer's scores), i.e. the scaled-coordinate score equals s times the
  force in kT/nm — tested in ``tests/test_pita_peptides.py``;
* σ values from the released PITA code (σ_min = 0.01, σ_max = 80 in data-std units) become
  σ_min = 0.01·s and σ_max = 80·s in nm; the peptide presets write them that way, and shift the
  training law of ln σ by ln s (``train.p_mean``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from boltzpath.nets.embedding import NoiseEmbedding


def _modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """LN(h)·(1 + scale) + shift with (batch, H) modulations broadcast over atoms."""
    return h * (1.0 + scale[:, None, :]) + shift[:, None, :]


class Attention(nn.Module):
    """Multi-head self-attention over the atoms (all pairs, no mask)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be divisible by heads={heads}")
        self.heads, self.head_dim = int(heads), hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, n, width = h.shape
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, width))


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero conditioning (identity at initialisation)."""

    def __init__(self, hidden: int, heads: int, cond_dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_ratio * hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * hidden, hidden))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * hidden))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        h = h + gate1[:, None, :] * self.attn(_modulate(self.norm1(h), shift1, scale1))
        return h + gate2[:, None, :] * self.mlp(_modulate(self.norm2(h), shift2, scale2))


class PairHead(nn.Module):
    """An equivariant pair term added to the transformer's output (``net.pair_features`` > 0):

        F_pair,i = Σ_{j≠i} (y_i − y_j)·g_ij,   g_ij = g_ji = MLP([rbf(r_ij), r_ij, δ_ij, δ_ij², e_ij, c])
                                                       + a_ij(c)·δ_ij + b_ij(c)·δ_ij²

    over the n(n−1)/2 atom pairs, with y = c_in·x (the network input), r_ij = ‖y_i − y_j‖, e_ij a
    learned embedding of the pair, c the noise embedding and, when a reference structure is given
    (the target's initial positions in units of x/σ_data), δ_ij = (r_ij − r_ij^ref)/0.05 clamped to
    ±4: the pair's deviation from its reference length in units of a bond's thermal fluctuation
    (≈ 0.05·σ_data ≈ 0.008 nm for ALDP at 1200 K), so that O(1) coefficients a, b give the stiff
    harmonic bond and 1–3 terms directly ((a, b) are linear in c and zero at initialisation; Adam
    would need thousands of steps to grow them through an MLP's curvature).
    Since g is symmetric, ⟨F_pair, y⟩ = Σ_{i<j} g_ij r_ij²; the model scales F_pair by σ/σ_d
    (``AtomTransformer.forward``), so the energy model's −σ_d⟨F, c_in x⟩/σ gains −Σ_{i<j} g_ij r_ij²,
    a sum of pair potentials in the interatomic distances — the form of a force field's bond and
    angle terms, which the attention blocks, fed absolute coordinates, resolve poorly:
    on ALDP stage-0 data (1200 K) a 2-layer, 32-wide transformer's U_η(x, σ_min)
    had correlation ≈ 0 with E/kT (docs/pita.md, 2026-12-03). F_pair is rotation-equivariant and
    translation-invariant; its energy is also reflection-invariant (distances only). The last
    layers start at zero, so an untrained network still outputs F = 0.
    """

    def __init__(self, n_atoms: int, n_rbf: int, cond_dim: int, hidden: int = 16, r_max: float = 8.0,
                 reference: torch.Tensor | None = None, delta_scale: float = 0.05) -> None:
        super().__init__()
        self.n_atoms = int(n_atoms)
        i, j = torch.triu_indices(n_atoms, n_atoms, offset=1)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        n_pairs = i.numel()
        self.register_buffer("centres", torch.linspace(0.0, r_max, n_rbf), persistent=False)
        self.width = r_max / max(n_rbf - 1, 1)
        self.r_max = float(r_max)
        self.delta_scale = float(delta_scale)
        self.has_reference = reference is not None
        ref = torch.zeros(n_pairs)
        if reference is not None:  # (n_atoms, 3) in network-input units at small σ (x/σ_data)
            ref = (reference[i] - reference[j]).float().norm(dim=-1)
        self.register_buffer("reference_r", ref, persistent=False)
        self.pair_embedding = nn.Parameter(torch.randn(n_pairs, hidden) * 0.02)
        self.feature_in = nn.Linear(n_rbf + 1 + 2 * self.has_reference, hidden)
        self.cond_in = nn.Linear(cond_dim, hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # (a_ij, b_ij) as functions of the noise embedding: the harmonic stiffness a pair needs falls
        # with σ (a Gaussian-smoothed well is softer) while the energy's prefactor σ_d/σ grows as σ
        # falls, so σ-independent coefficients learned at typical σ would be amplified ~30× at σ_min
        self.harmonic = nn.Linear(cond_dim, 2 * n_pairs) if self.has_reference else None
        if self.harmonic is not None:
            nn.init.zeros_(self.harmonic.weight)
            nn.init.zeros_(self.harmonic.bias)

    def pair_coefficients(self, pos: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g (batch, n_pairs), r (batch, n_pairs)) for pos (batch, n, d) and c (batch, cond_dim)."""
        diff = pos[:, self.pair_i] - pos[:, self.pair_j]
        r = (diff.pow(2).sum(-1) + 1e-12).sqrt()
        rbf = torch.exp(-(((r[..., None] - self.centres) / self.width) ** 2))
        feats = [rbf, r[..., None]]
        if self.has_reference:
            delta = ((r - self.reference_r) / self.delta_scale).clamp(-4.0, 4.0)
            feats += [delta[..., None], delta[..., None] ** 2]
        h = self.feature_in(torch.cat(feats, dim=-1)) + self.pair_embedding + self.cond_in(c)[:, None, :]
        g = self.out(nn.functional.silu(h))[..., 0]
        if self.has_reference:
            a, b = self.harmonic(c).reshape(c.shape[0], 2, -1).unbind(1)
            g = g + a * delta + b * delta**2
        # envelope exp(−(r/r_max)²): far-apart pairs stop contributing, so −g r² stays bounded. Without
        # it a positive g at large r is an inverted harmonic well; on aldp-fab (stage 3, γ = 1.85) every
        # annealed particle flew apart to non-finite positions by σ ≈ 3.5 nm (2026-12-03)
        return g * torch.exp(-((r / self.r_max) ** 2)), r

    def forward(self, pos: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """pos (batch, n, d) network-input coordinates, c (batch, cond_dim) → (batch, n, d)."""
        g, _ = self.pair_coefficients(pos, c)
        big = pos.new_zeros(pos.shape[0], self.n_atoms, self.n_atoms)
        big[:, self.pair_i, self.pair_j] = g
        big = big + big.transpose(1, 2)
        # Σ_j (y_i − y_j) G_ij = y_i Σ_j G_ij − (G y)_i
        return pos * big.sum(-1, keepdim=True) - big @ pos


class AtomTransformer(nn.Module):
    """``forward(x, c_noise, temperature=None)`` → (batch, n_atoms·spatial_dim); see the module docstring."""

    def __init__(
        self,
        n_atoms: int,
        spatial_dim: int = 3,
        hidden: int = 64,
        layers: int = 4,
        emb_dim: int = 32,
        heads: int = 4,
        temperature_conditioned: bool = False,
        mlp_ratio: int = 4,
        pair_features: int = 0,
        pair_reference: torch.Tensor | None = None,
        sigma_data: float = 1.0,
        pair_fade: float = 0.0,
    ) -> None:
        super().__init__()
        if pair_fade < 0:
            raise ValueError(f"pair_fade must be >= 0 (0: no fade), got {pair_fade}")
        if n_atoms < 1 or spatial_dim < 1 or hidden < 1 or layers < 1 or heads < 1:
            raise ValueError(f"bad transformer sizes: n={n_atoms}, d={spatial_dim}, hidden={hidden}, "
                             f"layers={layers}, heads={heads}")
        self.n_atoms, self.spatial_dim = int(n_atoms), int(spatial_dim)
        self.embedding = NoiseEmbedding(emb_dim, temperature_conditioned)
        self.coord_in = nn.Linear(spatial_dim, hidden)
        self.atom_embedding = nn.Embedding(n_atoms, hidden)
        nn.init.normal_(self.atom_embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(DiTBlock(hidden, heads, emb_dim, mlp_ratio) for _ in range(layers))
        self.norm_out = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * hidden))
        self.readout = nn.Linear(hidden, spatial_dim)
        for layer in (self.final_modulation[1], self.readout):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("atom_index", torch.arange(n_atoms), persistent=False)
        self.pair = PairHead(n_atoms, pair_features, emb_dim,
                             reference=pair_reference) if pair_features > 0 else None
        self.sigma_data = float(sigma_data)
        self.pair_fade = float(pair_fade)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Per-atom input tokens (batch, n_atoms, hidden)."""
        pos = x.reshape(x.shape[0], self.n_atoms, self.spatial_dim)
        return self.coord_in(pos) + self.atom_embedding(self.atom_index)[None]

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, temperature: torch.Tensor | None = None):
        c = self.embedding(c_noise, temperature)
        h = self.tokens(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        out = self.readout(_modulate(self.norm_out(h), shift, scale))
        if self.pair is not None:
            # × σ/σ_d (σ = e^{4 c_noise}): cancels the energy model's σ_d/σ, so U_η gains −Σ g_ij r_ij²
            # at every σ with O(1) g (and the score model c_out·F/σ² = F/√(σ² + σ_d²), force-like);
            # without it the pair coefficients learned at typical σ are amplified ~30× at σ_min and
            # training diverged (ALDP stage 0: pinning loss in the thousands)
            sigma = torch.exp(4.0 * c_noise)
            scale = sigma / self.sigma_data
            if self.pair_fade > 0:
                # × σ_f²/(σ_f² + σ²) (``pair_fade`` = σ_f, the target's length unit): the pair potentials
                # act at small σ, where the bonded terms shape p_σ, and leave the larger σ to the
                # attention blocks. Measured on ALDP stage 0 (docs/pita.md, eleventh session): with
                # σ_f = 0.03 nm the energy net's disagreement with the score ‖s_θ + ∇U_η‖/‖s_θ‖ fell from
                # 0.37 to 0.02 at σ = 2 nm but not at 0.1 nm (0.51), and the next stage still held 65 %
                # cis amides (91 % unfaded): not a fix on its own, so off by default
                scale = scale * self.pair_fade**2 / (self.pair_fade**2 + sigma**2)
            pair = self.pair(x.reshape(x.shape[0], self.n_atoms, self.spatial_dim), c)
            out = out + scale[:, None, None] * pair
        return out.reshape(x.shape[0], -1)
