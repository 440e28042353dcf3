"""The Debye PDF engine against DiffPy, closed forms and itself."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.cluster import Icosahedron, Octahedron
from scipy.spatial.distance import pdist

from diffpy_cbldm.pdf.debye import (
    MIN_DISTANCE,
    DebyePDFCalculator,
    check_cluster,
)
from diffpy_cbldm.pdf.rw import rw, rw_free_scale
from diffpy_cbldm.pdf.settings import PDFSettings
from tests.conftest import REFERENCE_CLUSTERS

UISO_03 = 0.3 / (8 * np.pi**2)  # Biso = 0.3 Å²


def load_reference(folder, name):
    """(atoms, G) of one DiffPy reference: coordinates from the h5 file,
    G from the .gr file on r = 0, 0.01, ..., 29.99 (its README: the
    written r column is mislabelled)."""
    h5py = pytest.importorskip("h5py")
    _, element, _ = REFERENCE_CLUSTERS[name]
    (path,) = folder.glob(f"graph_{name}_atom_{element}_*.h5")
    with h5py.File(path, "r") as h5:
        xyz = h5["Node Feature Matrix"][:]
    g = np.loadtxt(folder / f"{name}.gr")[:, 1]
    return Atoms(element * len(xyz), positions=xyz), g


def cuau_cluster():
    """A 38-atom truncated octahedron with every third atom Au."""
    atoms = Octahedron("Cu", 4, 1)
    symbols = atoms.get_chemical_symbols()
    symbols[::3] = ["Au"] * len(symbols[::3])
    atoms.set_chemical_symbols(symbols)
    return atoms


def diffpy_qstep(settings, max_uiso):
    """libdiffpy's Q-step for a cluster, transcribed from its source
    (DebyePDFCalculator::cacheRlimitsData, updateQstep) for Jeong
    parameters all zero."""
    fwhm = 2 * math.sqrt(2 * math.log(2)) * math.sqrt(2 * max_uiso)
    tails = fwhm * math.sqrt(-math.log(3.33e-6) / (4 * math.log(2)))
    ext = min(10.0, 6 * 2 * math.pi / settings.qmax + tails)
    rcalchi = math.ceil((settings.rmax + ext) / settings.rstep)
    return math.pi / (rcalchi * settings.rstep)


def numpy_debye(atoms, uiso, settings, weights="xray"):
    """An independent, plain numpy Debye sum on DiffPy's Q-grid, G(r) by
    a direct sine sum at the output r (no FFT, no interpolation).

    weights: "xray" for f(Q) from periodictable, "z" for constant f = Z.
    """
    from periodictable.cromermann import fxrayatq

    qstep = diffpy_qstep(settings, uiso.max())
    q = qstep * np.arange(
        math.ceil(settings.qmin / qstep), math.ceil(settings.qmax / qstep)
    )
    symbols = atoms.get_chemical_symbols()
    if weights == "xray":
        f = np.array([fxrayatq(s, q) for s in symbols])
    else:
        f = np.outer(atoms.numbers, np.ones_like(q))
    xyz = atoms.positions
    fq = np.zeros_like(q)
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            d = np.linalg.norm(xyz[i] - xyz[j])
            dw = np.exp(-0.5 * (uiso[i] + uiso[j]) * q**2)
            fq += 2 * f[i] * f[j] * dw * np.sin(q * d) / d
    fq /= len(atoms) * f.mean(axis=0) ** 2
    r = settings.rgrid
    return 2 / np.pi * qstep * np.sin(np.outer(r, q)) @ fq


# DiffPy reference data ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCE_CLUSTERS))
def test_reproduces_diffpy_reference(reference_dir, name):
    """All six DiffPy G(r), small clusters included, at the settings found
    by fitting: qmin 0.7, qmax 25, Biso 0.3, qdamp 0, delta2 0, scale 1."""
    atoms, gref = load_reference(reference_dir, name)
    calc = DebyePDFCalculator(qmin=0.7, qmax=25.0, biso=0.3)
    r, g = calc(atoms)
    assert len(r) == len(gref) == 3000
    rw_value, scale = rw_free_scale(gref, g)
    # The histogram pair sum (the default here) is exact to ~1e-5.
    assert rw_value < 1e-4
    assert scale == pytest.approx(1.0, abs=1e-4)
    # The DeepStruc generator defaults (qdamp 0.04, delta2 2) do not fit.
    wrong = DebyePDFCalculator(qmin=0.7, qmax=25, qdamp=0.04, delta2=2.0)
    assert rw_free_scale(gref, wrong(atoms)[1])[0] > 0.05


@pytest.mark.parametrize("name", sorted(REFERENCE_CLUSTERS))
def test_direct_sum_reproduces_diffpy_reference_to_rounding(
    reference_dir, name
):
    atoms, gref = load_reference(reference_dir, name)
    calc = DebyePDFCalculator(qmin=0.7, qmax=25.0, biso=0.3, method="direct")
    assert rw(gref, calc(atoms)[1]) < 1e-10


def test_qmin_acts_on_the_coarse_q_grid(reference_dir):
    """What makes small clusters differ from a continuous Debye integral:
    F(Q) is cut at the first point Q_k >= qmin of a grid of step ~0.098
    1/Å. qmin 0.75 falls on the same grid point as 0.7 and gives the
    same G; qmin 0.65 keeps one more point and misses the 13-atom DiffPy
    reference badly."""
    atoms, gref = load_reference(reference_dir, "Icosahedron_shell_2")
    g070 = DebyePDFCalculator(qmin=0.70)(atoms)[1]
    g075 = DebyePDFCalculator(qmin=0.75)(atoms)[1]
    g065 = DebyePDFCalculator(qmin=0.65)(atoms)[1]
    np.testing.assert_array_equal(g070, g075)
    assert rw(gref, g075) < 1e-4
    assert rw_free_scale(gref, g065)[0] > 0.05


# analytic cases -------------------------------------------------------------


def test_dimer_matches_closed_form():
    """Two atoms at distance d with Uiso U each: with qmin = 0 and a Qmax
    where the Debye-Waller factor has died out,
    G(r) = [N(r; d, s) - N(r; -d, s)] / d, s^2 = 2U (N: normal pdf)."""
    d, uiso = 2.5, 0.005
    calc = DebyePDFCalculator(
        rmax=10.0, rstep=0.01, qmin=0.0, qmax=60.0, biso=8 * np.pi**2 * uiso
    )
    r, g = calc(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, d]]))
    s = math.sqrt(2 * uiso)

    def exact(x):
        peak = np.exp(-((x - d) ** 2) / (2 * s**2))
        image = np.exp(-((x + d) ** 2) / (2 * s**2))
        return (peak - image) / (d * s * math.sqrt(2 * np.pi))

    # DiffPy interpolates linearly from a grid of step <= rstep: the
    # error is at most rstep^2 / 8 * max|G''|.
    fine = np.linspace(0, 10, 200001)
    curvature = np.abs(np.gradient(np.gradient(exact(fine), fine), fine))
    bound = calc.settings.rstep**2 / 8 * curvature.max()
    assert np.abs(g - exact(r)).max() < bound + 1e-9
    assert np.abs(g - exact(r)).max() < 2e-3 * g.max()
    # One neighbour per atom: the integral of r G(r) over the peak is 1.
    assert np.trapezoid(r * g, r) == pytest.approx(1.0, rel=1e-4)
    assert r[np.argmax(g)] == pytest.approx(d, abs=0.01)


@pytest.mark.parametrize(
    "atoms", [Octahedron("Cu", 6, 1), Octahedron("Au", 5, 0)]
)
def test_first_shell_integral_is_the_coordination_number(atoms):
    """Without baseline, G(r) = 1/N sum_{i != j} delta(r - r_ij) / r_ij
    broadened, so the integral of r G(r) over the first peak is the mean
    number of nearest neighbours, counted here directly."""
    distances = pdist(atoms.positions)
    nn = distances.min()
    coordination = 2 * np.sum(distances < 1.2 * nn) / len(atoms)
    calc = DebyePDFCalculator(rstep=0.005, qmin=0.0, qmax=40.0, biso=0.3)
    r, g = calc(atoms)
    shell = (r > nn - 0.4) & (r < nn + 0.4)
    integral = np.trapezoid(r[shell] * g[shell], r[shell])
    assert integral == pytest.approx(coordination, rel=1e-3)


# self-consistency -----------------------------------------------------------


@pytest.mark.parametrize("atoms", [Icosahedron("Au", 4), cuau_cluster()])
def test_float32_agrees_with_float64(atoms):
    g64 = DebyePDFCalculator(qmin=0.7, dtype=torch.float64)(atoms)[1]
    g32 = DebyePDFCalculator(qmin=0.7, dtype=torch.float32)(atoms)[1]
    assert g32.dtype == np.float32
    assert rw(g64, g32) < 1e-4


def test_batch_equals_one_at_a_time():
    clusters = [Icosahedron("Pt", 2), cuau_cluster(), Icosahedron("Ag", 3)]
    clusters[1].arrays["biso"] = np.linspace(0.2, 0.6, len(clusters[1]))
    calc = DebyePDFCalculator(qmin=0.7, qdamp=0.03, delta2=1.0)
    r, g_batch = calc.batch(clusters)
    assert g_batch.shape == (3, len(r))
    for atoms, g in zip(clusters, g_batch):
        np.testing.assert_allclose(g, calc(atoms)[1], rtol=0, atol=1e-10)


def test_large_batch_equals_one_at_a_time():
    """16 clusters or more take the cached sine-matrix product, single
    clusters the angle-addition tables: the same numbers."""
    clusters = []
    for seed in range(16):
        atoms = Icosahedron("Cu", 3)
        atoms.rattle(0.05, seed=seed)
        clusters.append(atoms)
    calc = DebyePDFCalculator(qmin=0.7)
    _, g_batch = calc.batch(clusters)
    for atoms, g in zip(clusters, g_batch):
        np.testing.assert_allclose(g, calc(atoms)[1], rtol=0, atol=1e-10)


def test_compute_ignores_padding_content():
    """Padded slots may hold anything, NaN included."""
    atoms = Icosahedron("Au", 2)
    n = len(atoms)
    calc = DebyePDFCalculator(qmin=0.7)
    xyz = torch.full((2, n + 5, 3), float("nan"), dtype=torch.float64)
    xyz[:, :n] = torch.as_tensor(atoms.positions)
    z = torch.zeros((2, n + 5), dtype=torch.long)
    z[:, :n] = 79
    mask = torch.zeros((2, n + 5), dtype=torch.bool)
    mask[:, :n] = True
    g = calc.compute(xyz, z, mask=mask)
    np.testing.assert_allclose(g[0].numpy(), calc(atoms)[1], atol=1e-12)
    np.testing.assert_allclose(g[1].numpy(), g[0].numpy(), atol=1e-12)


def test_histogram_and_direct_sums_agree():
    """Two elements, three Uiso values and all Jeong terms."""
    atoms = cuau_cluster()
    uiso = np.choose(np.arange(len(atoms)) % 3, [0.003, 0.006, 0.01])
    kw = dict(qmin=0.7, qmax=25, delta1=0.3, delta2=1.5, qbroad=0.01)
    args = (
        torch.as_tensor(atoms.positions),
        torch.as_tensor(atoms.numbers),
    )
    g = {
        method: DebyePDFCalculator(**kw, method=method).compute(
            *args, uiso=torch.as_tensor(uiso)
        )
        for method in ("direct", "histogram")
    }
    assert rw(g["direct"].numpy(), g["histogram"].numpy()) < 1e-4


def test_overlapping_atoms_are_summed_like_diffpy():
    """compute() does not reject close atoms: a pair closer than the
    histogram step is still summed, coincident atoms are skipped (as
    libdiffpy skips them), and both pair sums agree."""
    xyz = torch.tensor(
        [[0, 0, 0], [0.004, 0, 0], [2.5, 0, 0], [2.5, 0, 0], [0, 2.6, 0.1]],
        dtype=torch.float64,
    )
    z = torch.tensor([79, 79, 29, 29, 79])
    g = {
        method: DebyePDFCalculator(qmin=0.7, method=method).compute(xyz, z)
        for method in ("direct", "histogram")
    }
    assert torch.isfinite(g["direct"]).all()
    assert rw(g["direct"].numpy(), g["histogram"].numpy()) < 1e-4


def test_gradients_match_finite_differences():
    """gradcheck of G with respect to positions and Uiso (direct sum,
    float64) on a small CuAu cluster with Jeong terms and padding."""
    calc = DebyePDFCalculator(
        rmax=6.0, rstep=0.05, qmin=0.7, qmax=12.0, delta1=0.2, delta2=1.0
    )
    positions = torch.tensor(
        [[[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3], [1.2, 1.3, 2.1], [0, 0, 0]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    numbers = torch.tensor([[29, 79, 29, 79, 0]])
    mask = torch.tensor([[True, True, True, True, False]])
    uiso = torch.tensor(
        [[0.004, 0.006, 0.005, 0.008, 0.0]],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(
        lambda x, u: calc.compute(x, numbers, mask=mask, uiso=u),
        (positions, uiso),
    )


def test_per_atom_uiso_and_biso_arrays():
    atoms = Icosahedron("Au", 3)
    calc = DebyePDFCalculator(qmin=0.7, biso=0.5)
    _, g = calc(atoms)
    with_uiso = atoms.copy()
    with_uiso.arrays["uiso"] = np.full(len(atoms), 0.5 / (8 * np.pi**2))
    with_biso = atoms.copy()
    with_biso.arrays["biso"] = np.full(len(atoms), 0.5)
    np.testing.assert_allclose(calc(with_uiso)[1], g, atol=1e-12)
    np.testing.assert_allclose(calc(with_biso)[1], g, atol=1e-12)
    # Per-atom values win over the setting.
    with_biso.arrays["biso"] = np.full(len(atoms), 1.5)
    np.testing.assert_allclose(
        calc(with_biso)[1],
        DebyePDFCalculator(qmin=0.7, biso=1.5)(atoms)[1],
        atol=1e-12,
    )


def test_multi_element_against_independent_numpy_sum():
    """CuAu with per-atom Uiso against a plain numpy Debye sum with
    periodictable's f(Q); constant f = Z weights would be far off."""
    atoms = cuau_cluster()
    uiso = np.where(atoms.numbers == 79, 0.004, 0.007)
    atoms.arrays["uiso"] = uiso
    settings = PDFSettings(qmin=0.7, qmax=25.0)
    g = DebyePDFCalculator.from_settings(settings)(atoms)[1]
    reference = numpy_debye(atoms, uiso, settings)
    # Only the engine's linear interpolation from its FFT grid differs.
    assert rw(reference, g) < 2e-3
    z_weighted = numpy_debye(atoms, uiso, settings, weights="z")
    assert rw(z_weighted, g) > 10 * rw(reference, g)


