"""LibraryGenerator (cluster screening) and the evaluation helpers."""

import numpy as np
import pytest
from ase import Atoms

from diffpy_cbldm.clusters.bonds import nearest_neighbour_distance
from diffpy_cbldm.dataset.store import open_dataset
from diffpy_cbldm.evaluation import (
    SIZE_BINS,
    StructureTyper,
    format_summary,
    select_cases,
    size_bin,
    summarise,
)
from diffpy_cbldm.library import LibraryGenerator
from diffpy_cbldm.pdf.debye import DebyePDFCalculator


@pytest.fixture(scope="module")
def library(small_set):
    return LibraryGenerator(small_set)


def _measure(atoms, qmax=24.0, qdamp=0.03):
    r, g = DebyePDFCalculator(
        rmin=0.5,
        rmax=20.0,
        rstep=0.01,
        qmin=0.8,
        qmax=qmax,
        qdamp=qdamp,
        biso=0.4,
    )(atoms)
    meta = {"qmin": 0.8, "qmax": qmax, "qdamp": qdamp, "composition": "Pt"}
    from diffpy_cbldm.pdf.datafile import PDFData

    return PDFData.from_arrays(r, g, metadata=meta)


def test_library_holds_one_metal_per_training_shape(small_set, library):
    with open_dataset(small_set) as ds:
        train = ds.split_indices("train")
        shapes = set(ds.array("shape_index")[train].tolist())
        test_shapes = set(
            ds.array("shape_index")[ds.split_indices("test")].tolist()
        )
    assert len(library) == len(shapes)
    assert not test_shapes & set(
        ds_shape
        for ds_shape in open_dataset(small_set)
        .array("shape_index")[library.rows]
        .tolist()
    )
    for x in library.positions:
        assert nearest_neighbour_distance(x) == pytest.approx(2.75)


def test_screening_finds_a_library_cluster_at_another_nn(small_set, library):
    """A library shape rebuilt at NN 2.60 Å is found first, with the
    stretch 2.60 / 2.75 and a small Rw."""
    k = int(np.argmax(library.natoms))
    x = library.positions[k] * (2.60 / 2.75)
    data = _measure(Atoms(f"Pt{len(x)}", positions=x))
    cands = library.propose(data, n=3)
    best = cands[0]
    assert best.info["library_row"] == library.rows[k]
    assert nearest_neighbour_distance(best.positions) == pytest.approx(
        2.60, abs=0.01
    )
    assert best.info["rw"] < 0.15
    assert set(best.get_chemical_symbols()) == {"Pt"}
    rws = [c.info["screen_rw"] for c in cands]
    assert rws == sorted(rws)


def test_screening_rw_is_the_rw_of_the_stretched_clusters(library):
    """The screen's Rw, computed from sums without forming the stretched
    curves, is the free-scale Rw (with dG weights and Qdamp) of every
    library PDF interpolated at the best stretch, and close to a Debye
    calculation of each cluster at that stretch (the Q-space
    broadening and Qmax ripples change a little with the stretch: 0.044
    against 0.033 for the best cluster when written)."""
    from diffpy_cbldm.generator import _settings
    from diffpy_cbldm.pdf.rw import rw_free_scale

    k = int(np.argmax(library.natoms))
    x = library.positions[k] * (2.70 / 2.75)
    data = _measure(Atoms(f"Pt{len(x)}", positions=x), qdamp=0.04)
    rng = np.random.default_rng(5)
    dg = rng.uniform(0.01, 0.03, data.r.size)
    from diffpy_cbldm.pdf.datafile import PDFData

    data = PDFData.from_arrays(
        data.r,
        data.g + dg * rng.standard_normal(data.r.size),
        dg=dg,
        metadata=data.metadata,
    )
    rw, stretch = library.screen(data)
    settings, rmin, rmax = _settings(data)
    keep = (data.r >= rmin) & (data.r <= rmax)
    r, gobs = data.r[keep], data.g[keep]
    grid, pdfs, _, _ = library._library_pdfs(settings, r[-1])
    envelope = np.exp(-0.5 * (settings["qdamp"] * r) ** 2)
    curves = np.stack(
        [
            np.interp(r / s, grid, g) * envelope
            for g, s in zip(pdfs.astype(float), stretch)
        ]
    )
    want, _ = rw_free_scale(gobs, curves, dg[keep])
    np.testing.assert_allclose(rw, want, atol=2e-5)
    # Independent: the Debye PDF of each cluster built at its stretch.
    calc = DebyePDFCalculator(
        rmin=0.0,
        rmax=r[-1] + 0.01,
        rstep=0.01,
        biso=8 * np.pi**2 * 0.005,
        qmin=settings["qmin"],
        qmax=settings["qmax"],
        qdamp=settings["qdamp"],
        qbroad=settings["qbroad"],
    )
    for j in np.argsort(rw)[:3]:
        y = library.positions[j] * stretch[j]
        rr, g = calc(Atoms(f"Pt{len(y)}", positions=y))
        debye, _ = rw_free_scale(gobs, np.interp(r, rr, g), dg[keep])
        assert rw[j] == pytest.approx(debye, abs=0.02)
    assert np.argmin(rw) == k
    assert stretch[k] == pytest.approx(2.70 / 2.75, abs=0.011)


