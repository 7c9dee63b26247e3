"""``torchrun --nproc_per_node 2 -m boltzpath sample …`` writes the one run folder a single process
writes: the same files and config, n samples, and an evaluation count that is the sum over ranks
(each rank's target counts its own calls; nothing is counted by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from boltzpath.parallel.launch import free_port
from boltzpath.sampling import run_from_mapping, sample_to_folder

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"target": {"name": "gmm40"}, "method": "mala", "n": 300, "seed": 3, "device": "cpu",
            "sampler": {"chains": 10, "burn_in": 40, "thin": 2}}


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "boltzpath", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_two_process_sample_writes_one_complete_run_folder(tmp_path):
    one = sample_to_folder(run_from_mapping(dict(SETTINGS)), tmp_path / "one")[0]
    sets = ["--set", "n=300", "--set", "sampler.chains=10", "--set", "sampler.burn_in=40",
            "--set", "sampler.thin=2"]  # n via --set: torchrun's parser takes --n for its own --nnodes
    proc = _torchrun(["sample", "--target", "gmm40", "--method", "mala", "--seed", "3", "--device", "cpu",
                      *sets, "--out", str(tmp_path / "two")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1  # only rank 0 reports
    two = tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.path.iterdir())
    assert (two / "COMPLETE").is_file()
    assert yaml.safe_load((two / "config.yaml").read_text()) == one.read_config()
    with np.load(two / "samples.npz") as data:
        assert data["x"].shape == (300, 2) and np.isfinite(data["energy"]).all()
    m1, m2 = one.read_metrics(), json.loads((two / "metrics.json").read_text())
    per_rank = m2["sampler"]["per_rank"]["energy_evaluations"]
    # 10 chains as 5 + 5: each rank (40 + 30·2 steps + 1 initial evaluation) × 5 chains = 505
    assert per_rank == [505, 505] and m2["energy_evaluations"] == sum(per_rank) == m1["energy_evaluations"]
    assert m2["sampler"]["parallel"] == {"world_size": 2, "chain_offsets": [0, 5]}
    acc = m2["sampler"]["per_rank"]["acceptance"]  # equal chain counts: the plain mean
    assert abs(m2["sampler"]["acceptance"] - (acc[0] + acc[1]) / 2) < 1e-12 and acc[0] != acc[1]