def test_explicit_r_grid():
    atoms = Icosahedron("Au", 2)
    calc = DebyePDFCalculator(qmin=0.7)
    xyz = torch.as_tensor(atoms.positions)
    z = torch.as_tensor(atoms.numbers)
    g = calc.compute(xyz, z)
    np.testing.assert_array_equal(calc.compute(xyz, z, r=calc.rgrid), g)
    some = calc.rgrid[::7]
    np.testing.assert_allclose(
        calc.compute(xyz, z, r=torch.as_tensor(some)), g[::7], atol=1e-12
    )


def test_settings_round_trip():
    settings = PDFSettings(qmin=0.5, qmax=22.0, qdamp=0.02, delta2=1.1)
    calc = DebyePDFCalculator.from_settings(settings, dtype=torch.float32)
    assert calc.settings == settings
    assert calc.dtype == torch.float32
    np.testing.assert_array_equal(calc.rgrid, settings.rgrid)
    r, g = calc(Icosahedron("Au", 2))
    np.testing.assert_array_equal(r, settings.rgrid)


def test_qgrid_follows_libdiffpy():
    """rmax 30, qmax 25, Biso 0.3: rcalchi = 31.95 Å, 255 points."""
    settings = PDFSettings(qmin=0.7, qmax=25.0, biso=0.3)
    q = DebyePDFCalculator.from_settings(settings).qgrid()
    assert q[1] == pytest.approx(np.pi / 31.95, rel=1e-12)
    assert q[1] == pytest.approx(diffpy_qstep(settings, UISO_03), rel=1e-12)
    assert len(q) == 255
    # A larger Uiso widens the peaks, extends the r-range, refines the grid.
    q_wide = DebyePDFCalculator.from_settings(settings).qgrid(0.02)
    assert q_wide[1] == pytest.approx(diffpy_qstep(settings, 0.02))
    assert q_wide[1] < q[1]


