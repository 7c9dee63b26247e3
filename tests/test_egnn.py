"""EGNN: rotation/permutation equivariance, translation invariance, CoM-free output, dense == edge-list."""

from __future__ import annotations

import pytest
import torch
from fixtures import seeded
from torch import nn

from boltzpath.diffusion.buffer import random_rotations
from boltzpath.nets import EGNN


def _net(n, d, seed=0, temperature_conditioned=False):
    torch.manual_seed(seed)
    net = EGNN(n, d, hidden=16, layers=3, emb_dim=8, temperature_conditioned=temperature_conditioned)
    # make the coordinate updates O(1) so the symmetry checks are not trivially passed by a ~0 output
    for layer in net.layers:
        nn.init.normal_(layer.coord_out.weight, std=0.5)
    return net


def _inputs(n, d, batch=5, seed=1):
    g = seeded(seed)
    x = torch.randn(batch, n, d, generator=g)
    x = (x - x.mean(1, keepdim=True)).reshape(batch, n * d)
    return x, torch.randn(batch, generator=g)


def _scale(out):
    return float(out.detach().abs().max())


@pytest.mark.parametrize("n,d", [(4, 2), (13, 3)])
def test_output_is_nontrivial_and_com_free(n, d):
    net = _net(n, d)
    x, c = _inputs(n, d)
    out = net(x, c)
    assert out.shape == x.shape and _scale(out) > 1e-2
    # float32 tolerance: the mean of n O(1) numbers is exact to ~1e-6
    torch.testing.assert_close(out.reshape(5, n, d).mean(1), torch.zeros(5, d), atol=1e-6, rtol=0)


@pytest.mark.parametrize("n,d", [(4, 2), (13, 3)])
def test_rotation_equivariance(n, d):
    net = _net(n, d)
    x, c = _inputs(n, d)
    rot = random_rotations(5, d, seeded(2), dtype=x.dtype)
    rx = (x.reshape(5, n, d) @ rot).reshape(5, n * d)
    out, rout = net(x, c), net(rx, c)
    # F(Rx) = R F(x) to float32 rounding (relative 1e-5 of the output scale); a net that used raw
    # coordinates as features (not only distances) breaks this by O(1)
    expected = (out.reshape(5, n, d) @ rot).reshape(5, n * d)
    torch.testing.assert_close(rout, expected, atol=1e-5 * max(1.0, _scale(out)), rtol=1e-4)


def test_reflection_equivariance():
    n, d = 5, 3
    net = _net(n, d)
    x, c = _inputs(n, d)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    out = net(x, c).reshape(5, n, d)
    fout = net((x.reshape(5, n, d) @ flip).reshape(5, -1), c).reshape(5, n, d)
    torch.testing.assert_close(fout, out @ flip, atol=1e-5 * max(1.0, _scale(out)), rtol=1e-4)


@pytest.mark.parametrize("n,d", [(4, 2), (13, 3)])
def test_translation_invariance(n, d):
    net = _net(n, d)
    x, c = _inputs(n, d)
    shift = torch.randn(5, 1, d, generator=seeded(3)) * 3.0
    out = net(x, c)
    sout = net((x.reshape(5, n, d) + shift).reshape(5, n * d), c)
    # translation enters only through rounding of x_i − x_j: tolerance 1e-5 × (|shift| + scale)
    torch.testing.assert_close(sout, out, atol=1e-4 * max(1.0, _scale(out)), rtol=1e-4)


@pytest.mark.parametrize("n,d", [(4, 2), (13, 3)])
def test_permutation_equivariance(n, d):
    net = _net(n, d)
    x, c = _inputs(n, d)
    perm = torch.randperm(n, generator=seeded(4))
    out = net(x, c).reshape(5, n, d)
    pout = net(x.reshape(5, n, d)[:, perm].reshape(5, -1), c).reshape(5, n, d)
    torch.testing.assert_close(pout, out[:, perm], atol=1e-5 * max(1.0, _scale(out)), rtol=1e-4)


