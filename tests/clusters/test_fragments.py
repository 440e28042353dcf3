"""Compact fragments: the few-atom clusters ASE's builders make are among
them, each once."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
from diffpy_cbldm.clusters.fragments import FRAGMENT_ATOMS, compact_fragments


def _distances(x):
    d = np.sort(pdist(x))
    return d / d[0]


def _ase_clusters():
    from ase.cluster import Decahedron, Icosahedron, Octahedron
    from ase.lattice.cubic import BodyCenteredCubic, SimpleCubic

    bcc = BodyCenteredCubic("Fe", size=(2, 2, 2)).get_positions()
    # a bcc site and its 8 nearest neighbours
    centre = bcc[np.argmin(np.linalg.norm(bcc - bcc.mean(axis=0), axis=1))]
    nearest = np.argsort(np.linalg.norm(bcc - centre, axis=1))[:9]
    return [
        ("icosahedral", Icosahedron("Cu", noshells=2).get_positions()),
        ("decahedral", Decahedron("Cu", p=2, q=1, r=0).get_positions()),
        ("fcc", Octahedron("Cu", length=3, cutoff=1).get_positions()),
        ("octahedral", Octahedron("Cu", length=2).get_positions()),
        ("sc", SimpleCubic("Cu", size=(2, 2, 2), latticeconstant=2.5)),
        ("bcc", bcc[nearest]),
    ]


@pytest.mark.parametrize("stype, x", _ase_clusters())
def test_ase_small_clusters_are_compact_fragments(stype, x):
    x = np.asarray(getattr(x, "positions", x))
    want = _distances(x)
    found = [
        y
        for y in compact_fragments(stype, [len(x)])
        if np.allclose(_distances(y), want, atol=0.02)
    ]
    assert len(found) == 1, f"{len(x)}-atom {stype}: {len(found)} matches"
    # fragments come in nearest-neighbour units, centred
    (y,) = found
    np.testing.assert_allclose(np.sort(pdist(y))[0], 1.0, atol=0.03)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)


@pytest.mark.parametrize("stype", STRUCTURE_TYPES)
def test_fragments_are_distinct_compact_and_of_the_sizes_asked(stype):
    sizes = range(5, FRAGMENT_ATOMS + 1)
    fragments = compact_fragments(stype, sizes)
    assert fragments
    assert {len(y) for y in fragments} <= set(sizes)
    keys = {(len(y), tuple(np.round(_distances(y), 2))) for y in fragments}
    assert len(keys) == len(fragments)
    for y in fragments:
        d = np.linalg.norm(y[:, None] - y[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        # no two atoms closer than a bond; every atom bonded to another
        assert d.min() > 0.97
        assert d.min(axis=1).max() < 1.45
    # the caller gets copies: the cached fragments stay as they were
    fragments[0][:] = 0.0
    assert np.ptp(compact_fragments(stype, sizes)[0]) > 0


def test_bad_type_and_size_are_named():
    with pytest.raises(ValueError, match="unknown structure type 'bct'"):
        compact_fragments("bct", [7])
    with pytest.raises(ValueError, match=r"2 to 16 atoms; asked for \[17\]"):
        compact_fragments("fcc", [7, 17])
