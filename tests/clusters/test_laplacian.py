"""Laplacian of a cluster, and coordinates recovered from it (aDGP)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.cluster import (
    Decahedron,
    HexagonalClosedPacked,
    Icosahedron,
    Octahedron,
)
from scipy.optimize import approx_fprime

from diffpy_cbldm.clusters.geometry import rmsd_aligned
from diffpy_cbldm.clusters.laplacian import (
    DEFAULT_SIGMA,
    MAX_ATOMS,
    atom_count_from_laplacian,
    initial_positions,
    laplacian,
    laplacian_misfit,
    perturb_laplacian,
    positions_from_laplacian,
)
from diffpy_cbldm.clusters.order import canonicalize

SIGMA = DEFAULT_SIGMA


def _hcp_block():
    return HexagonalClosedPacked(
        "Co",
        [(0, 0, 0, 1), (1, 0, -1, 0), (1, 1, -2, 0)],
        (3, 3, 3),
        latticeconstant=(2.51, 4.07),
    )


@pytest.fixture(scope="module")
def ico55():
    return Icosahedron("Au", 3)


# --- the matrix --------------------------------------------------------


def test_weights_match_ase_distances(ico55):
    n = len(ico55)
    L = laplacian(ico55, SIGMA, dtype=np.float64)
    d = ico55.get_all_distances()
    expected_w = np.exp(-(d**2) / (2 * SIGMA**2))
    off = ~np.eye(n, dtype=bool)
    np.testing.assert_allclose(-L[:n, :n][off], expected_w[off], rtol=1e-12)
    np.testing.assert_allclose(
        np.diag(L)[:n], expected_w.sum(axis=1) - 1.0, rtol=1e-12
    )


def test_padding_shape_and_dtype(ico55):
    n = len(ico55)
    L = laplacian(ico55, SIGMA)
    assert L.shape == (MAX_ATOMS, MAX_ATOMS)
    assert L.dtype == np.float32
    assert not L[n:, :].any() and not L[:, n:].any()
    assert laplacian(ico55, SIGMA, size=60).shape == (60, 60)


def test_symmetric_zero_row_sums_psd_connected(ico55):
    n = len(ico55)
    L = laplacian(ico55, SIGMA, dtype=np.float64)
    assert np.array_equal(L, L.T)
    np.testing.assert_allclose(L.sum(axis=1), 0.0, atol=1e-12)
    eig = np.linalg.eigvalsh(L[:n, :n])
    scale = eig.max()
    assert eig.min() > -1e-12 * scale
    # One zero eigenvalue per connected component: the cluster is one.
    assert np.sum(eig < 1e-9 * scale) == 1


def test_two_far_groups_give_two_zero_eigenvalues():
    # Two dimers 100 Å apart: the weights between them underflow to 0.
    pos = [[0, 0, 0], [2.5, 0, 0], [100, 0, 0], [102.5, 0, 0]]
    L = laplacian(pos, SIGMA, size=4, dtype=np.float64)
    eig = np.linalg.eigvalsh(L)
    assert np.sum(eig < 1e-12) == 2


def test_positions_array_and_atoms_agree(ico55):
    np.testing.assert_array_equal(
        laplacian(ico55, SIGMA), laplacian(ico55.positions, SIGMA)
    )


@pytest.mark.parametrize("sigma", [0.0, -2.0])
def test_laplacian_rejects_nonpositive_sigma(ico55, sigma):
    with pytest.raises(ValueError, match=f"sigma.*{sigma}"):
        laplacian(ico55, sigma)


def test_laplacian_rejects_more_atoms_than_size(ico55):
    with pytest.raises(ValueError, match="55 atoms do not fit a 50 x 50"):
        laplacian(ico55, SIGMA, size=50)


def test_laplacian_rejects_nan_positions(ico55):
    pos = ico55.positions.copy()
    pos[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN.*atom 3"):
        laplacian(pos, SIGMA)


# --- torch batches -----------------------------------------------------


def test_torch_batch_matches_numpy():
    torch = pytest.importorskip("torch")
    clusters = [Icosahedron("Cu", 2), Decahedron("Cu", 2, 1, 0)]
    n_max = max(len(c) for c in clusters)
    pos = torch.zeros(len(clusters), n_max, 3, dtype=torch.float64)
    mask = torch.zeros(len(clusters), n_max, dtype=torch.bool)
    for k, c in enumerate(clusters):
        pos[k, : len(c)] = torch.from_numpy(c.positions)
        mask[k, : len(c)] = True
    # Padding positions are arbitrary; make them collide with atom 0.
    pos[0, len(clusters[0]) :] = pos[0, 0]
    out = laplacian(pos, SIGMA, size=64, mask=mask, dtype=torch.float64)
    assert out.shape == (2, 64, 64) and out.dtype == torch.float64
    for k, c in enumerate(clusters):
        expected = laplacian(c, SIGMA, size=64, dtype=np.float64)
        np.testing.assert_allclose(out[k].numpy(), expected, atol=1e-12)


def test_torch_single_cluster_default_dtype(ico55):
    torch = pytest.importorskip("torch")
    out = laplacian(torch.from_numpy(ico55.positions), SIGMA)
    assert out.shape == (MAX_ATOMS, MAX_ATOMS) and out.dtype == torch.float32
    np.testing.assert_allclose(
        out.numpy(), laplacian(ico55, SIGMA), rtol=1e-6, atol=1e-6
    )


def test_torch_mask_with_padding_before_an_atom_raises():
    torch = pytest.importorskip("torch")
    pos = torch.zeros(2, 4, 3)
    mask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    with pytest.raises(ValueError, match="mask row 1"):
        laplacian(pos, SIGMA, mask=mask)


def test_torch_rejects_more_atoms_than_size():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="300 atoms do not fit"):
        laplacian(torch.zeros(1, 300, 3), SIGMA)


# --- atom count --------------------------------------------------------


def test_atom_count_exact_and_with_padding_noise(ico55):
    L = laplacian(ico55, SIGMA, dtype=np.float64)
    assert atom_count_from_laplacian(L) == 55
    rng = np.random.default_rng(0)
    # Padding noise at 1 % of the largest diagonal is not an atom.
    noise = 0.01 * np.diag(L).max() * rng.standard_normal(L.shape)
    noise[:55, :55] = 0
    assert atom_count_from_laplacian(L + (noise + noise.T) / 2) == 55


def test_atom_count_of_a_dimer():
    L = laplacian([[0, 0, 0], [2.9, 0, 0]], SIGMA)
    assert atom_count_from_laplacian(L) == 2


def test_atom_count_all_zero_raises():
    with pytest.raises(ValueError, match="all zero"):
        atom_count_from_laplacian(np.zeros((8, 8)))


def test_atom_count_non_square_raises():
    with pytest.raises(ValueError, match=r"square.*\(4, 5\)"):
        atom_count_from_laplacian(np.zeros((4, 5)))


def test_atom_count_nan_raises(ico55):
    L = laplacian(ico55, SIGMA)
    L[2, 7] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\(2, 7\)"):
        atom_count_from_laplacian(L)


# --- misfit and its gradient --------------------------------------------


def test_misfit_is_zero_at_the_true_positions(ico55):
    n = len(ico55)
    L = laplacian(ico55, SIGMA, size=n, dtype=np.float64)
    f, grad = laplacian_misfit(ico55.positions, L, SIGMA)
    assert f < 1e-28
    assert np.abs(grad).max() < 1e-14


def test_misfit_gradient_matches_finite_differences():
    atoms = Icosahedron("Ag", 2)
    n = len(atoms)
    L = laplacian(atoms, SIGMA, size=n, dtype=np.float64)
    x = atoms.positions + np.random.default_rng(2).normal(
        scale=0.3, size=(n, 3)
    )
    _, grad = laplacian_misfit(x, L, SIGMA)
    numeric = approx_fprime(
        x.ravel(), lambda v: laplacian_misfit(v.reshape(n, 3), L, SIGMA)[0]
    )
    np.testing.assert_allclose(
        grad.ravel(), numeric, rtol=1e-4, atol=1e-6 * np.abs(numeric).max()
    )


# --- recovery ----------------------------------------------------------

RECOVERY_CLUSTERS = {
    "icosahedron-13": lambda: Icosahedron("Mn", 2, latticeconstant=3.34),
    "icosahedron-55": lambda: Icosahedron("Pt", 3),
    "icosahedron-147": lambda: Icosahedron("Au", 4),
    "decahedron": lambda: Decahedron("Pd", 3, 2, 1),
    "octahedron": lambda: Octahedron("Ni", 6, 1),
    "hcp-block": _hcp_block,
    "fcc-cube-256": lambda: bulk("Au", "fcc", a=4.08, cubic=True).repeat(4),
}


@pytest.mark.parametrize("name", sorted(RECOVERY_CLUSTERS))
def test_recovers_exact_laplacian(name):
    atoms = canonicalize(RECOVERY_CLUSTERS[name]())
    L = laplacian(atoms, SIGMA)  # float32, as stored in data sets
    pos, info = positions_from_laplacian(L, SIGMA)
    assert pos.shape == (len(atoms), 3)
    assert info["n_atoms"] == len(atoms)
    assert rmsd_aligned(pos, atoms.positions) < 0.01
    assert info["residual"] < 1e-5 * np.abs(L).max()
    np.testing.assert_allclose(pos.mean(axis=0), 0.0, atol=1e-9)


@pytest.mark.parametrize("sigma", [2.0, 2.5, 3.0, np.sqrt(130.0)])
def test_recovers_icosahedron_at_each_sigma(sigma):
    atoms = Icosahedron("Au", 4)
    pos, _ = positions_from_laplacian(laplacian(atoms, sigma), sigma)
    assert rmsd_aligned(pos, atoms.positions) < 0.01


def test_mds_start_of_an_exact_laplacian_is_already_exact():
    # Exact weights give exact distances, and classical MDS of exact
    # Euclidean distances returns the structure itself.
    atoms = Icosahedron("Au", 4)
    start = initial_positions(laplacian(atoms, SIGMA), SIGMA)
    assert rmsd_aligned(start, atoms.positions) < 1e-4


def test_trust_constr_recovers_icosahedron(ico55):
    pos, info = positions_from_laplacian(
        laplacian(ico55, SIGMA), SIGMA, method="trust-constr"
    )
    assert info["method"] == "trust-constr"
    assert rmsd_aligned(pos, ico55.positions) < 0.01


def test_spectral_start_recovers_icosahedron():
    atoms = Icosahedron("Au", 4)
    pos, info = positions_from_laplacian(
        laplacian(atoms, SIGMA), SIGMA, init="spectral"
    )
    assert info["init"] == "spectral"
    assert rmsd_aligned(pos, atoms.positions) < 0.01


def test_recovers_the_diffpy_reference_clusters(reference_dir):
    h5py = pytest.importorskip("h5py")
    files = sorted(reference_dir.glob("graph_*.h5"))
    assert len(files) == 6
    for path in files:
        with h5py.File(path, "r") as f:
            truth = f["Node Feature Matrix"][()]
        atoms = canonicalize(Atoms(f"X{len(truth)}", positions=truth))
        pos, _ = positions_from_laplacian(laplacian(atoms, SIGMA), SIGMA)
        assert rmsd_aligned(pos, atoms.positions) < 0.01, path.name


def test_noisy_laplacian_recovers_to_a_tenth_of_an_angstrom():
    atoms = Icosahedron("Au", 4)
    L = perturb_laplacian(
        laplacian(atoms, SIGMA), 0.02, rng=np.random.default_rng(0)
    )
    pos, info = positions_from_laplacian(L, SIGMA)
    assert rmsd_aligned(pos, atoms.positions) < 0.1
    # The fit matches the noisy matrix at least as well as the truth.
    n = len(atoms)
    truth_misfit = laplacian_misfit(atoms.positions, L[:n, :n], SIGMA)[0]
    assert info["residual"] <= np.sqrt(truth_misfit)


def test_torch_laplacian_is_accepted(ico55):
    torch = pytest.importorskip("torch")
    L = torch.from_numpy(laplacian(ico55, SIGMA))
    pos, _ = positions_from_laplacian(L, SIGMA)
    assert rmsd_aligned(pos, ico55.positions) < 0.01


def test_one_atom_is_an_all_zero_laplacian():
    # A lone atom has no edges: its Laplacian is zero and cannot be told
    # from padding.
    assert not laplacian([[1.0, 2.0, 3.0]], SIGMA).any()


def test_one_positive_diagonal_gives_one_atom_at_the_origin():
    L = np.zeros((8, 8))
    L[0, 0] = 0.7
    pos, info = positions_from_laplacian(L, SIGMA)
    assert info["n_atoms"] == 1
    np.testing.assert_array_equal(pos, np.zeros((1, 3)))


def test_max_time_stops_the_optimiser():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(4)
    L = perturb_laplacian(
        laplacian(atoms, SIGMA), 0.02, rng=np.random.default_rng(1)
    )
    _, info = positions_from_laplacian(L, SIGMA, max_time=0.0)
    assert not info["converged"]
    assert info["n_iter"] <= 1


# --- bad input ---------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, -1.5])
def test_recovery_rejects_nonpositive_sigma(ico55, sigma):
    with pytest.raises(ValueError, match=f"sigma.*{sigma}"):
        positions_from_laplacian(laplacian(ico55, SIGMA), sigma)


def test_recovery_rejects_non_square():
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        positions_from_laplacian(np.ones((3, 4)), SIGMA)


def test_recovery_rejects_non_symmetric(ico55):
    L = laplacian(ico55, SIGMA, dtype=np.float64)
    L[1, 5] += 0.25
    with pytest.raises(ValueError, match=r"not symmetric.*0\.25.*\(1, 5\)"):
        positions_from_laplacian(L, SIGMA)


def test_recovery_rejects_all_zero():
    with pytest.raises(ValueError, match="all zero"):
        positions_from_laplacian(np.zeros((256, 256)), SIGMA)


def test_recovery_rejects_nan(ico55):
    L = laplacian(ico55, SIGMA)
    L[10, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        positions_from_laplacian(L, SIGMA)


def test_recovery_rejects_atom_rows_after_padding(ico55):
    L = laplacian(ico55, SIGMA, size=60, dtype=np.float64)
    # Move atom 54 to row 57, leaving rows 54-56 as padding.
    perm = np.arange(60)
    perm[[54, 57]] = perm[[57, 54]]
    with pytest.raises(ValueError, match="row 54 is padding"):
        positions_from_laplacian(L[np.ix_(perm, perm)], SIGMA)


def test_recovery_rejects_unknown_start(ico55):
    with pytest.raises(ValueError, match="init.*'random'"):
        positions_from_laplacian(laplacian(ico55, SIGMA), SIGMA, init="random")


def test_recovery_rejects_unknown_method(ico55):
    with pytest.raises(ValueError, match="method.*'newton'"):
        positions_from_laplacian(
            laplacian(ico55, SIGMA), SIGMA, method="newton"
        )


# --- noise model -------------------------------------------------------


@pytest.mark.parametrize("kind", ["multiplicative", "additive"])
def test_perturbed_matrix_is_still_a_laplacian(ico55, kind):
    n = len(ico55)
    L = laplacian(ico55, SIGMA, dtype=np.float64)
    noisy = perturb_laplacian(L, 0.02, kind=kind, rng=np.random.default_rng(4))
    assert np.array_equal(noisy, noisy.T)
    np.testing.assert_allclose(noisy.sum(axis=1), 0.0, atol=1e-12)
    assert not noisy[n:].any()
    w, w_noisy = -L[:n, :n], -noisy[:n, :n]
    off = ~np.eye(n, dtype=bool)
    if kind == "multiplicative":
        spread = np.std(w_noisy[off] / w[off] - 1.0)
    else:
        spread = np.std(w_noisy[off] - w[off]) / w[off].max()
    assert spread == pytest.approx(0.02, rel=0.1)


def test_a_block_without_edges_returns_its_start():
    # Atoms 100 Å apart: every W underflows to 0. The decoder can produce
    # such matrices for a PDF unlike its training data; the aDGP must not
    # turn them into NaN.
    x = 100.0 * np.eye(4, 3)
    L = np.zeros((8, 8))
    positions, info = positions_from_laplacian(L, SIGMA, n_atoms=4, init=x)
    assert np.all(np.isfinite(positions))
    assert "no edges" in info["message"] and not info["converged"]
    assert np.allclose(positions.mean(axis=0), 0.0)  # centred, as documented
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    assert np.allclose(d, np.linalg.norm(x[:, None] - x[None], axis=-1))
