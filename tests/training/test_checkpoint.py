"""EMA, random states, learning-rate schedule and checkpoint files."""

import math
import random

import numpy as np
import pytest
import torch

from diffpy_cbldm.training.checkpoint import (
    EMA,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from diffpy_cbldm.training.loop import WarmupCosine


def test_ema_follows_the_geometric_average():
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    expected = 0.0
    for n in range(40):
        ema.update(net)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * 1.0
    assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    # Far from 1 after 40 steps of decay 0.9 would be a bug: 0.9^~32.
    assert 1 - expected == pytest.approx(
        math.prod(min(0.9, (1 + n) / (10 + n)) for n in range(40)),
        rel=1e-6,
    )


def test_ema_is_a_copy_and_survives_its_state_dict():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.5)
    assert ema.module is not net
    assert not any(p.requires_grad for p in ema.module.parameters())
    ema.update(net)
    other = EMA(torch.nn.Linear(3, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    assert torch.equal(other.module.weight, ema.module.weight)


def test_random_states_round_trip():
    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_warmup_then_cosine_to_the_floor():
    f = WarmupCosine(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1)


def test_checkpoint_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 3, "w": torch.ones(2)})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="other.pt is not a"):
        load_checkpoint(path)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(path)
