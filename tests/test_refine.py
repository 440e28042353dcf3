"""Refinement of clusters with diffpy.srfit: recovery of known values,
positions, metadata, outputs and bad input.

Synthetic data come from our Debye engine and, where installed, from
pdffit2 (an independent DiffPy engine); the refinement always uses our
engine.
"""

import io
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.cluster import Icosahedron, Octahedron

from diffpy_cbldm.pdf.datafile import PDFData, load_pdf, write_gr
from diffpy_cbldm.pdf.debye import DebyePDFCalculator
from diffpy_cbldm.pdf.rw import rw
from diffpy_cbldm.refine import (
    DebyeClusterGenerator,
    RefinementResult,
    refine_cluster,
)

ZOOM, UISO, DELTA2, QDAMP, QMAX = 1.03, 0.008, 2.0, 0.04, 25.0


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine, OpenMP spin-waiting
    makes each small torch call 10-100x slower (docs/benchmarks/refine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def zoomed(atoms, zoom):
    """Copy of `atoms` expanded by `zoom` about its centroid."""
    out = atoms.copy()
    centre = atoms.positions.mean(axis=0)
    out.positions = centre + zoom * (atoms.positions - centre)
    return out


def engine_pdf(atoms, uiso, **settings):
    """(r, G) on 0-30 Å from our engine, per-atom Uiso in Å²."""
    atoms = atoms.copy()
    atoms.set_array("uiso", np.full(len(atoms), uiso))
    calc = DebyePDFCalculator(rmin=0.0, rmax=30.0, rstep=0.01, **settings)
    return calc(atoms)


def min_distance(atoms):
    d = atoms.get_all_distances()
    np.fill_diagonal(d, np.inf)
    return d.min()


@pytest.fixture(scope="module")
def pt147():
    return Icosahedron("Pt", 4)


@pytest.fixture(scope="module")
def synthetic_147(pt147):
    """The 147-atom icosahedron refined against its own PDF made with
    zoom 1.03, Uiso 0.008 Å², delta2 2 Å², scale 0.7."""
    r, g = engine_pdf(
        zoomed(pt147, ZOOM), UISO, qmax=QMAX, qdamp=QDAMP, delta2=DELTA2
    )
    return refine_cluster(
        pt147, (r, 0.7 * g), qmax=QMAX, qdamp=QDAMP, uiso=0.005
    )


@pytest.fixture(scope="module")
def small_result():
    """A quick refinement of a 13-atom cluster, for the output tests."""
    atoms = Icosahedron("Pt", 2)
    r, g = engine_pdf(zoomed(atoms, 1.01), 0.006, qmax=QMAX, qdamp=QDAMP)
    dg = np.full_like(g, 0.01)
    return refine_cluster(atoms, (r, g, dg), qmax=QMAX, qdamp=QDAMP, rmax=15.0)


# --------------------------------------------------------------------------
# Recovery of known values


def test_recovers_zoom_uiso_delta2_from_engine_data(synthetic_147):
    result = synthetic_147
    values = {name: v for name, (v, _) in result.values.items()}
    assert values["zoomscale"] == pytest.approx(ZOOM, rel=5e-3)
    assert values["Uiso_Pt"] == pytest.approx(UISO, rel=5e-3)
    assert values["delta2"] == pytest.approx(DELTA2, rel=5e-3)
    assert values["scale"] == pytest.approx(0.7, rel=5e-3)
    assert result.rw < 1e-3
    # The refined cluster carries the zoom and the Uiso.
    assert min_distance(result.atoms) == pytest.approx(
        ZOOM * min_distance(Icosahedron("Pt", 4)), rel=5e-3
    )
    np.testing.assert_allclose(result.atoms.arrays["uiso"], values["Uiso_Pt"])


def test_recovers_zoom_and_uiso_from_pdffit2_data(pt147):
    """Data from pdffit2 (the cluster in a 100 Å box, its -4 pi rho0 r
    baseline added back): an engine no one on this project wrote."""
    pdffit2 = pytest.importorskip("diffpy.pdffit2")
    from diffpy.structure import Atom, Lattice, Structure

    pdffit2.redirect_stdout(io.StringIO())
    box = 100.0
    lattice = Lattice(box, box, box, 90, 90, 90)
    cluster = zoomed(pt147, ZOOM)
    stru = Structure(lattice=lattice)
    centre = cluster.positions.mean(axis=0)
    for xyz in cluster.positions - centre + box / 2:
        atom = Atom("Pt", xyz=xyz / box, lattice=lattice)
        atom.Uisoequiv = UISO
        stru.append(atom)
    fit = pdffit2.PdfFit()
    fit.add_structure(stru)
    fit.setvar("delta2", DELTA2)
    fit.alloc("X", QMAX, QDAMP, 1.0, 30.0, 2901)
    fit.calc()
    r = np.array(fit.getR())
    g = np.array(fit.getpdf_fit()) + 4 * math.pi * len(cluster) / box**3 * r

    result = refine_cluster(pt147, (r, g), qmax=QMAX, qdamp=QDAMP)
    values = {name: v for name, (v, _) in result.values.items()}
    assert values["zoomscale"] == pytest.approx(ZOOM, rel=5e-3)
    assert values["Uiso_Pt"] == pytest.approx(UISO, rel=5e-3)
    assert values["delta2"] == pytest.approx(DELTA2, rel=0.05)
    assert values["scale"] == pytest.approx(1.0, rel=5e-3)
    # What is left is the difference between the two engines (~2 %).
    assert result.rw < 0.03


def test_one_uiso_per_element():
    """Au core, Pt shell: Uiso_Au and Uiso_Pt refine separately."""
    atoms = Icosahedron("Pt", 3)
    centre = atoms.positions.mean(axis=0)
    core = np.linalg.norm(atoms.positions - centre, axis=1) < 3.0
    atoms.set_chemical_symbols(np.where(core, "Au", "Pt"))
    truth = atoms.copy()
    truth.set_array("uiso", np.where(core, 0.006, 0.009))
    r, g = DebyePDFCalculator(rmin=0.0, rmax=30.0, qdamp=QDAMP)(truth)
    result = refine_cluster(atoms, (r, g), qmax=QMAX, qdamp=QDAMP)
    assert result.values["Uiso_Au"][0] == pytest.approx(0.006, rel=5e-3)
    assert result.values["Uiso_Pt"][0] == pytest.approx(0.009, rel=5e-3)
    np.testing.assert_allclose(
        result.atoms.arrays["uiso"],
        np.where(core, *(result.values[k][0] for k in ("Uiso_Au", "Uiso_Pt"))),
    )


def test_rw_is_srfit_rw_and_rw_module(synthetic_147, small_result):
    for result in (synthetic_147, small_result):
        assert result.rw == pytest.approx(result.fit_results.rw, rel=1e-10)
        assert result.rw == pytest.approx(
            rw(result.gobs, result.gcalc, result.dg), rel=1e-12
        )
        np.testing.assert_allclose(result.gdiff, result.gobs - result.gcalc)
    # dG weights when the data carry dG.
    assert small_result.dg is not None


def test_rexp_is_the_rw_of_noise_with_the_stated_dg(synthetic_147, tmp_path):
    """A cluster refined against its own PDF plus independent Gaussian
    noise of known sigma scores Rw = Rexp (up to sampling); Rexp scales
    with the stated dG, Rw does not; no dG, no Rexp."""
    from diffpy_cbldm.pdf.rw import rexp

    atoms = Icosahedron("Pt", 2)
    r, g = engine_pdf(zoomed(atoms, 1.01), 0.006, qmax=QMAX, qdamp=QDAMP)
    sigma = 0.02 * np.abs(g).max()
    noisy = g + np.random.default_rng(7).normal(0.0, sigma, g.shape)
    kw = dict(qmax=QMAX, qdamp=QDAMP, rmax=15.0)
    right = refine_cluster(atoms, (r, noisy, np.full_like(g, sigma)), **kw)
    assert right.rw / right.rexp == pytest.approx(1.0, abs=0.06)
    inside = (r >= right.r[0] - 1e-9) & (r <= right.r[-1] + 1e-9)
    assert right.rexp == pytest.approx(
        rexp(noisy[inside], np.full(inside.sum(), sigma), 4), rel=1e-9
    )
    loose = refine_cluster(atoms, (r, noisy, np.full_like(g, 2 * sigma)), **kw)
    assert loose.rw == pytest.approx(right.rw, rel=1e-6)
    assert loose.rexp == pytest.approx(2 * right.rexp, rel=1e-9)
    assert "Rexp" in right.summary()
    right.save_fgr(tmp_path / "fit.fgr")
    assert f"Rexp = {right.rexp:.6f}" in (tmp_path / "fit.fgr").read_text()
    assert synthetic_147.rexp is None
    assert "Rexp" not in synthetic_147.summary()
    # Restrained coordinates are observations as well as parameters: the
    # same four free parameters are subtracted when positions refine.
    moved = refine_cluster(
        atoms, (r, noisy, np.full_like(g, sigma)), refine_positions=True, **kw
    )
    coordinates = [k for k in moved.values if k[0] in "xyz" and "_" in k]
    assert len(coordinates) == 3 * len(atoms)
    assert moved.rexp == pytest.approx(right.rexp, rel=1e-9)
    with pytest.raises(ValueError, match="more points than parameters"):
        rexp(noisy[:3], np.full(3, sigma), 3)


def test_stages_free_parameters_one_group_at_a_time(synthetic_147):
    stages = synthetic_147.stages
    assert [s.freed for s in stages] == [
        ("scale",),
        ("zoomscale",),
        ("uiso", "delta2"),
    ]
    rws = [s.rw for s in stages]
    assert rws == sorted(rws, reverse=True)
    fixed = {n for n, (_, u) in synthetic_147.values.items() if u is None}
    assert fixed == {"delta1", "qdamp", "qbroad"}


# --------------------------------------------------------------------------
# Positions


def test_refine_positions_lowers_rw_and_stays_physical():
    ideal = Icosahedron("Pt", 2)
    r, g = engine_pdf(ideal, 0.006, qmax=QMAX, qdamp=QDAMP)
    start = ideal.copy()
    start.positions += np.random.default_rng(1).normal(0, 0.1, (13, 3))
    result = refine_cluster(
        start,
        (r, g),
        qmax=QMAX,
        qdamp=QDAMP,
        rmax=15.0,
        refine_positions=True,
        max_nfev=8,
    )
    assert result.stages[-1].freed == ("positions",)
    before, after = result.stages[-2].rw, result.stages[-1].rw
    assert after < 0.5 * before
    assert min_distance(result.atoms) > 2.0
    shifts = np.linalg.norm(result.atoms.positions - start.positions, axis=1)
    assert shifts.max() < 0.3 * math.sqrt(3) + 0.1
    assert sum(n.startswith("x_") for n in result.values) == 13
    assert all(
        np.isfinite(u) for n, (_, u) in result.values.items() if u is not None
    )


def test_positions_stage_needs_refine_positions(pt147):
    r, g = engine_pdf(pt147, 0.005, qmax=QMAX)
    with pytest.raises(ValueError, match="refine_positions=False"):
        refine_cluster(pt147, (r, g), stages=[["scale"], ["positions"]])


# --------------------------------------------------------------------------
# Metadata


def test_experimental_header_sets_qmin_qmax(experimental_dir):
    """JQ_S1 (Pt nanoparticles, FCC in the literature) with an FCC Pt
    octahedron: Q-range from the xPDFsuite header, qdamp by default."""
    path = experimental_dir / "JQ_S1.gr"
    header = load_pdf(path)
    atoms = Octahedron("Pt", 7, 2)
    result = refine_cluster(atoms, path, rmax=30.0)
    assert result.settings["qmax"] == (header.qmax, "data")
    assert result.settings["qmin"] == (header.qmin, "data")
    assert result.settings["qdamp"] == (0.04, "default")
    gen = result.recipe.pdf.G
    assert (gen.qmin, gen.qmax) == (header.qmin, header.qmax)
    # Gcalc is what the engine gives with those settings, recomputed here.
    v = {name: value for name, (value, _) in result.values.items()}
    rstep = (result.r[-1] - result.r[0]) / (len(result.r) - 1)
    calc = DebyePDFCalculator(
        rmin=result.r[0],
        rmax=result.r[-1] + rstep / 2,
        rstep=rstep,
        qmin=header.qmin,
        qmax=header.qmax,
        qdamp=0.04,
        delta2=v["delta2"],
        scale=v["scale"],
    )
    gcalc = calc.compute(
        torch.as_tensor(result.atoms.positions),
        torch.as_tensor(result.atoms.numbers),
        uiso=torch.as_tensor(result.atoms.arrays["uiso"]),
        r=result.r,
    ).numpy()
    tolerance = 1e-9 * abs(gcalc).max()
    np.testing.assert_allclose(result.gcalc, gcalc, atol=tolerance)
    assert result.rw < 0.5
    assert 0.98 < v["zoomscale"] < 1.02


def test_header_qdamp_used_and_arguments_override(tmp_path, pt147):
    r, g = engine_pdf(pt147, 0.005, qmax=QMAX, qdamp=0.03)
    path = write_gr(
        tmp_path / "synthetic.gr",
        PDFData.from_arrays(r, g, metadata={"qmax": 22.0, "qdamp": 0.03}),
    )
    quick = dict(stages=[["scale"]], rmax=10.0)
    result = refine_cluster(pt147, path, **quick)
    assert result.settings["qdamp"] == (0.03, "data")
    assert result.settings["qmax"] == (22.0, "data")
    assert result.recipe.pdf.G.qdamp.value == 0.03
    result = refine_cluster(pt147, path, qmax=20.0, qdamp=0.05, **quick)
    assert result.settings["qmax"] == (20.0, "argument")
    assert result.settings["qdamp"] == (0.05, "argument")
    assert result.recipe.pdf.G.qmax == 20.0


@pytest.mark.parametrize("mode, warned", [("xray", False), ("neutron", True)])
def test_the_datas_radiation_reaches_the_generator(
    tmp_path, caplog, mode, warned
):
    """The engine has X-ray form factors: neutron data of a two-element
    cluster are fitted, with a warning that says so."""
    atoms = Icosahedron("Pt", 2)
    atoms.symbols[:6] = "Ni"
    r, g = engine_pdf(atoms, 0.005, qmax=QMAX, qdamp=QDAMP)
    path = write_gr(
        tmp_path / f"{mode}.gr",
        PDFData.from_arrays(r, g, metadata={"mode": mode, "qmax": QMAX}),
    )
    with caplog.at_level("WARNING", logger="diffpy_cbldm.refine"):
        result = refine_cluster(atoms, path, stages=[["scale"]], rmax=10.0)
    stype = {"xray": "X", "neutron": "N"}[mode]
    assert result.recipe.pdf.profile.meta["stype"] == stype
    said = [m for m in caplog.messages if "X-ray form factors" in m]
    assert bool(said) == warned


def test_generator_takes_srfits_q_range_and_radiation_calls(pt147, caplog):
    """PDFContribution.setQmax/setQmin/setScatteringType call these
    methods on every generator, as on DiffPy's."""
    from diffpy.srfit.pdf import PDFContribution

    gen = DebyeClusterGenerator(pt147, "G")
    contribution = PDFContribution("pdf")
    contribution.addProfileGenerator(gen)
    contribution.setQmax(22.0)
    contribution.setQmin(0.8)
    assert (gen.getQmin(), gen.getQmax()) == (0.8, 22.0)
    assert (gen.qmin, gen.qmax) == (0.8, 22.0)
    assert gen.getScatteringType() == "X"
    mixed = pt147.copy()
    mixed.symbols[:10] = "Ni"
    two = DebyeClusterGenerator(mixed, "G")
    with caplog.at_level("WARNING", logger="diffpy_cbldm.refine"):
        two.setScatteringType("N")
    assert two.getScatteringType() == "N"
    assert any("X-ray form factors" in m for m in caplog.messages)


def test_data_as_srfit_profile(pt147):
    from diffpy.srfit.fitbase import Profile

    r, g = engine_pdf(pt147, 0.005, qmax=20.0, qdamp=0.03)
    profile = Profile()
    noise = np.random.default_rng(2).normal(0, 1e-3, len(r))
    profile.setObservedProfile(r, 2.0 * g + noise)
    profile.meta.update(qmax=20.0, qdamp=0.03)
    result = refine_cluster(pt147, profile, stages=[["scale"]])
    assert result.settings["qmax"] == (20.0, "data")
    assert result.values["scale"][0] == pytest.approx(2.0, rel=1e-3)


def test_data_as_srfit_pdfcontribution(pt147, experimental_dir):
    """A DiffPy user's PDFContribution, data loaded from a file: its
    observed profile on its calculation range, with the file's header."""
    from diffpy.srfit.pdf import PDFContribution

    contribution = PDFContribution("pdf")
    contribution.loadData(str(experimental_dir / "JQ_S1.gr"))
    contribution.setCalculationRange(1.5, 20.0)
    result = refine_cluster(pt147, contribution, stages=[["scale"]])
    assert result.settings["qmin"] == (1.0, "data")
    assert (result.r[0], result.r[-1]) == pytest.approx((1.5, 20.0))


def test_generator_metadata_hooks_in_a_users_recipe(pt147):
    """DiffPy-style use: the profile's metadata configure the generator
    through processMetaData (srfit 3.2) and _process_metadata (later)."""
    from diffpy.srfit.fitbase import FitContribution, Profile

    r, g = engine_pdf(pt147, 0.005, qmax=20.0, qdamp=0.03, delta2=1.0)
    profile = Profile()
    profile.setObservedProfile(r, g)
    profile.meta.update(qmax=20.0, qmin=0.5, qdamp=0.03, delta2=1.0)
    gen = DebyeClusterGenerator(pt147, "G", uiso=0.005)
    contribution = FitContribution("pdf")
    contribution.setProfile(profile, xname="r")
    contribution.addProfileGenerator(gen)
    assert (gen.qmin, gen.qmax) == (0.5, 20.0)
    assert gen.qdamp.value == 0.03 and gen.delta2.value == 1.0
    gen.meta["qmax"] = 18.0
    gen._process_metadata()
    assert gen.qmax == 18.0
    gen.meta["qmax"] = 20.0
    gen.processMetaData()
    assert gen.qmax == 20.0
    # Evaluated through the contribution it is the engine's G.
    gen.meta["qmin"] = 0.0
    gen.processMetaData()
    m = r >= 1.5
    profile.setCalculationRange(1.5, 29.99)
    np.testing.assert_allclose(contribution.evaluate(), g[m], atol=1e-3)


def test_zoomscale_is_an_expansion_about_the_centre(pt147):
    gen = DebyeClusterGenerator(pt147, uiso=0.006)
    gen.zoomscale.setValue(1.02)
    gen.scale.setValue(0.5)
    r = np.arange(1.5, 25.0, 0.01)
    # The generator sets the calculation range from r as DiffPy does.
    rstep = (r[-1] - r[0]) / (len(r) - 1)
    calc = DebyePDFCalculator(
        rmin=r[0], rmax=r[-1] + rstep / 2, rstep=rstep, scale=0.5
    )
    expected = calc.compute(
        torch.as_tensor(zoomed(pt147, 1.02).positions),
        torch.as_tensor(pt147.numbers),
        uiso=torch.full((147,), 0.006, dtype=torch.float64),
        r=r,
    ).numpy()
    np.testing.assert_allclose(gen(r), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        gen.cluster().positions, zoomed(pt147, 1.02).positions
    )


# --------------------------------------------------------------------------
# Outputs


def test_save_writes_five_readable_files(tmp_path, small_result):
    import ase.io
    from diffpy.srfit.fitbase.fitresults import resultsDictionary
    from diffpy.structure import loadStructure
    from scipy.spatial.distance import pdist

    paths = small_result.save(tmp_path, "fit")
    assert [p.name for p in paths] == [
        "fit.res",
        "fit.fgr",
        "fit.xyz",
        "fit.cif",
        "fit.png",
    ]
    assert all(p.is_file() for p in paths)

    res = resultsDictionary(paths[0].read_text())
    assert float(res["Rw"]) == pytest.approx(small_result.rw, rel=1e-5)
    assert float(res["zoomscale"]) == pytest.approx(
        small_result.values["zoomscale"][0], rel=1e-5
    )

    table = np.loadtxt(paths[1])
    np.testing.assert_allclose(table[:, 0], small_result.r)
    np.testing.assert_allclose(table[:, 1], small_result.gcalc, rtol=1e-7)
    np.testing.assert_allclose(table[:, 2], small_result.gobs, rtol=1e-7)
    np.testing.assert_allclose(table[:, 3], small_result.dg, rtol=1e-7)
    fgr = load_pdf(paths[1])
    np.testing.assert_allclose(fgr.g, small_result.gobs, rtol=1e-7)
    assert fgr.qmax == QMAX and fgr.qdamp == QDAMP

    atoms = ase.io.read(paths[2])
    np.testing.assert_allclose(
        atoms.positions, small_result.atoms.positions, atol=1e-8
    )
    # extxyz writes 8 decimals.
    np.testing.assert_allclose(
        atoms.arrays["uiso"], small_result.atoms.arrays["uiso"], atol=1e-8
    )
    assert atoms.info["rw"] == pytest.approx(small_result.rw)

    # The CIF, read by DiffPy itself: the same interatomic distances (to
    # the 6 decimals of its fractional coordinates) and the refined Uiso.
    stru = loadStructure(str(paths[3]))
    assert list(stru.element) == small_result.atoms.get_chemical_symbols()
    np.testing.assert_allclose(
        pdist(stru.xyz_cartn), pdist(small_result.atoms.positions), atol=2e-4
    )
    np.testing.assert_allclose(
        stru.Uisoequiv, small_result.atoms.arrays["uiso"], atol=1e-6
    )
    assert not stru.anisotropy.any()

    assert paths[4].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths
    )


