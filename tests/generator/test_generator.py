"""CbLDMGenerator on a tiny trained model: inputs of every kind, one
batch of candidates with their records, refinement and ranking, the
measured-PDF mapping, and bad input."""

import numpy as np
import pytest
from ase import Atoms

from diffpy_cbldm.conventions import (
    MIN_RMAX,
    Conventions,
    model_input,
    stretch_factor,
)
from diffpy_cbldm.generator import (
    COUNT_WIDTH,
    as_pdf_data,
    candidate_rw,
    data_displacement,
    merge_close_atoms,
)
from diffpy_cbldm.pdf.datafile import PDFData, write_gr
from diffpy_cbldm.pdf.rw import rw_free_scale

# -- the measured PDF on the model grid -----------------------------------


def test_model_input_interpolates_inside_and_is_normalised():
    conv = Conventions()
    r = np.linspace(1.0, 20.0, 951)
    g = np.sin(r) * np.exp(-r / 10)
    x = model_input(r, g, conv)
    grid = conv.rgrid
    inside = (grid >= 1.0) & (grid <= 20.0)
    scale = np.abs(np.interp(grid[inside], r, g)).max()
    assert np.allclose(
        x[inside] * scale,
        np.sin(grid[inside]) * np.exp(-grid[inside] / 10),
        atol=2e-4,
    )
    assert np.abs(x).max() == pytest.approx(1.0)
    assert np.all(x[grid > 20.0] == 0)
    # below the data: the line from G(0) = 0 to the first point
    below = grid < 1.0
    assert np.allclose(x[below] * scale, g[0] * grid[below], atol=1e-12)


def _peaked(r, nn):
    """A PDF-like curve with shells at nn, sqrt(2) nn, sqrt(3) nn..."""
    shells = nn * np.sqrt(np.arange(1, 40))
    g = sum(
        np.exp(-((r - d) ** 2) / (2 * 0.06**2)) / np.sqrt(k + 1)
        for k, d in enumerate(shells)
    )
    return g * np.exp(-r / 12)


def test_model_input_stretches_the_neighbour_peak_to_the_conventions():
    conv = Conventions(nn_peak=2.75)
    r = np.arange(0.0, 30.0, 0.01)
    x = model_input(r, _peaked(r, 2.3), conv)
    grid = conv.rgrid
    window = (grid > 1.8) & (grid < 3.2)
    assert grid[window][np.argmax(x[window])] == pytest.approx(2.75, abs=0.01)
    # The same curve stretched to another bond length is read the same.
    y = model_input(r, _peaked(r * 2.3 / 2.9, 2.3), conv)
    inside = grid < 30.0 * 2.75 / 2.9
    assert np.allclose(x[inside], y[inside], atol=0.01)
    # Without nn_peak the curve is not stretched.
    z = model_input(r, _peaked(r, 2.3), Conventions())
    assert grid[window][np.argmax(z[window])] == pytest.approx(2.3, abs=0.01)


def test_model_input_needs_a_neighbour_peak_to_stretch():
    r = np.linspace(0.5, 20.0, 400)
    g = np.where((r > 1.8) & (r < 3.6), 0.0, np.sin(r))
    with pytest.raises(ValueError, match="x.gr: .*1.8 and 3.6.*metal"):
        model_input(r, g, Conventions(nn_peak=2.75), source="x.gr")
    assert np.all(np.isfinite(model_input(r, g, Conventions())))


@pytest.mark.parametrize(
    "r, g, match",
    [
        (np.linspace(0.5, 7.0, 100), np.ones(100), r"ends at r = 7 Å.*8"),
        (np.linspace(0.5, 20, 100), np.zeros(100), "zero everywhere"),
        (
            np.linspace(0.5, 20, 100),
            np.r_[np.ones(50), np.nan, np.ones(49)],
            r"NaN or infinity at point 50",
        ),
        (np.linspace(31, 50, 100), np.ones(100), "starts at r = 31"),
    ],
)
def test_model_input_rejects_useless_data(r, g, match):
    with pytest.raises(ValueError, match=match):
        model_input(r, g, Conventions(), source="x.gr")


def test_min_rmax_is_8_angstrom():
    assert MIN_RMAX == 8.0


def test_merge_close_atoms():
    x = np.array([[0, 0, 0], [0.3, 0, 0], [2.8, 0, 0], [5.6, 0, 0.0]])
    merged, n = merge_close_atoms(x, 1.0)
    assert n == 1
    assert np.allclose(merged[np.argsort(merged[:, 0])][0], [0.15, 0, 0])
    same, n = merge_close_atoms(x[1:], 1.0)
    assert n == 0 and np.array_equal(same, x[1:])


# -- proposing -------------------------------------------------------------


