"""DiKL sampling speed on LJ-13: 1,000 samples from a trained generator, before and after the fast
inference path, against parallel tempering's cost per independent sample (issue 12).

Rows (``benchmark: dikl_speed``, target lj13), for each generator size (``--sizes``, preset names):

* ``draw_1000_seconds`` — median over ``--reps`` warm repetitions of drawing 1,000 samples with
  ``Generator.sample`` under ``no_grad`` (method ``dikl reference``, the path before issue 12),
  ``FastGenerator`` (``dikl fast``), ``FastGenerator(precision="bfloat16")`` (``dikl fast bf16
  edges``: the edge MLPs in bfloat16; its ``max_abs_diff_vs_reference`` is bfloat16's, not float32
  round-off) and, for the sizes in ``--compile``, the compiled float32 forward (``dikl fast
  compiled``). The paths are timed interleaved in one process (A, B, C, A, B, C, …) so
  that changes in machine load hit all of them; ``speedup_median_of_ratios`` is the median over
  repetitions of reference/fast. Each row has the 1-minute load average before and after.
* ``compile_seconds`` — compiling the per-chunk forward plus its first call, with an empty inductor
  cache (a fresh ``TORCHINDUCTOR_CACHE_DIR`` unless the environment sets one).
* ``floor_gemm_seconds`` / ``floor_gemm_silu_seconds`` — the bare (rows·n², H)×(H, H) matmuls of
  the edge MLPs for 1,000 samples (bias + SiLU added in the second), same chunks and threads as
  the fast path: the part no reordering of the rest can remove.
* ``pt_seconds_per_independent_sample`` — parallel tempering on LJ-13 (bench_digs' LJ-13 ladder,
  ``--pt-chains`` chains) timed end to end (burn-in included) and divided by its effective sample
  size: the smallest bulk/tail ESS over the monitored quantities (energy, mean pair distance,
  radius of gyration; ArviZ through ``metrics.convergence.mcmc_diagnostics``).

Generators: ``quick`` uses the trained folder ``--run`` (default runs/bench_dikl/lj13_quick when it
is complete; otherwise a 20-iteration quick run is trained into a temporary folder — the rows say
which: speed does not depend on training quality). Other sizes (``cpu``, ``paper``) are the preset
networks at their initial weights (``generator_source: untrained``).

    python benchmarks/bench_dikl_speed.py [--threads 2] [--reps 20] [--sizes quick,cpu] [--compile quick]
        [--run DIR] [--out FILE]

Writes ``benchmarks/results/bench_dikl_speed.json``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# compile times are reported cold: inductor gets a fresh cache directory (unless one is given)
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="bench-dikl-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import torch  # noqa: E402
import torch.nn.functional as F

from boltzpath.errors import run_cli
from boltzpath.io.atomic import atomic_write_json
from boltzpath.io.machine import describe_machine
from boltzpath.mcmc.registry import run_method
from boltzpath.methods.dikl import load_generator, run_dikl
from boltzpath.methods.dikl.config import resolve_config
from boltzpath.methods.dikl.inference import FastGenerator
from boltzpath.methods.dikl.networks import build_networks
from boltzpath.methods.dikl.schedule import VPSchedule
from boltzpath.metrics.convergence import mcmc_diagnostics
from boltzpath.targets.registry import make_target

ROOT = Path(__file__).resolve().parent
N = 1000
DESCRIPTION = ("Drawing 1,000 LJ-13 samples from a DiKL generator: the reference path (`Generator.sample`, "
               "before) against `FastGenerator` (after), timed interleaved in one process; the bare matmul "
               "floor of the edge MLPs; parallel tempering's wall time per independent sample (ArviZ ESS) "
               "for comparison. `value` in seconds.")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _generator(size: str, run: Path | None, tmp: Path):
    """(generator, source description) for preset ``size``."""
    if size == "quick":
        if run is not None and (run / "COMPLETE").is_file():
            gen, _, _ = load_generator(run)
            return gen, f"trained: {run}"
        cfg = resolve_config("lj13", "quick", 0, ("train.iterations=20", "plots=false", "n_samples=100",
                                                   "eval_max_n=100", "eval_noise_floors=false"))
        run_dikl(cfg, tmp / "lj13_tiny")
        gen, _, _ = load_generator(tmp / "lj13_tiny")
        return gen, "trained here: quick preset, 20 iterations (speed does not depend on training quality)"
    cfg = resolve_config("lj13", size, 0, ())
    target = make_target("lj13")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gen, _ = build_networks(target, cfg.generator, cfg.score_net, VPSchedule(cfg.ddpm))
    return gen.eval(), "untrained (preset sizes, initial weights: speed does not depend on them)"


def _floors(fast: FastGenerator):
    """Callables running only the edge-MLP matmuls (and matmul + bias + SiLU) of 1,000 samples."""
    fwd = fast._forward
    n, hd, k, layers = fwd.n, fwd.hidden, fwd.pairs, len(fwd.layers)
    rows = fast.chunk or N
    w, b = torch.randn(hd, hd) * 0.1, torch.randn(hd)
    sizes = [min(rows, N - s) for s in range(0, N, rows)]

    def chunk(r: int, silu: bool) -> None:
        with torch.inference_mode():  # thread-local: entered on each worker
            _chunk(r, silu)

    def _chunk(r: int, silu: bool) -> None:
        buf = fwd.buffers(r)  # the fast path's own buffers (this thread's)
        for layer in range(layers):
            src = buf["pre1"] if layer == 0 else buf["pre"]
            dst = buf["m1"] if layer == 0 else buf["m"]
            src, dst = src[: r * (k if layer == 0 else n * n)], dst[: r * (k if layer == 0 else n * n)]
            for _ in range(2):  # edge_out and coord_hidden
                if silu:
                    F.silu(torch.addmm(b, src, w, out=dst), inplace=True)
                else:
                    torch.mm(src, w, out=dst)

    def run(silu: bool):
        def go():
            with torch.inference_mode():
                if fast.threads > 1 and len(sizes) > 1:
                    list(fast._workers().map(lambda r: chunk(r, silu), sizes))
                else:
                    for r in sizes:
                        chunk(r, silu)
        return go

    return run(False), run(True)


def bench_size(size: str, args, tmp: Path, common: dict) -> list[dict]:
    gen, source = _generator(size, args.run, tmp)
    net = gen.net
    hidden, layers = net.layers[0].hidden, len(net.layers)
    rng = torch.Generator().manual_seed(0)
    z = gen.latent(N, rng)
    fast = FastGenerator(gen)
    fast_bf16 = FastGenerator(gen, precision="bfloat16")
    paths = {"dikl reference": lambda: gen(z), "dikl fast": lambda: fast(z),
             "dikl fast bf16 edges": lambda: fast_bf16(z)}
    compile_row = None
    if size in args.compile.split(","):
        fc = FastGenerator(gen, compile=True)
        compile_row = {"metric": "compile_seconds", "method": "dikl fast compiled",
                       "value": fc.compile_seconds, "compiled": fc.compiled,
                       "compile_error": fc.compile_error}
        if fc.compiled:
            paths["dikl fast compiled"] = lambda: fc(z)
    gemm, gemm_silu = _floors(fast)
    paths["floor: edge matmuls"] = gemm
    paths["floor: edge matmuls + bias + SiLU"] = gemm_silu
    with torch.no_grad():
        ref = gen(z)
    agree = {k: float((f() - ref).abs().max()) for k, f in paths.items() if k.startswith("dikl fast")}
    times: dict[str, list[float]] = {k: [] for k in paths}
    load0 = _load()
    with torch.no_grad():
        for f in paths.values():  # warm-up
            f()
        for _ in range(args.reps):
            for key, f in paths.items():
                t0 = time.perf_counter()
                f()
                times[key].append(time.perf_counter() - t0)
    load1 = _load()
    fast.close()
    fast_bf16.close()
    if "dikl fast compiled" in paths:
        fc.close()
    base = times["dikl reference"]
    rows = []
    for key, ts in times.items():
        metric = "draw_1000_seconds" if key.startswith("dikl") else (
            "floor_gemm_silu_seconds" if "SiLU" in key else "floor_gemm_seconds")
        ratios = [a / b for a, b in zip(base, ts, strict=True)]
        row = {"method": key, "metric": metric, "value": statistics.median(ts), "min_s": min(ts),
               "repeats": len(ts), "speedup_median_of_ratios": statistics.median(ratios)}
        if key in agree:
            row["max_abs_diff_vs_reference"] = agree[key]
        rows.append(row)
    if compile_row:
        rows.append(compile_row)
    extra = {"preset": size, "generator": f"EGNN {hidden}x{layers}", "generator_source": source,
             "chunk": fast.chunk, "worker_threads": fast.threads, "load_average_1min_before": load0,
             "load_average_1min_after": load1}
    for r in rows:
        print(f"{size:6s} {r['method']:36s} {r['metric']:24s} {r['value']}", file=sys.stderr)
    return [{"benchmark": "dikl_speed", "target": "lj13", "n": N, "energy_evaluations": 0, **r, **extra,
             **common} for r in rows]


def bench_pt(args, common: dict) -> list[dict]:
    target = make_target("lj13")
    per_chain = args.pt_draws
    opts = {"chains": args.pt_chains, "burn_in": args.pt_burn_in, "thin": args.pt_thin, "t_max": 3.0,
            "n_replicas": 6}
    n = args.pt_chains * per_chain
    load0 = _load()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.pt_threads)
    t0 = time.perf_counter()
    try:
        samples = run_method("pt", target, n, torch.Generator().manual_seed(1), opts)
    finally:
        wall = time.perf_counter() - t0
        torch.set_num_threads(threads)
    diag = mcmc_diagnostics(samples.x, samples.energy, args.pt_chains, target)
    ess = min(diag["ess_bulk_min"], diag["ess_tail_min"])
    row = {"benchmark": "dikl_speed", "target": "lj13", "method": "pt",
           "metric": "pt_seconds_per_independent_sample", "value": wall / ess, "n": n, "ess": ess,
           "ess_bulk_min": diag["ess_bulk_min"],
           "ess_tail_min": diag["ess_tail_min"], "rhat_max": diag["rhat_max"], "wall_time_s": round(wall, 2),
           "pt_threads": args.pt_threads,
           "energy_evaluations": int(samples.info["energy_evaluations"]), "options": opts,
           "seconds_for_1000_independent_samples": 1000 * wall / ess,
           "load_average_1min_before": load0, "load_average_1min_after": _load(), **common}
    print(f"pt: {wall:.1f} s, ESS {ess:.0f}, {wall / ess:.3g} s per independent sample", file=sys.stderr)
    return [row]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (fast path: worker threads)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--sizes", default="quick,cpu", help="lj13 preset sizes: quick,cpu,paper")
    parser.add_argument("--compile", default="quick", metavar="SIZES",
                        help="sizes whose torch.compile path is also timed ('' for none)")
    parser.add_argument("--run", type=Path, default=ROOT.parent / "runs" / "bench_dikl" / "lj13_quick")
    parser.add_argument("--pt-chains", type=int, default=16)
    parser.add_argument("--pt-draws", type=int, default=100, help="collected draws per PT chain")
    parser.add_argument("--pt-burn-in", type=int, default=1000)
    parser.add_argument("--pt-thin", type=int, default=20)
    parser.add_argument("--pt-threads", type=int, default=1,
                        help="torch threads for PT (its small per-step ops run faster on one)")
    parser.add_argument("--no-pt", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_dikl_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pt = (" --no-pt" if args.no_pt else f" --pt-chains {args.pt_chains} --pt-draws {args.pt_draws} "
          f"--pt-burn-in {args.pt_burn_in} --pt-thin {args.pt_thin} --pt-threads {args.pt_threads}")
    command = (f"python benchmarks/bench_dikl_speed.py --threads {args.threads} --reps {args.reps} "
               f"--sizes {args.sizes} --compile '{args.compile}'" + pt)
    common = {"machine": describe_machine(), "command": command, "threads": args.threads}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-dikl-speed-") as tmp:
        for size in args.sizes.split(","):
            rows += bench_size(size.strip(), args, Path(tmp), common)
            atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    if not args.no_pt:
        rows += bench_pt(args, common)
    atomic_write_json(args.out, {"description": DESCRIPTION, "rows": rows})
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
