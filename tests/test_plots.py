"""Run-folder figures: the right files for each kind of target, non-empty PNGs, figures closed."""

from __future__ import annotations

import sys
import types

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from boltzpath import make_target
from boltzpath.io.samples import Samples
from boltzpath.metrics.energies import uncounted_energy
from boltzpath.report.plots import plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _samples(target, x):
    return Samples(x=x.float(), energy=uncounted_energy(target, x.double()))


def _check_pngs(paths, expected_names):
    assert sorted(p.name for p in paths) == sorted(expected_names)
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000, p  # a real rendered figure
    assert not list(paths[0].parent.glob(".*.tmp"))  # atomic writes leave no temporaries
    assert plt.get_fignums() == []  # every figure closed


@pytest.mark.parametrize(
    "name, expected",
    [("gmm40", ["energy_hist.png", "density_2d.png"]),
     ("manywell32", ["energy_hist.png", "manywell_marginals.png"]),
     ("dw4", ["energy_hist.png", "distances.png"])],
)
def test_plot_run_writes_the_figures_of_each_target(tmp_path, name, expected):
    t = make_target(name)
    g = torch.Generator().manual_seed(0)
    if t.has_exact_sampler:
        x, ref = t.exact_sample(400, g), None
    else:
        x, ref = t.prior_sample(200, g, dtype=torch.float64), t.prior_sample(200, g, dtype=torch.float64)
    paths = plot_run(tmp_path / name, _samples(t, x), t, ref)
    _check_pngs(paths, expected)
    assert t.counter.count == 0  # plotting is not charged to the sampler


def test_plot_run_survives_non_finite_samples(tmp_path):
    t = make_target("gmm40")
    x = t.exact_sample(100, torch.Generator().manual_seed(1))
    s = _samples(t, x)
    s.x[3] = float("nan")
    s.energy[3] = float("inf")
    _check_pngs(plot_run(tmp_path, s, t), ["energy_hist.png", "density_2d.png"])


def test_plot_run_calls_the_peptide_hook(tmp_path, monkeypatch):
    fake = types.ModuleType("boltzpath.report.peptide_plots")

    def plot_peptide(out_dir, samples, target, reference):
        path = out_dir / "ramachandran.png"
        path.write_bytes(PNG_MAGIC + b"\0" * 6000)
        return [path]

    fake.plot_peptide = plot_peptide
    monkeypatch.setitem(sys.modules, "boltzpath.report.peptide_plots", fake)
    t = make_target("manywell32", dim=2)
    monkeypatch.setattr(t, "is_peptide", True, raising=False)
    x = t.exact_sample(100, torch.Generator().manual_seed(2))
    paths = plot_run(tmp_path, _samples(t, x), t, np.asarray(x))
    assert "ramachandran.png" in [p.name for p in paths]
