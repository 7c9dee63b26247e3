"""Progress on stderr for long phases: a tqdm bar on a terminal, periodic log lines otherwise.

``Progress.steps(desc)`` returns a ``callback(it, total, info)`` for samplers (the shape every
algorithm takes); ``Progress.note(msg)`` prints one line for a phase without steps (metrics,
plots). When stderr is not a terminal (a log file, CI) nothing redraws: one line every
``interval`` seconds and one at the end of each phase, so a log stays a few lines long.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

StepCallback = Callable[[int, int, dict], None]


class Progress:
    def __init__(self, stream: TextIO | None = None, enabled: bool = True, interval: float = 10.0,
                 tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval = float(interval)
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.perf_counter()

    def _line(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {text}", file=self.stream, flush=True)

    def note(self, message: str) -> None:
        """One line for a phase (e.g. 'metrics: energy_w2')."""
        self._line(message)

    def steps(self, desc: str) -> StepCallback:
        """A sampler callback: a live bar on a terminal, else a line every ``interval`` seconds."""
        if not self.enabled:
            return lambda it, total, info: None
        if self.tty:
            return self._bar(desc)
        state = {"last": time.perf_counter(), "start": time.perf_counter(), "announced": False, "first": 0}

        def callback(it: int, total: int, info: dict) -> None:
            now = time.perf_counter()
            if not state["announced"]:
                # the rate counts only the steps reported from here on (a resumed run starts late)
                state["announced"], state["first"] = True, it
                state["start"] = state["last"] = now
                self._line(f"{desc}: started ({total} steps)")
            if it >= total or now - state["last"] >= self.interval:
                state["last"] = now
                rate = (it - state["first"]) / max(now - state["start"], 1e-9)
                eta = (total - it) / rate if rate > 0 else float("nan")
                extra = " ".join(f"{k}={v:.3g}" for k, v in (info or {}).items() if isinstance(v, float))
                self._line(f"{desc}: {it}/{total} ({100 * it / max(total, 1):.0f} %, eta {eta:.0f} s) {extra}"
                           .rstrip())

        return callback

    def _bar(self, desc: str) -> StepCallback:
        from tqdm.auto import tqdm

        state: dict = {}

        def callback(it: int, total: int, info: dict) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = state["bar"] = tqdm(total=total, initial=max(it - 1, 0), desc=desc, unit="step",
                                          leave=False, file=self.stream)  # initial: a resumed run's steps
            bar.update(it - bar.n)
            if info and it % 50 == 0:
                bar.set_postfix({k: f"{v:.3g}" for k, v in info.items() if isinstance(v, float)},
                                refresh=False)
            if it >= total:
                bar.close()
                state.pop("bar", None)
                self._line(f"{desc}: {total} steps done")

        return callback


def silent() -> Progress:
    return Progress(enabled=False, tty=False)