def test_a_given_count_limits_the_screened_clusters(library):
    """Told a count, the library screens only clusters within two
    widths of it in ln n; fewer than n come back when fewer are there."""
    k = int(np.argmax(library.natoms))
    x = library.positions[k]
    data = _measure(Atoms(f"Pt{len(x)}", positions=x))
    count = int(np.median(library.natoms))
    near = np.abs(np.log(library.natoms / count)) <= 0.1
    cands = library.propose(data, n=len(library), count=count)
    assert len(cands) == near.sum() >= 1
    for atoms in cands:
        assert abs(np.log(len(atoms) / count)) <= 0.1
        assert atoms.info["count_given"] == count
        assert atoms.info["count_given_width"] == 0.05
    wide = library.propose(data, n=len(library), count=count, count_width=1)
    assert len(wide) > len(cands)
    plain = library.propose(data, n=2)
    assert plain[0].info["count_given"] is None
    with pytest.raises(ValueError, match="no cluster of the library"):
        library.propose(data, n=2, count=256, count_width=0.01)
    with pytest.raises(ValueError, match="count must be from 5 to 256"):
        library.propose(data, n=2, count=4)


def test_library_solve_refines_and_ranks(library):
    k = int(np.argmax(library.natoms))
    x = library.positions[k] * 1.02
    data = _measure(Atoms(f"Pt{len(x)}", positions=x))
    results = library.solve(data, n=2, progress=False)
    assert len(results) == 2
    assert results[0].rw <= results[1].rw
    assert results[0].rw < 0.1


def test_library_solve_screens_with_the_q_settings_given(library):
    """Bare r, G arrays with the Q settings given to solve: the library
    is screened with them (as when the header carries them), not with
    the defaults."""
    import warnings

    k = int(np.argmax(library.natoms))
    x = library.positions[k] * 1.02
    data = _measure(Atoms(f"Pt{len(x)}", positions=x))
    q = dict(qmin=data.qmin, qmax=data.qmax, qdamp=data.qdamp)
    expected = library.propose(data, n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "the data gives no Qmin"
        results = library.solve(
            (data.r, data.g), n=2, element="Pt", progress=False, **q
        )
    screened = sorted(r.atoms.info["screen_rw"] for r in results)
    assert screened == [c.info["screen_rw"] for c in expected]
    assert {r.atoms.info["library_row"] for r in results} == {
        c.info["library_row"] for c in expected
    }


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(nn_steps=0), "nn_steps must be at least 1"),
        (dict(nn_steps=2.5), "nn_steps must be an integer"),
        (dict(nn_range=(3.1, 2.2)), "nn_range must be two distances"),
        (dict(nn_range=(0, 2.2)), "nn_range must be two distances"),
        (dict(nn_range=(2.2,)), "nn_range must be two distances"),
        (dict(nn_range=("a", 3)), "nn_range must be two distances"),
    ],
)
def test_library_settings_are_checked(small_set, options, match):
    with pytest.raises(ValueError, match=match):
        LibraryGenerator(small_set, **options)


