"""Fast sampling from a trained DiKL generator: the same function as ``Generator``, inference only.

``FastGenerator(generator)`` snapshots the trained weights (float32, laid out for ``addmm``) and
draws with ``sample(n, rng)`` exactly the latent z that ``Generator.sample(n, rng)`` draws, so the
two give the same samples up to float rounding (tested). What makes it faster, for the EGNN
generator of the particle targets (the MLP generator of the toys is already cheap and is simply run
under ``torch.inference_mode``):

* no autograd (``torch.inference_mode``) and in-place SiLU on the (batch, n, n, H) edge tensors;
* the noise input is constant (c_noise = 0), so the node embedding h⁰ is computed once, and in the
  first layer every particle has the same features: the messages m_ij depend on ‖x_i − x_j‖² only
  and are symmetric, so layer 1 runs on the n(n−1)/2 unordered pairs (LJ-13: 78 of 169 rows) and
  scatters back with two small incidence matmuls;
* the batch is cut into chunks whose edge tensors stay in the core's cache (``chunk``, default 64
  rows on the CPU, the whole batch on a GPU) and whose buffers are allocated once and reused;
* the last layer skips the node update (its h is never read);
* optionally (``compile=True``) the per-chunk forward goes through ``torch.compile``; when that
  fails (no compiler, unsupported platform) the eager path is used and ``compiled`` says so;
* optionally (``precision="bfloat16"``) the edge MLPs — the (rows·n², H) matrices that take most of
  the time — run in bfloat16 (CPUs with AVX512-BF16 or AMX, GPUs), with the distances, the node
  updates, the sums over edges and the coordinates kept in float32. This is not the same function
  to float rounding: the samples move by about bfloat16's resolution (tested against float32 with a
  stated tolerance); the default stays float32.

The slow reference is ``Generator.sample`` (kept: ``benchmarks/bench_dikl_speed.py`` times both).
Later changes to the source generator's weights are not seen by a FastGenerator made before them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from boltzpath.methods.dikl.networks import Generator
from boltzpath.nets import EGNN


def _t(w: torch.Tensor) -> torch.Tensor:
    """A detached contiguous copy (weights are snapshotted, never shared with training)."""
    return w.detach().clone().contiguous()


def _silu_linear(bias: torch.Tensor, x: torch.Tensor, w_t: torch.Tensor, out: torch.Tensor | None):
    """silu(x·Wᵀ + b), written into ``out`` when given."""
    return F.silu(torch.addmm(bias, x, w_t, out=out), inplace=True)


class _LayerWeights:
    """One ``EGNNLayer``'s weights, split and transposed for addmm/mm (see nets/egnn.py)."""

    def __init__(self, layer, edge_dtype: torch.dtype = torch.float32) -> None:
        hd = layer.hidden
        w = layer.edge_in.weight.detach()
        e = lambda t: _t(t).to(edge_dtype)  # noqa: E731  (weights applied to the (rows·n², H) edges)
        self.wa_t, self.wb_t, self.wc = _t(w[:, :hd].T), _t(w[:, hd:2 * hd].T), e(w[:, 2 * hd])
        self.be = _t(layer.edge_in.bias)
        self.weo_t, self.beo = e(layer.edge_out.weight.T), e(layer.edge_out.bias)
        self.wch_t, self.bch = e(layer.coord_hidden.weight.T), e(layer.coord_hidden.bias)
        self.wco = e(layer.coord_out.weight[0])
        wn = layer.node_in.weight.detach()
        self.wnh_t, self.wna_t, self.bn = _t(wn[:, :hd].T), _t(wn[:, hd:].T), _t(layer.node_in.bias)
        self.wno_t, self.bno = _t(layer.node_out.weight.T), _t(layer.node_out.bias)

    def node_update(self, h: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """h + node_out(silu(node_in([h, agg]))) without the concatenation; h, agg (rows, H)."""
        u = F.silu(torch.addmm(self.bn, h, self.wnh_t).addmm_(agg, self.wna_t), inplace=True)
        return h + torch.addmm(self.bno, u, self.wno_t)


class _EGNNForward:
    """F_θ(z) of ``nets.EGNN`` at c_noise = 0, chunk by chunk (see the module docstring)."""

    def __init__(self, net: EGNN, device: torch.device, edge_dtype: torch.dtype = torch.float32) -> None:
        n, d = net.n_particles, net.spatial_dim
        self.n, self.d, self.hidden = n, d, net.layers[0].hidden
        self.edge_dtype = edge_dtype
        with torch.inference_mode():
            c0 = torch.zeros(1, device=device, dtype=net.h_in.weight.dtype)
            self.h0 = _t(net.h_in(net.embedding(c0, None)))  # (1, H): every particle, every row
        self.layers = [_LayerWeights(layer, edge_dtype) for layer in net.layers]
        first = self.layers[0]
        # layer 1: a_i + b_j is one vector for all pairs
        c1 = torch.addmm(first.be[None], self.h0, first.wa_t) + self.h0 @ first.wb_t
        self.c1 = _t(c1)[0].to(edge_dtype)
        iu, ju = torch.triu_indices(n, n, 1, device=device)
        k = iu.numel()
        self.pairs = k
        self.pair_flat = iu * n + ju  # (K,): pair p = (i < j) in a flattened (n, n) matrix
        pair_of = torch.zeros(n, n, dtype=torch.long, device=device)
        pair_of[iu, ju] = pair_of[ju, iu] = torch.arange(k, device=device)
        self.pair_of = pair_of.reshape(-1)  # (n²,): (i, j) → its pair (the diagonal is masked later)
        inc = torch.zeros(n, k, device=device, dtype=edge_dtype)  # 0/1: exact in bfloat16
        inc[iu, torch.arange(k, device=device)] = 1.0
        inc[ju, torch.arange(k, device=device)] = 1.0
        self.incidence = inc  # (n, K): agg_i = Σ_{pairs p ∋ i} m_p
        self.offdiag = 1.0 - torch.eye(n, device=device, dtype=self.h0.dtype)
        self._local = threading.local()  # edge buffers, one set per thread and chunk size

    def buffers(self, rows: int) -> dict[str, torch.Tensor]:
        """Edge buffers for a chunk of ``rows`` samples, allocated once per thread and chunk size.
        Two (rows·n², H) blocks: the pre-activations (reused for the coordinate MLP) and the
        messages; layer 1 uses their first rows·K rows."""
        cache = self._local.__dict__.setdefault("buffers", {})
        if rows not in cache:
            n, hd, k = self.n, self.hidden, self.pairs
            new = lambda *shape: torch.empty(*shape, device=self.h0.device, dtype=self.edge_dtype)  # noqa: E731
            pre, m, s = new(rows * n * n, hd), new(rows * n * n, hd), new(rows * n * n)
            cache[rows] = {"pre": pre, "m": m, "c": pre, "s": s, "pre1": pre[: rows * k], "m1": m[: rows * k],
                           "c1": pre[: rows * k], "s1": s[: rows * k]}
        return cache[rows]

    def _distances(self, pos: torch.Tensor) -> torch.Tensor:
        """‖x_i − x_j‖² (rows, n, n), computed coordinate-major (vectorised along j)."""
        xt = pos.transpose(1, 2).contiguous()  # (rows, d, n)
        return (xt[..., :, None] - xt[..., None, :]).square_().sum(1)

    def _move(self, pos: torch.Tensor, w: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        """x_i + Σ_{j≠i} (x_i − x_j)·w_ij/(‖x_i − x_j‖ + 1)/(n − 1), as in ``EGNNLayer.forward``."""
        scale = w * self.offdiag / (torch.sqrt(d2 + 1e-8) + 1.0)
        return pos + (pos * scale.sum(-1, keepdim=True) - torch.bmm(scale, pos)) / (self.n - 1)

    def __call__(self, z: torch.Tensor, buf: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """F_θ(z) for one chunk z (rows, n·d); ``buf`` from ``buffers(rows)`` (None: allocate)."""
        rows, n, d, hd = z.shape[0], self.n, self.d, self.hidden
        out = (lambda key: None) if buf is None else buf.__getitem__
        pos0 = z.reshape(rows, n, d)
        first = self.layers[0]
        ed = self.edge_dtype  # the edge MLPs' dtype; distances, node updates and positions: float32
        # layer 1 on the K unordered pairs (messages symmetric: all particles share h⁰)
        d2 = self._distances(pos0)
        pair_d2 = d2.reshape(rows, n * n)[:, self.pair_flat].reshape(-1, 1).to(ed)
        pre = torch.addcmul(self.c1, pair_d2, first.wc, out=out("pre1"))
        m = _silu_linear(first.beo, F.silu(pre, inplace=True), first.weo_t, out("m1"))
        c = _silu_linear(first.bch, m, first.wch_t, out("c1"))
        w = torch.mv(c, first.wco, out=out("s1")).reshape(rows, -1)[:, self.pair_of].reshape(rows, n, n)
        pos = self._move(pos0, w.to(pos0.dtype), d2)
        if len(self.layers) == 1:
            return self._output(pos, pos0)
        agg = torch.matmul(self.incidence, m.reshape(rows, -1, hd)).to(pos0.dtype) / (n - 1)
        h = first.node_update(self.h0.expand(rows * n, hd), agg.reshape(-1, hd))
        for i, lw in enumerate(self.layers[1:], start=2):
            d2 = self._distances(pos)
            a = torch.addmm(lw.be, h, lw.wa_t).to(ed).reshape(rows, n, 1, hd)
            b = (h @ lw.wb_t).to(ed).reshape(rows, 1, n, hd)
            pre = torch.add(a, b, out=None if buf is None else buf["pre"].view(rows, n, n, hd))
            pre = pre.addcmul_(d2[..., None].to(ed), lw.wc).reshape(-1, hd)
            m = _silu_linear(lw.beo, F.silu(pre, inplace=True), lw.weo_t, out("m"))
            c = _silu_linear(lw.bch, m, lw.wch_t, out("c"))
            w = torch.mv(c, lw.wco, out=out("s")).reshape(rows, n, n)
            pos = self._move(pos, w.to(pos.dtype), d2)
            if i < len(self.layers):  # the last layer's h is never read
                m4 = m.reshape(rows, n, n, hd)
                agg = (m4.sum(2, dtype=pos.dtype)
                       - torch.diagonal(m4, dim1=1, dim2=2).transpose(1, 2).to(pos.dtype)) / (n - 1)
                h = lw.node_update(h, agg.reshape(-1, hd))
        return self._output(pos, pos0)

    @staticmethod
    def _output(pos: torch.Tensor, pos0: torch.Tensor) -> torch.Tensor:
        out = pos - pos0
        return (out - out.mean(dim=1, keepdim=True)).reshape(pos.shape[0], -1)


def _one_thread() -> None:
    torch.set_num_threads(1)  # per thread (OpenMP/MKL thread-local): the caller's setting is untouched


#: CPU chunk size: rows such that one (rows·n², H) float32 edge block is about this many bytes
CHUNK_BYTES = 1 << 20


class FastGenerator:
    """Inference-only twin of a trained ``Generator`` (see the module docstring).

    ``chunk``: rows per forward chunk (None: on the CPU the rows whose (rows·n², H) edge block is
    ``CHUNK_BYTES``, on a GPU the whole batch). ``threads`` (CPU): chunks run on this many worker
    threads, one core each (None: ``torch.get_num_threads()``; 1: in the calling thread, with its
    intra-op threads). ``compile``: run the per-chunk EGNN forward through ``torch.compile``
    (falls back to eager on failure; ``compiled`` tells which path runs, ``compile_seconds`` what
    compiling and the first call cost, ``compile_error`` why it fell back). ``precision``:
    ``"float32"`` (default) or ``"bfloat16"`` for the EGNN's edge MLPs (module docstring).
    """

    PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}

    @classmethod
    def effective_precision(cls, generator: Generator, precision: str) -> str:
        """The precision a draw with ``precision`` runs in: an MLP generator has no edge MLPs and
        always runs float32. Raises ``ValueError`` for an unknown precision."""
        if precision not in cls.PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(cls.PRECISIONS)}, got {precision!r}")
        return precision if isinstance(generator.net, EGNN) else "float32"

    def __init__(self, generator: Generator, chunk: int | None = None, threads: int | None = None,
                 compile: bool = False, precision: str = "float32") -> None:
        self.precision = self.effective_precision(generator, precision)
        params = list(generator.parameters())
        self.device = params[0].device if params else torch.device("cpu")
        self.dim, self.scale, self._project = generator.dim, generator.scale, generator._project
        self._generator = generator
        self.egnn = isinstance(generator.net, EGNN)
        self._forward = (_EGNNForward(generator.net, self.device, self.PRECISIONS[self.precision])
                         if self.egnn else None)
        cpu = self.device.type == "cpu"
        if chunk is None and cpu and self.egnn:
            n, hd = self._forward.n, self._forward.hidden
            chunk = max(1, CHUNK_BYTES // (n * n * hd * self._forward.edge_dtype.itemsize))
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = chunk
        self.threads = max(1, int(torch.get_num_threads() if threads is None else threads)) if cpu else 1
        self._pool: ThreadPoolExecutor | None = None
        self.compiled, self.compile_seconds, self.compile_error = False, None, None
        if compile and self.egnn:
            self._compile()

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dikl-draw",
                                            initializer=_one_thread)
        return self._pool

    def close(self) -> None:
        """Stop the worker threads (they are also stopped at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _compile(self) -> None:
        fwd = self._forward
        rows = self.chunk or 1024

        def build():
            with torch.inference_mode():
                fn = torch.compile(fwd, dynamic=False, fullgraph=True)
                z = self.project(torch.randn(rows, self.dim, device=self.device))
                return fn, fn(z), fwd(z)

        try:
            t0 = time.perf_counter()
            # compiled in a worker when chunks run on workers: its kernels then use one thread each
            fn, got, want = self._workers().submit(build).result() if self.threads > 1 else build()
            self.compile_seconds = time.perf_counter() - t0
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                raise RuntimeError("the compiled forward disagrees with the eager one")
        except Exception as exc:  # no C++ compiler, an unsupported op, …: keep the eager path
            msg = str(exc).strip().splitlines()
            self.compile_error = f"{type(exc).__name__}: {msg[0] if msg else ''}"
            return
        self._compiled_forward, self.compiled = fn, True

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return v if self._project is None else self._project(v)

    def latent(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """The z of ``Generator.latent`` (same draws from ``rng``)."""
        return self.project(torch.randn(n, self.dim, generator=rng, device=self.device))

    def _chunk(self, z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # thread-local: entered again on each worker
            if self.compiled and z.shape[0] == self.chunk:
                return self._compiled_forward(z)
            return self._forward(z, self._forward.buffers(z.shape[0]))

    def net(self, z: torch.Tensor) -> torch.Tensor:
        """F_θ(z) (no autograd), chunk by chunk."""
        if not self.egnn:
            with torch.inference_mode():
                return self._generator.net(z, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device))
        step = self.chunk or max(z.shape[0], 1)
        chunks = [z[s:s + step] for s in range(0, z.shape[0], step)]
        if self.threads > 1 and len(chunks) > 1:
            parts = list(self._workers().map(self._chunk, chunks))
        else:
            parts = [self._chunk(c) for c in chunks]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """x = f_θ(z) = P(c·(z + F_θ(z))), an ordinary tensor (usable with autograd afterwards)."""
        with torch.inference_mode():
            x = self.project(self.scale * (z + self.net(z)))
        with torch.no_grad():
            return x.clone()

    def sample(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """n samples; the same as ``Generator.sample(n, rng)`` up to float rounding."""
        return self(self.latent(n, rng))


__all__ = ["CHUNK_BYTES", "FastGenerator"]
