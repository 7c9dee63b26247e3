"""Run folders: one directory per sampling run, written atomically, resumable.

Layout (every command that samples)::

    DIR/config.yaml     fully resolved configuration (enough to rerun)
    DIR/samples.npz     the ``Samples`` record (x float32 (n, dim), energy E/kT float64, info JSON)
    DIR/metrics.json    metrics with n and conventions, ``energy_evaluations``, ``wall_time_s``
    DIR/*.png           plots
    DIR/run.log         a plain-text log (appended, timestamped)
    DIR/COMPLETE        written last: a folder without it is an unfinished run

Every file goes through ``boltzpath.io.atomic`` (temporary file + ``os.replace``), so a killed run
never leaves a half-written file under its final name.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import yaml

from boltzpath.config import safe_load, yaml_error_line
from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_write_json, atomic_write_text, atomic_write_yaml
from boltzpath.io.samples import Samples

COMPLETE = "COMPLETE"


def config_differences(stored: Any, new: Any, defaults: Any = None, prefix: str = "") -> list[str]:
    """Dotted keys where ``stored`` and ``new`` differ. A key that ``stored`` lacks counts only if
    ``new``'s value differs from ``defaults``' (or ``defaults`` does not know the key)."""
    if not (isinstance(stored, dict) and isinstance(new, dict)):
        return [] if stored == new else [prefix or "(config)"]
    out = []
    defaults = defaults if isinstance(defaults, dict) else {}
    for key in sorted(set(stored) | set(new), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in new:
            out.append(name)
        elif key not in stored:
            if key not in defaults or defaults[key] != new[key]:
                out.append(name)
        else:
            out += config_differences(stored[key], new[key], defaults.get(key), name)
    return out


class RunDir:
    """A run folder. Create with ``RunDir.create(path, overwrite=..., resume=...)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Make (or reopen) a run folder.

        * a missing or empty folder is created;
        * an existing non-empty folder needs ``overwrite`` (its run files are removed) or
          ``resume`` (kept as they are); otherwise ``BadInput`` — nothing is ever clobbered silently.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise BadInput(f"output path {path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            if resume:
                _check_writable(path)
                return cls(path)
            if not overwrite:
                if (path / COMPLETE).is_file():
                    raise BadInput(f"output folder {path} is not empty (it holds a finished run); pass "
                                   "--overwrite or choose another --out")
                raise BadInput(f"output folder {path} exists and is not empty (an unfinished run? see its "
                               "run.log); pass --resume to continue it or --overwrite to start again")
            _check_writable(path)
            _clear(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"cannot create output folder {path}: {exc.strerror or exc}") from None
        _check_writable(path)
        return cls(path)

    def subdir(self, name: str) -> RunDir:
        sub = self.path / name
        sub.mkdir(parents=True, exist_ok=True)
        return RunDir(sub)

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict[str, Any]) -> Path:
        return atomic_write_yaml(self.path / "config.yaml", config)

    def claim_config(self, config: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        """Write ``config`` into a new run, or check that a resumed run holds the same one.

        With ``defaults`` (the config class's defaults as a dict), a setting that the stored config
        lacks is no difference when ``config`` leaves it at its default: the run was written by an
        earlier version of boltzpath, before that setting existed. The stored file is then completed."""
        if self.file("config.yaml").is_file():
            stored = self.read_config()
            diffs = config_differences(stored, config, defaults)
            if diffs:
                shown = ", ".join(diffs[:5]) + (f" and {len(diffs) - 5} more" if len(diffs) > 5 else "")
                raise BadInput(f"{self.path} holds a run with a different config ({shown}); "
                               "use --overwrite or a new --out")
            if stored != config:
                self.write_config(config)
        else:
            self.write_config(config)

    def read_config(self) -> dict[str, Any]:
        f = self.path / "config.yaml"
        if not f.is_file():
            raise BadInput(f"{self.path} has no config.yaml (is it a boltzpath run folder?)")
        try:
            data = safe_load(f.read_text())
        except yaml.YAMLError as exc:
            raise BadInput(f"{f} is not valid YAML at {yaml_error_line(exc)}") from None
        if not isinstance(data, dict):
            raise BadInput(f"{f} does not hold a mapping")
        return data

    def write_samples(self, samples: Samples, name: str = "samples.npz") -> Path:
        return samples.save(self.path / name)

    def read_samples(self, name: str = "samples.npz") -> Samples:
        return Samples.load(self.path / name)

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        return atomic_write_json(self.path / "metrics.json", metrics)

    def read_metrics(self) -> dict[str, Any]:
        f = self.path / "metrics.json"
        if not f.is_file():
            return {}
        return json.loads(f.read_text())

    @staticmethod
    def final_evaluation(metrics: dict[str, Any]) -> dict[str, Any]:
        """Where a metrics.json keeps the scores of the final samples: under ``evaluation`` in PITA and
        DiKL folders, at the top level in ``sample`` folders."""
        evaluation = metrics.get("evaluation")
        return evaluation if isinstance(evaluation, dict) else metrics

    def log(self, message: str) -> None:
        """Append one timestamped line to ``run.log`` (rewritten atomically)."""
        f = self.path / "run.log"
        old = f.read_text() if f.is_file() else ""
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        atomic_write_text(f, old + f"{stamp} {message}\n")

    # ------------------------------------------------------------------ completion
    def record_failure(self, why: str, resume_hint: str | None = None) -> None:
        """Say in ``run.log`` why the run stopped (and how to go on); never raises."""
        try:
            self.log(f"FAILED: {why}" + (f" — {resume_hint}" if resume_hint else ""))
        except OSError:
            pass

    def mark_complete(self) -> None:
        atomic_write_text(self.path / COMPLETE, _dt.datetime.now().isoformat(timespec="seconds") + "\n")

    @property
    def is_complete(self) -> bool:
        return (self.path / COMPLETE).is_file()


def _check_writable(path: Path) -> None:
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadInput(f"cannot write to output folder {path}: permission denied")


def _clear(path: Path) -> None:
    """Remove a previous run's files (only files and folders a run writes: refuse anything odd)."""
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_symlink() or child.is_file():
            child.unlink()
        elif child.is_dir():
            os.rmdir(child)