def test_dense_path_equals_edge_list_reference():
    net = _net(7, 3)
    x, c = _inputs(7, 3)
    # the optimised dense path and the textbook gather/index_add path compute the same function
    torch.testing.assert_close(net(x, c), net.forward_edges(x, c), atol=1e-5, rtol=1e-4)


def test_noise_and_temperature_conditioning_change_the_output():
    net = _net(4, 2, temperature_conditioned=True)
    x, c = _inputs(4, 2)
    t1, t2 = torch.ones(5), torch.full((5,), 2.0)
    out = net(x, c, t1)
    assert float((out - net(x, c + 0.5, t1)).detach().abs().max()) > 1e-4
    assert float((out - net(x, c, t2)).detach().abs().max()) > 1e-4
    with pytest.raises(ValueError):
        net(x, c)


def test_double_backward_runs():
    """Energy distillation needs ∂/∂θ of ∇ₓ⟨F(x), x⟩: SiLU nets support it."""
    net = _net(4, 2)
    x, c = _inputs(4, 2)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad((net(x, c) * x).sum(), x, create_graph=True)
    g.pow(2).sum().backward()
    assert all(p.grad is not None for p in net.layers[0].parameters())


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperature_conditioned", [False, True])
def test_hand_written_vjp_equals_autograd(dtype, tol, temperature_conditioned):
    """forward_vjp(x, c, T, v) = (F(x), J_F(x)ᵀ v) with J_Fᵀ v from autograd (CoM projection included)."""
    n, d = 7, 3
    net = _net(n, d, temperature_conditioned=temperature_conditioned).to(dtype)
    x, c = _inputs(n, d)
    x, c = x.to(dtype), c.to(dtype)
    x = x + 0.3  # not CoM-free: F is translation invariant, J_Fᵀ v must still match
    v = torch.randn(x.shape, generator=seeded(5), dtype=dtype)
    temps = (torch.rand(5, generator=seeded(6), dtype=dtype) + 0.5) if temperature_conditioned else None
    xg = x.clone().requires_grad_(True)
    out = net(xg, c, temps)
    (ref,) = torch.autograd.grad((out * v).sum(), xg)
    f, jtv = net.forward_vjp(x, c, temps, v)
    scale = max(1.0, _scale(ref))
    torch.testing.assert_close(f, out.detach(), atol=tol * scale, rtol=0)
    torch.testing.assert_close(jtv, ref, atol=tol * scale, rtol=0)


def test_hand_written_vjp_is_differentiable_like_the_double_backward():
    """∂/∂θ of a loss on J_Fᵀv: one backward through forward_vjp = autograd's double backward (float64)."""
    n, d = 5, 3
    net = _net(n, d, temperature_conditioned=True).double()
    x, c = _inputs(n, d)
    x, c = x.double(), c.double()
    temps = torch.full((5,), 1.5, dtype=torch.float64)
    v = torch.randn(x.shape, generator=seeded(7), dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    (jtv_ref,) = torch.autograd.grad((net(xg, c, temps) * v).sum(), xg, create_graph=True)
    ref = torch.autograd.grad(jtv_ref.pow(2).sum(), list(net.parameters()), allow_unused=True)
    _, jtv = net.forward_vjp(x, c, temps, v)
    got = torch.autograd.grad(jtv.pow(2).sum(), list(net.parameters()), allow_unused=True)
    for (name, _), a, b in zip(net.named_parameters(), ref, got, strict=True):
        assert (a is None) == (b is None), name  # the last layer's node MLP does not reach F
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-8, msg=name)


def test_d2_weight_column_is_an_exact_copy():
    """The contiguous w_c (for torch.compile) is bit for bit the weight column: the dense path is the same."""
    layer = _net(4, 2).layers[0]
    hd = layer.hidden
    assert layer._d2_column().is_contiguous()
    assert torch.equal(layer._d2_column(), layer.edge_in.weight[:, 2 * hd])


