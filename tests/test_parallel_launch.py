"""``spawn_local``: a worker's exception reaches the caller, and a worker that returns exits 0 with
its files written (workers leave through ``os._exit`` after ``fn`` returns)."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp
from parallel_workers import exit_worker

from boltzpath.parallel.launch import loopback_interface, spawn_local


def test_a_failing_rank_is_reported_and_a_finished_rank_keeps_its_files(tmp_path):
    with pytest.raises(mp.ProcessRaisedException, match="rank 1 fails on purpose"):
        spawn_local(exit_worker, 2, str(tmp_path))
    done = json.loads((tmp_path / "rank0.json").read_text())
    assert done["rank"] == 0
    assert done["gloo_ifname"] == loopback_interface()


def test_the_tests_job_runner_retries_a_sigabrt_once_and_says_so(tmp_path):
    from parallel_workers import abort_once_worker, run_job

    with pytest.warns(RuntimeWarning, match="SIGABRT"):
        out = run_job(abort_once_worker, tmp_path)
    assert out.name == "attempt2" and (out / "ok0").is_file() and (out / "ok1").is_file()
