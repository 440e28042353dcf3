"""The weights that ship inside diffpy-cbldm.

Registered in the package metadata as::

    [project.entry-points."diffpy_cbldm.weights"]
    mmnp-v1 = "diffpy_cbldm.weights.shipped:mmnp_v1"
"""

from importlib.resources import files

__all__ = ["mmnp_v1"]


def mmnp_v1():
    """Directory of ``mmnp-v1``: CbLDM trained on simulated mono-metallic
    nanoparticles (seven structure types, 5-256 atoms)."""
    return files("diffpy_cbldm.weights") / "mmnp_v1"
