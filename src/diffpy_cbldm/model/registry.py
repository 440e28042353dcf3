"""The networks by the names weights files and training use."""

from diffpy_cbldm.model.condition_vae import ConditionVAE
from diffpy_cbldm.model.cluster_estimator import ClusterEstimator
from diffpy_cbldm.model.denoiser import LatentDenoiser
from diffpy_cbldm.model.structure_vae import StructureVAE

__all__ = ["MODULES", "build_modules"]

MODULES = {
    "condition_vae": (ConditionVAE, "condition"),
    "structure_vae": (StructureVAE, "structure"),
    "denoiser": (LatentDenoiser, "denoiser"),
    "cluster_estimator": (ClusterEstimator, "estimator"),
}
"""Module name -> (class, field of CbLDMConfig holding its config)."""


def build_modules(config, names=None):
    """Freshly initialised networks of a CbLDMConfig.

    Parameters
    ----------
    config : CbLDMConfig
    names : iterable of str, optional
        Subset of :data:`MODULES` to build; all of them by default.

    Returns
    -------
    dict of str -> torch.nn.Module
    """
    names = list(MODULES) if names is None else list(names)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        raise ValueError(
            f"unknown module name(s) {unknown}; known: {list(MODULES)}"
        )
    return {
        name: MODULES[name][0](getattr(config, MODULES[name][1]))
        for name in names
    }
