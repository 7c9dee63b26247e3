"""boltzpath: sampling Boltzmann densities with diffusion models, tested against exact answers.

The public API (see docs/api.md)::

    import boltzpath
    target = boltzpath.Target(lambda x: 0.5 * (x ** 2).sum(1), dim=2)   # or Target("gmm40")
    samples = boltzpath.sample(target, method="mala", n=1000, seed=0)    # -> Samples
    metrics = boltzpath.evaluate(samples, target=target, reference=...)
    final = boltzpath.pita("gmm40", preset="quick")                     # the PITA ladder
    boltzpath.dikl("gmm40", out="runs/d"); boltzpath.dikl_sample("runs/d", n=10_000)  # DiKL
"""

from boltzpath.api import ConvergenceWarning, Samples, Target, dikl, dikl_sample, evaluate, pita, sample
from boltzpath.errors import BadInput
from boltzpath.targets import make_target

__version__ = "0.1.0"
__all__ = ["BadInput", "ConvergenceWarning", "Samples", "Target", "__version__", "dikl", "dikl_sample",
           "evaluate", "make_target", "pita", "sample"]