def test_propose_returns_n_finite_candidates_with_records(generator, measured):
    from diffpy_cbldm.evaluation import connected_parts

    r, g, _ = measured
    cands = generator.propose((r, g), n=4, seed=0, element="Au")
    assert len(cands) == 4
    drawn = [atoms.info["candidate"] for atoms in cands]
    assert drawn == sorted(set(drawn)) and 0 <= drawn[0] and drawn[-1] < 8
    for atoms in cands:
        assert isinstance(atoms, Atoms)
        assert set(atoms.get_chemical_symbols()) == {"Au"}
        assert np.all(np.isfinite(atoms.positions))
        info = atoms.info
        assert info["n_atoms"] == len(atoms) >= 1
        assert info["seed"] == 0 and info["draws"] == 8
        assert (
            np.isfinite(info["adgp_residual"]) and info["adgp_residual"] >= 0
        )
        assert 0 < info["rw"] < 10
        if len(atoms) > 1:
            d = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
            assert d.min() >= 1.0
        assert (info["pieces"], info["stray_atoms"]) == connected_parts(
            atoms.positions
        )
        assert 1 <= info["pieces"] and 0 <= info["stray_atoms"] < len(atoms)


def test_candidates_are_relaxed_to_the_first_peak(generator, measured):
    from diffpy_cbldm.generator import match_first_peak
    from diffpy_cbldm.pdf.peaks import first_peak

    r, g, _ = measured
    # every draw returned, so that the three runs keep the same latents
    options = dict(n=3, draws=3, seed=2, element="Au")
    relaxed = generator.propose((r, g), **options)
    raw = generator.propose((r, g), relax=False, **options)
    peak = first_peak(r, g)
    assert 2.7 < peak < 3.1  # Au, icosahedral (split first shell)
    forced = generator.propose((r, g), relax=True, **options)
    for a, b, c in zip(relaxed, raw, forced):
        assert a.info["relaxed"] == peak and b.info["relaxed"] is None
        # the tiny model has the template decoder: by default its exact
        # lattice pieces are only scaled, relax=True relaxes them
        assert a.info["structure_type"] is not None
        assert a.info["relax_steps"] == 0
        assert a.info["relax_converged"] is None
        assert 0 <= c.info["relax_steps"] <= 300
        assert c.info["relax_converged"] in (True, False)
        assert b.info["relax_steps"] is None
        assert b.info["relax_converged"] is None
        if len(a) < 3:
            continue
        # scaled, not deformed: the same shape as the decoded one
        x, y = a.positions, b.positions
        x, y = x - x.mean(0), y - y.mean(0)
        factor = np.linalg.norm(x) / np.linalg.norm(y)
        np.testing.assert_allclose(x, y * factor, atol=1e-9)
        # scaled so that its own first G(r) peak is the data's
        (expected,) = match_first_peak(
            [b.positions], PDFData.from_arrays(r, g), peak, "Au"
        )
        np.testing.assert_allclose(a.positions, expected, atol=1e-9)
        d = c.get_all_distances()
        np.fill_diagonal(d, np.inf)
        nearest = d.min(axis=1)
        bonded = nearest[np.abs(nearest / peak - 1) < 0.2]
        if len(bonded):
            assert np.median(bonded) == pytest.approx(peak, rel=1e-9)


def test_candidate_rw_is_the_free_scale_rw(measured):
    r, g, atoms = measured
    pdf = PDFData.from_arrays(
        r, g, metadata={"qmax": 25.0, "qmin": 0.7, "qdamp": 0.03}
    )
    # The true cluster against its own PDF (other Uiso): small, not zero.
    value = candidate_rw([atoms], pdf)[0]
    assert 0 < value < 0.5
    # Independent: recompute with the engine on the same points.
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    keep = r >= 1.5
    rc, gc = DebyePDFCalculator(
        rmin=r[keep][0],
        rmax=r[-1] + 0.01,
        rstep=0.02,
        qmin=0.7,
        qmax=25.0,
        qdamp=0.03,
        biso=8 * np.pi**2 * 0.005,
    )(atoms)
    expected = rw_free_scale(g[keep], np.interp(r[keep], rc, gc))[0]
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def disordered():
    """The icosahedron's PDF at Uiso 0.012 Å² and delta2 1.2 Å², with
    its Q settings in the header."""
    from diffpy_cbldm.clusters.build import build_cluster
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    atoms = build_cluster("icosahedral:Au:shells=3")
    q = {"qmin": 0.7, "qmax": 25.0, "qdamp": 0.03}
    r, g = DebyePDFCalculator(
        rmin=0.5,
        rmax=20.0,
        rstep=0.02,
        biso=8 * np.pi**2 * 0.012,
        delta2=1.2,
        **q,
    )(atoms)
    return PDFData.from_arrays(r, g, metadata=q), atoms


def test_data_displacement_recovers_the_engine_values(disordered):
    pdf, atoms = disordered
    uiso, delta2 = data_displacement(atoms, pdf)
    assert uiso == pytest.approx(0.012, rel=1e-3)
    assert delta2 == pytest.approx(1.2, rel=1e-2)
    # At those values the truth fits its PDF; at the default Uiso not.
    assert candidate_rw([atoms], pdf, uiso=uiso, delta2=delta2)[0] < 1e-3
    assert candidate_rw([atoms], pdf)[0] > 0.1