def test_xyz_leaves_out_info_that_is_none(tmp_path, small_result):
    import ase.io

    small_result.atoms.info.update(seed=None, relaxed=None, candidate=3)
    try:
        atoms = ase.io.read(small_result.save_xyz(tmp_path / "a.xyz"))
    finally:
        for key in ("seed", "relaxed", "candidate"):
            small_result.atoms.info.pop(key)
    # ASE would read a None written as a bare key back as True.
    assert "seed" not in atoms.info and "relaxed" not in atoms.info
    assert atoms.info["candidate"] == 3


def test_single_writers_and_plot(tmp_path, small_result):
    assert small_result.save_res(tmp_path / "a.res").is_file()
    assert small_result.save_fgr(tmp_path / "a.fgr").is_file()
    assert small_result.save_xyz(tmp_path / "a.xyz").is_file()
    assert small_result.save_cif(tmp_path / "a.cif").is_file()
    ax = small_result.plot(tmp_path / "a.png")
    assert (tmp_path / "a.png").is_file()
    assert "Rw" in ax.get_title()
    assert ax.get_xlabel() == "r (Å)"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:3] == ["Gobs", "Gcalc", "Gdiff"]
    assert ax.get_lines()[0].get_linestyle() == "None"  # open circles


def test_ranked_fits_leave_pyplot_and_the_backend_alone(
    tmp_path, small_result
):
    """plot_ranked_fits draws on its own Agg canvas (a figure per call
    left open in pyplot piled up, and the backend was switched), or in
    the figure it is given."""
    import matplotlib
    import matplotlib.pyplot as plt

    from diffpy_cbldm.plotting import plot_ranked_fits

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    fig = plot_ranked_fits([small_result] * 3, tmp_path / "fits.png", top=2)
    assert (tmp_path / "fits.png").read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 2 and fig.axes[1].get_title().startswith("#2")
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == open_figures
    shown = plt.figure()
    try:
        assert plot_ranked_fits([small_result], fig=shown) is shown
        assert len(shown.axes) == 1
    finally:
        plt.close(shown)
    with pytest.raises(ValueError, match="at least one result"):
        plot_ranked_fits([], top=2)


