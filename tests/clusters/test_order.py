"""Canonical atom order: one Laplacian per cluster, whatever the input."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.cluster import (
    BodyCenteredCubic,
    Decahedron,
    FaceCenteredCubic,
    HexagonalClosedPacked,
    Icosahedron,
    Octahedron,
    SimpleCubic,
)
from scipy.spatial.transform import Rotation

from diffpy_cbldm.clusters.laplacian import DEFAULT_SIGMA, laplacian
from diffpy_cbldm.clusters.order import (
    ORDERING_RULE,
    ORDERING_TOL,
    canonical_order,
    canonicalize,
)

SURFACES = [(1, 0, 0), (1, 1, 0), (1, 1, 1)]

CLUSTERS = {
    "icosahedron-13": lambda: Icosahedron("Au", 2),
    "icosahedron-55": lambda: Icosahedron("Au", 3),
    "icosahedron-147": lambda: Icosahedron("Au", 4),
    "octahedron-44": lambda: Octahedron("Pt", 4, 1),
    "octahedron-231": lambda: Octahedron("Pt", 7, 0),
    "decahedron-75": lambda: Decahedron("Pd", 2, 2, 1),
    "decahedron-247": lambda: Decahedron("Pd", 4, 2, 1),
    "fcc-block": lambda: FaceCenteredCubic("Cu", SURFACES, (4, 6, 4)),
    "fcc-cube-256": lambda: bulk("Au", "fcc", a=4.08, cubic=True).repeat(4),
    "bcc-block": lambda: BodyCenteredCubic(
        "W", SURFACES[:2], (3, 3), latticeconstant=3.16
    ),
    "hcp-block": lambda: HexagonalClosedPacked(
        "Co",
        [(0, 0, 0, 1), (1, 0, -1, 0), (1, 1, -2, 0)],
        (3, 4, 4),
        latticeconstant=(2.51, 4.07),
    ),
    "sc-rod": lambda: SimpleCubic(
        "Ti", SURFACES, (2, 2, 7), latticeconstant=2.64
    ),
    "fcc-plate": lambda: bulk("Au", "fcc", a=4.08, cubic=True).repeat(
        (5, 5, 1)
    ),
    "random-40": lambda: Atoms(
        "Au40", positions=np.random.default_rng(0).uniform(-6, 6, (40, 3))
    ),
    "dimer": lambda: Atoms("Au2", positions=[[0, 0, 0], [2.5, 0, 0]]),
    "chain": lambda: Atoms(
        "Au5", positions=[[0, 0, 2.5 * i] for i in range(5)]
    ),
}


def _scrambled(atoms, seed):
    """Same cluster: atoms permuted, rotated (odd seeds mirrored), moved."""
    rng = np.random.default_rng(seed)
    out = atoms[rng.permutation(len(atoms))]
    rot = Rotation.random(random_state=seed).as_matrix()
    if seed % 2:
        rot = -rot
    out.positions = out.positions @ rot.T + rng.uniform(-20, 20, size=3)
    return out


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_same_laplacian_for_any_order_pose_and_handedness(name):
    atoms = CLUSTERS[name]()
    reference = laplacian(canonicalize(atoms), DEFAULT_SIGMA, dtype=np.float64)
    for seed in range(4):
        other = canonicalize(_scrambled(atoms, seed))
        L = laplacian(other, DEFAULT_SIGMA, dtype=np.float64)
        np.testing.assert_allclose(L, reference, rtol=0, atol=1e-10)


def test_raw_order_is_not_unique_but_the_matrix_is():
    # Symmetry-equivalent atoms may take each other's rows: the rule
    # fixes the matrix, not which atom of a symmetric set comes first.
    atoms = Icosahedron("Au", 2)
    atoms.set_tags(np.arange(len(atoms)))
    tags = {
        tuple(canonicalize(_scrambled(atoms, s)).get_tags()) for s in range(6)
    }
    assert len(tags) > 1


def test_tiny_jitter_does_not_change_the_matrix():
    atoms = Icosahedron("Au", 4)
    reference = laplacian(canonicalize(atoms), DEFAULT_SIGMA)
    jittered = _scrambled(atoms, 3)
    jittered.positions += np.random.default_rng(9).normal(
        scale=1e-4, size=(len(atoms), 3)
    )
    L = laplacian(canonicalize(jittered), DEFAULT_SIGMA)
    # The jitter itself moves entries by ~1e-3; a change of order would
    # move some by the size of a bond weight (~0.1-1).
    np.testing.assert_allclose(L, reference, rtol=0, atol=1e-2)


@pytest.mark.parametrize("name", ["decahedron-75", "hcp-block", "random-40"])
def test_atoms_sorted_by_distance_from_centroid(name):
    out = canonicalize(CLUSTERS[name]())
    radius = np.linalg.norm(out.positions, axis=1)
    assert np.all(np.diff(radius) > -ORDERING_TOL)


def test_canonicalize_centres_and_keeps_atoms_with_their_symbols():
    rng = np.random.default_rng(3)
    atoms = Atoms(
        "Au10Ag10", positions=rng.uniform(0, 8, (20, 3)), cell=[20, 20, 20]
    )
    out = canonicalize(atoms)
    order = canonical_order(atoms.positions)
    assert sorted(order) == list(range(20))
    np.testing.assert_allclose(out.positions.mean(axis=0), 0, atol=1e-12)
    centred = atoms.positions - atoms.positions.mean(axis=0)
    np.testing.assert_allclose(out.positions, centred[order], atol=1e-12)
    assert out.get_chemical_symbols() == [
        atoms.get_chemical_symbols()[i] for i in order
    ]
    assert out.info["ordering"] == ORDERING_RULE == "radial-v1"
    assert "ordering" not in atoms.info


def test_canonical_order_accepts_atoms_and_arrays():
    atoms = Decahedron("Pd", 2, 1, 0)
    np.testing.assert_array_equal(
        canonical_order(atoms), canonical_order(atoms.positions)
    )


def test_single_atom():
    assert canonical_order([[1.0, 2.0, 3.0]]).tolist() == [0]


def test_nan_raises():
    pos = Icosahedron("Au", 2).positions
    pos[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN.*atom 5"):
        canonical_order(pos)


def test_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(4, 2\)"):
        canonical_order(np.zeros((4, 2)))


def test_empty_raises():
    with pytest.raises(ValueError, match="no atoms"):
        canonical_order(np.zeros((0, 3)))


def test_nonpositive_tolerance_raises():
    with pytest.raises(ValueError, match="tol.*-0.1"):
        canonical_order(np.zeros((2, 3)), tol=-0.1)