@pytest.mark.parametrize("uiso", [-0.01, float("nan")])
def test_candidate_rw_names_a_bad_uiso(disordered, uiso):
    pdf, atoms = disordered
    with pytest.raises(ValueError, match=r"uiso must be finite and >= 0"):
        candidate_rw([atoms], pdf, uiso=uiso)
    with pytest.raises(ValueError, match=r"delta2=nan"):
        candidate_rw([atoms], pdf, delta2=float("nan"))


def test_draws_are_compared_at_the_data_displacement(generator, disordered):
    """propose refines the displacement with the draw that fits best at
    the default Uiso, and gives every draw's Rw at it. (Without joining:
    a one-piece variant that is compared and then dropped can be the
    best one.)"""
    pdf, _ = disordered
    every = generator.propose(
        pdf, n=4, draws=4, seed=1, element="Au", connected=False
    )
    at_default = candidate_rw(every, pdf)
    best = every[int(np.argmin(at_default))]
    expected = data_displacement(best, pdf)
    for atoms in every:
        assert (atoms.info["rw_uiso"], atoms.info["rw_delta2"]) == expected
    np.testing.assert_allclose(
        [a.info["rw"] for a in every],
        candidate_rw(every, pdf, uiso=expected[0], delta2=expected[1]),
        rtol=1e-9,
    )


def test_candidates_are_the_best_of_the_draws(generator, measured):
    """With more draws than candidates, the n draws of lowest raw Rw are
    returned, in generation order: the same latents (same batch size and
    seed) with every draw returned show which."""
    r, g, _ = measured
    every = generator.propose((r, g), n=6, draws=6, seed=3, element="Au")
    best = generator.propose((r, g), n=3, draws=6, seed=3, element="Au")
    assert [a.info["candidate"] for a in every] == list(range(6))
    rw = [a.info["rw"] for a in every]
    kept = sorted(np.argsort(rw, kind="stable")[:3].tolist())
    assert [a.info["candidate"] for a in best] == kept
    for a in best:
        twin = every[a.info["candidate"]]
        assert a.info["rw"] == pytest.approx(twin.info["rw"], rel=1e-9)
        np.testing.assert_allclose(a.positions, twin.positions, atol=1e-9)
    assert max(a.info["rw"] for a in best) <= min(
        rw[k] for k in range(6) if k not in kept
    )


@pytest.mark.parametrize(
    "draws, match",
    [(2, "draws must be at least n = 3.*got 2"), (4.5, "draws must be an")],
)
def test_draws_must_cover_the_candidates(generator, measured, draws, match):
    r, g, _ = measured
    with pytest.raises(ValueError, match=match):
        generator.propose((r, g), n=3, draws=draws, element="Au")


def test_propose_is_reproducible_with_a_seed(generator, measured):
    r, g, _ = measured
    a = generator.propose((r, g), n=2, seed=5, element="Au")
    b = generator.propose((r, g), n=2, seed=5, element="Au")
    for x, y in zip(a, b):
        assert len(x) == len(y)
        assert np.allclose(x.positions, y.positions)


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
def test_other_samplers_are_one_argument_away(generator, measured, sampler):
    r, g, _ = measured
    cands = generator.propose(
        (r, g), n=2, seed=1, sampler=sampler, steps=5, element="Au"
    )
    assert len(cands) == 2 and all(c.info["sampler"] == sampler for c in cands)


def test_every_input_kind_gives_the_same_model_input(
    generator, measured, tmp_path
):
    from diffpy.srfit.pdf import PDFContribution

    r, g, _ = measured
    path = tmp_path / "au.gr"
    write_gr(path, PDFData.from_arrays(r, g, metadata={"composition": "Au"}))
    contribution = PDFContribution("pdf")
    contribution.profile.setObservedProfile(r, g)
    expected = generator.model_input((r, g))
    for data in (path, str(path), contribution, contribution.profile):
        assert np.allclose(generator.model_input(data), expected, atol=1e-6)


def test_element_comes_from_the_file_header(generator, measured, tmp_path):
    r, g, _ = measured
    path = tmp_path / "pt.gr"
    write_gr(path, PDFData.from_arrays(r, g, metadata={"composition": "Pt"}))
    cands = generator.propose(path, n=1, seed=0)
    assert set(cands[0].get_chemical_symbols()) == {"Pt"}


@pytest.mark.parametrize(
    "composition, element",
    [("Pt", "Pt"), ("Au144", "Au"), ("Pt1.0", "Pt"), (" Ni 0.5 ", "Ni")],
)
def test_a_one_element_composition_names_the_metal(composition, element):
    from diffpy_cbldm.generator import _element

    r = np.linspace(0.5, 30, 100)
    pdf = PDFData.from_arrays(
        r, np.sin(r), metadata={"composition": composition}
    )
    assert _element(pdf, None) == element


