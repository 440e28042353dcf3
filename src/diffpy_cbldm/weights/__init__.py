"""Trained CbLDM weights: discovery, verified loading, saving.

``available()`` lists every installed set (entry-point group
``diffpy_cbldm.weights``), ``load_weights(name_or_path)`` returns the
configuration and the networks after checking every file's sha256, and
``save_weights`` writes safetensors files plus a JSON manifest. Importing
this package does not import torch.
"""

from diffpy_cbldm.weights.io import load_weights, read_manifest, save_weights
from diffpy_cbldm.weights.registry import (
    ENTRY_POINT_GROUP,
    WeightsError,
    available,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "WeightsError",
    "available",
    "load_weights",
    "read_manifest",
    "save_weights",
]
