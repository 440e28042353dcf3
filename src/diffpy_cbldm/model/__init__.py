"""The CbLDM networks and the sampler.

``ConditionVAE`` (PDF -> latent condition), ``StructureVAE`` (Laplacian
<-> latent, prior conditioned on the PDF), ``LatentDenoiser`` (noise
prediction in the latent space), ``ClusterEstimator`` (PDF -> atom count
and structure type)
and ``CbLDMPipeline`` (the samplers).
Names are imported lazily: importing this package does not import torch.
"""

import importlib

_EXPORTS = {
    "CbLDMConfig": "diffpy_cbldm.model.config",
    "ConditionVAEConfig": "diffpy_cbldm.model.config",
    "StructureVAEConfig": "diffpy_cbldm.model.config",
    "ClusterEstimatorConfig": "diffpy_cbldm.model.config",
    "ClusterEstimator": "diffpy_cbldm.model.cluster_estimator",
    "DenoiserConfig": "diffpy_cbldm.model.config",
    "ConditionVAE": "diffpy_cbldm.model.condition_vae",
    "StructureVAE": "diffpy_cbldm.model.structure_vae",
    "LatentDenoiser": "diffpy_cbldm.model.denoiser",
    "CbLDMPipeline": "diffpy_cbldm.model.pipeline",
    "blend_prior": "diffpy_cbldm.model.pipeline",
    "make_scheduler": "diffpy_cbldm.model.pipeline",
    "MODULES": "diffpy_cbldm.model.registry",
    "build_modules": "diffpy_cbldm.model.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(
        f"module 'diffpy_cbldm.model' has no attribute {name!r}"
    )


def __dir__():
    return __all__