def test_scale_and_qdamp_are_envelopes():
    atoms = Icosahedron("Au", 3)
    base = DebyePDFCalculator(qmin=0.7)
    r, g = base(atoms)
    _, g2 = DebyePDFCalculator(qmin=0.7, scale=2.5, qdamp=0.05)(atoms)
    np.testing.assert_allclose(
        g2, 2.5 * g * np.exp(-0.5 * (0.05 * r) ** 2), atol=1e-12
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    atoms = cuau_cluster()
    for dtype in (torch.float32, torch.float64):
        g_cpu = DebyePDFCalculator(qmin=0.7, dtype=dtype)(atoms)[1]
        g_gpu = DebyePDFCalculator(qmin=0.7, dtype=dtype, device="cuda")(
            atoms
        )[1]
        assert rw(g_cpu.astype(float), g_gpu.astype(float)) < 1e-5


# bad input ------------------------------------------------------------------


def test_check_cluster_rejects_zero_atoms():
    with pytest.raises(ValueError, match="zero atoms"):
        check_cluster(Atoms())


def test_check_cluster_rejects_close_atoms():
    atoms = Atoms("Au3", positions=[[0, 0, 0], [3, 0, 0], [3.3, 0, 0]])
    with pytest.raises(ValueError, match=r"atoms 1 and 2 are 0\.3 Å apart"):
        check_cluster(atoms)
    assert MIN_DISTANCE == 0.5


def test_check_cluster_rejects_unknown_element():
    atoms = Atoms("AuX", positions=[[0, 0, 0], [3, 0, 0]])
    with pytest.raises(ValueError, match=r"unknown element 'X'.* index 1"):
        check_cluster(atoms)


def test_check_cluster_rejects_nan_position():
    atoms = Atoms("Au2", positions=[[0, 0, 0], [np.nan, 0, 0]])
    with pytest.raises(ValueError, match="atom 1 .* non-finite position"):
        check_cluster(atoms)


def test_calculator_checks_its_clusters():
    calc = DebyePDFCalculator()
    bad = Atoms("Au2", positions=[[0, 0, 0], [0.1, 0, 0]])
    with pytest.raises(ValueError, match="cluster 1: atoms 0 and 1"):
        calc.batch([Icosahedron("Au", 2), bad])
    with pytest.raises(ValueError, match="zero atoms"):
        calc(Atoms())
    with pytest.raises(ValueError, match="at least one cluster"):
        calc.batch([])


def test_calculator_rejects_bad_per_atom_uiso():
    atoms = Icosahedron("Au", 2)
    atoms.arrays["uiso"] = np.full(len(atoms), -0.01)
    with pytest.raises(ValueError, match=r"arrays\['uiso'\]\[0\]=-0\.01"):
        DebyePDFCalculator()(atoms)
    atoms.arrays["uiso"] = np.full(len(atoms), 0.01)
    atoms.arrays["biso"] = np.full(len(atoms), 0.8)
    with pytest.raises(ValueError, match="both 'uiso' and 'biso'"):
        DebyePDFCalculator()(atoms)


def test_compute_rejects_nan_position():
    xyz = torch.tensor([[0.0, 0, 0], [2.5, float("nan"), 0]])
    with pytest.raises(ValueError, match="atom 1: non-finite position"):
        DebyePDFCalculator().compute(xyz, torch.tensor([79, 79]))


@pytest.mark.parametrize("z", [0, 99])
def test_compute_rejects_unknown_atomic_number(z):
    xyz = torch.tensor([[0.0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(ValueError, match=f"atomic number {z}"):
        DebyePDFCalculator().compute(xyz, torch.tensor([79, z]))


def test_compute_rejects_empty_cluster():
    xyz = torch.zeros((2, 3, 3))
    mask = torch.tensor([[True, True, False], [False, False, False]])
    with pytest.raises(ValueError, match="cluster 1 has zero atoms"):
        DebyePDFCalculator().compute(xyz, torch.full((2, 3), 79), mask=mask)


def test_compute_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"numbers must have shape \(2,\)"):
        DebyePDFCalculator().compute(torch.zeros((2, 3)), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"positions must have shape"):
        DebyePDFCalculator().compute(torch.zeros((2, 2)), torch.tensor([1]))


def test_compute_rejects_negative_r():
    xyz = torch.tensor([[0.0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(ValueError, match=r"r\[1\]=-1\.0 must be finite"):
        DebyePDFCalculator().compute(xyz, torch.tensor([79, 79]), r=[1, -1])


def test_calculator_surfaces_invalid_settings():
    with pytest.raises(ValueError, match="qmax > qmin"):
        DebyePDFCalculator(qmin=25.0, qmax=20.0)


def test_calculator_rejects_bad_dtype_and_method():
    with pytest.raises(ValueError, match="dtype must be"):
        DebyePDFCalculator(dtype=torch.float16)
    with pytest.raises(ValueError, match="method must be"):
        DebyePDFCalculator(method="fast")


def test_compute_rejects_r_outside_the_calculation_range():
    # Pairs outside the calculator's range are not summed and the FFT
    # grid ends there: a calculator for 0-3 Å evaluated to 12 Å was off
    # by 7-12 in G where |G| is 5-10.
    atoms = Icosahedron("Au", 2)
    xyz = torch.as_tensor(atoms.positions)
    z = torch.as_tensor(atoms.numbers)
    short = DebyePDFCalculator(rmin=0.0, rmax=3.0, rstep=0.01, qmax=25.0)
    with pytest.raises(ValueError) as excinfo:
        short.compute(xyz, z, r=np.arange(0, 12, 0.01))
    message = str(excinfo.value)
    assert "r spans 0-11.99 Å" in message
    assert "rmin=0 to rmax=3 Å" in message
    high = DebyePDFCalculator(rmin=2.0, rmax=6.0, rstep=0.01, qmax=25.0)
    with pytest.raises(ValueError, match="r spans 1-5 Å.*rmin=2 to rmax=6"):
        high.compute(xyz, z, r=[1.0, 5.0])
    # Within one rstep of the ends is accepted (DiffPy's grid leaves rmax
    # out; callers set rmax half a step beyond their last point) and
    # agrees with a calculator of a wider range, up to the linear
    # interpolation from their different FFT grids.
    wide = DebyePDFCalculator(rmin=0.0, rmax=8.0, rstep=0.01, qmax=25.0)
    r = np.linspace(1.995, 6.009, 2000)
    expected = wide.compute(xyz, z, r=r).numpy()
    np.testing.assert_allclose(
        high.compute(xyz, z, r=r).numpy(),
        expected,
        atol=2e-3 * np.abs(expected).max(),
    )
