"""The device/dtype policy: where tensors live and in which precision each kind of number is kept.

One object, ``DevicePolicy``, is built once from the user's ``--device auto|cpu|cuda[:i]`` (or
``device=`` in the Python API) and passed down; samplers, targets, networks, training and SMC read
it instead of scattering ``.cpu()``/``.cuda()`` calls.

Rules (SPEC §1):

* ``auto`` → ``cuda:<local rank>`` when a GPU is visible, else ``cpu``; ``cuda[:i]`` without a GPU
  (or with fewer than i+1) is ``BadInput``, never a silent fall-back;
* random generators live on the compute device (``policy.generator(seed)``), so noise is drawn
  where it is used — no host→device copy per step in hot loops;
* networks: float32 parameters; ``policy.autocast()`` enables bfloat16 autocast on CUDA only when
  ``mixed_precision=True`` (a no-op on CPU and by default — the energy model's double backward and
  the FK divergence are precision-sensitive, so mixed precision is opt-in);
* log-weights, log-sum-exp and log Z stay float64 (``policy.weight_dtype``) on every device;
* checkpoints are read with ``map_location=policy.device`` (``load_state``): a file written on a
  GPU loads on a CPU and back.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from boltzpath.errors import BadInput

DEVICE_CHOICES = "auto | cpu | cuda | cuda:<index>"


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:i`` (or a ``torch.device``) → a usable ``torch.device``.

    ``auto`` and a bare ``cuda`` pick ``cuda:<local_rank>`` (``LOCAL_RANK`` from torchrun, else 0)
    when CUDA is available; ``auto`` falls back to the CPU, an explicit CUDA request does not.
    """
    if spec is None:
        spec = "auto"
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise BadInput(f"device must be one of {DEVICE_CHOICES}, got {spec!r}")
    name = spec.strip().lower()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        name = "cuda"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BadInput(f"device {spec!r} requested but no CUDA GPU is available (use cpu or auto)")
        index = local_rank % torch.cuda.device_count() if name == "cuda" else _index(name, spec)
        if index >= torch.cuda.device_count():
            raise BadInput(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) visible")
        return torch.device("cuda", index)
    raise BadInput(f"device must be one of {DEVICE_CHOICES}, got {spec!r}")


def _index(name: str, spec: str) -> int:
    try:
        index = int(name.split(":", 1)[1])
    except ValueError:
        raise BadInput(f"device must be one of {DEVICE_CHOICES}, got {spec!r}") from None
    if index < 0:
        raise BadInput(f"device index must be >= 0, got {spec!r}")
    return index


@dataclass(frozen=True)
class DevicePolicy:
    """Where (``device``) and how precisely (``net_dtype``, ``weight_dtype``) to compute."""

    device: torch.device
    net_dtype: torch.dtype = torch.float32
    weight_dtype: torch.dtype = torch.float64
    mixed_precision: bool = False

    @classmethod
    def from_spec(cls, spec: str | torch.device | DevicePolicy | None = "auto",
                  mixed_precision: bool = False) -> DevicePolicy:
        if isinstance(spec, DevicePolicy):
            return spec
        return cls(resolve_device(spec), mixed_precision=bool(mixed_precision))

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def name(self) -> str:
        return str(self.device)

    def generator(self, seed: int) -> torch.Generator:
        """A seeded generator on the compute device (CUDA generators for CUDA tensors)."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def tensor(self, data: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``data`` as a tensor on the device (``dtype`` default: the network dtype for floats)."""
        t = torch.as_tensor(data)
        if dtype is None and t.is_floating_point():
            dtype = self.net_dtype
        return t.to(device=self.device, dtype=dtype)

    def module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a network to the device, parameters in ``net_dtype``."""
        return module.to(device=self.device, dtype=self.net_dtype)

    def autocast(self):
        """bfloat16 autocast on CUDA when ``mixed_precision``; otherwise a no-op context."""
        if self.is_cuda and self.mixed_precision:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"device": self.name, "net_dtype": str(self.net_dtype).replace("torch.", ""),
                                "weight_dtype": str(self.weight_dtype).replace("torch.", ""),
                                "mixed_precision": self.mixed_precision}
        if self.is_cuda:
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


def load_state(path: str | Path, device: str | torch.device | DevicePolicy = "cpu") -> Any:
    """``torch.load(path, map_location=device, weights_only=True)``: device-portable checkpoints."""
    dev = device.device if isinstance(device, DevicePolicy) else resolve_device(device)
    return torch.load(Path(path), map_location=dev, weights_only=True)


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device a generator draws on (CPU when None)."""
    return torch.device("cpu") if generator is None else torch.device(generator.device)
