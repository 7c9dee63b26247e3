"""Kill-and-resume harness (slow): SIGKILL `boltzpath sample` and `boltzpath run pita` at random
moments, resume until complete, and require (a) the resumed result to equal an uninterrupted run
bit for bit and (b) every file under its final name to be complete after every kill.

Sizes: tiny by default (a few minutes on one core); BOLTZPATH_KILL_FULL=1 uses the documented
quick preset for PITA (long). Random kill times come from a seeded generator, so a failure replays.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from boltzpath.io.samples import Samples

pytestmark = pytest.mark.slow

FULL = os.environ.get("BOLTZPATH_KILL_FULL") == "1"
SAMPLE = ["sample", "--target", "gmm40", "--method", "mala", "--n-samples", "2000", "--seed", "3", "--quiet",
          "--set", "sampler.chains=32", "--set", "sampler.burn_in=400"]
PITA_TINY = ["--set", "temperatures=[4.0, 2.0, 1.0]", "--set", "train.steps=60", "--set", "finetune.steps=30",
             "--set", "train.checkpoint_every=10", "--set", "finetune.checkpoint_every=10",
             "--set", "stage0.n_samples=512", "--set", "n_particles=256", "--set", "buffer_size=256",
             "--set", "anneal.n_steps=20", "--set", "stage_plots=false", "--set", "eval_noise_floors=false"]
PITA = ["run", "pita", "--target", "gmm40", "--preset", "quick", "--seed", "1", "--quiet",
        *([] if FULL else PITA_TINY)]


def cli(args, out, extra=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "boltzpath.cli", *args, "--out", str(out), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def check_files_whole(folder: Path) -> None:
    """Every file under a final name parses completely (atomic writes: never half a file)."""
    for f in folder.rglob("*"):
        if not f.is_file() or f.name.endswith(".tmp"):
            continue
        if f.suffix == ".npz" and f.name in ("samples.npz",):
            Samples.load(f)
        elif f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as d:
                [d[k] for k in d.files]
        elif f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".yaml":
            yaml.safe_load(f.read_text())
        elif f.suffix == ".png":
            assert f.read_bytes()[-8:] == b"IEND\xaeB`\x82", f  # PNG trailer present


def kill_and_resume(args, out: Path, rng: random.Random, kills: int, max_delay: float) -> None:
    first = True
    for _ in range(kills):
        proc = cli(args, out, () if first else ("--resume",))
        time.sleep(rng.uniform(0.5, max_delay))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = first and not out.exists()
        if out.exists():
            check_files_whole(out)
    for _ in range(20):  # resume until it completes
        proc = cli(args, out, () if first else ("--resume",))
        _, err = proc.communicate(timeout=3600)
        first = False
        if (out / "COMPLETE").is_file():
            break
        assert proc.returncode in (0, -9), err.decode()[-2000:]
    assert (out / "COMPLETE").is_file()


@pytest.mark.parametrize("which", ["sample", "pita"])
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, which):
    args = SAMPLE if which == "sample" else PITA
    rng = random.Random(1234 if which == "sample" else 4321)
    ref = cli(args, tmp_path / "whole")
    _, err = ref.communicate(timeout=3600)
    assert ref.returncode == 0, err.decode()[-2000:]
    kill_and_resume(args, tmp_path / "cut", rng, kills=10, max_delay=6.0 if which == "sample" else 15.0)
    a = Samples.load(tmp_path / "whole" / "samples.npz")
    b = Samples.load(tmp_path / "cut" / "samples.npz")
    assert np.array_equal(a.x.numpy(), b.x.numpy()) and np.array_equal(a.energy.numpy(), b.energy.numpy())
    ma = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    key = "metrics" if which == "sample" else "evaluation"
    assert untimed(ma[key]) == untimed(mb[key])  # every metric identical; only wall times differ


def untimed(d):
    if isinstance(d, dict):
        return {k: untimed(v) for k, v in d.items() if "wall_time" not in k}
    return [untimed(v) for v in d] if isinstance(d, list) else d
