"""Bonds of a cluster: connected parts, and picking sites that are one
piece."""

import numpy as np
import pytest
from ase.cluster import FaceCenteredCubic
from ase.lattice.cubic import BodyCenteredCubic

from diffpy_cbldm.clusters.bonds import (
    bonded_neighbours,
    connected_parts,
    connected_selection,
    nearest_neighbour_distance,
)


def test_nearest_neighbour_distance_of_a_lattice():
    fcc = FaceCenteredCubic(
        "Cu", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], [3, 3, 3], 3.61
    ).positions
    assert nearest_neighbour_distance(fcc) == pytest.approx(3.61 / 2**0.5)
    with pytest.raises(ValueError, match="two atoms"):
        nearest_neighbour_distance([[0.0, 0.0, 0.0]])


def test_connected_parts_counts_pieces_and_strays():
    fcc = FaceCenteredCubic(
        "Cu", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], [4, 4, 3], 3.61
    ).positions
    bcc = BodyCenteredCubic("Fe", size=(3, 3, 3)).positions
    assert connected_parts(fcc) == (1, 0)
    assert connected_parts(bcc) == (1, 0)
    # a second, smaller copy 30 Å away, and one atom pulled 10 Å out
    small = fcc[:13] + [30.0, 0.0, 0.0]
    assert connected_parts(np.vstack([fcc, small])) == (2, 13)
    pulled = fcc.copy()
    pulled[0] += [10.0, 10.0, 10.0]
    assert connected_parts(pulled) == (2, 1)
    # two fcc planes one lattice constant (1.41 nn) apart: bonded only
    # when the bond reaches the second shell
    a = 3.61
    plane = np.array(
        [
            [i * a / 2, j * a / 2, 0.0]
            for i in range(4)
            for j in range(4)
            if (i + j) % 2 == 0
        ]
    )
    planes = np.vstack([plane, plane + [0.0, 0.0, a]])
    assert connected_parts(planes) == (2, 8)
    assert connected_parts(planes, bond_factor=1.5) == (1, 0)
    assert connected_parts([[0.0, 0.0, 0.0]]) == (1, 0)


def test_bonded_neighbours_of_an_fcc_ball():
    fcc = (
        FaceCenteredCubic(
            "Cu", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], [4, 4, 3], 1.0
        ).positions
        * 2**0.5
    )  # nearest neighbours at 1
    neighbours = bonded_neighbours(fcc, 1.3)
    counts = np.array([len(n) for n in neighbours])
    centre = np.argmin(np.linalg.norm(fcc - fcc.mean(axis=0), axis=1))
    assert counts[centre] == 12
    assert counts.max() == 12 and counts.min() >= 3
    for i, others in enumerate(neighbours):
        d = np.linalg.norm(fcc[others] - fcc[i], axis=1)
        assert np.allclose(d, 1.0)
        assert all(i in neighbours[j] for j in others)
    assert [len(n) for n in bonded_neighbours([[0.0, 0.0, 0.0]], 1.3)] == [0]


def line(m):
    """Neighbour lists of `m` sites on a line, one apart."""
    return bonded_neighbours(np.c_[np.arange(m), np.zeros((m, 2))], 1.3)


def test_connected_top_sites_are_kept():
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.2, 0.0])
    selected, replaced = connected_selection(scores, 3, line(6))
    assert selected.tolist() == [1, 2, 3] and replaced == 0
    selected, replaced = connected_selection(scores, 6, line(6))
    assert selected.tolist() == [1, 2, 3, 4, 0, 5] and replaced == 0


def test_stray_sites_are_replaced_by_the_best_bonded_ones():
    # sites 0..9 on a line; the top 4 are 2, 3, 4 and a stray 8
    scores = np.array([0.0, 0.5, 0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.85, 0.4])
    selected, replaced = connected_selection(scores, 4, line(10))
    # the part {2, 3, 4} grows by its best bonded site: 1 (0.5) beats 5
    assert selected.tolist() == [2, 3, 4, 1] and replaced == 1
    assert connected_parts(np.c_[selected, np.zeros((4, 2))]) == (1, 0)
    # of two equal parts the one with the best site is kept
    scores = np.array([0.9, 0.8, 0.0, 0.0, 0.85, 0.7])
    selected, replaced = connected_selection(scores, 4, line(6))
    assert selected.tolist() == [0, 1, 2, 3] and replaced == 2


def test_growth_takes_back_dropped_top_sites_it_reaches():
    # top 4: {2, 3}, {5}, {7}; {2, 3} grows by 4, which bonds 5 back
    scores = np.array([0.0, 0.05, 0.9, 0.8, 0.1, 0.85, 0.0, 0.7, 0.0])
    selected, replaced = connected_selection(scores, 4, line(9))
    assert selected.tolist() == [2, 5, 3, 4] and replaced == 1


def test_connected_selection_rejects_bad_input():
    with pytest.raises(ValueError, match="cannot select 0 of 3"):
        connected_selection([1.0, 2.0, 3.0], 0, line(3))
    with pytest.raises(ValueError, match="cannot select 4 of 3"):
        connected_selection([1.0, 2.0, 3.0], 4, line(3))
    with pytest.raises(ValueError, match="3 scores for 4"):
        connected_selection([1.0, 2.0, 3.0], 2, line(4))


def test_growth_stops_where_the_bonds_end():
    # two lines of 3 sites, 10 apart: a part cannot grow past its line
    x = np.c_[np.arange(3.0), np.zeros((3, 2))]
    x = np.vstack([x, x + [0.0, 10.0, 0.0]])
    scores = np.array([0.9, 0.8, 0.1, 0.0, 0.85, 0.0])
    selected, replaced = connected_selection(
        scores, 4, bonded_neighbours(x, 1.3)
    )
    assert selected.tolist() == [0, 1, 2] and replaced == 1