@pytest.mark.parametrize("composition", ["PtNi", "Au144S60", "Pt2Ni", "Qq"])
def test_a_composition_of_several_elements_is_refused(composition):
    from diffpy_cbldm.generator import _element

    r = np.linspace(0.5, 30, 100)
    pdf = PDFData.from_arrays(
        r, np.sin(r), metadata={"composition": composition}
    )
    with pytest.raises(ValueError, match="not a single element.*--element"):
        _element(pdf, None)
    assert _element(pdf, "Pd") == "Pd"


# -- solving -----------------------------------------------------------------


def test_solve_refines_and_ranks(generator, measured):
    r, g, _ = measured
    results = generator.solve(
        (r, g), n=3, seed=0, element="Au", progress=False
    )
    assert len(results) == 3
    rws = [res.rw for res in results]
    assert rws == sorted(rws)
    for rank, res in enumerate(results, 1):
        info = res.atoms.info
        assert info["rank"] == rank
        assert info["refined_rw"] == res.rw
        # refinement starts from the candidate and cannot make it worse
        # by more than the difference in Uiso/qdamp handling
        assert res.rw <= info["raw_rw"] + 1e-6


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_n_must_be_a_positive_integer(generator, measured, n):
    r, g, _ = measured
    with pytest.raises(ValueError, match="n must be"):
        generator.propose((r, g), n=n, element="Au")


@pytest.mark.parametrize(
    "seed, match",
    [
        (1.5, "seed must be an integer, got 1.5"),
        (True, "seed must be an integer"),
        (-1, "seed must be at least 0"),
        (2**64, "seed must be at most 18446744073709551615"),
    ],
)
def test_a_bad_seed_is_named(generator, measured, seed, match):
    r, g, _ = measured
    with pytest.raises(ValueError, match=match):
        generator.propose((r, g), n=1, element="Au", seed=seed)


def test_short_zero_and_nan_pdfs(generator):
    r = np.linspace(0.5, 6.0, 200)
    with pytest.raises(ValueError, match="ends at r = 6"):
        generator.propose((r, np.sin(r)), element="Au")
    r = np.linspace(0.5, 20.0, 200)
    with pytest.raises(ValueError, match="zero everywhere"):
        generator.propose((r, np.zeros_like(r)), element="Au")
    with pytest.raises(ValueError, match="NaN|not finite"):
        generator.propose((r, np.full_like(r, np.nan)), element="Au")


def test_pdf_without_a_neighbour_peak_is_refused(generator):
    # The weights stretch every input to their nearest-neighbour peak, so
    # a PDF without one cannot be read, relaxed or not.
    assert generator.conventions.nn_peak is not None
    r = np.linspace(0.5, 20.0, 400)
    g = np.exp(-r / 3) * np.sin(2 * np.pi * r / 8.0)  # peaks at 2, 10, 18
    g[(r > 1.8) & (r < 3.6)] = np.linspace(1, 0, ((r > 1.8) & (r < 3.6)).sum())
    for relax in (None, False):
        with pytest.raises(ValueError, match="no maximum between 1.8 and 3.6"):
            generator.propose((r, g), n=1, element="Au", relax=relax)


def test_missing_and_bad_element(generator, measured):
    r, g, _ = measured
    with pytest.raises(ValueError, match="element='Au'"):
        generator.propose((r, g))
    with pytest.raises(ValueError, match="unknown element 'Qq'"):
        generator.propose((r, g), element="Qq")


def test_unknown_input_type():
    with pytest.raises(TypeError, match="got dict"):
        as_pdf_data({"r": 1})


def test_q_settings_given_go_into_the_header(measured, caplog):
    import warnings

    r, g, _ = measured
    with pytest.warns(UserWarning, match="gives no Qmin or Qmax"):
        assert as_pdf_data((r, g), qmin=None, qdamp=0.03).qmin is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert as_pdf_data((r, g), qmin=None).metadata == {}
        data = as_pdf_data((r, g), qmin=0.7, qmax=25.0, qdamp=0.03)
    assert (data.qmin, data.qmax, data.qdamp, data.qbroad) == (
        0.7,
        25.0,
        0.03,
        None,
    )
    again = as_pdf_data(data, qmax=20.0)
    assert again.qmax == 20.0 and again.qmin == 0.7
    assert "qmax=20 given overrides qmax=25" in caplog.text
    with pytest.raises(TypeError, match=r"unknown Q setting\(s\) \['qmx'\]"):
        as_pdf_data(data, qmx=20.0)
    with pytest.raises(ValueError, match="qmax"):
        as_pdf_data(data, qmax=0.5)


def _start_rw(result, header):
    """Rw of the cluster srfit started from, at the screening's
    displacement."""
    info = result.atoms.info
    start = Atoms(f"Au{len(result.atoms)}", result.start_positions)
    return candidate_rw(
        [start], header, uiso=info["rw_uiso"], delta2=info["rw_delta2"]
    )[0]