def test_cluster_box_keeps_images_beyond_the_margin(pt147):
    from itertools import product

    from diffpy_cbldm.refine import cluster_structure

    atoms = pt147.copy()
    atoms.positions += [3.0, -40.0, 7.5]  # anywhere in space
    atoms.set_array("uiso", np.linspace(0.004, 0.009, len(atoms)))
    margin = 12.5
    stru = cluster_structure(atoms, margin)
    x = stru.xyz_cartn
    assert (stru.xyz >= 0).all() and (stru.xyz < 1).all()
    np.testing.assert_allclose(
        x - x[0], atoms.positions - atoms.positions[0], atol=1e-9
    )
    np.testing.assert_allclose(stru.Uisoequiv, atoms.arrays["uiso"])
    lat = stru.lattice
    assert (lat.alpha, lat.beta, lat.gamma) == (90, 90, 90)
    edges = np.array([lat.a, lat.b, lat.c])
    np.testing.assert_allclose(edges, np.ptp(atoms.positions, axis=0) + 12.5)
    # Every image of every atom, in the 26 neighbouring boxes: none closer
    # than the margin to any atom of the cluster.
    nearest = min(
        np.linalg.norm(
            x[:, None, :] - x[None, :, :] - np.multiply(n, edges), axis=-1
        ).min()
        for n in product((-1, 0, 1), repeat=3)
        if any(n)
    )
    assert nearest >= margin - 1e-9


