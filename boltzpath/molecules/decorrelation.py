"""Decorrelation statistics of a time series: statistical inefficiency g and effective samples.

Convention: g = 1 + 2·Σ_{t≥1} ρ(t) (ρ the normalised autocorrelation), so the number of
effective samples is n_eff = n / g and the integrated autocorrelation time in frames is
τ_int = (g − 1)/2. The estimator is pymbar's ``timeseries.statistical_inefficiency`` when pymbar is
installed (it truncates the sum at the first negative ρ), else Geyer's initial positive sequence
estimator (Geyer 1992): Γ_k = ρ(2k) + ρ(2k+1), summed while positive and made monotone,
g = −1 + 2·Σ_k Γ_k.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np


def _pymbar_timeseries():
    """pymbar's timeseries module, or None. Its import banner is swallowed (algorithms never print)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pymbar import timeseries
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return timeseries


def autocorrelation(a: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation ρ(t), t = 0..n−1, by FFT (biased 1/n normalisation)."""
    a = np.asarray(a, dtype=np.float64)
    a = a - a.mean()
    n = a.shape[0]
    f = np.fft.rfft(a, 2 * n)
    acov = np.fft.irfft(f * np.conj(f), 2 * n)[:n] / n
    if acov[0] <= 0:
        return np.zeros(n)
    return acov / acov[0]


def geyer_inefficiency(a: np.ndarray) -> float:
    """Statistical inefficiency g by Geyer's initial monotone positive sequence."""
    rho = autocorrelation(a)
    if not np.any(rho):
        return 1.0
    n_pairs = rho.shape[0] // 2
    gamma = rho[: 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]
    total = 0.0
    previous = np.inf
    for g in gamma:
        if g <= 0:
            break
        g = min(g, previous)
        total += g
        previous = g
    return max(1.0, -1.0 + 2.0 * total)


def statistical_inefficiency(a: np.ndarray) -> tuple[float, str]:
    """(g, estimator name) for a 1-D series; constant series give g = 1."""
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.shape[0] < 4 or np.ptp(a) == 0:
        return 1.0, "constant"
    ts = _pymbar_timeseries()
    if ts is not None:
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return max(1.0, float(ts.statistical_inefficiency(a, fft=False))), "pymbar"
        except Exception:  # noqa: BLE001 - fall back to our own estimator on any pymbar failure
            pass
    return geyer_inefficiency(a), "geyer"


def decorrelation_report(series: dict[str, np.ndarray]) -> dict:
    """For each named series: g, τ_int = (g−1)/2 frames, n_eff = n/g; overall n_eff = n / max g."""
    out: dict = {"observables": {}}
    g_max = 1.0
    n = 0
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        n = values.shape[0]
        g, estimator = statistical_inefficiency(values)
        g_max = max(g_max, g)
        out["observables"][name] = {
            "statistical_inefficiency": g,
            "tau_int_frames": (g - 1.0) / 2.0,
            "n_effective": n / g if n else 0.0,
            "estimator": estimator,
        }
    out["n_frames"] = n
    out["max_statistical_inefficiency"] = g_max
    out["n_effective"] = n / g_max if n else 0.0
    out["convention"] = "g = 1 + 2 sum_{t>=1} rho(t); n_eff = n / g; tau_int = (g - 1) / 2 frames"
    return out
