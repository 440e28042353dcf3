"""RMSD after superposition, checked against scipy's rotation fit."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffpy_cbldm.clusters.geometry import rmsd_aligned


@pytest.fixture
def cloud():
    return np.random.default_rng(7).uniform(-5, 5, size=(30, 3))


def test_rotated_translated_copy_has_zero_rmsd(cloud):
    rot = Rotation.random(random_state=1).as_matrix()
    moved = cloud @ rot.T + [3.0, -2.0, 8.0]
    assert rmsd_aligned(moved, cloud) < 1e-12
    assert rmsd_aligned(moved, cloud, allow_reflection=False) < 1e-12


def test_matches_scipy_align_vectors(cloud):
    rng = np.random.default_rng(3)
    rot = Rotation.random(random_state=2).as_matrix()
    other = cloud @ rot.T + rng.normal(scale=0.3, size=cloud.shape)
    a = cloud - cloud.mean(axis=0)
    b = other - other.mean(axis=0)
    # align_vectors finds the rotation minimising sum |b_i - R a_i|^2.
    _, rssd = Rotation.align_vectors(b, a)
    expected = rssd / np.sqrt(len(a))
    got = rmsd_aligned(cloud, other, allow_reflection=False)
    assert got == pytest.approx(expected, rel=1e-9)


def test_mirror_image_needs_reflection(cloud):
    mirror = cloud * [1.0, 1.0, -1.0]
    assert rmsd_aligned(mirror, cloud) < 1e-12
    # A random cloud is chiral: no proper rotation maps it on its image.
    assert rmsd_aligned(mirror, cloud, allow_reflection=False) > 0.5


def test_single_displaced_atom_in_a_large_cloud():
    # One atom of many moved by d: the best fit barely moves the rest,
    # so the RMSD tends to d * sqrt((N - 1) / N) / sqrt(N).
    pos = np.random.default_rng(5).uniform(-20, 20, size=(400, 3))
    moved = pos.copy()
    moved[0] += [0.0, 0.0, 1.0]
    n = len(pos)
    assert rmsd_aligned(moved, pos) == pytest.approx(
        np.sqrt((n - 1) / n) / np.sqrt(n), rel=1e-2
    )


def test_shape_mismatch_raises(cloud):
    with pytest.raises(ValueError, match="same shape"):
        rmsd_aligned(cloud, cloud[:-1])


def test_not_n_by_3_raises(cloud):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        rmsd_aligned(cloud[:, :2], cloud[:, :2])


def test_nan_raises(cloud):
    bad = cloud.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rmsd_aligned(bad, cloud)
