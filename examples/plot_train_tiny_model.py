"""
Train a tiny CbLDM on a tiny training set
=========================================

The four training stages of ``cbldm train`` on the 79 icosahedral
clusters of 5-60 atoms (one metal each, two PDFs each), with networks of
a few thousand parameters and two epochs per stage: the real pipeline at
toy size, in about half a minute. Real training uses the defaults
(``cbldm train --data mmnp-v2.h5 --out run``); see the training guide.
"""

# %%
import dataclasses
import tempfile
from pathlib import Path

import torch

from diffpy_cbldm.dataset.build import build_dataset
from diffpy_cbldm.model import (
    ConditionVAEConfig,
    DenoiserConfig,
)
from diffpy_cbldm.training import default_config, train

torch.set_num_threads(1)
work = Path(tempfile.mkdtemp())
data = build_dataset(
    work / "tiny.h5",
    types=("icosahedral",),
    max_atoms=60,
    metals_per_shape=1,
    workers=1,
    progress=False,
)

# %%
# Tiny networks, same conventions as the training set.
config = default_config(data)
model = dataclasses.replace(
    config.model,
    condition=ConditionVAEConfig(channels=(8, 8, 8)),
    structure=dataclasses.replace(
        config.model.structure,
        encoder_channels=(16,),
        coordinate_hidden=64,
        prior_hidden=32,
        attention=False,
    ),
    denoiser=DenoiserConfig(
        channels=(16, 16),
        attention=(False, False),
        norm_groups=8,
        attention_head_dim=8,
    ),
)
config = config.replace(model=model).with_stage_settings(
    epochs=2, batch_size=8, warmup_steps=2, precision="fp32"
)
weights = train("all", data, work / "run", config, progress=False)
print("weights written to", weights)

# %%
# The weights load like any other set.
from diffpy_cbldm import CbLDMGenerator  # noqa: E402

gen = CbLDMGenerator.from_pretrained(weights, device="cpu")
print(gen, sorted(gen.manifest["metrics"]))