def test_library_rejects_bad_input(library):
    r = np.linspace(0.5, 6, 100)
    with pytest.raises(ValueError, match="ends at r = 6"):
        library.propose((r, np.sin(r)), element="Pt")
    with pytest.raises(ValueError, match="n must be"):
        library.propose((np.linspace(0.5, 20, 100), np.ones(100)), n=0)


def test_typer_types_jittered_library_clusters(small_set):
    with open_dataset(small_set) as ds:
        typer = StructureTyper(ds, ds.split_indices("train"))
    rng = np.random.default_rng(0)
    right = 0
    for x, t in zip(
        [x for x in LibraryGenerator(small_set).positions], typer.types
    ):
        y = 1.05 * x + rng.normal(0, 0.03, x.shape)
        right += typer(Atoms(f"Cu{len(y)}", positions=y)) == t
    # A few shapes are near-identical across types (small octahedra and
    # icosahedra differ by little more than the jitter): >= 90 %.
    assert right >= 0.9 * len(typer)


def test_size_bins_follow_the_paper():
    assert SIZE_BINS == ((5, 80), (80, 170), (170, 256))
    assert [size_bin(n) for n in (5, 79, 80, 169, 170, 256)] == [
        "5-80",
        "5-80",
        "80-170",
        "80-170",
        "170-256",
        "170-256",
    ]


def test_select_cases_covers_every_type(small_set):
    with open_dataset(small_set) as ds:
        rows = select_cases(ds, "test", per_type=2, seed=0)
        test = set(ds.split_indices("test").tolist())
        types = ds.array("structure_type")
        assert set(rows.tolist()) <= test
        present = set(types[list(test)].tolist())
        assert set(types[rows].tolist()) == present
        assert np.array_equal(rows, select_cases(ds, "test", 2, seed=0))


def test_summarise_medians():
    records = [
        dict(
            generator="g",
            type="fcc",
            size_bin="5-80",
            raw_rw=r,
            refined_rw=r / 2,
            count_error=e,
            top_type=t,
            propose_s=1.0,
            refine_s=2.0,
        )
        for r, e, t in (
            (0.2, 0.0, "fcc"),
            (0.4, 0.2, "hcp"),
            (0.3, 0.05, "fcc"),
        )
    ]
    out = summarise(records)["g"]["all"]
    assert out["cases"] == 3
    assert out["median_raw_rw"] == pytest.approx(0.3)
    assert out["median_refined_rw"] == pytest.approx(0.15)
    assert out["count_within_10pct"] == pytest.approx(2 / 3)
    assert out["type_correct"] == pytest.approx(2 / 3)
    assert out["median_solve_s"] == pytest.approx(3.0)


def test_diameter_and_extent():
    from diffpy_cbldm.evaluation import EXTENTS, diameter, extent

    # a 3-4-5 right triangle: the hypotenuse is the largest distance
    assert diameter([[0, 0, 0], [3, 0, 0], [0, 4, 0]]) == pytest.approx(5.0)
    assert diameter([[1.0, 2.0, 3.0]]) == 0.0
    assert extent(29.9, 30.0) == extent(30.0, 30.0) == EXTENTS[0]
    assert extent(30.1, 30.0) == EXTENTS[1]


def test_principal_extents_of_a_rotated_slab():
    from scipy.spatial.transform import Rotation

    from diffpy_cbldm.evaluation import principal_extents

    # a 10 x 4 x 2 grid of unit spacing (spans 9, 3, 1), turned at random
    grid = np.stack(
        np.meshgrid(np.arange(10), np.arange(4), np.arange(2)), -1
    ).reshape(-1, 3)
    turned = Rotation.random(random_state=1).apply(grid) + [5.0, -2.0, 7.0]
    assert principal_extents(turned) == pytest.approx([9.0, 3.0, 1.0])
    # a monolayer has no thickness; one atom has no extent
    assert principal_extents(grid[grid[:, 2] == 0])[2] == pytest.approx(0.0)
    assert list(principal_extents([[1.0, 2.0, 3.0]])) == [0.0, 0.0, 0.0]


