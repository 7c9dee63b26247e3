"""Atomic writes, the samples format, run folders and typed configs."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from boltzpath import BadInput
from boltzpath.config import deep_merge, from_dict, load_yaml, parse_overrides, to_dict
from boltzpath.io import atomic
from boltzpath.io.atomic import DiskFull, atomic_write_json, atomic_write_text
from boltzpath.io.runs import RunDir
from boltzpath.io.samples import Samples, load_reference


def test_atomic_write_replaces_and_leaves_no_temporary_files(tmp_path):
    f = tmp_path / "a.json"
    atomic_write_json(f, {"x": 1})
    atomic_write_json(f, {"x": 2})
    assert json.loads(f.read_text()) == {"x": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_reports_disk_full(tmp_path, monkeypatch):
    f = tmp_path / "metrics.json"
    atomic_write_text(f, "old")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskFull):
        atomic_write_text(f, "new")
    assert f.read_text() == "old"  # the complete old version survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_save_npy_round_trips_without_pickle_and_leaves_no_temporaries(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = atomic.atomic_save_npy(tmp_path / "a.npy", x)
    y = np.load(out, allow_pickle=False)
    assert y.dtype == np.float32 and np.array_equal(x, y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    with pytest.raises(ValueError):  # object arrays would need pickle: refused
        atomic.atomic_save_npy(tmp_path / "b.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "b.npy").exists()


def test_samples_round_trip_and_dtypes(tmp_path):
    x = torch.randn(7, 4, dtype=torch.float64)
    s = Samples(x=x, energy=torch.arange(7.0), log_weights=torch.zeros(7), info={"method": "m", "n": 7})
    path = s.save(tmp_path / "samples.npz")
    with np.load(path, allow_pickle=False) as data:
        assert data["x"].dtype == np.float32 and data["x"].shape == (7, 4)
        assert data["energy"].dtype == np.float64
    back = Samples.load(path)
    assert torch.allclose(back.x, x.float()) and back.info == {"method": "m", "n": 7}
    assert back.log_weights is not None and back.log_weights.shape == (7,)


def test_samples_reject_bad_shapes_and_bad_files(tmp_path):
    with pytest.raises(BadInput, match=r"shape \(n, dim\)"):
        Samples(x=torch.zeros(3), energy=torch.zeros(3))
    with pytest.raises(BadInput, match="energy must have shape"):
        Samples(x=torch.zeros(3, 2), energy=torch.zeros(4))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInput):
        Samples.load(tmp_path / "junk.npz")
    with pytest.raises(BadInput, match="no samples file"):
        Samples.load(tmp_path / "missing.npz")


def test_load_reference_checks_dimension_and_finiteness(tmp_path):
    np.save(tmp_path / "ok.npy", np.zeros((5, 4, 3), np.float32))
    assert load_reference(tmp_path / "ok.npy", 12).shape == (5, 12)
    with pytest.raises(BadInput, match="dimension 12, the target has 39"):
        load_reference(tmp_path / "ok.npy", 39)
    bad = np.zeros((5, 2))
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(BadInput, match="non-finite"):
        load_reference(tmp_path / "nan.npy", 2)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadInput):  # pickled objects are never loaded
        load_reference(tmp_path / "obj.npy", 1)


def test_run_dir_refuses_to_clobber_and_supports_resume(tmp_path):
    out = tmp_path / "run"
    rd = RunDir.create(out)
    rd.write_config({"a": 1})
    rd.log("hello")
    assert not rd.is_complete
    with pytest.raises(BadInput, match="--overwrite"):
        RunDir.create(out)
    assert RunDir.create(out, resume=True).read_config() == {"a": 1}
    rd2 = RunDir.create(out, overwrite=True)
    assert list(rd2.path.iterdir()) == []
    rd2.mark_complete()
    assert rd2.is_complete
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="not a folder"):
        RunDir.create(tmp_path / "file")


def test_run_dir_rejects_malformed_config(tmp_path):
    rd = RunDir.create(tmp_path / "r")
    (rd.path / "config.yaml").write_text("a: [1, 2\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        rd.read_config()


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Outer:
    name: str = "x"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    temps: list[float] = field(default_factory=lambda: [4.0, 1.0])

    def validate(self):
        if self.inner.steps < 0:
            raise BadInput("steps must be >= 0")


def test_typed_config_from_yaml_and_overrides(tmp_path):
    over = parse_overrides(["inner.lr=0.01", "temps=[3, 2, 1]", "flag=true"])
    cfg = from_dict(Outer, deep_merge({"name": "y"}, over))
    assert cfg.inner.lr == 0.01 and cfg.temps == [3.0, 2.0, 1.0] and cfg.flag is True and cfg.name == "y"
    assert to_dict(cfg)["inner"] == {"lr": 0.01, "steps": 10}
    with pytest.raises(BadInput, match="unknown key"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    with pytest.raises(BadInput, match="must be an integer"):
        from_dict(Outer, {"inner": {"steps": 1.5}})
    with pytest.raises(BadInput, match="steps must be >= 0"):
        from_dict(Outer, {"inner": {"steps": -1}})
    with pytest.raises(BadInput, match="key=value"):
        parse_overrides(["novalue"])
    with pytest.raises(BadInput, match="dotted identifiers"):
        parse_overrides(["__import__('os').x=1"])
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(BadInput, match="mapping"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(BadInput, match="malformed"):
        load_yaml(tmp_path / "evil.yaml")  # safe_load refuses Python tags
    assert os.environ.get("BOLTZPATH_NEVER_SET") is None


def test_config_differences_ignore_settings_added_later_at_their_default():
    from boltzpath.io.runs import config_differences

    stored = {"a": 1, "net": {"hidden": 64}}
    defaults = {"a": 0, "net": {"hidden": 32, "core_radius": 0.0}, "new_top": "x"}
    assert config_differences(stored, {"a": 1, "net": {"hidden": 64, "core_radius": 0.0}, "new_top": "x"},
                              defaults) == []
    assert config_differences(stored, {"a": 1, "net": {"hidden": 64, "core_radius": 0.7}}, defaults) == [
        "net.core_radius"]
    assert config_differences(stored, {"a": 2, "net": {"hidden": 64}}, defaults) == ["a"]
    assert config_differences(stored, {"net": {"hidden": 64}}, defaults) == ["a"]  # a setting removed
    assert config_differences(stored, {"a": 1, "net": {"hidden": 64}, "b": 1}, None) == ["b"]


def test_resume_accepts_an_older_config_and_completes_it(tmp_path):
    from boltzpath.io.runs import RunDir

    run = RunDir.create(tmp_path / "r")
    run.claim_config({"a": 1})
    run.claim_config({"a": 1, "added": 0.0}, defaults={"a": 5, "added": 0.0})
    assert run.read_config() == {"a": 1, "added": 0.0}
    with pytest.raises(BadInput, match=r"different config \(added\)"):
        run.claim_config({"a": 1, "added": 0.5}, defaults={"a": 5, "added": 0.0})
