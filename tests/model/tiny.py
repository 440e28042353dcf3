"""Tiny CbLDM configurations: the real shapes, a few channels, fast."""

from dataclasses import replace

from diffpy_cbldm.model.config import (
    CbLDMConfig,
    ConditionVAEConfig,
    DenoiserConfig,
    StructureVAEConfig,
)


def tiny_config(**changes):
    """(6, 500) -> (2, 125) condition, (256, 256) -> (1, 16, 16) latent,
    with a handful of channels per layer."""
    config = CbLDMConfig(
        condition=ConditionVAEConfig(channels=(4, 8, 8)),
        structure=StructureVAEConfig(
            patch_size=16,
            encoder_channels=(8,),
            decoder_channels=(8,),
            decoder_blocks=1,
            prior_hidden=16,
            coordinate_hidden=32,
        ),
        denoiser=DenoiserConfig(
            channels=(8, 16),
            attention=(False, True),
            norm_groups=4,
            attention_head_dim=8,
        ),
    )
    return replace(config, **changes)
