"""Site refinement: the pair-profile model of G(r) against the Debye
engine, and recovery of known clusters from their PDFs."""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.distance import pdist

from diffpy_cbldm.clusters import templates as T
from diffpy_cbldm.clusters.build import build_cluster, nn_distance
from diffpy_cbldm.generator import _fit_points, candidate_rw
from diffpy_cbldm.pdf.datafile import PDFData
from diffpy_cbldm.pdf.debye import DebyePDFCalculator
from diffpy_cbldm.site_refinement import (
    PairProfiles,
    refine_candidate_sites,
    refine_sites,
)

Q = {"qmin": 0.7, "qmax": 25.0, "qdamp": 0.03, "qbroad": 0.0}
UISO, DELTA2 = 0.006, 1.0


def _pdf(atoms):
    calc = DebyePDFCalculator(
        rmin=0.5,
        rmax=25.005,
        rstep=0.01,
        biso=8 * np.pi**2 * UISO,
        delta2=DELTA2,
        **Q,
    )
    r, g = calc(atoms)
    return PDFData.from_arrays(r, g, metadata=dict(Q, composition="Au"))


def _profiles(pdf):
    settings, r, _, _ = _fit_points(pdf)
    return PairProfiles(settings, r, UISO, DELTA2, "Au", dmax=r[-1] + 10)


def _sites(atoms, stype):
    """The cluster's exact sites, sorted, in template units."""
    _, sites = T.register(T.template_frame(atoms.positions, stype), stype)
    return sites[np.lexsort(np.round(sites, 4).T)]


def _edited(truth, stype, remove=3, add=2):
    """`truth` without its `remove` outermost atoms and with `add` atoms
    on empty bonded sites: a candidate whose outline is a little off."""
    x = truth.get_positions()
    nn = nn_distance(x)
    t, sites = T.register(T.template_frame(x, stype), stype)
    far = np.argsort(-np.linalg.norm(sites, axis=1))
    kept = sites[np.sort(far[remove:])]
    extra = T.neighbour_sites(sites, stype)[:add]
    new = np.concatenate([kept, extra])
    atoms = Atoms(f"Au{len(new)}", positions=(new - t) * nn + x.mean(0))
    atoms.info["structure_type"] = stype
    return atoms


def test_pair_profiles_sum_to_the_debye_pdf_of_a_cluster():
    truth = build_cluster("fcc:Au:layers=3/2/3")
    pdf = _pdf(truth)
    prof = _profiles(pdf)
    model = prof.pair_sums(pdist(truth.positions)[None])[0]
    gobs, _ = prof.observed(pdf)
    # G = 2/N times the sum over pairs, to the table's interpolation
    model *= 2 / len(truth)
    assert np.abs(model - gobs).max() < 2e-3 * np.abs(gobs).max()


def test_neighbour_sites_of_one_fcc_site_are_its_twelve_bonds():
    near = T.neighbour_sites(np.zeros((1, 3)), "fcc")
    assert len(near) == 12
    np.testing.assert_allclose(np.linalg.norm(near, axis=1), 1.0)
    ico = T.neighbour_sites(np.zeros((1, 3)), "icosahedral")
    assert len(ico) == 12


@pytest.mark.parametrize(
    "spec, stype",
    [
        ("fcc:Au:layers=4/3/3,center=octahedral", "fcc"),
        ("icosahedral:Au:shells=3,removed=4", "icosahedral"),
        ("decahedral:Au:p=3,q=2,r=1", "decahedral"),
        ("sc:Au:size=3/4/5", "sc"),
    ],
)
def test_a_cluster_with_a_wrong_outline_is_edited_back(spec, stype):
    truth = build_cluster(spec)
    pdf = _pdf(truth)
    start = _edited(truth, stype)
    assert len(start) == len(truth) - 1
    out = refine_sites(start, pdf, _profiles(pdf))
    assert len(out) == len(truth)
    # the same cluster up to a symmetry of the arrangement (which the
    # PDF cannot see): the same sorted pair distances
    np.testing.assert_allclose(
        np.sort(pdist(out.positions)),
        np.sort(pdist(truth.positions)),
        atol=1e-6,
    )
    assert T.snap(_sites(out, stype), stype)[1].all()
    before, after = out.info["site_rw"]
    assert after < 0.01 < before
    assert out.info["site_added"] - out.info["site_removed"] == 1
    # the search's Rw is the engine's, on its own r-points
    exact = candidate_rw([out], pdf, uiso=UISO, delta2=DELTA2)[0]
    assert exact == pytest.approx(after, abs=2e-3)


def test_candidates_off_an_arrangement_are_returned_as_they_are():
    truth = build_cluster("fcc:Au:layers=3/2/3")
    pdf = _pdf(truth)
    odd = truth.copy()
    odd.rattle(0.3, seed=1)
    odd.info["structure_type"] = "fcc"
    plain = truth.copy()  # no structure type
    on = _edited(truth, "fcc", remove=1, add=0)
    on.info.update(rw_uiso=UISO, rw_delta2=DELTA2)
    out = refine_candidate_sites(
        [on, odd, plain], pdf, progress=False, count_window=np.inf
    )
    assert out[0].info["site_moves"] >= 1 and len(out[0]) == len(truth)
    for given, got in zip((odd, plain), out[1:]):
        assert got.info["site_moves"] is None
        np.testing.assert_array_equal(got.positions, given.positions)
    same = refine_candidate_sites([on], pdf, max_moves=0)
    assert same[0].info["site_moves"] is None and len(same[0]) == len(on)
    with pytest.raises(ValueError, match="max_moves"):
        refine_candidate_sites([on], pdf, max_moves=-1)
    with pytest.raises(ValueError, match="count_window"):
        refine_candidate_sites([on], pdf, count_window=-0.1)


def test_by_default_the_count_stays_and_atoms_only_move():
    truth = build_cluster("fcc:Au:layers=4/3/3,center=octahedral")
    pdf = _pdf(truth)
    start = _edited(truth, "fcc", remove=3, add=3)
    start.info.update(rw_uiso=UISO, rw_delta2=DELTA2)
    (out,) = refine_candidate_sites([start], pdf, progress=False)
    assert len(out) == len(start) == len(truth)
    assert out.info["site_added"] == out.info["site_removed"] >= 1
    before, after = out.info["site_rw"]
    assert after < 0.01 < before
    # a window of 10 % lets the 38 atoms become 35 to 41
    few = _edited(truth, "fcc", remove=6, add=0)
    few.info.update(rw_uiso=UISO, rw_delta2=DELTA2)
    (out,) = refine_candidate_sites([few], pdf, progress=False)
    assert len(out) == len(few) == 38
    (out,) = refine_candidate_sites(
        [few], pdf, progress=False, count_window=0.1
    )
    assert 35 <= len(out) <= 41 and len(out) != 38
    assert out.info["site_rw"][1] < out.info["site_rw"][0]