def test_cluster_box_without_uiso_and_bad_margins(pt147):
    from diffpy_cbldm.refine import cluster_structure

    assert not cluster_structure(pt147, 10.0).Uisoequiv.any()
    for margin in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="margin must be > 0"):
            cluster_structure(pt147, margin)
    with pytest.raises(ValueError, match="without atoms"):
        cluster_structure(pt147[:0], 10.0)


@pytest.mark.parametrize("blocked", ["fit.res", "fit.cif", "fit.png"])
def test_failed_save_leaves_no_file(tmp_path, small_result, blocked):
    """A folder in the place of the first, a middle or the last file:
    nothing is written (the files are moved into place one by one)."""
    old = tmp_path / "fit.xyz"
    old.write_text("an earlier fit")
    blocker = tmp_path / blocked
    blocker.mkdir()
    (blocker / "keep").write_text("a folder where a file should go")
    with pytest.raises(IsADirectoryError, match=f"{blocked}: it is a folder"):
        small_result.save(tmp_path, "fit")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [blocked, "fit.xyz"]
    )
    assert old.read_text() == "an earlier fit"


def test_failed_plot_leaves_no_file(tmp_path, small_result):
    with pytest.raises(ValueError, match="not supported"):
        small_result.plot(tmp_path / "fit.nosuchformat")
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_folder(tmp_path, small_result):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        small_result.save_fgr(tmp_path / "missing" / "fit.fgr")


