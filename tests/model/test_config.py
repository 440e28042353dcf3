"""Architecture configurations: defaults, consistency, JSON round trip."""

import json
from dataclasses import replace

import pytest

from diffpy_cbldm.model.config import (
    CbLDMConfig,
    ConditionVAEConfig,
    DenoiserConfig,
    StructureVAEConfig,
)


def test_default_shapes_are_the_papers():
    config = CbLDMConfig()
    assert config.condition.latent_shape == (2, 125)  # from (6, 500)
    assert config.structure.latent_shape == (1, 16, 16)
    assert config.structure.size == config.conventions.max_atoms == 256
    assert config.num_train_timesteps == 1000
    assert config.beta_schedule == "squaredcos_cap_v2"


def test_round_trip_through_json():
    config = CbLDMConfig(latent_scale=0.7)
    back = CbLDMConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config


def test_rejects_mismatched_condition_size():
    config = CbLDMConfig()
    with pytest.raises(ValueError, match="denoiser.condition_dim=100"):
        replace(config, denoiser=replace(config.denoiser, condition_dim=100))


def test_rejects_structure_size_other_than_max_atoms():
    config = CbLDMConfig()
    s = replace(
        config.structure,
        size=128,
        encoder_channels=(8,),
        decoder_channels=(8,),
    )
    with pytest.raises(ValueError, match="structure.size=128"):
        replace(
            config,
            structure=s,
            denoiser=replace(config.denoiser, sample_size=s.latent_size),
        )


def test_rejects_unknown_field():
    d = CbLDMConfig().to_dict()
    d["structure"]["dropout"] = 0.1
    with pytest.raises(ValueError, match="dropout"):
        CbLDMConfig.from_dict(d)


def test_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="beta_schedule='cosine'"):
        CbLDMConfig(beta_schedule="cosine")


def test_rejects_bad_latent_scale():
    with pytest.raises(ValueError, match="latent_scale"):
        CbLDMConfig(latent_scale=0.0)


def test_condition_length_must_divide():
    with pytest.raises(ValueError, match="n_points=3001"):
        ConditionVAEConfig(n_points=3001)


def test_structure_patches_must_tile_the_matrix():
    with pytest.raises(ValueError, match="patch_size"):
        StructureVAEConfig(patch_size=24)


def test_decoder_must_return_to_patch_grid():
    with pytest.raises(ValueError, match="decoder must return"):
        StructureVAEConfig(decoder_channels=(8, 8))


def test_denoiser_attention_per_level():
    with pytest.raises(ValueError, match="one per level"):
        DenoiserConfig(attention=(True,))


def test_denoiser_channels_divisible_by_groups():
    with pytest.raises(ValueError, match="norm_groups"):
        DenoiserConfig(channels=(24, 48, 48), norm_groups=16)


def test_rejects_non_integer_channels():
    with pytest.raises(ValueError, match="channels"):
        ConditionVAEConfig(channels=(32, 64.0, 64))


@pytest.mark.parametrize("name", ["attention", "count_prior"])
def test_structure_switches_must_be_booleans(name):
    with pytest.raises(ValueError, match=f"{name} must be True or False"):
        StructureVAEConfig(**{name: 1})


def test_weights_from_before_the_count_prior_load_without_it():
    # Manifests written before the field existed do not mention it.
    d = CbLDMConfig().to_dict()
    del d["structure"]["count_prior"]
    assert CbLDMConfig.from_dict(d).structure.count_prior is False
