"""E(n)-equivariant graph network (Satorras et al. 2021 style), fully connected, for particle systems.

Input x (batch, n·d) flattened particle positions (CoM-free), c_noise (batch,), optional
temperature (batch,). Node features h_i start as the noise (and temperature) embedding, shared by
all (identical) particles. Each of ``layers`` layers computes, for every ordered pair (i, j):

    m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖²)                       (edge MLP, SiLU)
    x_i ← x_i + Σ_{j≠i} (x_i − x_j)/(‖x_i − x_j‖ + 1) · φ_x(m_ij) / (n − 1)
    h_i ← h_i + φ_h(h_i, Σ_{j≠i} m_ij / (n − 1))

and the output is the vector field F = P(x_final − x_input), P = centre-of-mass projection, shape
(batch, n·d). F is rotation- and permutation-equivariant and translation-invariant by construction.

Speed (CPU): the dense path never materialises the concatenation [h_i, h_j, d²]: the first edge
linear layer is split, W·[h_i, h_j, d²] + b = (W_a h_i + b) + W_b h_j + w_c d², so two (batch, n, H)
products are broadcast to (batch, n, n, H) (one add, one addcmul). The coordinate update is
x_i Σ_j s_ij − (S x)_i (a batched matmul, no (batch, n, n, d) product) and the message sum is
Σ_j m_ij − m_ii (no masked copy of the messages). No gathers, no scatters, no Python loop over
particles. ``forward_edges`` is the textbook edge-list version (gather + concatenate + index_add)
kept as the "before" reference: it computes the same function with the same weights (tested) and
is what ``benchmarks/bench_egnn.py`` compares against.

Vector-Jacobian product by hand (``EGNN.forward_vjp``): the energy model needs ∇ₓ⟨F(x), x⟩ =
F(x) + J_F(x)ᵀx and, for the distillation loss, the parameter gradient *of* that gradient. Through
autograd that is a double backward (a graph of SiLU-backward-backward ops that ``torch.compile``
cannot trace). ``forward_vjp(x, c, T, v)`` returns (F(x), J_F(x)ᵀv) where the reverse pass through
the layers is written out as ordinary tensor ops (the transposed edge MLP, the n×n coordinate and
distance terms as batched matmuls, SiLU' = σ(z)(1 + z(1 − σ(z))) saved from the forward). The
result is an ordinary differentiable function of x and the parameters: one backward gives the
parameter gradient of any loss built on it, and the whole thing compiles. The last layer's node
update h_L is not computed there (F does not depend on it). Equal to autograd's VJP to rounding
(tests/test_egnn.py).
"""

from __future__ import annotations

import torch
from torch import nn

from boltzpath.nets.embedding import NoiseEmbedding