def test_summary_names_rw_and_parameters(small_result):
    text = small_result.summary()
    assert f"Rw = {small_result.rw:.4f}" in text
    for name in ("scale", "zoomscale", "Uiso_Pt", "qmax"):
        assert name in text
    assert isinstance(small_result, RefinementResult)


# --------------------------------------------------------------------------
# Bad input


@pytest.fixture(scope="module")
def data_147(pt147):
    return engine_pdf(pt147, 0.005, qmax=QMAX)


def test_fit_range_outside_data(pt147, data_147):
    with pytest.raises(ValueError, match="does not overlap"):
        refine_cluster(pt147, data_147, rmin=40.0, rmax=50.0)


def test_fit_range_with_too_few_points(pt147, data_147):
    with pytest.raises(ValueError, match="holds only 5 points"):
        refine_cluster(pt147, data_147, rmin=10.0, rmax=10.045)


def test_fit_range_past_the_data_is_said(pt147, data_147):
    quick = dict(qmin=0.0, qmax=QMAX, stages=[])
    with pytest.warns(UserWarning, match="rmax=40 Å given, but the data "):
        result = refine_cluster(pt147, data_147, rmax=40.0, **quick)
    assert result.r[-1] == pytest.approx(29.99)
    r, g = data_147
    with pytest.warns(UserWarning, match="rmin=1 Å given.*starts at r = 2"):
        refine_cluster(pt147, (r[r >= 2], g[r >= 2]), rmin=1.0, **quick)


