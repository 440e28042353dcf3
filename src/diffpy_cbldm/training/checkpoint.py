"""Checkpoints of a training stage: weights, EMA, optimiser, schedule and
every random state, written atomically, so that a killed run resumes to
the same weights as one that was never interrupted.

Each stage folder holds

``last.pt``
    The full training state after the last finished epoch (or a
    mid-epoch step): what :func:`load_checkpoint` resumes from.
``best.pt``
    The EMA weights of the epoch with the lowest validation loss: what
    the next stage and the exported weights use.

Both carry the run configuration. They are read with
``torch.load(weights_only=True)``: only tensors and plain Python values
are stored.
"""

import copy
import hashlib
import random
from pathlib import Path

import numpy as np

from diffpy_cbldm.atomic import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "EMA",
    "capture_rng",
    "file_sha256",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "diffpy-cbldm training checkpoint"
CHECKPOINT_VERSION = 1


class EMA:
    """Exponential moving average of a module's weights and buffers.

    After each optimiser step, ``ema = d * ema + (1 - d) * weights`` with
    ``d = min(decay, (1 + n) / (10 + n))`` at update ``n``: the short
    warm-up keeps the first updates from being dominated by the random
    initial weights. Integer buffers are copied.

    Parameters
    ----------
    module : torch.nn.Module
        The trained module (not a DDP wrapper); it is deep-copied.
    decay : float
        Target decay in [0, 1).
    """

    def __init__(self, module, decay):
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def update(self, module):
        """Move the average towards the current weights of `module`."""
        import torch

        n = self.updates
        decay = min(self.decay, (1 + n) / (10 + n))
        with torch.no_grad():
            current = module.state_dict()
            for name, average in self.module.state_dict().items():
                value = current[name]
                if average.is_floating_point():
                    average.lerp_(value.to(average.dtype), 1.0 - decay)
                else:
                    average.copy_(value)
        self.updates += 1

    def state_dict(self):
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def capture_rng(device=None):
    """The global random states of torch, numpy and Python.

    Returns
    -------
    dict
        Plain values and tensors only (loadable with
        ``weights_only=True``).
    """
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state, device=None):
    """Inverse of :func:`capture_rng`."""
    import torch

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path, state):
    """Write `state` with ``torch.save``, atomically.

    Parameters
    ----------
    path : path-like
    state : dict
        Tensors and plain Python values; ``format`` and ``version`` are
        added.
    """
    import torch

    state = dict(state, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        When `path` does not exist.
    ValueError
        When it is not a checkpoint of this package or of another version.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT!r} file")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint version {state.get('version')!r}; this "
            f"package reads version {CHECKPOINT_VERSION}"
        )
    return state


def file_sha256(path):
    """SHA-256 of a file's bytes, to tie a stage to the weights it used."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
