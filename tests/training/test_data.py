"""Batches, data order and on-the-fly Laplacians of the training data."""

import numpy as np
import pytest
import torch
from ase.cluster import Icosahedron, Octahedron
from scipy.spatial.distance import pdist, squareform

from diffpy_cbldm.training.data import (
    PairDataset,
    epoch_batches,
    laplacian_batch,
    validation_batches,
)


def _structures(batches, draws):
    return np.concatenate(batches) // draws


def test_an_epoch_visits_every_structure_once():
    batches = epoch_batches(50, 2, 8, seed=1, epoch=0)
    assert [len(b) for b in batches] == [8] * 6 + [2]
    assert sorted(_structures(batches, 2)) == list(range(50))


def test_data_order_is_a_function_of_seed_and_epoch():
    first = epoch_batches(50, 3, 8, seed=1, epoch=4)
    assert epoch_batches(50, 3, 8, seed=1, epoch=4) == first
    assert epoch_batches(50, 3, 8, seed=1, epoch=5) != first
    assert epoch_batches(50, 3, 8, seed=2, epoch=4) != first


def test_each_structure_gets_a_random_draw():
    draws = np.concatenate(
        [np.concatenate(epoch_batches(200, 2, 16, 0, e)) % 2 for e in range(3)]
    )
    # 600 fair coin flips: the share of draw 1 lies within 5 sigma of 1/2.
    assert abs(draws.mean() - 0.5) < 5 * 0.5 / np.sqrt(600)


def test_processes_share_an_epoch_without_overlap():
    ranks = [
        epoch_batches(50, 2, 4, 7, 3, rank=r, world_size=2) for r in range(2)
    ]
    a, b = (set(_structures(batches, 2)) for batches in ranks)
    assert a.isdisjoint(b)
    assert a | b == set(range(50))
    # Both processes take the same number of steps (DDP needs that).
    assert len(ranks[0]) == len(ranks[1])
    # The same structure gets the same draw in every process.
    single = np.concatenate(epoch_batches(50, 2, 4, 7, 3))
    draw_of = dict(zip(single // 2, single % 2))
    for batches in ranks:
        for code in np.concatenate(batches):
            assert draw_of[code // 2] == code % 2


def test_validation_covers_every_pair_once():
    parts = [validation_batches(23, 4, r, 3) for r in range(3)]
    codes = sorted(c for batches in parts for b in batches for c in b)
    assert codes == list(range(23))


def test_pair_dataset_indexes_structures_and_draws():
    per_structure = {"natoms": torch.tensor([13, 55, 147])}
    per_pair = {"pdf": torch.arange(3 * 2 * 4.0).reshape(3, 2, 4)}
    data = PairDataset(2, per_structure, per_pair)
    assert len(data) == 6
    item = data[3]  # structure 1, draw 1
    assert item["natoms"] == 55
    assert torch.equal(item["pdf"], per_pair["pdf"][1, 1])


def test_pair_dataset_refuses_mismatched_tensors():
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        PairDataset(2, {"natoms": torch.zeros(3)}, {"pdf": torch.zeros(2, 2)})


def _definition(positions, sigma, size):
    """L = D - W with W_ij = exp(-d_ij^2 / 2 sigma^2), W_ii = 0, padded."""
    w = np.exp(-(squareform(pdist(positions)) ** 2) / (2 * sigma**2))
    np.fill_diagonal(w, 0.0)
    out = np.zeros((size, size))
    n = len(positions)
    out[:n, :n] = np.diag(w.sum(axis=1)) - w
    return out


def test_laplacians_follow_the_definition():
    clusters = [
        Icosahedron("Pt", 2, latticeconstant=3.92),
        Octahedron("Cu", 4, 1, latticeconstant=3.61),
        Icosahedron("Au", 3, latticeconstant=4.08),
    ]
    size, sigma = 64, 2.0
    positions = torch.zeros(len(clusters), size, 3)
    natoms = torch.tensor([len(a) for a in clusters])
    for k, atoms in enumerate(clusters):
        positions[k, : len(atoms)] = torch.tensor(atoms.get_positions())
    L = laplacian_batch(positions, natoms, sigma, size)
    assert L.shape == (3, size, size) and L.dtype == torch.float32
    for k, atoms in enumerate(clusters):
        expected = _definition(atoms.get_positions(), sigma, size)
        np.testing.assert_allclose(L[k].numpy(), expected, atol=2e-5)
