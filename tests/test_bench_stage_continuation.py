"""benchmarks/pita_stage_continuation.py: a stage's samples continued with BAOAB at the stage's
temperature — block 0 is the stage itself (the same basins as computed directly), every later block
counts exactly one energy evaluation per sample per step (plus the start), and inputs it cannot
read are refused with one clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mdtraj", reason="peptide metrics need mdtraj (the [molecules] extra)")
pytest.importorskip("openmm", reason="peptide targets need OpenMM (the [molecules] extra)")

from boltzpath.errors import BadInput  # noqa: E402
from boltzpath.io.samples import Samples  # noqa: E402
from boltzpath.metrics.peptides import residue_basin_fractions  # noqa: E402
from boltzpath.targets.registry import make_target  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pita_stage_continuation  # noqa: E402


def test_blocks_start_from_the_stage_and_count_every_evaluation(tmp_path):
    target = make_target("aldp-fab")
    x0 = torch.as_tensor(np.asarray(target.initial_positions_nm, dtype=np.float32)).reshape(1, 66)
    x = x0 + 0.002 * torch.randn(6, 66, generator=torch.Generator().manual_seed(0))
    run = tmp_path / "run"
    (run / "stage_1").mkdir(parents=True)
    (run / "config.yaml").write_text("target: aldp-fab\ntemperatures: [600.0, 300.0]\n")
    Samples(x, torch.zeros(len(x)), None, {}).save(run / "stage_1" / "samples.npz")
    out = tmp_path / "o.json"
    pita_stage_continuation.main(["--run", str(run), "--stage", "1", "--n", "4", "--blocks", "2",
                                  "--steps", "3", "--threads", "1", "--step-size", "1e-3", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert sorted({r["block"] for r in rows}) == [0, 1, 2]
    assert {r["temperature"] for r in rows} == {300.0} and {r["n"] for r in rows} == {4}
    evals = {r["block"]: r["energy_evaluations"] for r in rows}
    assert evals == {0: 0, 1: 4 + 4 * 3, 2: 4 + 4 * 6}
    picked = x[np.linspace(0, 5, 4).astype(int)].numpy()
    direct = residue_basin_fractions(picked, target.topology)[0]
    block0 = {r["metric"]: r["value"] for r in rows if r["block"] == 0}
    for name, v in direct.items():
        assert block0[f"basin_{name}_residue1"] == pytest.approx(v)
    for b in (0, 1, 2):
        shares = [r["value"] for r in rows if r["block"] == b and r["metric"].endswith("_residue1")]
        assert sum(shares) == pytest.approx(1.0)


def test_inputs_it_cannot_read_are_refused(tmp_path):
    with pytest.raises(BadInput, match="no config.yaml"):
        pita_stage_continuation.main(["--run", str(tmp_path), "--stage", "0"])
    (tmp_path / "stage_0").mkdir()
    (tmp_path / "config.yaml").write_text("target: aldp-fab\ntemperatures: [300.0]\n")
    Samples(torch.zeros(2, 66), torch.zeros(2), None, {}).save(tmp_path / "stage_0" / "samples.npz")
    with pytest.raises(BadInput, match="must be >= 1"):
        pita_stage_continuation.main(["--run", str(tmp_path), "--stage", "0", "--steps", "0"])
    (tmp_path / "config.yaml").write_text("target: gmm40\ntemperatures: [1.0]\n")
    with pytest.raises(BadInput, match="not a peptide"):
        pita_stage_continuation.main(["--run", str(tmp_path), "--stage", "0"])