def test_screening_uses_the_q_settings_given(generator, measured):
    r, g, _ = measured
    truth = {"qmin": 0.7, "qmax": 25.0, "qdamp": 0.03}
    header = PDFData.from_arrays(r, g, metadata=truth)
    # Without the site refinement srfit starts from the candidates as
    # generated, whose raw Rw was screened with the settings given.
    results = generator.solve(
        (r, g),
        n=2,
        seed=0,
        element="Au",
        progress=False,
        site_moves=0,
        **truth,
    )
    for result in results:
        assert result.settings["qmin"] == (0.7, "argument")
        assert result.atoms.info["site_moves"] is None
        assert result.atoms.info["raw_rw"] == pytest.approx(
            _start_rw(result, header), rel=1e-9
        )
    # With it, srfit starts from the edited clusters, whose Rw the site
    # refinement computed with the same settings.
    results = generator.solve(
        (r, g), n=2, seed=0, element="Au", progress=False, **truth
    )
    for result in results:
        info = result.atoms.info
        assert info["site_start_atoms"] == len(result.atoms)
        assert info["site_rw"][1] <= info["site_rw"][0]
        assert info["site_rw"][1] == pytest.approx(
            _start_rw(result, header), abs=2e-3
        )


def test_unknown_weights_name():
    from diffpy_cbldm import CbLDMGenerator
    from diffpy_cbldm.weights import WeightsError

    with pytest.raises(WeightsError, match="no-such-weights"):
        CbLDMGenerator.from_pretrained("no-such-weights")


def test_corrupted_weights_fail_their_checksum(tiny_weights, tmp_path):
    import shutil

    from diffpy_cbldm import CbLDMGenerator
    from diffpy_cbldm.weights import WeightsError

    copy = tmp_path / "w"
    shutil.copytree(tiny_weights, copy)
    target = sorted(copy.glob("*.safetensors"))[0]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=target.name):
        CbLDMGenerator.from_pretrained(copy)


def test_anti_correlated_starts_are_summarised_once(caplog):
    """refine_cluster warns when a cluster's G(r) starts anti-correlated
    with the data; refining a batch gives one summary line instead of a
    warning per candidate, naming the candidates."""
    import logging

    from diffpy_cbldm.clusters.build import build_cluster
    from diffpy_cbldm.generator import refine_candidates
    from diffpy_cbldm.pdf.datafile import PDFData
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    atoms = build_cluster("icosahedral:Au:shells=2")
    r, g = DebyePDFCalculator(rmin=1.0, rmax=12.0, rstep=0.05, qmax=20)(atoms)
    # Data that is the negative of the cluster's own PDF: anti-correlated.
    data = PDFData.from_arrays(
        r, -g, metadata={"qmax": 20.0, "composition": "Au"}
    )
    with caplog.at_level(logging.WARNING, logger="diffpy_cbldm"):
        results = refine_candidates(
            [atoms.copy(), atoms.copy()], data, progress=False
        )
    assert len(results) == 2
    messages = [rec.getMessage() for rec in caplog.records]
    per_candidate = [m for m in messages if "starting cluster" in m]
    summary = [m for m in messages if "2 of 2 candidates" in m]
    assert per_candidate == []
    assert len(summary) == 1 and summary[0].endswith(": 0, 1")
    # refine_cluster alone still warns.
    caplog.clear()
    from diffpy_cbldm.refine import refine_cluster

    with caplog.at_level(logging.WARNING, logger="diffpy_cbldm"):
        refine_cluster(atoms.copy(), data)
    assert any("anti-correlates" in r.getMessage() for r in caplog.records)


def test_refining_a_result_again_records_the_new_fit():
    """A refined result refined again (as the docs suggest for close
    candidates) carries the second fit's values, not the first's, and
    keeps the Rw before any refinement as raw_rw."""
    from diffpy_cbldm.clusters.build import build_cluster
    from diffpy_cbldm.generator import refine_candidates
    from diffpy_cbldm.pdf.datafile import PDFData
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    atoms = build_cluster("icosahedral:Au:shells=2")
    r, g = DebyePDFCalculator(
        rmin=1.0, rmax=12.0, rstep=0.05, qmax=20, qdamp=0.02
    )(atoms)
    data = PDFData.from_arrays(
        r, g, metadata={"qmax": 20.0, "qdamp": 0.05, "composition": "Au"}
    )
    start = atoms.copy()
    start.positions *= 1.02
    start.info.update(rw=0.5, candidate=3)
    (first,) = refine_candidates([start], data, progress=False)
    (second,) = refine_candidates(
        [first.atoms],
        data,
        progress=False,
        stages=[["scale", "zoomscale"], ["uiso", "delta2", "qdamp"]],
    )
    values = {name: value for name, (value, _) in second.values.items()}
    assert values["qdamp"] < 0.04  # from the header's 0.05 towards 0.02
    for name, value in values.items():
        assert second.atoms.info[name] == value, name
    assert second.atoms.info["qdamp"] != first.atoms.info.get("qdamp")
    assert second.atoms.info["rw"] == second.atoms.info["refined_rw"]
    assert second.atoms.info["raw_rw"] == 0.5
    assert second.atoms.info["candidate"] == 3


