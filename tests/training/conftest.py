"""A tiny real training set and tiny networks for the training tests.

The set is built by the real builder (the 79 icosahedral clusters of 5-60
atoms, complete and incomplete shells, one metal each, two PDFs each:
71 train, 4 val, 4 test), and the
networks are the real CbLDM networks at a few thousand parameters, so
that a stage trains in about a second.
"""

import dataclasses
import json

import pytest

TINY_SET = {"types": ("icosahedral",), "max_atoms": 60, "metals_per_shape": 1}


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine two threads wait on
    each other (measured 10-100x slower steps for these tiny networks)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """Path of a tiny training set built by ``build_dataset``."""
    from diffpy_cbldm.dataset.build import build_dataset

    out = tmp_path_factory.mktemp("tiny-set") / "tiny.h5"
    return build_dataset(out, workers=1, progress=False, **TINY_SET)


def tiny_model(model):
    """A CbLDMConfig of `model`'s conventions with tiny networks."""
    from diffpy_cbldm.model import (
        ConditionVAEConfig,
        ClusterEstimatorConfig,
        DenoiserConfig,
        StructureVAEConfig,
    )

    return dataclasses.replace(
        model,
        condition=ConditionVAEConfig(channels=(8, 8, 8)),
        structure=StructureVAEConfig(
            patch_size=16,
            encoder_channels=(16, 16),
            decoder_channels=(16, 16),
            attention=False,
            prior_hidden=32,
            count_prior=True,
            decoder=model.structure.decoder,
            template_sites=model.structure.template_sites,
            coordinate_hidden=128,
            field_width=32,
            field_frequencies=8,
        ),
        denoiser=DenoiserConfig(
            sample_size=8,
            channels=(16, 16),
            attention=(False, False),
            norm_groups=8,
            attention_head_dim=8,
        ),
        estimator=ClusterEstimatorConfig(channels=(8, 8), hidden=16),
    )


@pytest.fixture(scope="session")
def tiny_config(tiny_set):
    """RunConfig: tiny networks, 2 epochs of batch 8 per stage, fp32."""
    from diffpy_cbldm.training import default_config

    config = default_config(tiny_set)
    config = config.replace(model=tiny_model(config.model))
    return config.with_stage_settings(
        epochs=2, batch_size=8, warmup_steps=2, precision="fp32"
    )


@pytest.fixture
def tiny_config_file(tiny_config, tmp_path):
    """The tiny configuration written as JSON."""
    path = tmp_path / "tiny-config.json"
    path.write_text(json.dumps(tiny_config.to_dict()))
    return path
