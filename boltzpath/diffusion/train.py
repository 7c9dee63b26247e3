"""Building and training the score model D_θ and the energy model U_η (SPEC §5).

``build_models(target, NetConfig)`` → (ScoreModel | None, EnergyModel): an EGNN for particle
targets, an MLP otherwise (``kind: auto``), or the atom transformer (``kind: transformer``, the
peptide presets' choice); ``mode="energy"`` skips the score model (then s = −∇U_η). Peptide models
centre their input (``precond``, ``centre=True``: translation-invariant, CoM-free scores).

``train(Models, TrainingBuffer, TrainConfig, generator)`` minimises, per step (batch B):
  score+energy: dsm·DSM(D_θ) + tsm·TSM(D_θ) + distill·λ‖D_E − sg[D_θ]‖² + pin·(U_η(x₀,σ_pin) − E/kT)²/d
                + force·‖∇ₓU_η(x₀,σ_pin) − ∇ₓE/kT‖²/mean‖∇ₓE/kT‖²
  energy only:  dsm·DSM(D_E) + tsm·TSM(D_E) + pin·pinning + force·force matching
with ln σ ~ N(p_mean, p_std²) (TSM: the same law truncated to σ < tsm_sigma_max), particle noise
CoM-projected, Adam(lr), per-model gradient-norm clipping, EMA (with warm-up, ``diffusion.ema``).
The distillation uses the same x_t and σ as DSM. Every random draw comes from ``generator`` in a
fixed order, and checkpoints hold (models, EMA, optimiser, step, generator state, history), so a
resumed run reproduces the uninterrupted one bit-for-bit. Checkpoints are written atomically and read with
``torch.load(weights_only=True)``.

Fast path (opt-in; same function, equal to float rounding, not bit for bit):
``NetConfig.analytic_grad`` builds the EGNN energy model with the hand-written ∇ₓU_η
(``EnergyModel.analytic_energy_and_grad``: the distillation loss then needs one backward instead
of a double backward), and ``TrainConfig.compile`` puts the loss computation of a step (everything
after the random draws: DSM, TSM, distillation, pinning) through ``torch.compile``. Without
``analytic_grad`` the distillation's double backward cannot be compiled, so ``compile`` then
only helps the other terms. If compiling fails (no C++ compiler, an unsupported op), the step is
recomputed eagerly from the same random draws and the run goes on uncompiled, with a warning.
The time spent compiling is in the history (``compile_s``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzpath.config import from_dict
from boltzpath.diffusion.buffer import TrainingBuffer, rigid_shape
from boltzpath.diffusion.ema import Ema
from boltzpath.diffusion.losses import (
    _weighted_mse,
    distillation_loss,
    force_matching_loss,
    noise_like,
    pin_sigma_terms,
    pinning_loss,
    tsm_loss,
)
from boltzpath.diffusion.precond import CoMProjection, EnergyModel, ScoreModel, SoftCore
from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_torch_save
from boltzpath.nets import EGNN, MLP, AtomTransformer
from boltzpath.nets.transformer import PairHead

CHECKPOINT_FORMAT = "boltzpath-diffusion-v1"


@dataclass
class NetConfig:
    kind: str = "auto"  # auto | mlp | egnn | transformer (auto: egnn for particle targets, else mlp;
    #                     egnn on a molecule adds a learned feature per atom, nets.egnn)
    mode: str = "score+energy"  # score+energy | energy
    hidden: int = 64
    layers: int = 4
    emb_dim: int = 32
    temperature_conditioned: bool = False
    sigma_data: float = 1.0  # data std in the target's unit (nm for peptides, ≈ 0.164 for ALDP)
    heads: int = 4  # attention heads (transformer only)
    pair_features: int = 0  # transformer only: radial basis size of its pair head (0: none; nets.transformer)
    # which nets get the pair head: both, or only the energy net U_η (the score net D_θ, which drives the
    # annealing, then stays as without it). On ALDP `cpu` the head in the score net too left a stage-0
    # model none of whose samples were in its buffer's energy range (docs/pita.md, eleventh session).
    pair_head: str = "both"  # both | energy
    pair_fade: float = 0.0  # σ_f (target unit): pair head × σ_f²/(σ_f² + σ²) (0: no fade; nets.transformer)
    analytic_grad: bool = False  # EGNN only: ∇ₓU_η by the hand-written reverse pass (module docstring)
    # Soft-core prior of the energy model (particle targets; precond.SoftCore): off when core_radius is 0
    core_radius: float = 0.0  # r₀ in the target's length unit; put it below the data's smallest distance
    core_strength: float = 1000.0  # k, in units of kT (nats) per squared length
    core_sigma: float = 0.1  # σ_c: the prior's weight is σ_c²/(σ_c² + σ²)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    grad_clip: float = 0.5
    ema: float = 0.999
    dsm: float = 1.0
    tsm: float = 0.0
    distill: float = 1.0
    pin: float = 0.0
    force: float = 0.0  # force matching of ∇ₓU_η at σ_pin against the buffer's forces (losses.py)
    tsm_sigma_max: float = 0.19
    pin_sigma: float | None = None  # None: the sampling schedule's σ_min (train(pin_sigma_default=…))
    pin_mask_above: float | None = 1000.0  # buffer samples with E/kT above this are not pinned
    p_mean: float = -1.2
    p_std: float = 1.2
    augment: bool = True
    checkpoint_every: int = 500
    log_every: int = 50
    compile: bool = False  # torch.compile the step's losses (module docstring); falls back to eager
    # Distillation first: the first plain_steps steps (counted from the checkpoint's step 0) train
    # without force matching and leave the energy network's pair head (net.pair_head) at its zero
    # initialisation; both come in at step plain_steps (docs/pita.md, 'Distillation first')
    plain_steps: int = 0


@dataclass
class Models:
    score: ScoreModel | None
    energy: EnergyModel
    net_config: NetConfig = field(default_factory=NetConfig)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {k: m for k, m in (("score", self.score), ("energy", self.energy)) if m is not None}


@dataclass
class TrainResult:
    models: Models  # the raw (last-iterate) models
    ema: Models  # EMA copies: use these for sampling
    step: int
    history: list[dict[str, float]]


def _make_net(target, cfg: NetConfig) -> torch.nn.Module:
    kind = cfg.kind
    if kind == "auto":
        kind = "egnn" if getattr(target, "n_particles", None) else "mlp"
    common = dict(
        hidden=cfg.hidden,
        layers=cfg.layers,
        emb_dim=cfg.emb_dim,
        temperature_conditioned=cfg.temperature_conditioned,
    )
    if kind == "egnn":
        if getattr(target, "is_peptide", False):  # atoms are distinct: one learned feature per atom
            n, d = rigid_shape(target)
            return EGNN(n, d, atom_embedding=True, **common)
        if not getattr(target, "n_particles", None):
            raise BadInput(f"net kind 'egnn' needs a particle or molecule target, {target.name} is not one")
        return EGNN(target.n_particles, target.spatial_dim, **common)
    if kind == "mlp":
        return MLP(target.dim, **common)
    if kind == "transformer":
        if not getattr(target, "is_peptide", False):  # its atom-index embedding would break permutations
            raise BadInput(f"net kind 'transformer' is for molecules (peptides), {target.name} is not one "
                           "(use egnn for particle systems, mlp for others)")
        n, d = rigid_shape(target)
        if cfg.hidden % cfg.heads:
            raise BadInput(f"net.hidden={cfg.hidden} must be divisible by net.heads={cfg.heads}")
        ref = None
        if cfg.pair_features > 0 and getattr(target, "initial_positions_nm", None) is not None:
            pos = torch.as_tensor(np.asarray(target.initial_positions_nm, dtype=np.float64)).reshape(n, d)
            ref = (pos - pos.mean(0)) / cfg.sigma_data  # the network-input units of x at σ ≪ σ_data
        if cfg.pair_fade < 0:
            raise BadInput(f"net.pair_fade must be >= 0 (0: no fade), got {cfg.pair_fade}")
        return AtomTransformer(n, d, heads=cfg.heads, pair_features=cfg.pair_features, pair_reference=ref,
                               sigma_data=cfg.sigma_data, pair_fade=cfg.pair_fade, **common)
    raise BadInput(f"unknown net kind {cfg.kind!r} (expected auto, mlp, egnn or transformer)")



def build_models(
    target, net_cfg: NetConfig | None = None, device=None
) -> tuple[ScoreModel | None, EnergyModel]:
    """(ScoreModel | None, EnergyModel) for ``target`` (dims and CoM projection taken from it), on
    ``device`` (None: the CPU, where parameters are initialised either way)."""
    cfg = net_cfg or NetConfig()
    if cfg.mode not in ("score+energy", "energy"):
        raise BadInput(f"unknown model mode {cfg.mode!r} (expected 'score+energy' or 'energy')")
    n, d = rigid_shape(target)
    project = CoMProjection(n, d) if n else None
    centre = bool(getattr(target, "is_peptide", False))  # molecules keep their CoM: models centre x
    if cfg.pair_head not in ("both", "energy"):
        raise BadInput(f"net.pair_head must be 'both' or 'energy', got {cfg.pair_head!r}")
    score_cfg = replace(cfg, pair_features=0) if cfg.pair_head == "energy" else cfg
    score = (
        ScoreModel(_make_net(target, score_cfg), cfg.sigma_data, project, centre)
        if cfg.mode == "score+energy" else None
    )
    energy_net = _make_net(target, cfg)
    if cfg.analytic_grad and not hasattr(energy_net, "forward_vjp"):
        raise BadInput(f"analytic_grad needs the egnn net, not {type(energy_net).__name__}")
    if cfg.analytic_grad and centre:
        raise BadInput(f"net.analytic_grad is for particle systems, not molecules ({target.name}: its "
                       "models centre x, which the hand-written gradient does not include)")
    core = None
    if cfg.core_radius:
        if not n or centre:
            raise BadInput(f"net.core_radius (the soft-core prior) is for particle targets, not "
                           f"{target.name}")
        try:
            core = SoftCore(n, d, cfg.core_radius, cfg.core_strength, cfg.core_sigma)
        except ValueError as exc:
            raise BadInput(f"net.core_radius / core_strength / core_sigma: {exc}") from None
    energy = EnergyModel(energy_net, cfg.sigma_data, project, centre, analytic_grad=cfg.analytic_grad,
                         core=core)
    if device is not None:  # device hook: initialise on the CPU (same weights everywhere), then move
        score, energy = (None if score is None else score.to(device)), energy.to(device)
    return score, energy


def _draw_noise(models: Models, batch, cfg: TrainConfig, generator) -> dict[str, torch.Tensor]:
    """The random draws of one step, in a fixed order: σ, ε, then TSM σ, ε."""
    first = models.score if models.score is not None else models.energy
    x = batch.x
    bsz = x.shape[0]
    draws = {"sigma": KarrasSchedule.sample_training_sigma(bsz, generator, cfg.p_mean, cfg.p_std,
                                                           dtype=x.dtype, device=x.device)}
    draws["eps"] = noise_like(x, generator, first._project)
    if cfg.tsm > 0:
        draws["tsm_sigma"] = KarrasSchedule.sample_training_sigma_below(
            bsz, generator, cfg.tsm_sigma_max, cfg.p_mean, cfg.p_std, dtype=x.dtype, device=x.device
        )
        draws["tsm_eps"] = noise_like(x, generator, first._project)
    return draws


def _loss_terms(models: Models, cfg: TrainConfig, pin_sigma: float, x, energy, score, temps, draws) -> dict:
    """Every loss of one step from its random draws: a pure function (``TrainConfig.compile`` compiles it)."""
    energy_model, score_model = models.energy, models.score
    first = score_model if score_model is not None else energy_model
    x0 = first.project(x)
    sigma = draws["sigma"]
    x_t = x0 + sigma[:, None] * draws["eps"]
    losses: dict[str, torch.Tensor] = {}
    if score_model is not None:
        d = score_model.denoise(x_t, sigma, temps)
    else:
        d = energy_model.denoise(x_t, sigma, temps, create_graph=True)
    losses["dsm"] = _weighted_mse(d, x0, sigma, first.sigma_data)
    if cfg.tsm > 0:
        losses["tsm"] = tsm_loss(first, x0, first.project(score), draws["tsm_sigma"], draws["tsm_eps"], temps)
    if score_model is not None and cfg.distill > 0:
        losses["distill"] = distillation_loss(energy_model, x_t, sigma, d.detach(), temps)
    # with force matching, U_η and ∇ₓU_η at σ_pin come from one evaluation that pinning shares
    u_pin, grad_pin = pin_sigma_terms(energy_model, x0, pin_sigma, temps) if cfg.force > 0 else (None, None)
    if cfg.pin > 0:
        losses["pin"] = pinning_loss(energy_model, x0, energy, pin_sigma, temps, cfg.pin_mask_above, u=u_pin)
    if cfg.force > 0:
        losses["force"] = force_matching_loss(energy_model, x0, score, pin_sigma, temps, energy,
                                              cfg.pin_mask_above, grad=grad_pin)
    return losses


def _step_losses(models: Models, batch, cfg: TrainConfig, generator, pin_sigma: float) -> dict:
    """Every loss of one step (fixed order of random draws: σ, ε, then TSM σ, ε)."""
    draws = _draw_noise(models, batch, cfg, generator)
    return _loss_terms(models, cfg, pin_sigma, batch.x, batch.energy, batch.score, batch.temperature, draws)


class _CompiledLosses:
    """``_loss_terms`` through ``torch.compile`` (static shapes), with a one-way fallback to eager.

    One compiled function for the process (``_COMPILED``): dynamo guards on the models' structure
    and the loss switches, so a second ``train`` call (fine-tuning, the next PITA stage) reuses it.
    ``compile_s`` accumulates the wall time of the steps that compiled (the first forward and
    backward for each batch shape; those steps are slower by about that much).
    """

    def __init__(self, models: Models, cfg: TrainConfig, pin_sigma: float) -> None:
        global _COMPILED
        if _COMPILED is None:
            _COMPILED = torch.compile(_loss_terms, dynamic=False)
        self.args = (models, cfg, pin_sigma)
        self.failed: str | None = None
        self.compile_s = 0.0
        self._shapes: set = set()

    def new_shape(self, batch) -> bool:
        return tuple(batch.x.shape) not in self._shapes

    def compiled_shape(self, batch, seconds: float) -> None:
        """Record that ``batch``'s shape compiled, taking ``seconds``."""
        self._shapes.add(tuple(batch.x.shape))
        self.compile_s += seconds

    def __call__(self, batch, draws):
        return _COMPILED(*self.args, batch.x, batch.energy, batch.score, batch.temperature, draws)

    def fall_back(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        warnings.warn(f"torch.compile of the training step failed, training eagerly ({self.failed})",
                      RuntimeWarning, stacklevel=3)


_COMPILED = None


def adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with torch's fused update (one kernel for all parameters; CPU since torch 2.4, CUDA), or
    the multi-tensor one where fused is not available for these tensors. Both compute Adam; they
    differ only in float rounding. A resumed run takes the flags saved in its checkpoint. Used by
    PITA's trainer and DiKL's (whose CPU runs took torch's default per-parameter loop before)."""
    params = list(params)  # a generator of parameters would be spent by the first attempt
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def _pair_head_parameters(energy_model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The energy network's pair-head parameters (``PairHead``; none for other networks)."""
    return [p for m in energy_model.modules() if isinstance(m, PairHead) for p in m.parameters()]


def _weighted_backward(losses: dict, weights: dict, optimizer) -> torch.Tensor:
    """The weighted total loss; its gradients are written (old ones cleared) only when it is finite."""
    total = sum(weights[k] * v for k, v in losses.items())
    if torch.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        total.backward()
    return total


def _checkpoint(models, emas, optimizer, step, generator, history, cfg) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "net_config": asdict(models.net_config),
        "train_config": asdict(cfg),
        "models": {k: m.state_dict() for k, m in models.modules().items()},
        "ema": {k: e.state_dict() for k, e in emas.items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "history": history,
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (tensors and plain values only; ``weights_only=True``)."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise BadInput(f"checkpoint not found: {path}") from exc
    except Exception as exc:  # a truncated or foreign file: one clear line
        raise BadInput(f"not a readable boltzpath checkpoint: {path} ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise BadInput(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def load_models(
    path: str | Path, target, ema: bool = True, device=None
) -> tuple[ScoreModel | None, EnergyModel]:
    """Rebuild (score | None, energy) from a checkpoint: the EMA weights unless ``ema=False``.
    The file is read onto the CPU (``map_location``), whatever device wrote it, then moved to ``device``."""
    ckpt = read_checkpoint(path)
    net_cfg = from_dict(NetConfig, ckpt["net_config"])
    score, energy = build_models(target, net_cfg, device=device)
    states = ckpt["ema" if ema else "models"]
    for name, module in (("score", score), ("energy", energy)):
        if module is not None:
            module.load_state_dict(states[name])
    return score, energy


def train(
    models: Models,
    buffer: TrainingBuffer,
    cfg: TrainConfig,
    generator: torch.Generator,
    callback: Callable[[dict[str, float]], None] | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    pin_sigma_default: float = 0.01,
    hooks: Any = None,
) -> TrainResult:
    """Train in place; see the module docstring. ``callback(info)`` every ``log_every`` steps.

    Energy pinning anchors U_η(·, σ) at ``cfg.pin_sigma``, or, when that is None, at
    ``pin_sigma_default`` — callers that sample pass their schedule's σ_min, the σ at which the
    annealing stops and U_η is read as the energy.

    ``hooks`` (data-parallel training, ``boltzpath.parallel.ddp_train.DataParallel``; None: one
    process) sets this rank's generator and starting weights, the per-rank batch, averages
    gradients after ``backward()``, averages logged losses, adds every rank's generator state to
    checkpoints and lets only rank 0 write them (the others wait until the file is there).
    """
    if cfg.steps < 0 or cfg.batch_size < 1 or cfg.log_every < 1 or cfg.checkpoint_every < 1:
        raise BadInput("need steps >= 0, batch_size, log_every, checkpoint_every >= 1")
    if cfg.plain_steps < 0:
        raise BadInput(f"train.plain_steps must be >= 0, got {cfg.plain_steps}")
    if models.score is None and cfg.dsm <= 0 and cfg.tsm <= 0:
        raise BadInput("energy-only training needs dsm > 0 or tsm > 0")
    pin_sigma = float(cfg.pin_sigma if cfg.pin_sigma is not None else pin_sigma_default)
    if not pin_sigma > 0:
        raise BadInput(f"pin_sigma must be > 0, got {pin_sigma}")
    modules = models.modules()
    module_params = {k: list(m.parameters()) for k, m in modules.items()}
    params = [p for ps in module_params.values() for p in ps]
    optimizer = adam(params, cfg.lr)
    emas = {k: Ema(m, cfg.ema) for k, m in modules.items()}
    step, history, ckpt = 0, [], None
    path = None if checkpoint_path is None else Path(checkpoint_path)
    if path is not None and resume and path.exists():
        ckpt = read_checkpoint(path)
        for k, m in modules.items():
            m.load_state_dict(ckpt["models"][k])
            emas[k].load_state_dict(ckpt["ema"][k])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        step, history = int(ckpt["step"]), list(ckpt["history"])
    # --- data-parallel hook (boltzpath.parallel): rank generators, identical starting weights
    if hooks is not None:
        hooks.start([*modules.values(), *(e.module for e in emas.values())], generator, ckpt)
    batch_size = cfg.batch_size if hooks is None else hooks.local_batch_size(cfg.batch_size)
    # the plain phase (steps < plain_steps): no force matching, the energy pair head held at zero
    phase_cfgs = {False: cfg, True: replace(cfg, force=0.0)}
    late = _pair_head_parameters(models.energy)
    t0 = time.perf_counter()
    for m in modules.values():
        m.train()
    compiled_by_phase: dict[bool, _CompiledLosses] = {}
    while step < cfg.steps:
        plain = step < cfg.plain_steps
        step_cfg = phase_cfgs[plain]
        weights = {"dsm": cfg.dsm, "tsm": cfg.tsm, "distill": cfg.distill, "pin": cfg.pin,
                   "force": step_cfg.force}
        compiled = None
        if cfg.compile:
            if plain not in compiled_by_phase:
                compiled_by_phase[plain] = _CompiledLosses(models, step_cfg, pin_sigma)
            compiled = compiled_by_phase[plain]
        batch = buffer.sample(batch_size, generator, cfg.augment)
        draws = _draw_noise(models, batch, step_cfg, generator)
        total, losses = None, None
        if compiled is not None and not compiled.failed:
            first_call = compiled.new_shape(batch)
            t_compile = time.perf_counter()
            try:
                losses = compiled(batch, draws)
                total = _weighted_backward(losses, weights, optimizer)  # compiles the backward graph once
            except Exception as exc:  # graceful fallback: recompute this step eagerly, same draws
                compiled.fall_back(exc)
                total = None
            if first_call and total is not None:
                compiled.compiled_shape(batch, time.perf_counter() - t_compile)
        if total is None:
            losses = _loss_terms(
                models, step_cfg, pin_sigma, batch.x, batch.energy, batch.score, batch.temperature, draws
            )
            total = _weighted_backward(losses, weights, optimizer)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite training loss at step {step}: {float(total)}")
        if hooks is not None:  # data-parallel hook: ∇ ← mean over ranks (exact union-batch gradient)
            hooks.after_backward(params)
        if plain:  # the pair head waits for the plain phase to end (Adam skips parameters without grad)
            for p in late:
                p.grad = None
        norms = {k: float(torch.nn.utils.clip_grad_norm_(ps, cfg.grad_clip))
                 for k, ps in module_params.items()}
        optimizer.step()
        for k, m in modules.items():
            emas[k].update(m, step)  # warm-up counted per train() call: a fine-tune restarts it
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            info = {"step": step, "loss": total.item(), "wall_time_s": time.perf_counter() - t0}
            info.update({k: v.item() for k, v in losses.items()})
            info.update({f"grad_norm_{k}": v for k, v in norms.items()})
            if compiled_by_phase:
                info["compile_s"] = round(sum(c.compile_s for c in compiled_by_phase.values()), 3)
            if hooks is not None:  # data-parallel hook: losses averaged over ranks
                info = hooks.reduce_log(info)
            history.append(info)
            if callback is not None:
                callback(info)
        if path is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            state = _checkpoint(models, emas, optimizer, step, generator, history, cfg)
            if hooks is None:
                atomic_torch_save(path, state)
            else:  # data-parallel hook: adds every rank's generator; rank 0 writes, all ranks wait
                hooks.write_checkpoint(path, state)
    ema_models = Models(
        emas["score"].module if "score" in emas else None, emas["energy"].module, models.net_config
    )
    return TrainResult(models, ema_models, step, history)
