"""Beyond one CPU: the device/dtype policy and torchrun data parallelism (docs/scaling.md).

* ``device``      — ``DevicePolicy``/``resolve_device``: ``auto | cpu | cuda[:i]``, generators on the
  device, float64 log-weights, ``map_location`` loading;
* ``dist``        — process group from torchrun's environment (gloo on CPU, NCCL on CUDA) and the
  collectives used here; rank 0 alone writes files;
* ``ddp_train``   — data-parallel training hooks (exact gradient averaging) for any training loop;
* ``sharded_smc`` — the FK annealing and the bridge tail with their population split over ranks
  (global statistics and resampling);
* ``sharded_mcmc``— chains of any baseline sampler split over ranks, samples and counts gathered;
* ``pita_parallel`` — the PITA ladder's steps shared out over ranks (rank 0 writes the run folder);
* ``launch``      — start R local processes wired like torchrun (tests, benchmarks).
"""

from boltzpath.parallel.device import DevicePolicy, resolve_device
from boltzpath.parallel.dist import DistContext, init_from_env

__all__ = ["DevicePolicy", "DistContext", "init_from_env", "resolve_device"]
