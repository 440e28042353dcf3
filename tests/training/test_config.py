"""Training configuration: validation, JSON round trip, differences."""

import json

import pytest

from diffpy_cbldm.model import CbLDMConfig
from diffpy_cbldm.training.config import (
    DiffusionTrainConfig,
    RunConfig,
    TrainConfig,
    VAETrainConfig,
    config_differences,
)

from .conftest import tiny_model


@pytest.fixture
def tiny_config():
    """Default stage settings, tiny networks (no training set needed)."""
    return RunConfig(model=tiny_model(CbLDMConfig()))


def test_run_config_survives_json(tiny_config):
    text = json.dumps(tiny_config.to_dict())
    again = RunConfig.from_dict(json.loads(text))
    assert again == tiny_config


def test_stage_settings_change_only_the_stages_named(tiny_config):
    changed = tiny_config.with_stage_settings(("structure",), epochs=7)
    assert changed.structure.epochs == 7
    assert changed.condition == tiny_config.condition
    assert changed.diffusion == tiny_config.diffusion


def test_differences_name_the_dotted_field(tiny_config):
    old = tiny_config.to_dict()
    new = tiny_config.with_stage_settings(("condition",), lr=0.5).to_dict()
    assert config_differences(old, new) == [
        f"condition.lr: {tiny_config.condition.lr!r} -> 0.5"
    ]
    assert config_differences(old, old) == []


def test_kl_weight_warms_up_linearly():
    cfg = VAETrainConfig(kl_warmup_epochs=2.0)
    # 10 steps per epoch: full weight from step 20 on.
    assert cfg.kl_weight(1e-3, 0, 10) == pytest.approx(1e-3 / 20)
    assert cfg.kl_weight(1e-3, 9, 10) == pytest.approx(1e-3 / 2)
    assert cfg.kl_weight(1e-3, 19, 10) == pytest.approx(1e-3)
    assert cfg.kl_weight(1e-3, 500, 10) == pytest.approx(1e-3)
    assert VAETrainConfig().kl_weight(1e-3, 0, 10) == 1e-3


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", 0),
        ("lr", -1e-3),
        ("lr", float("nan")),
        ("weight_decay", -0.1),
        ("optimizer", "sgd"),
        ("warmup_steps", -1),
        ("min_lr_ratio", 1.5),
        ("ema_decay", 1.0),
        ("precision", "fp16"),
        ("grad_clip", 0.0),
        ("seed", -3),
        ("num_workers", -1),
        ("checkpoint_minutes", 0),
    ],
)
def test_bad_setting_is_named(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        TrainConfig(**{field: value})


def test_bad_kl_warmup_is_named():
    with pytest.raises(ValueError, match="kl_warmup_epochs=-1"):
        VAETrainConfig(kl_warmup_epochs=-1)


def test_bad_latent_target_is_named():
    with pytest.raises(ValueError, match="latent='mode'"):
        DiffusionTrainConfig(latent="mode")


def test_bad_split_is_named(tiny_config):
    with pytest.raises(ValueError, match="split='by-size'"):
        tiny_config.replace(split="by-size")


def test_stage_of_wrong_kind_is_refused(tiny_config):
    with pytest.raises(ValueError, match="must be a DiffusionTrainConfig"):
        tiny_config.replace(diffusion=TrainConfig())


def test_unknown_key_is_named(tiny_config):
    values = tiny_config.to_dict()
    values["condition"]["learning_rate"] = 1e-3
    with pytest.raises(ValueError, match="learning_rate"):
        RunConfig.from_dict(values)


def test_unknown_stage_is_named(tiny_config):
    with pytest.raises(ValueError, match="'decoder'"):
        tiny_config.stage("decoder")