def test_match_first_peak_recovers_the_scale_of_an_icosahedron(measured):
    """The median nearest-neighbour distance of a Mackay icosahedron
    lies ~3 % below its first G(r) peak; matching the peaks of model and
    data recovers the true size from a cluster 10 % too small."""
    from diffpy_cbldm.clusters.relax import scale_to_nn
    from diffpy_cbldm.generator import match_first_peak
    from diffpy_cbldm.pdf.peaks import first_peak

    r, g, atoms = measured
    pdf = PDFData.from_arrays(
        r, g, metadata={"qmax": 25.0, "qmin": 0.7, "qdamp": 0.03}
    )
    peak = first_peak(r, g)
    x = atoms.positions - atoms.positions.mean(0)
    by_median = scale_to_nn(0.9 * x, peak)
    (matched,) = match_first_peak([0.9 * x], pdf, peak, "Au")
    size = np.linalg.norm(x)
    assert abs(np.linalg.norm(by_median) / size - 1) > 0.02
    assert np.linalg.norm(matched - matched.mean(0)) / size == pytest.approx(
        1.0, abs=0.003
    )
    # a single atom has no peak: returned as it is
    (one,) = match_first_peak([x[:1]], pdf, peak)
    np.testing.assert_array_equal(one, x[:1])


def test_match_first_peak_keeps_the_median_scale_without_a_peak():
    """A sparse chain the shipped weights decoded for one test PDF
    (propose(n=1) once crashed on it): scaled to the median neighbour
    distance, its few short pairs fall below the peak window, whose G(r)
    holds only ripples below zero. It keeps the median scale."""
    from diffpy_cbldm.clusters.relax import scale_to_nn
    from diffpy_cbldm.generator import match_first_peak

    x = np.array(
        [
            [0.95, -0.86, 5.98],
            [-0.41, -0.08, 3.77],
            [-0.41, -0.08, -5.10],
            [0.95, -0.86, 19.28],
            [-0.41, -0.08, 12.63],
            [-0.41, -0.08, 30.35],
            [-0.41, -0.08, -36.11],
            [-0.41, 1.49, 19.28],
            [0.95, -0.86, -56.06],
            [-0.41, 1.49, 5.98],
        ]
    )
    r = np.arange(0.5, 30.0, 0.01)
    meta = {"qmin": 1.213, "qmax": 22.86, "qdamp": 0.0257, "qbroad": 0.0013}
    pdf = PDFData.from_arrays(r, np.sin(r), metadata=meta)
    (out,) = match_first_peak([x], pdf, 2.637, "V")
    np.testing.assert_allclose(out, scale_to_nn(x, 2.637))


# -- the cluster estimator ------------------------------------------------


def test_estimator_readings_are_recorded(generator, measured):
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES

    r, g, _ = measured
    cands = generator.propose((r, g), n=3, seed=0, element="Au")
    first = cands[0].info
    assert first["count_estimate"] > 0 and first["count_estimate_width"] > 0
    assert first["type_estimate"] in STRUCTURE_TYPES
    assert 1 / len(STRUCTURE_TYPES) <= first["type_estimate_probability"] <= 1
    for atoms in cands[1:]:
        for key in ("count_estimate", "type_estimate"):
            assert atoms.info[key] == first[key]


@pytest.mark.parametrize("qdamp", [None, 0.03])
def test_estimate_is_the_reading_propose_records(generator, measured, qdamp):
    r, g, _ = measured
    (atoms,) = generator.propose(
        (r, g), n=1, seed=0, element="Au", qdamp=qdamp
    )
    reading = generator.estimate((r, g), qdamp=qdamp)
    assert reading == {key: atoms.info[key] for key in reading}
    assert reading["count_estimate_qdamp"] == qdamp
    with pytest.raises(ValueError, match="qdamp"):
        generator.estimate((r, g), qdamp=-1.0)


def test_a_few_atom_particle_is_offered_its_compact_fragments(generator):
    """A 13-atom icosahedron: with its count given, the compact
    fragments of 12-14 atoms compete with the draws, and the exact
    cluster (a fragment) fits best; fragments=False samples only."""
    from diffpy_cbldm.clusters.build import build_cluster
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    truth = build_cluster("icosahedral:Pt:shells=2")
    r, g = DebyePDFCalculator(
        rmin=0.5, rmax=20.0, rstep=0.02, qmin=0.7, qmax=25.0, qdamp=0.03
    )(truth)
    data = PDFData.from_arrays(
        r,
        g,
        metadata={
            "qmin": 0.7,
            "qmax": 25.0,
            "qdamp": 0.03,
            "composition": "Pt",
        },
    )
    cands = generator.propose(data, n=4, seed=0, count=13)
    pieces = [c for c in cands if c.info["generator"] == "compact fragment"]
    assert pieces and {len(c) for c in pieces} <= {12, 13, 14}
    best = min(cands, key=lambda c: c.info["rw"])
    assert best.info["generator"] == "compact fragment"
    assert best.info["structure_type"] == "icosahedral" and len(best) == 13
    assert best.info["rw"] < 0.02
    assert best.info["adgp_residual"] is None
    assert best.info["count_given"] == 13
    plain = generator.propose(data, n=4, seed=0, count=13, fragments=False)
    assert all(c.info["generator"].startswith("CbLDM") for c in plain)


