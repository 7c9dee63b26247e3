"""Start a PITA run's stage 0 from another run's trained score network and a fresh energy network.

An experiment on the energy model alone: keep a finished run's stage-0 score network D_θ (the drift
of the annealing) and its optimiser state, put a freshly initialised energy network U_η of another
configuration beside it (e.g. ``net.pair_features=16 net.pair_head=energy``), and write the pair as
a training checkpoint ``OUT/stage_0/model.pt`` at the source's step. Then

    boltzpath run pita --target T --preset P --seed S [--stage0-data the source's T₀ samples]
        --set net.… --set train.steps=<source steps + N> … --resume --out OUT

trains stage 0 from that checkpoint for N more steps (both networks: D_θ goes on from where it was,
U_η learns from scratch by distillation, pinning and force matching), runs the stage's gate and model
check on the same held-out split as the source (same seed), and anneals the ladder as usual. The
comparison with the source run then isolates the energy network (and N more score steps).

    .venv/bin/python benchmarks/pita_energy_warm_start.py --from RUN --out OUT --target aldp-fab \\
        --preset cpu --seed 0 --set net.pair_features=16 --set net.pair_head=energy

The new run's settings (``--target/--preset/--seed/--set``) must be those of the later ``run pita``
call, and its score network must have the source's architecture; otherwise the script refuses
(exit 2, one line). The source's Adam state is kept for D_θ; U_η's starts empty. ``--keep-energy``
starts U_η from the source's energy network as well (parameters the source lacks, such as a pair
head added now, at their initialisation — the pair head's is zero, so U_η starts as the source's
function): distillation first, then the new head and losses.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from boltzpath.diffusion.ema import Ema
from boltzpath.diffusion.train import adam, build_models, read_checkpoint
from boltzpath.errors import BadInput, run_cli
from boltzpath.io.atomic import atomic_torch_save
from boltzpath.methods.pita_config import resolve_config
from boltzpath.targets.registry import make_target


def warm_start(source: Path, out: Path, target: str, preset: str, seed: int | None,
               overrides: list[str], keep_energy: bool = False) -> Path:
    """Write ``out/stage_0/model.pt`` (see the module docstring); returns its path. ``keep_energy``:
    start U_η from the source's energy network too (and its EMA); parameters the source lacks (a
    pair head added now) keep their initialisation — the pair head's is zero, so U_η starts as the
    source's function — and nothing else may differ."""
    src_file = Path(source) / "stage_0" / "model.pt"
    if not src_file.is_file():
        raise BadInput(f"--from {source}: no stage_0/model.pt (not a PITA run with a trained stage 0)")
    dest = Path(out) / "stage_0" / "model.pt"
    if dest.exists():
        raise BadInput(f"--out {out}: {dest} exists already")
    cfg = resolve_config(target, preset, seed, overrides, {})
    ckpt = read_checkpoint(src_file)
    torch.manual_seed(int(cfg.seed) * 7919 + 11)  # the fresh energy network's initialisation
    score, energy = build_models(make_target(cfg.target), cfg.net)
    if score is None:
        raise BadInput("the new configuration has no score network (net.mode=energy): nothing to keep")
    try:
        score.load_state_dict(ckpt["models"]["score"])
        score_ema = Ema(score, cfg.train.ema)
        score_ema.load_state_dict(ckpt["ema"]["score"])
    except (KeyError, RuntimeError) as exc:
        raise BadInput(f"--from {source}: its score network does not fit the new configuration "
                       f"({type(exc).__name__})") from None
    if keep_energy:
        own = energy.state_dict()
        for part in ("models", "ema"):  # the source's tensors must all exist here, with their shapes
            theirs = ckpt[part]["energy"]
            differ = [k for k in theirs if k not in own or own[k].shape != theirs[k].shape]
            if differ:
                raise BadInput(f"--from {source}: its energy network does not fit the new configuration "
                               f"({len(differ)} parameters differ, e.g. {differ[0]})")
        energy.load_state_dict(ckpt["models"]["energy"], strict=False)
    energy_ema = Ema(energy, cfg.train.ema)
    if keep_energy:
        energy_ema.module.load_state_dict(ckpt["ema"]["energy"], strict=False)
    n_score = len(list(score.parameters()))
    optimizer = adam([*score.parameters(), *energy.parameters()], cfg.train.lr)
    new = optimizer.state_dict()
    old_state = ckpt["optimizer"]["state"]
    new["state"] = {i: old_state[i] for i in range(n_score) if i in old_state}  # D_θ's Adam moments
    state = {
        "format": ckpt["format"], "step": int(ckpt["step"]), "net_config": asdict(cfg.net),
        "train_config": asdict(cfg.train),
        "models": {"score": score.state_dict(), "energy": energy.state_dict()},
        "ema": {"score": score_ema.state_dict(), "energy": energy_ema.state_dict()},
        "optimizer": new, "generator": ckpt["generator"], "history": list(ckpt["history"]),
        "warm_start": {"source": str(src_file), "kept": "score network, its EMA and Adam state, the RNG",
                       "energy network": "the source's, new parameters initialised" if keep_energy
                       else "fresh"},
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(dest, state)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", required=True,
                    help="finished PITA run whose stage-0 D_θ is kept")
    ap.add_argument("--out", required=True, help="new run folder (its stage_0/model.pt must not exist)")
    ap.add_argument("--target", required=True)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--keep-energy", action="store_true",
                    help="start U_η from the source's energy network (new parameters, e.g. a pair head, "
                         "at their initialisation)")
    args = ap.parse_args(argv)
    dest = warm_start(Path(args.source), Path(args.out), args.target, args.preset, args.seed, args.overrides,
                      args.keep_energy)
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
