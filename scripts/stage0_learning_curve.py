"""Learning curve of a peptide stage-0 diffusion model: can it make its own training data?

Diagnostic behind docs/pita.md, "Why the peptide ladders fail". Trains the score and energy
models of ``--kind`` (the PITA ``quick`` losses: DSM + distillation + pinning at σ_min, batch 64,
p_mean −3.008, σ_data 0.164 nm; ``--tsm`` adds target score matching on the frames' forces below
``--tsm-sigma-max``) on the first ``--train-frames`` (900) frames of a stage-0 buffer
(``stage_0/buffer.npz`` of an ``aldp-fab`` PITA run: 1200 K MD frames with energies and forces),
resuming through one checkpoint, and after each ``--steps`` entry reports on the frames after them
(at most ``--heldout-max``):

* denoising MSE/σ² (centred coordinates, 1 = no better than returning the noisy input) of the
  score and energy networks at σ = 0.002 … 0.3 nm, and of the score network on 100 training frames;
* corr(U_η(x, σ_min), E/kT) on the held-out frames;
* 256 samples of the model at its own temperature (γ = 1, no weights, 50 steps; drift from the score
  network and from −∇U_η): median and quartile E/kT, share below 50, and the trans share of the
  four amide torsions (O–C–N–H and ω of both peptide bonds), the median E/kT of each force term and
  the median closest interatomic distance.

    python scripts/stage0_learning_curve.py --buffer runs/aldp_quick/stage_0/buffer.npz \
        --kind transformer --hidden 32 --layers 2 --steps 2000,5000,10000 --out curve.json

The table in docs/pita.md came from a first version of this script outside the repository (same
training and metrics; its denoising errors drew the noise once per σ for both networks). One torch
thread; ≈ 0.12 s per transformer step and 0.63 s per EGNN (hidden 32, 4 layers) step on
the 2-core AMD EPYC development machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import mdtraj as md
import numpy as np
import torch

from boltzpath import make_target
from boltzpath.diffusion.buffer import TrainingBuffer, rigid_shape
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.diffusion.train import Models, NetConfig, TrainConfig, build_models, train
from boltzpath.io.atomic import atomic_write_json
from boltzpath.smc.annealing import AnnealConfig, anneal
from boltzpath.smc.model import NetworkModel

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.00164, 13.12, 0.164
AMIDE = [("ACE1-O", "ACE1-C", "ALA2-N", "ALA2-H"), ("ALA2-O", "ALA2-C", "NME3-N", "NME3-H"),
         ("ACE1-CH3", "ACE1-C", "ALA2-N", "ALA2-CA"), ("ALA2-CA", "ALA2-C", "NME3-N", "NME3-C")]


def _centred(v: torch.Tensor) -> torch.Tensor:
    p = v.reshape(len(v), -1, 3)
    return p - p.mean(1, keepdim=True)


def denoising_error(denoise, x: torch.Tensor, sigma: float, gen: torch.Generator) -> float:
    """E‖D(x + σε) − x‖² / (d_free σ²) over the frames (centred: 63 free coordinates for ALDP)."""
    eps = torch.randn(x.shape, generator=gen)
    d = denoise(x + sigma * eps, torch.full((len(x),), sigma)).detach()
    return float(((_centred(d) - _centred(x)) ** 2).sum((1, 2)).mean() / ((x.shape[1] - 3) * sigma**2))


def own_samples(score, energy, target, schedule, q: np.ndarray) -> dict:
    out = {}
    for drift in (["net"] if score is not None else []) + ["energy"]:
        model = NetworkModel.from_diffusion(score if drift == "net" else None, energy, schedule, target.dim,
                                            target.project, None)
        acfg = AnnealConfig(n_steps=50, use_weights=False, divergence="hutchinson")
        res = anneal(model, 256, schedule, acfg, torch.Generator().manual_seed(2), target.project)
        x = res.x.double()
        pos = x.reshape(len(x), -1, 3)
        a = md.compute_dihedrals(md.Trajectory(pos.numpy(), target.topology), q)
        system = target.torch_energy  # E/kT at 1200 K per force term; their sum is the target's E/kT
        per_term = {name: term(pos).detach() / target.kt_kj_mol
                    for name, term in zip(system.force_names, system.terms, strict=True)}
        e = sum(per_term.values())
        terms = {name: float(v.median()) for name, v in per_term.items()}
        closest = (torch.cdist(pos, pos) + 10.0 * torch.eye(pos.shape[1], dtype=pos.dtype)).amin((1, 2))
        out[drift] = {"E_median": float(e.median()), "E_q25": float(e.quantile(0.25)),
                      "frac_below_50": float((e < 50).float().mean()),
                      "trans": np.round((np.abs(a) > np.pi / 2).mean(0), 3).tolist(),
                      "term_median_kT": terms, "closest_pair_nm_median": float(closest.median())}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--buffer", required=True)
    p.add_argument("--kind", default="transformer", choices=("transformer", "egnn"))
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--emb-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-frames", type=int, default=900, help="first frames train, the rest are held out")
    p.add_argument("--heldout-max", type=int, default=500, help="at most this many held-out frames scored")
    p.add_argument("--pair-features", type=int, default=0, help="net.pair_features")
    p.add_argument("--tsm", type=float, default=0.0, help="target score matching weight (forces)")
    p.add_argument("--tsm-sigma-max", type=float, default=0.01, help="TSM only below this σ (nm)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", default="2000,5000,10000")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    target = make_target("aldp-fab").at_temperature(1200.0)
    buf = TrainingBuffer.load(args.buffer)
    n, d = rigid_shape(target)
    n_train = args.train_frames
    if not 0 < n_train < len(buf.x):
        p.error(f"--train-frames must be between 1 and {len(buf.x) - 1} for {args.buffer}")
    train_buf = TrainingBuffer(buf.x[:n_train], buf.energy[:n_train], buf.score[:n_train], None, n, d)
    held_out = slice(n_train, n_train + args.heldout_max)
    test_x, test_e = buf.x[held_out].float(), buf.energy[held_out]
    ncfg = NetConfig(kind=args.kind, hidden=args.hidden, layers=args.layers, emb_dim=args.emb_dim,
                     sigma_data=SIGMA_DATA, pair_features=args.pair_features)
    torch.manual_seed(0)
    models = Models(*build_models(target, ncfg), ncfg)
    tcfg = TrainConfig(batch_size=args.batch_size, pin=1.0, p_mean=-3.008, checkpoint_every=500,
                       log_every=250, tsm=args.tsm, tsm_sigma_max=args.tsm_sigma_max)
    schedule = KarrasSchedule(SIGMA_MIN, SIGMA_MAX, 7.0)
    atoms = {str(a): a.index for a in target.topology.atoms}
    q = np.array([[atoms[k] for k in quad] for quad in AMIDE])
    ckpt = Path(args.out).with_suffix(".pt")
    curve, wall = [], 0.0
    for steps in (int(s) for s in args.steps.split(",")):
        t0 = time.perf_counter()
        res = train(models, train_buf, replace(tcfg, steps=steps), torch.Generator().manual_seed(1),
                    checkpoint_path=ckpt, pin_sigma_default=SIGMA_MIN)
        wall += time.perf_counter() - t0
        sc, en = res.ema.score, res.ema.energy
        for m in (sc, en):
            m.eval()
        g = torch.Generator().manual_seed(0)
        held = {s: {"score": denoising_error(sc.denoise, test_x, s, g),
                    "energy": denoising_error(en.denoise, test_x, s, g)}
                for s in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3)}
        first = train_buf.x[:100].float()
        trained = {s: denoising_error(sc.denoise, first, s, g) for s in (0.01, 0.02, 0.05)}
        with torch.no_grad():
            u = en.energy(test_x, torch.full((len(test_x),), SIGMA_MIN)).double()
        corr = float(np.corrcoef(u.numpy(), test_e.numpy())[0, 1])
        curve.append({"steps": steps, "train_wall_s": wall, "threads": args.threads,
                      "train_frames": n_train, "heldout_frames": len(test_x), "batch_size": args.batch_size,
                      "tsm": args.tsm, "tsm_sigma_max": args.tsm_sigma_max,
                      "pair_features": args.pair_features,
                      "heldout_mse": held, "train_mse": trained,
                      "corr": corr, "samples": own_samples(sc, en, target, schedule, q)})
        print(json.dumps(curve[-1]), flush=True)
        atomic_write_json(args.out, curve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