@pytest.mark.parametrize("count", [30, 45])
def test_a_given_count_sets_the_candidates_count(generator, measured, count):
    """The count given replaces the estimator's reading (kept in
    atoms.info) in each latent's count distribution."""
    r, g, _ = measured
    plain = generator.propose((r, g), n=4, seed=0, element="Au")
    cands = generator.propose((r, g), n=4, seed=0, element="Au", count=count)
    for atoms in cands:
        # decoded, before close atoms are merged (the tiny model has some)
        decoded = len(atoms) + atoms.info["merged_atoms"]
        assert abs(decoded - count) <= 0.1 * count, decoded
        assert atoms.info["count_given"] == count
        assert atoms.info["count_given_width"] == COUNT_WIDTH
        assert atoms.info["count_estimate"] == plain[0].info["count_estimate"]
    assert plain[0].info["count_given"] is None
    assert plain[0].info["count_given_width"] is None
    # A wide uncertainty leaves the decoder more say.
    wide = generator.propose(
        (r, g), n=4, seed=0, element="Au", count=count, count_width=2.0
    )
    assert wide[0].info["count_given_width"] == 2.0


@pytest.mark.parametrize(
    "count, width, match",
    [
        (0, None, "count must be from 5 to"),
        (10_000, None, "count must be from 5 to"),
        (float("nan"), None, "count must be a finite number"),
        ("many", None, "count must be a number, got 'many'"),
        (True, None, "count must be a finite number"),
        (30, 0.0, "count_width must be > 0"),
        (30, -0.1, "count_width must be > 0"),
        (None, 0.05, "count_width=0.05 given without a count"),
    ],
)
def test_a_bad_count_is_refused(generator, measured, count, width, match):
    r, g, _ = measured
    with pytest.raises(ValueError, match=match):
        generator.propose(
            (r, g), n=1, element="Au", count=count, count_width=width
        )


def test_type_guidance_is_one_argument_away(generator, measured):
    r, g, _ = measured
    free = generator.propose(
        (r, g), n=3, seed=0, element="Au", type_guidance=0
    )
    strong = generator.propose(
        (r, g), n=3, seed=0, element="Au", type_guidance=5.0
    )
    assert len(free) == len(strong) == 3
    # The same seed, other latents: guidance changed the sampling.
    assert any(
        len(a) != len(b) or not np.allclose(a.positions, b.positions)
        for a, b in zip(free, strong)
    )
    with pytest.raises(ValueError, match="type_guidance must be a finite"):
        generator.propose((r, g), n=1, element="Au", type_guidance=-1.0)


