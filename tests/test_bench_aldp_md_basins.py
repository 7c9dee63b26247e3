"""benchmarks/aldp_md_basins.py: basin fractions, the αR − C7eq/C5 energy gap and their block errors
from a time-ordered frame set; pooling over runs; the log-odds change between temperatures that the
gaps imply (d ln odds / dβ = −gap, trapezoid) and the odds chained down from the hottest run. The
frames' basins and energies are replaced by known sequences so that every number is checked exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mdtraj", reason="peptide metrics need mdtraj (the [molecules] extra)")

from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.targets.peptides import kt_kj_mol  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import aldp_md_basins  # noqa: E402


@pytest.fixture
def fake_frames(monkeypatch):
    """x[:, 0] carries the basin (0 C7eq/C5, 1 αR, 2 φ > 0) and x[:, 1] the energy E/kT."""
    monkeypatch.setattr(aldp_md_basins, "backbone_dihedrals", lambda x, top: (x[:, :1], x[:, :1]))
    monkeypatch.setattr(aldp_md_basins, "basin_masks", lambda phi, psi: {
        "c7eq_c5": phi == 0, "alpha_r": phi == 1, "phi_positive": phi == 2})
    monkeypatch.setattr(aldp_md_basins, "uncounted_energy", lambda target, x: x[:, 1].double())


def _frames(labels, energies):
    x = np.zeros((len(labels), 66), np.float32)
    x[:, 0], x[:, 1] = labels, energies
    return x


def test_set_stats_counts_basins_gap_and_changes(fake_frames):
    labels = np.array([0, 0, 1, 1, 2, 1, 0, 0, 0, 0] * 4)
    energy = np.where(labels == 1, 3.0, 1.0) + 0.1 * np.arange(40) % 0.3
    s = aldp_md_basins.set_stats(_frames(labels, energy), aldp_md_basins.make_target("aldp-fab"), 300.0, 4)
    assert s["alpha_r"] == pytest.approx(0.3) and s["c7eq_c5"] == pytest.approx(0.6)
    assert s["phi_positive"] == pytest.approx(0.1)
    e = torch.as_tensor(energy).numpy()
    assert s["gap"] == pytest.approx(e[labels == 1].mean() - e[labels == 0].mean())
    # C7 → αR, αR → C7 per block of ten (the φ > 0 frame is skipped), and C7 → αR between blocks
    assert s["transitions_c7eq_alpha_r"] == 2 * 4 + 0
    assert s["alpha_r_se"] == pytest.approx(0.0)  # every block holds the same fractions


def test_pooled_takes_the_larger_of_within_and_between_run_errors():
    keys = ("c7eq_c5", "alpha_r", "phi_positive", "gap")
    a = {"n": 100, "transitions_c7eq_alpha_r": 3, **{k: 0.2 for k in keys}, **{f"{k}_se": 0.01 for k in keys}}
    b = {**a, "n": 300, "alpha_r": 0.4}
    p = aldp_md_basins.pooled([a, b])
    assert p["alpha_r"] == pytest.approx(0.25 * 0.2 + 0.75 * 0.4)
    assert p["alpha_r_se"] == pytest.approx(np.std([0.2, 0.4], ddof=1) / 2 ** 0.5)  # between runs
    assert p["gap_se"] == pytest.approx(np.hypot(0.25 * 0.01, 0.75 * 0.01))  # within: runs agree
    assert p["transitions_c7eq_alpha_r"] == 6 and p["runs"] == 2


def _run(folder: Path, temperature: float, x: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        f"target: {{name: aldp-fab}}\ntemperature_kelvin: {temperature}\nn_replicas: 1\nn_iterations: 110\n"
        "equilibration_iterations: 10\nsteps_per_exchange: 500\ntimestep_fs: 1.0\nseed: 0\n")
    Samples(torch.as_tensor(x), torch.zeros(len(x)), None, {}).save(folder / "samples.npz")
    (folder / "COMPLETE").write_text("")
    return folder


def test_gaps_imply_the_log_odds_change_and_chain_it_down(fake_frames, tmp_path):
    """Two temperatures: the gap-implied change is −½(g₁ + g₂)(β₂ − β₁) in kJ/mol, and the 300 K αR
    share chained from the 400 K odds is share·o/(1 + o) with ln o = ln odds(400 K) − that change."""
    lab_cold = np.array([0] * 8 + [1] * 2)
    lab_hot = np.array([0] * 6 + [1] * 3 + [2])
    e_cold, e_hot = np.where(lab_cold == 1, 2.0, 0.0), np.where(lab_hot == 1, 1.0, 0.0)  # gaps 2 and 1 kT
    cold = _run(tmp_path / "c", 300.0, _frames(np.tile(lab_cold, 5), np.tile(e_cold, 5)))
    hot = _run(tmp_path / "h", 400.0, _frames(np.tile(lab_hot, 5), np.tile(e_hot, 5)))
    out = tmp_path / "o.json"
    aldp_md_basins.main(["--runs", str(cold), "--runs", str(hot), "--blocks", "5", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    implied = next(r for r in rows if r["metric"] == "log_odds_change_from_gaps")
    g1, g2 = 2.0 * kt_kj_mol(300.0), 1.0 * kt_kj_mol(400.0)
    expected = -0.5 * (g1 + g2) * (1 / kt_kj_mol(400.0) - 1 / kt_kj_mol(300.0))
    assert implied["value"] == pytest.approx(expected)
    measured = next(r for r in rows if r["metric"] == "log_odds_change_measured")
    assert measured["value"] == pytest.approx(np.log(3 / 6) - np.log(2 / 8))
    chained = next(r for r in rows if r["method"].startswith("openmm-md, odds at 400"))
    o = np.exp(np.log(3 / 6) - expected)
    assert chained["temperature"] == 300.0 and chained["value"] == pytest.approx(1.0 * o / (1 + o))
    with pytest.raises(BadInput, match="--replicas 1"):
        text = (hot / "config.yaml").read_text()
        (hot / "config.yaml").write_text(text.replace("n_replicas: 1", "n_replicas: 4"))
        aldp_md_basins.main(["--runs", str(hot), "--out", str(out)])
    with pytest.raises(BadInput, match="not a finished"):
        aldp_md_basins.main(["--runs", str(tmp_path / "nowhere"), "--out", str(out)])
