"""Morse relaxation, checked against ASE's MorsePotential and FIRE."""

import numpy as np
import pytest
import torch
from ase.calculators.morse import MorsePotential
from ase.cluster import FaceCenteredCubic
from ase.optimize import FIRE

from diffpy_cbldm.clusters.relax import (
    morse_energy,
    morse_forces,
    relax_clusters,
)

NN = 3.61 / np.sqrt(2)
ASE = {"rho0": 6.0, "rcut1": 1.9, "rcut2": 2.7}
"""ASE's default Morse parameters; the package's own are stiffer and
shorter-ranged, so both are tested."""


@pytest.fixture
def rattled():
    """A 43-atom Cu cluster with 0.2 Å of random displacement, so that
    pairs sit in the core, the cutoff region and beyond."""
    atoms = FaceCenteredCubic(
        "Cu", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], [3, 3, 2], 3.61
    )
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(0, 0.2, atoms.positions.shape)
    return atoms


@pytest.mark.parametrize(
    "params", [ASE, {"rho0": 14.0, "rcut1": 1.2, "rcut2": 1.35}]
)
def test_energy_and_forces_match_ase(rattled, params):
    rattled.calc = MorsePotential(r0=NN, **params)
    x = torch.tensor(rattled.positions)[None]
    assert float(morse_energy(x, NN, **params)[0]) == pytest.approx(
        rattled.get_potential_energy(), rel=1e-10
    )
    f = morse_forces(x, NN, **params)[0].numpy()
    ref = rattled.get_forces()
    assert np.abs(f - ref).max() < 1e-10 * np.abs(ref).max()


def test_forces_are_minus_the_energy_gradient_with_padding(rattled):
    x = torch.zeros(2, 50, 3, dtype=torch.float64)
    x[0, :43] = torch.tensor(rattled.positions)
    x[1, :20] = torch.tensor(rattled.positions[:20]) * 1.05
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[0, :43] = mask[1, :20] = True
    r0 = torch.tensor([NN, 2.6], dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    morse_energy(y, r0, mask).sum().backward()
    f = morse_forces(x, r0, mask)
    assert torch.allclose(f, -y.grad, atol=1e-10)
    assert torch.all(f[~mask] == 0)


def test_relaxation_follows_ase_fire_step_for_step(rattled):
    start = rattled.positions.copy()
    rattled.calc = MorsePotential(r0=NN, **ASE)
    opt = FIRE(rattled, logfile=None)
    opt.run(fmax=0.05, steps=300)
    (x,), (info,) = relax_clusters([start], NN, rescale=False, **ASE)
    assert info["converged"] and info["fmax"] < 0.05
    assert info["steps"] == opt.nsteps
    assert np.abs(x - rattled.positions).max() < 1e-9


def _nearest(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def test_rescaled_clusters_have_the_requested_neighbour_distance(rattled):
    rng = np.random.default_rng(1)
    clusters = [rattled.positions, rng.normal(0, 3, (30, 3)), np.zeros((1, 3))]
    out, info = relax_clusters(clusters, [2.5, 2.9, 2.7])
    assert [len(x) for x in out] == [43, 30, 1]
    assert np.median(_nearest(out[0])) == pytest.approx(2.5, rel=1e-12)
    # A random gas keeps loose atoms; the bonded ones set the scale.
    nearest = _nearest(out[1])
    bonded = nearest[np.abs(nearest / 2.9 - 1) < 0.2]
    assert len(bonded) > 10
    assert np.median(bonded) == pytest.approx(2.9, rel=1e-12)
    # Relaxing lowers the energy and leaves the centroid where it was.
    before = morse_energy(torch.tensor(clusters[1])[None], 2.9)
    (x,), _ = relax_clusters([clusters[1]], 2.9, rescale=False)
    assert float(morse_energy(torch.tensor(x)[None], 2.9)) < float(before)
    assert np.allclose(x.mean(axis=0), clusters[1].mean(axis=0))
    assert info[2]["steps"] == 0


def test_loose_atoms_do_not_shrink_the_cluster():
    # A bonded dimer and four atoms far out of the potential's reach:
    # scaling by the median of all nearest-neighbour distances would
    # squeeze the dimer to a fraction of an ångström.
    x = np.array(
        [
            [0, 0, 0],
            [2.6, 0, 0],
            [30, 0, 0],
            [0, 30, 0],
            [0, 0, 30.0],
            [40, 40, 40],
        ]
    )
    (y,), _ = relax_clusters([x], 2.7)
    assert np.linalg.norm(y[1] - y[0]) == pytest.approx(2.7, rel=1e-12)


@pytest.mark.parametrize(
    "clusters, nn, options, match",
    [
        ([np.zeros((4, 2))], 2.7, {}, r"cluster 0: expected \(n, 3\)"),
        ([np.full((4, 3), np.nan)], 2.7, {}, "cluster 0: non-finite"),
        ([np.eye(3)], 0.0, {}, "must be positive"),
        ([np.eye(3)], 2.7, {"tolerance": 1}, "unknown relaxation option"),
    ],
)
def test_bad_input_is_named(clusters, nn, options, match):
    with pytest.raises(ValueError, match=match):
        relax_clusters(clusters, nn, **options)


def test_scale_to_nn_scales_about_the_centroid():
    from ase.cluster import Octahedron

    from diffpy_cbldm.clusters.relax import scale_to_nn

    x = Octahedron("Cu", 4).positions + 5.0
    y = scale_to_nn(x, 3.0)
    d = np.linalg.norm(y[:, None] - y[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.median(d.min(axis=1)) == pytest.approx(3.0, rel=1e-12)
    np.testing.assert_allclose(y.mean(0), x.mean(0), atol=1e-12)
    # a loose atom far away: with a window it does not set the scale
    loose = np.vstack([x, [[40.0, 0.0, 0.0]]])
    z = scale_to_nn(loose, 2.6, window=0.2)
    d = np.linalg.norm(z[:-1, None] - z[None, :-1], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.median(d.min(axis=1)) == pytest.approx(2.6, rel=1e-12)
    # no atom in the window, or a single atom: unchanged
    np.testing.assert_array_equal(scale_to_nn(x, 10.0, window=0.2), x)
    np.testing.assert_array_equal(scale_to_nn(x[:1], 3.0), x[:1])
