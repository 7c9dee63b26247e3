"""Benchmark scripts: bad input on the command line ends in one ``error:`` line and exit status 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from boltzpath.errors import BadInput, run_cli

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_run_cli_turns_bad_input_into_status_2(capsys):
    def bad():
        raise BadInput("--set expects key=value, got 'foo'\nsecond line")

    assert run_cli(bad) == 2
    assert capsys.readouterr().err == "error: --set expects key=value, got 'foo'\n"
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3


def test_run_cli_lets_other_errors_through():
    def broken():
        raise RuntimeError("a bug, not bad input")

    with pytest.raises(RuntimeError):
        run_cli(broken)


@pytest.mark.parametrize("script,args", [
    ("bench_pita.py", ["--targets", "lj13", "--set", "foo"]),
    ("bench_pita.py", ["--targets", "dw4", "--set", "train.steps=abc"]),
    ("bench_dikl.py", ["--targets", "gmm40", "--set", "nokey=1"]),
])
def test_malformed_set_is_one_line_before_any_run(tmp_path, script, args):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert not out.exists()
