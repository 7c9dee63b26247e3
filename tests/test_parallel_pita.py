"""``torchrun --nproc_per_node 2 -m boltzpath run pita`` writes the run folder one process writes
(same files, same evaluation counts: the buffers, relaxations and stage-0 chains are split over the
ranks, and each configuration is evaluated once in the whole job)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from test_parallel_cli import _torchrun
from test_pita import TINY

from boltzpath.cli import cli


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.slow
def test_two_process_pita_writes_the_one_process_run_folder(tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(TINY))
    # the one-process reference through the same command (it adds the final samples' figures)
    single = CliRunner().invoke(cli, ["run", "pita", "--preset", str(preset), "--out", str(tmp_path / "one"),
                                      "--quiet", "--device", "cpu"])
    assert single.exit_code == 0, single.output
    one = SimpleNamespace(run=SimpleNamespace(path=tmp_path / "one"),
                          metrics=json.loads((tmp_path / "one" / "metrics.json").read_text()))
    proc = _torchrun(["run", "pita", "--preset", str(preset), "--out", str(tmp_path / "two"), "--quiet"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1
    two = tmp_path / "two"
    assert _files(two) == _files(one.run.path) and (two / "COMPLETE").is_file()
    m1, m2 = one.metrics, json.loads((two / "metrics.json").read_text())
    # deterministic counts: chains, buffers and relaxations split, never duplicated
    assert m2["energy_evaluations"] == m1["energy_evaluations"]
    for k in range(3):
        s2 = json.loads((two / f"stage_{k}" / "metrics.json").read_text())
        assert s2["energy_evaluations"] == m1["stages"][k]["energy_evaluations"]
    assert m2["n"] == 128 and all(0 < s["final_ess_fraction"] <= 1 for s in m2["stages"][1:])


def test_two_process_pita_with_the_bridge_tail_writes_a_complete_run_folder(tmp_path):
    # anneal.tail "bridge" under torchrun: the bridge runs on each rank's shard of every population
    # (statistics all-reduced, resampling global); the run folder is complete and the tail's target
    # evaluations, summed over the ranks, are one per particle plus `moves` per particle per level
    cfg = dict(TINY, anneal={**TINY["anneal"], "tail": "bridge", "bridge_moves": 2, "bridge_step_size": 0.01})
    preset = tmp_path / "tiny_bridge.yaml"
    preset.write_text(yaml.safe_dump(cfg))
    proc = _torchrun(["run", "pita", "--preset", str(preset), "--out", str(tmp_path / "two"), "--quiet"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = tmp_path / "two"
    for f in ("config.yaml", "samples.npz", "metrics.json", "run.log", "COMPLETE"):
        assert (two / f).is_file(), f
    for k in range(3):
        assert (two / f"stage_{k}" / "samples.npz").is_file() and (two / f"stage_{k}" / "COMPLETE").is_file()
    m = json.loads((two / "metrics.json").read_text())
    assert m["n"] == 128 and all(0 < s["final_ess_fraction"] <= 1 for s in m["stages"][1:])
    for k in (1, 2):
        st = json.loads((two / f"stage_{k}" / "metrics.json").read_text())
        assert st["tail"] == "bridge"
        info = st["populations"][0]["bridge"]
        assert info["betas"][-1] == 1.0 and info["levels"] == len(info["betas"]) >= 1
        assert st["energy_evaluations"]["final_reweighting"] == 128 * (1 + 2 * info["levels"])