def silu_and_derivative(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(SiLU(z), SiLU'(z)) = (z·σ(z), σ(z)·(1 + z·(1 − σ(z)))) from one sigmoid."""
    s = torch.sigmoid(z)
    return z * s, s * (1.0 + z * (1.0 - s))


class EGNNLayer(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edge_in = nn.Linear(2 * hidden + 1, hidden)  # acts on [h_i, h_j, d²_ij]
        self.edge_out = nn.Linear(hidden, hidden)
        self.coord_hidden = nn.Linear(hidden, hidden)
        self.coord_out = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(self.coord_out.weight, gain=1e-3)
        self.node_in = nn.Linear(2 * hidden, hidden)
        self.node_out = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()
        self.hidden = hidden

    def _d2_column(self) -> torch.Tensor:
        """w_c, the first edge layer's weight on d², as a contiguous (H,) vector.

        An exact copy (1·w through a 1×1 matmul, bit for bit the column in eager mode); under
        ``torch.compile`` the strided view ``weight[:, 2H]`` would be re-gathered for every edge
        element inside the fused edge kernel, which measured 4× slower (1.1 ms against 0.27 ms at
        batch 64, LJ-13, H = 32) than with this materialised vector.
        """
        w = self.edge_in.weight
        return torch.mm(w.new_ones(1, 1), w[:, 2 * self.hidden :].T)[0]

    def _coord_weight(self, m: torch.Tensor) -> torch.Tensor:
        return self.coord_out(self.act(self.coord_hidden(m)))[..., 0]

    def _node_update(self, h: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        return h + self.node_out(self.act(self.node_in(torch.cat([h, agg], dim=-1))))

    def forward(self, h: torch.Tensor, x: torch.Tensor, offdiag: torch.Tensor):
        """Dense path. h (B, n, H), x (B, n, d), offdiag (n, n) float mask → (h', x')."""
        n, hd = x.shape[1], self.hidden
        diff = x[:, :, None, :] - x[:, None, :, :]  # (B, n, n, d): x_i − x_j (exact 0 on the diagonal)
        d2 = (diff * diff).sum(-1, keepdim=True)  # (B, n, n, 1)
        w = self.edge_in.weight
        a = torch.addmm(self.edge_in.bias, h.reshape(-1, hd), w[:, :hd].T).reshape(h.shape)  # W_a h_i + b
        b = h @ w[:, hd : 2 * hd].T  # W_b h_j
        pre = torch.addcmul(a[:, :, None, :] + b[:, None, :, :], d2, self._d2_column())  # (B, n, n, H)
        m = self.act(self.edge_out(self.act(pre)))
        # Σ_{j≠i} s_ij (x_i − x_j) = x_i Σ_j s_ij − Σ_j s_ij x_j: a batched matmul, no (B, n, n, d) product
        scale = self._coord_weight(m) * offdiag / (torch.sqrt(d2[..., 0] + 1e-8) + 1.0)  # (B, n, n)
        x = x + (x * scale.sum(-1, keepdim=True) - torch.bmm(scale, x)) / (n - 1)
        # Σ_{j≠i} m_ij = Σ_j m_ij − m_ii: no masked copy of the (B, n, n, H) messages
        agg = (m.sum(2) - torch.diagonal(m, dim1=1, dim2=2).transpose(1, 2)) / (n - 1)
        return self._node_update(h, agg), x

    def forward_cached(self, h: torch.Tensor, x: torch.Tensor, offdiag: torch.Tensor, need_h: bool = True):
        """The dense forward, also returning what ``vjp`` needs; ``need_h=False`` skips h' (None)."""
        n, hd = x.shape[1], self.hidden
        diff = x[:, :, None, :] - x[:, None, :, :]
        d2 = (diff * diff).sum(-1)  # (B, n, n)
        w = self.edge_in.weight
        a = torch.addmm(self.edge_in.bias, h.reshape(-1, hd), w[:, :hd].T).reshape(h.shape)
        b = h @ w[:, hd : 2 * hd].T
        wc = self._d2_column()
        pre = torch.addcmul(a[:, :, None, :] + b[:, None, :, :], d2[..., None], wc)
        s1, ds1 = silu_and_derivative(pre)
        m, dm = silu_and_derivative(self.edge_out(s1))
        s3, ds3 = silu_and_derivative(self.coord_hidden(m))
        cw = s3 @ self.coord_out.weight[0]  # (B, n, n)
        r = torch.sqrt(d2 + 1e-8)
        inv = offdiag / (r + 1.0)  # (B, n, n), 0 on the diagonal
        scale = cw * inv
        x_new = x + (x * scale.sum(-1, keepdim=True) - torch.bmm(scale, x)) / (n - 1)
        h_new, ds4 = None, None
        if need_h:
            agg = (m.sum(2) - torch.diagonal(m, dim1=1, dim2=2).transpose(1, 2)) / (n - 1)
            s4, ds4 = silu_and_derivative(self.node_in(torch.cat([h, agg], dim=-1)))
            h_new = h + self.node_out(s4)
        return h_new, x_new, (x, ds1, dm, ds3, r, inv, scale, ds4, wc)

    def vjp(self, cache, gh: torch.Tensor | None, gx: torch.Tensor, offdiag: torch.Tensor):
        """(gh, gx) ↦ (J_hᵀ, J_xᵀ) of (h', x') w.r.t. (h, x); ``gh=None`` means a zero cotangent for h'."""
        x, ds1, dm, ds3, r, inv, scale, ds4, wc = cache
        n, hd = x.shape[1], self.hidden
        nm1 = n - 1
        # x' = x + (x ⊙ rowsum(S) − S x)/(n − 1), S = scale
        gx_in = gx + (gx * scale.sum(-1, keepdim=True) - torch.bmm(scale.transpose(1, 2), gx)) / nm1
        g_scale = ((gx * x).sum(-1, keepdim=True) - torch.bmm(gx, x.transpose(1, 2))) / nm1  # (B, n, n)
        # scale = cw·offdiag/(r + 1), r = √(d² + 1e-8)
        g_cw = g_scale * inv
        g_d2 = -(g_scale * scale) / ((r + 1.0) * 2.0 * r)
        g_m = ((g_cw[..., None] * self.coord_out.weight[0]) * ds3) @ self.coord_hidden.weight  # (B, n, n, H)
        if gh is not None:
            g_hcat = ((gh @ self.node_out.weight) * ds4) @ self.node_in.weight  # (B, n, 2H)
            g_m = g_m + (g_hcat[..., hd:] / nm1)[:, :, None, :] * offdiag[..., None]
            gh_in = gh + g_hcat[..., :hd]
        g_pre = ((g_m * dm) @ self.edge_out.weight) * ds1  # (B, n, n, H)
        w = self.edge_in.weight
        g_h = g_pre.sum(2) @ w[:, :hd] + g_pre.sum(1) @ w[:, hd : 2 * hd]
        gh_in = g_h if gh is None else gh_in + g_h
        g_d2 = g_d2 + g_pre @ wc
        # d²_ij = ‖x_i − x_j‖²: ∂/∂x_k = 2 Σ_j (G_kj)(x_k − x_j), G = (g_d2 + g_d2ᵀ) off the diagonal
        sym = (g_d2 + g_d2.transpose(1, 2)) * offdiag
        gx_in = gx_in + 2.0 * (x * sym.sum(-1, keepdim=True) - torch.bmm(sym, x))
        return gh_in, gx_in

    def forward_edges(self, h, x, src, dst):
        """Edge-list reference (the "before" implementation): gather, concatenate, index_add."""
        n = x.shape[1]
        diff = x[:, src] - x[:, dst]  # (B, E, d)
        d2 = (diff * diff).sum(-1, keepdim=True)
        m = self.act(self.edge_out(self.act(self.edge_in(torch.cat([h[:, src], h[:, dst], d2], dim=-1)))))
        scale = self._coord_weight(m) / (torch.sqrt(d2[..., 0] + 1e-8) + 1.0)
        dx = torch.zeros_like(x).index_add_(1, src, diff * scale[..., None])
        agg = torch.zeros_like(h).index_add_(1, src, m)
        return self._node_update(h, agg / (n - 1)), x + dx / (n - 1)


class EGNN(nn.Module):
    """``forward(x, c_noise, temperature=None)`` → CoM-free vector field (batch, n·d)."""

    def __init__(
        self,
        n_particles: int,
        spatial_dim: int,
        hidden: int = 64,
        layers: int = 4,
        emb_dim: int = 32,
        temperature_conditioned: bool = False,
    ) -> None:
        super().__init__()
        if n_particles < 2 or spatial_dim < 1 or hidden < 1 or layers < 1:
            raise ValueError(
                f"bad EGNN sizes: n={n_particles}, d={spatial_dim}, hidden={hidden}, layers={layers}"
            )
        self.n_particles, self.spatial_dim = int(n_particles), int(spatial_dim)
        self.embedding = NoiseEmbedding(emb_dim, temperature_conditioned)
        self.h_in = nn.Linear(emb_dim, hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden) for _ in range(layers))
        n = self.n_particles
        self.register_buffer("offdiag", 1.0 - torch.eye(n), persistent=False)
        src, dst = torch.nonzero(self.offdiag, as_tuple=True)
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)

    def _initial(self, x, c_noise, temperature):
        bsz = x.shape[0]
        pos = x.reshape(bsz, self.n_particles, self.spatial_dim)
        h = self.h_in(self.embedding(c_noise, temperature))[:, None, :].expand(bsz, self.n_particles, -1)
        return pos, h

    @staticmethod
    def _output(pos, pos0):
        out = pos - pos0
        return (out - out.mean(dim=1, keepdim=True)).reshape(pos.shape[0], -1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, temperature: torch.Tensor | None = None):
        pos0, h = self._initial(x, c_noise, temperature)
        pos = pos0
        offdiag = self.offdiag.to(x.dtype)
        for layer in self.layers:
            h, pos = layer(h, pos, offdiag)
        return self._output(pos, pos0)

    def forward_vjp(self, x: torch.Tensor, c_noise: torch.Tensor, temperature: torch.Tensor | None,
                    v: torch.Tensor):
        """(F(x), J_F(x)ᵀ v), both (batch, n·d), with the reverse pass written out (module docstring).

        Differentiable in x, v, c_noise and the parameters like any other torch expression.
        """
        pos0, h = self._initial(x, c_noise, temperature)
        offdiag = self.offdiag.to(x.dtype)
        pos, caches = pos0, []
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h, pos, cache = layer.forward_cached(h, pos, offdiag, need_h=k < last)
            caches.append(cache)
        out = self._output(pos, pos0)
        # F = P(pos_L − pos_0): J_Fᵀ v = J_{pos_L}ᵀ (P v) − P v, P symmetric (CoM projection)
        pv = v.reshape(pos0.shape)
        pv = pv - pv.mean(dim=1, keepdim=True)
        gh, gx = None, pv
        for layer, cache in zip(reversed(self.layers), reversed(caches), strict=True):
            gh, gx = layer.vjp(cache, gh, gx, offdiag)
        return out, (gx - pv).reshape(out.shape)

    def forward_edges(self, x, c_noise, temperature=None):
        """Same function through the edge-list reference path (benchmarks and tests only)."""
        pos0, h = self._initial(x, c_noise, temperature)
        pos = pos0
        for layer in self.layers:
            h, pos = layer.forward_edges(h, pos, self.src, self.dst)
        return self._output(pos, pos0)
