"""How much of a peptide PITA ladder's basin shares is fixed by its stage-0 MD: the backbone-basin
fractions of the stage-0 buffer with errors that respect how slowly hot MD changes basin.

A ``rung: reweight`` ladder with ``rung_strata: backbone`` gives each rung's samples the previous
buffer's basin fractions times the rung's odds to T_k, so the stage-0 buffer's fractions are carried,
multiplied, to every later stage: an error δ in its ln(odds αR : C7eq/C5) is an error δ in the
300 K log-odds (≈ δ·αR·(1 − αR) in the 300 K αR share), whatever the rungs do.

``stage0.method: md`` keeps frames in round-major order (frame j of every chain, then frame j + 1;
``molecules.md_chains``), so the buffer splits into ``chains`` independent time series. Per run: the
first residue's αR and C7eq/C5 fractions (``metrics.peptides.basin_masks``), their standard error
between chains (each chain one independent estimate; the honest error), the binomial error that
treats the frames as independent (far too small), the αR indicator's autocorrelation at lags 1–8
frames pooled over chains, the integrated autocorrelation time that the two errors imply
(τ = (SE_between / SE_binomial)²), and the ln-odds error. A row over all runs gives the pooled mean and
the between-run standard deviation.

    python benchmarks/pita_stage0_basins.py --runs LABEL=RUN [--runs LABEL=RUN ...] [--out FILE]

Reads ``RUN/config.yaml`` and ``RUN/stage_0/buffer.npz`` (a run with ``stage0.method: md``); nothing
is simulated or evaluated. Writes ``benchmarks/results/pita_stage0_basins.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from boltzpath.config import load_yaml
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.methods.pita import stage0_strata_errors
from boltzpath.metrics.peptides import backbone_dihedrals, basin_masks
from boltzpath.molecules.md_chains import MDChainsConfig
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
DESCRIPTION = ("The stage-0 MD buffer of peptide PITA runs (`benchmarks/pita_stage0_basins.py`): "
               "first-residue "
               "alphaR and C7eq/C5 fractions with the standard error between MD chains (honest) and the "
               "binomial one (frames as independent), the alphaR indicator's autocorrelation, and the "
               "ln-odds error every later stage inherits. Nothing is simulated")


def chain_stats(x: np.ndarray, target, chains: int) -> dict:
    """Basin statistics of a round-major stage-0 buffer of ``chains`` MD chains (full rounds only)."""
    rounds = len(x) // chains
    if rounds < 2:
        raise BadInput(f"stage-0 buffer of {len(x)} frames holds fewer than two rounds of {chains} chains")
    x = x[: rounds * chains]
    phi, psi = backbone_dihedrals(x, target.topology)
    masks = basin_masks(phi[:, 0], psi[:, 0])
    a = masks["alpha_r"].reshape(rounds, chains).astype(float)  # rows: rounds (time), columns: chains
    c = masks["c7eq_c5"].reshape(rounds, chains).astype(float)
    fa, fc = float(a.mean()), float(c.mean())
    se_a = float(a.mean(0).std(ddof=1) / np.sqrt(chains))
    se_c = float(c.mean(0).std(ddof=1) / np.sqrt(chains))
    binom = float(np.sqrt(fa * (1 - fa) / a.size))
    z = a - a.mean(0)  # per-chain centred
    var = float((z ** 2).mean())
    acf = [float((z[:-lag] * z[lag:]).mean() / var) if var > 0 else float("nan") for lag in range(1, 9)]
    # ln(αR : C7eq/C5) between chains, as the run itself records it (methods.pita.stage0_strata_errors,
    # the delta method on each chain's own shares, which keeps the two basins' anticorrelation)
    labels = np.where(masks["alpha_r"], 1, np.where(masks["c7eq_c5"], 0, 2))
    s0 = stage0_strata_errors(labels, chains)
    if s0 is None or s0["reference_stratum"] != "0":
        raise BadInput("stage-0 buffer: C7eq/C5 is not its most populated basin; ln-odds not reported")
    log_odds_se = s0["se"]["1"]
    return {"frames": int(a.size), "chains": chains, "rounds": rounds, "alpha_r": fa, "c7eq_c5": fc,
            "alpha_r_se_between_chains": se_a, "c7eq_c5_se_between_chains": se_c,
            "alpha_r_se_binomial": binom, "alpha_r_autocorrelation_lags_1_8": acf,
            "integrated_time_frames": (se_a / binom) ** 2 if binom > 0 else float("nan"),
            "log_odds": float(np.log(fa / fc)),
            "log_odds_se": log_odds_se}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", action="append", default=[], metavar="LABEL=RUN",
                        help="a peptide PITA run folder with stage0.method md (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "pita_stage0_basins.json")
    args = parser.parse_args(argv)
    if not args.runs:
        raise BadInput("--runs: give at least one LABEL=RUN")
    machine = describe_machine()
    command = "python benchmarks/pita_stage0_basins.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows, per_run = [], []
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise BadInput(f"--runs {spec!r}: expected LABEL=RUN")
        folder = Path(folder)
        buf, cfg_file = folder / "stage_0" / "buffer.npz", folder / "config.yaml"
        if not buf.is_file() or not cfg_file.is_file():
            raise BadInput(f"--runs {spec}: needs {cfg_file} and {buf}")
        cfg = load_yaml(cfg_file)
        s0 = cfg.get("stage0") or {}
        if s0.get("method") != "md" or s0.get("data"):
            raise BadInput(f"--runs {spec}: stage0.method is {s0.get('method')!r}, not md")
        md = MDChainsConfig.from_options(s0.get("options"))  # the run's settings, defaults included
        chains = md.chains
        target = make_target(cfg["target"])
        with np.load(buf) as d:
            x = np.asarray(d["x"])
        st = chain_stats(x, target, chains)
        thin_ps = md.thin * float(md.timestep_fs) * 1e-3
        st.update(label=label, run=str(folder), temperature=float(cfg["temperatures"][0]),
                  frame_spacing_ps=thin_ps, ps_per_chain=thin_ps * st["rounds"])
        per_run.append(st)
        print(f"{label}: alphaR {st['alpha_r']:.3f} ± {st['alpha_r_se_between_chains']:.4f} between chains "
              f"(binomial {st['alpha_r_se_binomial']:.4f}, tau {st['integrated_time_frames']:.1f} frames of "
              f"{thin_ps:g} ps), ln-odds ± {st['log_odds_se']:.3f}", file=sys.stderr)
        common = {"benchmark": "pita_stage0_basins", "method": f"stage-0 MD of {label}",
                  "target": cfg["target"], "temperature": st["temperature"], "n": st["frames"],
                  "machine": machine, "command": command, "chains": chains,
                  "frame_spacing_ps": thin_ps, "ps_per_chain": st["ps_per_chain"]}
        rows += [{**common, "metric": "alpha_r_fraction", "value": st["alpha_r"],
                  "standard_error": st["alpha_r_se_between_chains"],
                  "standard_error_binomial": st["alpha_r_se_binomial"],
                  "integrated_time_frames": st["integrated_time_frames"],
                  "autocorrelation_lags_1_8": st["alpha_r_autocorrelation_lags_1_8"]},
                 {**common, "metric": "log_odds_alpha_r_c7eq", "value": st["log_odds"],
                  "standard_error": st["log_odds_se"]}]
    if len(per_run) > 1:
        v = np.array([s["alpha_r"] for s in per_run])
        lo = np.array([s["log_odds"] for s in per_run])
        common = {"benchmark": "pita_stage0_basins", "method": f"stage-0 MD, {len(per_run)} runs",
                  "target": rows[0]["target"], "n": int(sum(s["frames"] for s in per_run)),
                  "machine": machine, "command": command}
        rows += [{**common, "metric": "alpha_r_fraction", "value": float(v.mean()),
                  "between_run_sd": float(v.std(ddof=1))},
                 {**common, "metric": "log_odds_alpha_r_c7eq", "value": float(lo.mean()),
                  "between_run_sd": float(lo.std(ddof=1))}]
    atomic_write_json(args.out, {"description": DESCRIPTION, "runs": per_run, "rows": rows})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
