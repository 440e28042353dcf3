"""The weights that ship inside diffpy-cbldm.

Registered in the package metadata as::

    [project.entry-points."diffpy_cbldm.weights"]
    mmnp-v2 = "diffpy_cbldm.weights.shipped:mmnp_v2"
"""

from importlib.resources import files

__all__ = ["mmnp_v2"]


def mmnp_v2():
    """Directory of ``mmnp-v2``: CbLDM trained on simulated mono-metallic
    nanoparticles (seven structure types, 5-256 atoms)."""
    return files("diffpy_cbldm.weights") / "mmnp_v2"
