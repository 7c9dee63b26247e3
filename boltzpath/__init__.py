"""boltzpath: sampling Boltzmann densities with diffusion models, tested against exact answers."""

from boltzpath.errors import BadInput
from boltzpath.targets import make_target

__version__ = "0.1.0"
__all__ = ["BadInput", "make_target", "__version__"]