def test_weights_without_an_estimator_still_work(
    tiny_weights, measured, tmp_path
):
    """Weights made before the estimator existed: the count comes from
    the condition, the sampler is not guided, the readings are None."""
    import json
    import shutil

    from diffpy_cbldm import CbLDMGenerator

    old = tmp_path / "old"
    shutil.copytree(tiny_weights, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["cluster_estimator"]
    (old / "cluster_estimator.safetensors").unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    gen = CbLDMGenerator.from_pretrained(old, device="cpu")
    assert "cluster_estimator" not in gen.modules
    r, g, _ = measured
    cands = gen.propose((r, g), n=2, seed=0, element="Au")
    assert len(cands) == 2
    assert cands[0].info["count_estimate"] is None
    assert cands[0].info["type_estimate"] is None
    with pytest.raises(ValueError, match="no cluster estimator"):
        gen.estimate((r, g))
    given = gen.propose((r, g), n=2, seed=0, element="Au", count=30)
    assert all(abs(len(a) + a.info["merged_atoms"] - 30) <= 3 for a in given)
    with pytest.raises(ValueError, match="type_guidance must be a finite"):
        gen.propose((r, g), n=1, element="Au", type_guidance=float("inf"))


def test_a_count_beyond_the_model_is_flagged(caplog):
    """JQ_S1.gr reads as about 374 atoms with the shipped weights: the
    user is told that candidates stop at the model's 256."""
    import logging

    from diffpy_cbldm.generator import _warn_beyond_range

    pdf = PDFData.from_arrays(np.linspace(0.5, 20, 50), np.ones(50))
    with caplog.at_level(logging.WARNING, logger="diffpy_cbldm.generator"):
        _warn_beyond_range({"info": {"count_estimate": 200.0}}, 256, pdf)
        assert not caplog.records
        _warn_beyond_range({"info": {"count_estimate": 374.2}}, 256, pdf)
    (record,) = caplog.records
    assert "about 374 atoms" in record.getMessage()
    assert "stop at 256 atoms" in record.getMessage()


def test_an_uncertain_count_is_flagged(caplog):
    """A count estimate wider than UNCERTAIN_COUNT_WIDTH in ln n is
    reported with the model's r-range in the data's units."""
    import logging

    from diffpy_cbldm.generator import (
        UNCERTAIN_COUNT_WIDTH,
        _warn_uncertain_count,
    )

    pdf = PDFData.from_arrays(np.linspace(0.5, 20, 50), np.ones(50))
    info = {"count_estimate": 120.4, "count_estimate_width": 0.05}
    with caplog.at_level(logging.WARNING, logger="diffpy_cbldm.generator"):
        _warn_uncertain_count({"info": info}, 30.0, pdf)
        assert not caplog.records
        info["count_estimate_width"] = UNCERTAIN_COUNT_WIDTH + 0.01
        _warn_uncertain_count({"info": info}, 30.0 / 0.98, pdf)
    (record,) = caplog.records
    message = record.getMessage()
    assert "about 120 atoms, ln n ± 0.16" in message
    assert "r-range of 31 Å" in message


def test_the_estimator_reads_qdamp_from_argument_or_header(
    generator, measured
):
    r, g, _ = measured
    assert generator.modules["cluster_estimator"].reads_qdamp
    plain = generator.propose((r, g), n=1, seed=0, element="Au")
    assert plain[0].info["count_estimate_qdamp"] is None
    given = generator.propose((r, g), n=1, seed=0, element="Au", qdamp=0.03)
    assert given[0].info["count_estimate_qdamp"] == 0.03
    assert given[0].info["count_estimate"] != plain[0].info["count_estimate"]
    header = PDFData.from_arrays(r, g, metadata={"qdamp": 0.03})
    read = generator.propose(header, n=1, seed=0, element="Au")
    assert read[0].info["count_estimate_qdamp"] == 0.03
    assert read[0].info["count_estimate"] == given[0].info["count_estimate"]
    # An argument overrides the header.
    over = generator.propose(header, n=1, seed=0, element="Au", qdamp=0.05)
    assert over[0].info["count_estimate_qdamp"] == 0.05


@pytest.mark.parametrize(
    "qdamp, match",
    [
        (-0.01, "qdamp must be finite and >= 0"),
        ("wide", "number"),
        (float("nan"), "finite"),
        (True, "number"),
    ],
)
def test_bad_qdamp_is_refused(generator, measured, qdamp, match):
    r, g, _ = measured
    with pytest.raises(ValueError, match=match):
        generator.propose((r, g), n=1, element="Au", qdamp=qdamp)


def test_bad_header_qdamp_names_the_file(generator, measured):
    r, g, _ = measured
    data = PDFData.from_arrays(r, g, metadata={"qdamp": -0.2})
    with pytest.raises(ValueError, match="header qdamp must be finite"):
        generator.propose(data, n=1, element="Au")


def test_stretch_factor_moves_the_peak_to_the_conventions():
    r = np.arange(0.0, 30.0, 0.01)
    g = _peaked(r, 2.3)
    assert stretch_factor(r, g, Conventions()) == 1.0
    k = stretch_factor(r, g, Conventions(nn_peak=2.75))
    assert k == pytest.approx(2.75 / 2.3, rel=2e-3)


def test_the_estimator_reads_qdamp_in_the_stretched_frame(generator, measured):
    """Stretching r by k turns the envelope of Qdamp into that of
    Qdamp / k; the estimator is given the latter, the record keeps the
    data's value."""
    import torch

    r, g, _ = measured
    r = 0.8 * r  # a metal with shorter bonds
    k = stretch_factor(r, g, generator.conventions)
    assert k > 1.05
    x = generator.model_input((r, g))
    x = torch.as_tensor(x, dtype=torch.float32)[None]
    with torch.no_grad():
        seen = generator._estimate(x, 0.05, k)
        direct = generator._estimate(x, 0.05 / k)
    assert seen["info"]["count_estimate_qdamp"] == 0.05
    assert seen["info"]["count_estimate"] == direct["info"]["count_estimate"]
    (atoms,) = generator.propose((r, g), n=1, seed=0, element="Au", qdamp=0.05)
    assert atoms.info["input_stretch"] == pytest.approx(k)
    assert atoms.info["count_estimate"] == pytest.approx(
        seen["info"]["count_estimate"], rel=1e-5
    )


def test_propose_screens_with_the_qdamp_given(generator, measured):
    r, g, _ = measured
    cands = generator.propose((r, g), n=2, seed=0, element="Au", qdamp=0.03)
    raw = [c.info["rw"] for c in cands]
    displacement = {
        "uiso": cands[0].info["rw_uiso"],
        "delta2": cands[0].info["rw_delta2"],
    }
    header = PDFData.from_arrays(r, g, metadata={"qdamp": 0.03})
    np.testing.assert_allclose(
        raw, candidate_rw(cands, header, **displacement), rtol=1e-9
    )
    # Not the Qdamp refinement would take when neither says (0.04).
    bare = candidate_rw(cands, (r, g), **displacement)
    assert not np.allclose(raw, bare, rtol=1e-6)
    np.testing.assert_array_equal(
        bare, candidate_rw(cands, PDFData.from_arrays(r, g), **displacement)
    )