@pytest.mark.parametrize("layers", [1, 3])
def test_first_layer_on_pairs_is_the_same_function(layers):
    """The first layer on the n(n−1)/2 unordered pairs equals it on all n² ordered pairs: outputs,
    hand-written VJPs and parameter gradients (float64)."""
    n, d = 6, 3
    torch.manual_seed(3)
    net = EGNN(n, d, hidden=8, layers=layers, emb_dim=8, temperature_conditioned=True).double()
    x, c = _inputs(n, d)
    x, c = x.double() + 0.2, c.double()
    temps = torch.full((x.shape[0],), 1.3, dtype=torch.float64)
    v = torch.randn(x.shape, generator=seeded(11), dtype=torch.float64)
    results = {}
    for pairs in (True, False):
        net.first_layer_pairs = pairs
        net.zero_grad(set_to_none=True)
        out = net(x, c, temps)
        f, jtv = net.forward_vjp(x, c, temps, v)
        (out.pow(2).sum() + jtv.pow(2).sum()).backward()
        results[pairs] = (out.detach(), f.detach(), jtv.detach(),
                          [p.grad.clone() if p.grad is not None else None for p in net.parameters()])
    net.first_layer_pairs = True
    a, b = results[True], results[False]
    for u, w in zip(a[:3], b[:3], strict=True):
        torch.testing.assert_close(u, w, atol=1e-12, rtol=1e-10)
    for (name, _), u, w in zip(net.named_parameters(), a[3], b[3], strict=True):
        assert (u is None) == (w is None), name
        if u is not None:
            torch.testing.assert_close(u, w, atol=1e-12, rtol=1e-10, msg=name)


def _atom_net(n, d, seed=0):
    torch.manual_seed(seed)
    net = EGNN(n, d, hidden=16, layers=3, emb_dim=8, atom_embedding=True)
    for layer in net.layers:
        nn.init.normal_(layer.coord_out.weight, std=0.5)
    return net


def test_atom_embedding_keeps_rotation_reflection_translation_symmetry_and_breaks_permutations():
    """Molecules (atom_embedding=True): still E(3)-equivariant — the force field is achiral, and a
    chirality-breaking net would fail the reflection check by O(1) — but atoms are told apart: a
    permuted input no longer gives the permuted output (an O(1) difference, not rounding)."""
    n, d = 6, 3
    net = _atom_net(n, d)
    x, c = _inputs(n, d)
    out = net(x, c)
    tol = 1e-5 * max(1.0, _scale(out))
    rot = random_rotations(5, d, seeded(2), dtype=x.dtype)
    rx = (x.reshape(5, n, d) @ rot).reshape(5, n * d)
    rotated = (out.reshape(5, n, d) @ rot).reshape(5, n * d)
    torch.testing.assert_close(net(rx, c), rotated, atol=tol, rtol=1e-4)
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    mx = (x.reshape(5, n, d) * mirror).reshape(5, n * d)
    mirrored = (out.reshape(5, n, d) * mirror).reshape(5, n * d)
    torch.testing.assert_close(net(mx, c), mirrored, atol=tol, rtol=1e-4)
    torch.testing.assert_close(net(x + 0.7, c), out, atol=tol, rtol=1e-4)
    perm = torch.tensor([1, 0, 2, 3, 4, 5])
    px = x.reshape(5, n, d)[:, perm].reshape(5, n * d)
    permuted_out = out.reshape(5, n, d)[:, perm].reshape(5, n * d)
    assert float((net(px, c) - permuted_out).abs().max()) > 100 * tol


def test_atom_embedding_dense_path_equals_edge_list_and_its_vjp_equals_autograd():
    n, d = 5, 3
    net = _atom_net(n, d).double()
    x, c = _inputs(n, d)
    x, c = x.double(), c.double()
    torch.testing.assert_close(net(x, c), net.forward_edges(x, c), atol=1e-10, rtol=0)
    v = torch.randn(x.shape, generator=seeded(5), dtype=x.dtype)
    xg = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((net(xg, c) * v).sum(), xg)
    _, jtv = net.forward_vjp(x, c, None, v)
    torch.testing.assert_close(jtv, ref, atol=1e-10 * max(1.0, _scale(ref)), rtol=0)