def test_fit_range_reversed(pt147, data_147):
    with pytest.raises(ValueError, match="rmin < rmax"):
        refine_cluster(pt147, data_147, rmin=10.0, rmax=5.0)


def test_zero_atoms(data_147):
    with pytest.raises(ValueError, match="zero atoms"):
        refine_cluster(Atoms(), data_147)


def test_atoms_too_close(data_147):
    atoms = Atoms("Pt2", positions=[(0, 0, 0), (0.3, 0, 0)])
    with pytest.raises(ValueError, match="apart"):
        refine_cluster(atoms, data_147)


def test_unknown_element(data_147):
    atoms = Atoms("X2", positions=[(0, 0, 0), (2.5, 0, 0)])
    with pytest.raises(ValueError, match="unknown element 'X'"):
        refine_cluster(atoms, data_147)


def test_unknown_backend(pt147, data_147):
    with pytest.raises(ValueError, match="unknown backend 'pdfgui'"):
        refine_cluster(pt147, data_147, backend="pdfgui")


def test_unknown_stage_name(pt147, data_147):
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['Biso'\]"):
        refine_cluster(pt147, data_147, stages=[["scale"], ["Biso"]])


def test_bad_q_range(pt147, data_147):
    with pytest.raises(ValueError, match="qmax > qmin"):
        refine_cluster(pt147, data_147, qmin=5.0, qmax=3.0)


