"""Trajectory export/import round trips (mdtraj formats by extension, atomic writes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

md = pytest.importorskip("mdtraj")

from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.io.trajectories import export_trajectory, load_trajectory, samples_to_mdtraj  # noqa: E402


@pytest.fixture()
def water_like():
    top = md.Topology()
    chain = top.add_chain()
    res = top.add_residue("HOH", chain)
    o = top.add_atom("O", md.element.oxygen, res)
    h1 = top.add_atom("H1", md.element.hydrogen, res)
    h2 = top.add_atom("H2", md.element.hydrogen, res)
    top.add_bond(o, h1)
    top.add_bond(o, h2)
    x = np.random.default_rng(0).uniform(0.1, 0.9, size=(7, 9)).astype(np.float32)
    return top, Samples(x=torch.from_numpy(x), energy=torch.zeros(7, dtype=torch.float64))


# precision of each format: DCD float32 Å, HDF5 float32 nm, PDB 3 decimals in Å (5e-5 nm),
# XTC ~1e-3 nm fixed point. A wrong unit (Å vs nm) would be off by a factor 10, far outside these.
@pytest.mark.parametrize("ext, atol", [(".dcd", 1e-5), (".h5", 1e-6), (".pdb", 6e-5), (".xtc", 1e-3)])
def test_round_trip(tmp_path, water_like, ext, atol):
    if ext == ".h5":
        pytest.importorskip("tables", reason="mdtraj's HDF5 format needs PyTables")
    top, samples = water_like
    path = export_trajectory(samples, top, tmp_path / f"traj{ext}")
    topo_file = export_trajectory(samples.x[:1], top, tmp_path / "top.pdb")
    back = load_trajectory(path, topology=topo_file)
    assert back.shape == (7, 9)
    np.testing.assert_allclose(back, samples.x.numpy(), atol=atol)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_samples_to_mdtraj_shapes(water_like):
    top, samples = water_like
    traj = samples_to_mdtraj(samples, top)
    assert traj.xyz.shape == (7, 3, 3)
    np.testing.assert_array_equal(traj.xyz[2, 1], samples.x[2, 3:6].numpy())


def test_bad_inputs(tmp_path, water_like):
    top, samples = water_like
    with pytest.raises(BadInput, match="format"):
        export_trajectory(samples, top, tmp_path / "traj.txt")
    with pytest.raises(BadInput, match="shape"):
        export_trajectory(samples.x[:, :8], top, tmp_path / "traj.dcd")
    export_trajectory(samples, top, tmp_path / "traj.dcd")
    with pytest.raises(BadInput, match="topology"):
        load_trajectory(tmp_path / "traj.dcd")
    with pytest.raises(BadInput, match="not found"):
        load_trajectory(tmp_path / "missing.dcd")


def test_npy_positions_load_flat(tmp_path):
    arr = np.random.default_rng(1).normal(size=(4, 5, 3)).astype(np.float32)
    np.save(tmp_path / "pos.npy", arr)
    np.testing.assert_array_equal(load_trajectory(tmp_path / "pos.npy"), arr.reshape(4, 15))
