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


def test_pita_final_figures_use_the_last_stages_reference(tmp_path, monkeypatch):
    """The top-level figures of a PITA folder draw the reference the last stage was scored against:
    a named file (``reference`` or ``--references`` at the last temperature), else the shipped one."""
    import boltzpath.report.plots as plots
    from boltzpath import api
    from boltzpath.config import from_dict
    from boltzpath.io.runs import RunDir
    from boltzpath.methods.pita import stage_reference
    from boltzpath.methods.pita_config import PITAConfig
    from boltzpath.progress import Progress

    seen = []
    monkeypatch.setattr(plots, "plot_run", lambda out, samples, target, ref: seen.append(ref) or [])
    target = make_target("dw4")
    x = target.prior_sample(8, torch.Generator().manual_seed(0))
    rd = RunDir.create(tmp_path / "run")
    ref_file = tmp_path / "dw4_T1_seed0.npy"
    np.save(ref_file, x.numpy()[:5])
    named = from_dict(PITAConfig, {"target": "dw4", "temperatures": [2.0, 1.0],
                                   "stage_references": {"1.0": str(ref_file)}})
    plain = from_dict(PITAConfig, {"target": "dw4", "temperatures": [2.0, 1.0]})
    for cfg in (named, plain):
        api._final_figures(rd, _samples(target, x), target, stage_reference(cfg, 1, target),
                           Progress(enabled=False))
    assert seen[0].shape == (5, 8)
    assert seen[1] is not None and seen[1].shape[0] > 5  # dw4 at T = 1 ships a reference
    assert stage_reference(plain, 0, target) is None  # no shipped reference at T = 2