@pytest.mark.parametrize(
    "setting", [dict(qmax=True), dict(qdamp="a lot"), dict(qmin=math.nan)]
)
def test_a_q_setting_that_is_not_a_number_is_named(pt147, data_147, setting):
    ((name, value),) = setting.items()
    with pytest.raises(ValueError, match=f"^{name} must be a"):
        refine_cluster(pt147, data_147, **setting)


def test_refine_positions_adds_its_stage_to_the_stages_given():
    from diffpy_cbldm.refine import POSITIONS_STAGE, _check_stages

    assert _check_stages([["scale"], ["qdamp"]], True) == (
        ("scale",),
        ("qdamp",),
        POSITIONS_STAGE,
    )
    assert _check_stages([["scale"], ["all"]], True) == (
        ("scale",),
        ("all",),
    )
    assert _check_stages([["scale"]], False) == (("scale",),)


def test_float32_is_refused(pt147, data_147):
    with pytest.raises(ValueError, match="needs dtype='float64'"):
        refine_cluster(pt147, data_147, dtype="float32")


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("zoomscale", None, "zoomscale must be a number"),
        ("delta2", math.inf, "delta2 must be a finite number"),
        ("rmin", "x", "rmin must be a number"),
        ("scale", math.inf, "scale must be a finite number"),
        ("position_sigma", math.inf, "position_sigma must be a finite"),
        ("max_shift", math.nan, "max_shift must be a finite"),
    ],
)
def test_a_start_value_that_is_not_a_number_is_named(
    pt147, data_147, option, value, match
):
    with pytest.raises(ValueError, match=match):
        refine_cluster(pt147, data_147, **{option: value})


