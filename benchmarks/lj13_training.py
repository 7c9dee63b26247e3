"""The LJ-13 training problem that the training-speed benchmarks time (shared by
``bench_train_speed.py`` and ``bench_gpu.py``): a buffer of projected Gaussian configurations with
their true energies and forces, and freshly initialised score/energy networks of a given size.
Speed does not depend on the data's quality, so no sampler is run to make it."""

from __future__ import annotations

import torch


def lj13_training_problem(hidden: int, layers: int, emb: int, analytic_grad: bool, n_buffer: int,
                          device: torch.device | str = "cpu", first_layer_pairs: bool | None = None):
    """(target, buffer, models). The same initial weights for every call with the same sizes
    (``torch.manual_seed(0)``); ``first_layer_pairs`` (None: the networks' default) sets the EGNN's
    first-layer-on-pairs switch of every module, the "before"/"after" toggle of the benchmark."""
    from boltzpath import make_target
    from boltzpath.diffusion.buffer import TrainingBuffer
    from boltzpath.diffusion.train import Models, NetConfig, build_models

    target = make_target("lj13")
    x = target.project(torch.randn(n_buffer, target.dim, generator=torch.Generator().manual_seed(0)))
    buffer = TrainingBuffer.from_target(target, x).to(device)
    net = NetConfig(hidden=hidden, layers=layers, emb_dim=emb, analytic_grad=analytic_grad)
    torch.manual_seed(0)
    models = Models(*build_models(target, net, device=device), net_config=net)
    if first_layer_pairs is not None:
        for module in models.modules().values():
            for m in module.modules():
                if hasattr(m, "first_layer_pairs"):
                    m.first_layer_pairs = first_layer_pairs
                    m.last_layer_h = not first_layer_pairs  # "before" also computes the unused last h'
    return target, buffer, models
