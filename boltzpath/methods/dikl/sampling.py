"""Fresh draws from a trained DiKL run folder (``dikl-sample`` and the Python API's ``dikl_sample``):
no training and no energy evaluation; kept apart from the command line so the API does not import it.
"""

from __future__ import annotations

import time
from pathlib import Path

from boltzpath.errors import BadInput


def draw_from_run(source, n: int, seed: int = 1, device="auto", target=None, precision: str = "float32"):
    """(Samples, config) — ``n`` fresh generator samples of run folder ``source`` (nothing written).
    ``samples.info`` records the source, the target, 0 energy evaluations, the draw time and the
    precision of the generator's edge MLPs (``float32``, or ``bfloat16``: faster, not bit-equal)."""
    from boltzpath.io.samples import Samples
    from boltzpath.methods.dikl.inference import FastGenerator
    from boltzpath.methods.dikl.run import draw, load_generator

    if n < 1:
        raise BadInput(f"--n must be >= 1, got {n}")
    if precision not in FastGenerator.PRECISIONS:
        raise BadInput(f"--precision must be one of {sorted(FastGenerator.PRECISIONS)}, got {precision!r}")
    gen, target, cfg = load_generator(source, device, target)
    precision = FastGenerator.effective_precision(gen, precision)  # what runs (MLP generators: float32)
    samples, seconds = draw(gen, target, n, seed, precision=precision)
    info = {"method": "dikl-sample", "source": str(source), "target": target.describe(),
            "energy_evaluations": 0, "sampling_time_s": seconds, "device": str(next(gen.parameters()).device),
            "precision": precision}
    return Samples(samples.x, samples.energy, None, info), cfg


def sample_from_run(source, n: int, out, seed: int = 1, metrics: bool = True, overwrite: bool = False,
                    device="auto", target=None, precision: str = "float32"):
    """Write ``n`` fresh generator samples of run ``source`` into run folder ``out``; returns
    (RunDir, Samples)."""
    from boltzpath.io.runs import RunDir
    from boltzpath.parallel.device import resolve_device

    if n < 1:
        raise BadInput(f"--n must be >= 1, got {n}")
    if Path(out).resolve() == Path(source).resolve():
        raise BadInput("--out must not be the --from run folder (it would be overwritten)")
    resolve_device(device)  # a missing GPU is reported before the folder exists
    t0 = time.perf_counter()
    samples, cfg = draw_from_run(source, n, seed, device, target, precision)
    precision = samples.info["precision"]  # what ran (an MLP generator ignores bfloat16)
    rd = RunDir.create(out, overwrite=overwrite)
    rd.write_config({"method": "dikl-sample", "source": str(Path(source).resolve()), "n": n, "seed": seed,
                     "precision": precision})
    seconds = samples.info["sampling_time_s"]
    out_metrics = {"method": "dikl-sample", "target": cfg.target, "n": n, "energy_evaluations": 0,
                   "sampling_time_s": seconds, "device": samples.info["device"], "precision": precision,
                   "source_energy_evaluations": RunDir(source).read_metrics().get("energy_evaluations")}
    if metrics:
        import torch

        from boltzpath.methods.pita_report import stage_metrics
        from boltzpath.targets.registry import make_target

        cpu_target = make_target(cfg.target, **cfg.target_options) if target is None else target.to("cpu")
        gen = torch.Generator().manual_seed(seed)
        out_metrics["evaluation"] = stage_metrics(samples, cpu_target, None, gen, cfg.eval_max_n, rd, False,
                                                  cfg.plots)
    out_metrics["wall_time_s"] = time.perf_counter() - t0
    rd.write_samples(samples)
    rd.write_metrics(out_metrics)
    rd.log(f"dikl-sample: {n} samples from {source} in {seconds:.3g} s on {samples.info['device']}")
    rd.mark_complete()
    return rd, samples
