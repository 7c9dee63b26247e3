"""Divergence ∇·f(x) of a row-wise vector field f: (batch, d) → (batch, d).

Two interchangeable estimators behind one signature
``divergence(fn, x, method, generator, n_probes) -> (div (batch,), f(x) (batch, d))``:

* ``"exact"``: the Jacobian trace Σ_i ∂f_i/∂x_i from d vector–Jacobian products with the unit
  vectors e_i (one forward pass, d backward passes);
* ``"hutchinson"``: E_v[vᵀ J v] with Rademacher probes v ∈ {±1}^d (unbiased; variance
  2 Σ_{i≠j} J_ij² per probe, averaged over ``n_probes``).

Rows must be independent (f(x)_b depends only on x_b), which holds for per-sample networks, so
one VJP with a (batch, d) cotangent gives every row's product at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from boltzpath.errors import BadInput

Field = Callable[[torch.Tensor], torch.Tensor]
METHODS = ("exact", "hutchinson")


def exact_at(t_start: float, exact_below_t: float) -> bool:
    """Whether an annealing step starting at ``t_start`` takes the exact trace because of
    ``AnnealConfig.exact_below_t`` (0: never)."""
    return exact_below_t > 0 and t_start <= exact_below_t


def _vjp(out: torch.Tensor, x: torch.Tensor, v: torch.Tensor, retain: bool) -> torch.Tensor:
    (g,) = torch.autograd.grad(out, x, grad_outputs=v, retain_graph=retain)
    return g


def divergence(
    fn: Field,
    x: torch.Tensor,
    method: str = "exact",
    generator: torch.Generator | None = None,
    n_probes: int = 1,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇·f(x) per row, f(x)) — both detached. See the module docstring for the methods.

    ``project`` (particle systems: centre-of-mass removal P) is applied to Hutchinson probes, so
    the estimate is of tr(P J P), the divergence on the subspace the SDE lives in (Cov(Pv) = P).
    For a field whose output is already CoM-free and translation invariant, tr(J) = tr(P J P).
    """
    if method not in METHODS:
        raise BadInput(f"divergence method must be one of {', '.join(METHODS)}, got {method!r}")
    if x.ndim != 2:
        raise BadInput(f"divergence expects x of shape (batch, d), got {tuple(x.shape)}")
    d = x.shape[1]
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        out = fn(xg)
        if out.shape != xg.shape:
            raise BadInput(f"vector field must map (batch, d) to (batch, d), got {tuple(out.shape)}")
        div = torch.zeros(x.shape[0], dtype=out.dtype, device=x.device)
        if method == "exact":
            for i in range(d):
                e = torch.zeros_like(out)
                e[:, i] = 1.0
                div = div + _vjp(out, xg, e, retain=i < d - 1)[:, i]
        else:
            if generator is None:
                raise BadInput("the Hutchinson estimator needs a generator")
            if int(n_probes) < 1:
                raise BadInput(f"n_probes must be >= 1, got {n_probes}")
            for k in range(int(n_probes)):
                v = torch.randint(0, 2, out.shape, generator=generator, device=x.device).to(out.dtype)
                v = 2.0 * v - 1.0
                if project is not None:
                    v = project(v)
                div = div + (_vjp(out, xg, v, retain=k < n_probes - 1) * v).sum(-1)
            div = div / int(n_probes)
    return div.detach(), out.detach()