def test_start_uiso_outside_bounds(pt147, data_147):
    with pytest.raises(ValueError, match="Uiso_Pt"):
        refine_cluster(pt147, data_147, uiso=0.5)


def test_start_zoomscale_outside_bounds(pt147, data_147):
    with pytest.raises(ValueError, match=r"zoomscale=1\.5 is outside"):
        refine_cluster(pt147, data_147, zoomscale=1.5)


def test_bad_position_restraint(pt147, data_147):
    with pytest.raises(ValueError, match="must both be > 0"):
        refine_cluster(
            pt147, data_147, refine_positions=True, position_sigma=0.0
        )


def test_data_of_unknown_type(pt147):
    with pytest.raises(TypeError, match="data must be"):
        refine_cluster(pt147, {"r": [1, 2]})


def test_missing_data_file(pt147, tmp_path):
    with pytest.raises(FileNotFoundError):
        refine_cluster(pt147, tmp_path / "nothing.gr")


# --------------------------------------------------------------------------
# The srreal backend


def test_srreal_backend_explains_when_absent(pt147, data_147):
    try:
        import diffpy.srreal.pdfcalculator  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="conda-forge"):
            refine_cluster(pt147, data_147, backend="srreal")
    else:
        pytest.skip("diffpy.srreal is installed")


def test_srreal_backend_matches_torch(pt147):
    pytest.importorskip("diffpy.srreal.pdfcalculator")
    r, g = engine_pdf(zoomed(pt147, ZOOM), UISO, qmax=QMAX, qdamp=QDAMP)
    result = refine_cluster(
        pt147, (r, g), qmax=QMAX, qdamp=QDAMP, backend="srreal"
    )
    values = {name: v for name, (v, _) in result.values.items()}
    assert values["zoomscale"] == pytest.approx(ZOOM, rel=5e-3)
    assert values["Uiso_Pt"] == pytest.approx(UISO, rel=0.02)
    assert result.rw < 0.02


# --------------------------------------------------------------------------
# The data's Fourier range


def test_unknown_fourier_range_is_warned_and_the_given_one_fits(pt147):
    import warnings

    # A measured PDF's Fourier transform starts at some Qmin > 0: computed
    # here with Qmin 1.0 and Qmax 22 Å⁻¹, handed over as bare arrays.
    r, g = engine_pdf(pt147, 0.005, qmin=1.0, qmax=22.0, qdamp=QDAMP)
    with pytest.warns(UserWarning, match="gives no Qmin or Qmax") as said:
        blind = refine_cluster(pt147, (r, g), qdamp=QDAMP)
    assert "Qmin = 0 Å⁻¹" in str(said[0].message)
    assert "--qmin --qmax" in str(said[0].message)
    assert blind.settings["qmin"] == (0.0, "default")
    # Qmin = 0 adds the cluster's small-angle hump the data do not have.
    assert blind.rw > 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        given = refine_cluster(pt147, (r, g), qmin=1.0, qmax=22.0, qdamp=QDAMP)
        header = refine_cluster(
            pt147,
            PDFData.from_arrays(r, g, metadata={"qmin": 1.0, "qmax": 22.0}),
            qdamp=QDAMP,
        )
    assert given.rw < 1e-9 and header.rw < 1e-9
    assert given.settings["qmin"] == (1.0, "argument")
    assert header.settings["qmin"] == (1.0, "data")
    with pytest.warns(UserWarning, match="gives no Qmax:"):
        refine_cluster(pt147, (r, g), qmin=1.0, qdamp=QDAMP, stages=[])