def test_summary_by_extent_skips_records_without_it():
    base = dict(
        generator="g",
        type="fcc",
        size_bin="5-80",
        raw_rw=0.2,
        refined_rw=0.1,
        top_type="fcc",
        propose_s=1.0,
        refine_s=2.0,
    )
    records = [
        dict(base, count_error=0.0, extent="fits r-range"),
        dict(base, count_error=0.5, extent="beyond r-range"),
        dict(base, count_error=0.5, extent="beyond r-range"),
        dict(base, count_error=0.0),
    ]
    out = summarise(records)["g"]
    assert out["all"]["cases"] == 4
    assert out["extent"]["fits r-range"]["cases"] == 1
    assert out["extent"]["fits r-range"]["count_within_10pct"] == 1.0
    assert out["extent"]["beyond r-range"]["count_within_10pct"] == 0.0
    table = format_summary(summarise(records), "extent")
    assert "beyond r-range" in table and "fits r-range" in table
    # a name longer than the column widens it and keeps the rows aligned
    long = {"cbldm dpm 20, t1 600 t2 700": summarise(records)["g"]}
    lines = format_summary(long, "extent", name="setting").splitlines()
    assert lines[0].startswith("setting" + " " * 21 + "extent")
    assert all(
        line.index(" 0.") == lines[2].index(" 0.") for line in lines[2:]
    )


def test_case_groups_are_types_extents_and_all():
    from diffpy_cbldm.evaluation import EXTENTS, case_groups

    records = [
        {"type": "sc", "extent": EXTENTS[1], "k": 0},
        {"type": "bcc", "extent": EXTENTS[1], "k": 1},
        {"type": "sc", "extent": EXTENTS[1], "k": 2},
    ]
    groups = {label: [r["k"] for r in g] for label, g in case_groups(records)}
    # sorted types, the extents that occur, then all; no empty group
    assert list(groups) == ["bcc", "sc", EXTENTS[1], "all"]
    assert groups["sc"] == [0, 2] and groups["bcc"] == [1]
    assert groups[EXTENTS[1]] == groups["all"] == [0, 1, 2]


def test_the_stored_noise_is_the_floor_of_the_truths_refined_rw(small_set):
    """Refining the true cluster against its stored PDF leaves exactly
    the stored noise (the recipe models the rest: Biso, Qdamp, Qbroad,
    delta2, scale); without the noise, the fit is nearly exact."""
    from diffpy_cbldm.evaluation import case_data, noise_rw
    from diffpy_cbldm.refine import refine_cluster

    with open_dataset(small_set) as ds:
        rows = select_cases(ds, "test", per_type=1, seed=0)
        for row in rows[:2]:
            row = int(row)
            noisy, sample = case_data(ds, row)
            clean, _ = case_data(ds, row, noiseless=True)
            np.testing.assert_allclose(
                noisy.g - clean.g, ds.noise(row)[ds.rgrid >= 0.5]
            )
            truth = Atoms(
                f"{sample.element}{len(sample.positions)}",
                positions=sample.positions,
            )
            floor = noise_rw(ds, row)
            assert 0.0 < floor < 0.5
            # The refined parameters (scale, zoomscale, Uiso, delta2,
            # Qdamp...) absorb a little of the noise: with p of about 6
            # and (rmax - rmin) Qmax / pi of about 180 independent points
            # (the noise is drawn in Q), Rw^2 drops by about p / N = 3 %
            # on average, Rw by about 2 %, with fluctuations of that size
            # (measured: 4 % below for a 19-atom icosahedron).
            rw = refine_cluster(truth, noisy).rw
            assert 0.93 * floor <= rw <= 1.01 * floor
            assert refine_cluster(truth, clean).rw < 0.005
