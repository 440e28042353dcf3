"""Data-parallel training across processes, launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in each
process; :func:`setup` reads them, joins the process group (NCCL on GPUs,
gloo on CPUs) and picks the device. Without them the run is a single
process and nothing here touches ``torch.distributed``.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Context", "setup"]

logger = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Context:
    """Where this process stands in a (possibly single-process) run.

    Attributes
    ----------
    rank, world_size : int
        This process's index and the number of processes.
    device : torch.device
        The device this process trains on.
    distributed : bool
        True when a process group is active (``torchrun``).
    owns_group : bool
        True when :func:`setup` created the process group (and
        :meth:`close` destroys it).
    """

    rank: int
    world_size: int
    device: object
    distributed: bool
    owns_group: bool = False

    @property
    def is_main(self):
        """Whether this process writes files and shows progress."""
        return self.rank == 0

    def barrier(self):
        """Wait for every process (no-op for a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, values):
        """Element-wise sum of a float64 tensor over all processes."""
        if self.distributed:
            import torch.distributed as dist

            values = values.to(self.device)
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values.cpu()

    def gather_objects(self, obj):
        """List of `obj` from every process, in rank order."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self):
        """Leave the process group if :func:`setup` created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={value!r} is not an integer"
        ) from None


def native_bfloat16(device):
    """Whether `device` (a torch.device) computes in bfloat16 natively:
    a CUDA GPU that supports it, or a CPU whose ``/proc/cpuinfo`` flags
    list ``avx512_bf16`` or ``amx_bf16`` (Linux; False where the flags
    cannot be read). Without it bfloat16 autocast converts every
    operand and trains slower than float32
    (docs/benchmarks/training_throughput.rst)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def setup(device=None):
    """Join the ``torchrun`` process group, if any, and choose a device.

    Parameters
    ----------
    device : {"cpu", "cuda"} or None
        None uses CUDA when available, else the CPU. Under ``torchrun``
        with CUDA each process takes GPU ``LOCAL_RANK``.

    Returns
    -------
    Context

    Raises
    ------
    ValueError
        For an unknown device, or "cuda" when no GPU is visible.
    """
    import torch

    if device is not None and device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but no GPU is visible")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    distributed = world_size > 1
    owns_group = False
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            owns_group = True
            backend = "nccl" if device == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            logger.info(
                "process %d of %d joined the %s process group",
                rank,
                world_size,
                backend,
            )
    return Context(
        rank=rank,
        world_size=world_size,
        device=dev,
        distributed=distributed,
        owns_group=owns_group,
    )
