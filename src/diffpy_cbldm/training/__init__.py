"""Training CbLDM: the three stages of the paper (Alg. 1-3) and the
cluster estimator.

``train(stage, data, out_dir, config)`` runs one stage or all four, in
one process or under ``torchrun``; checkpoints resume to the same
weights as an uninterrupted run. Names are imported lazily: importing
this package does not import torch.
"""

import importlib

_EXPORTS = {
    "train": "diffpy_cbldm.training.stages",
    "default_config": "diffpy_cbldm.training.stages",
    "TRAIN_STAGES": "diffpy_cbldm.training.stages",
    "STAGES": "diffpy_cbldm.training.config",
    "RunConfig": "diffpy_cbldm.training.config",
    "TrainConfig": "diffpy_cbldm.training.config",
    "VAETrainConfig": "diffpy_cbldm.training.config",
    "DiffusionTrainConfig": "diffpy_cbldm.training.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(
        f"module 'diffpy_cbldm.training' has no attribute {name!r}"
    )


def __dir__():
    return __all__
