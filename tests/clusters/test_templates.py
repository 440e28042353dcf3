"""Templates: registration of real ASE clusters onto their site
arrangement, template growth and the sampled training targets."""

import numpy as np
import pytest

from diffpy_cbldm.clusters import templates as T
from diffpy_cbldm.clusters.build import IDEAL_COVERA, build_cluster


def _unit(atoms, stype, covera=None, shift=(0.0, 0.0, 0.0)):
    x = atoms.get_positions() + np.asarray(shift) * 2.7
    return T.template_frame(x, stype, covera)


@pytest.mark.parametrize(
    "spec, stype",
    [
        ("fcc:Cu:layers=4/3/2,center=octahedral", "fcc"),
        ("bcc:Fe:layers=3/2/2,center=bond", "bcc"),
        ("sc:Cu:size=2/3/4", "sc"),
        ("hcp:Co:layers=3/2/2", "hcp"),
        ("icosahedral:Pt:shells=4,removed=7", "icosahedral"),
        ("decahedral:Pt:p=3,q=2,r=1", "decahedral"),
        ("decahedral:Pt:p=2,q=3", "decahedral"),
        ("octahedral:Au:length=6,cutoff=1", "octahedral"),
    ],
)
def test_register_puts_every_atom_on_an_exact_site(spec, stype):
    x = _unit(build_cluster(spec), stype, shift=(3.1, -1.7, 0.4))
    t, sites = T.register(x, stype)
    # x + t are the sites, to the precision of the stored positions
    np.testing.assert_allclose(sites, x + t, atol=1e-6)
    assert np.linalg.norm(t) <= T.SEARCH_RADIUS
    # exact sites: snapping them again changes nothing
    again, on = T.snap(sites, stype)
    assert on.all()
    np.testing.assert_allclose(again, sites, atol=1e-9)
    d = np.linalg.norm(sites[:, None] - sites[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() == pytest.approx(1.0, abs=1e-6)


def test_register_ignores_where_the_cluster_was_placed():
    atoms = build_cluster("fcc:Cu:layers=3/2/3")
    a = T.register(_unit(atoms, "fcc"), "fcc")
    b = T.register(_unit(atoms, "fcc", shift=(10.3, 4.2, -7.7)), "fcc")
    np.testing.assert_allclose(a[0], b[0], atol=1e-9)
    np.testing.assert_allclose(a[1], b[1], atol=1e-9)


def test_hcp_of_another_covera_is_squeezed_to_the_ideal_lattice():
    atoms = build_cluster("hcp:Co:layers=3/2/2,covera=1.62")
    x = _unit(atoms, "hcp", covera=1.62)
    _, sites = T.register(x, "hcp")
    assert T.snap(sites, "hcp")[1].all()
    assert IDEAL_COVERA != pytest.approx(1.62)


def test_cluster_without_nn_bonds_registers_by_its_second_shell():
    # 7 atoms of bcc: a centre and its six second neighbours, scaled so
    # that their shortest distance is 1 (the builder's convention)
    x = np.array(
        [
            [0, 0, 0],
            [1, 0, 0],
            [-1, 0, 0],
            [0, 1, 0],
            [0, -1, 0],
            [0, 0, 1],
            [0, 0, -1],
        ],
        float,
    )
    _, sites = T.register(x, "bcc")
    d = np.linalg.norm(sites[1:] - sites[0], axis=1)
    np.testing.assert_allclose(d, 2 / np.sqrt(3), atol=1e-9)


def test_a_piece_of_another_structure_does_not_register():
    x = _unit(build_cluster("icosahedral:Pt:shells=3"), "icosahedral")
    with pytest.raises(ValueError, match="not a piece of the fcc"):
        T.register(x, "fcc")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="bcc"):
        T.register(rng.normal(size=(20, 3)) * 2, "bcc")


def test_templates_hold_the_clusters_and_one_shell_more():
    specs = ["fcc:Cu:layers=3/2/3", "fcc:Cu:layers=2/2/2,center=octahedral"]
    occupied = {
        "fcc": [
            T.register(_unit(build_cluster(s), "fcc"), "fcc")[1] for s in specs
        ]
    }
    sites = T.build_templates(occupied)["fcc"]
    r = np.linalg.norm(sites, axis=1)
    assert np.all(np.diff(r) >= -1e-12)
    assert T.snap(sites, "fcc")[1].all()
    from scipy.spatial import cKDTree

    tree = cKDTree(sites)
    for x in occupied["fcc"]:
        assert np.all(tree.query(x)[0] < 1e-6)
    # every site is an occupied one or a nearest neighbour of one
    used = np.concatenate(occupied["fcc"])
    d = cKDTree(used).query(sites)[0]
    assert d.max() == pytest.approx(1.0, abs=1e-6)
    # the 12 neighbours of a corner atom are there
    corner = used[np.argmax(np.linalg.norm(used, axis=1))]
    assert (np.linalg.norm(sites - corner, axis=1) < 1.01).sum() == 13


def test_site_targets_estimate_the_whole_template_without_bias():
    x = _unit(build_cluster("octahedral:Au:length=5"), "octahedral")
    _, occupied = T.register(x, "octahedral")
    template = T.build_templates({"octahedral": [occupied]})["octahedral"]
    big = np.concatenate([template, template + [40.0, 0.0, 0.0]])
    rng = np.random.default_rng(1)
    index, label, weight, missing = T.site_targets(occupied, big, 128, rng)
    assert missing == 0
    assert label.sum() == len(occupied)
    np.testing.assert_allclose(
        big[index[label == 1]].mean(0), occupied.mean(0), atol=1e-9
    )
    # weights: 1 per occupied site, the rest scale up to the template
    assert weight.sum() == pytest.approx(len(big), rel=1e-5)
    assert np.all(weight[label == 1] == 1.0)
    assert len(set(index[weight > 0].tolist())) == (weight > 0).sum()


def test_site_targets_report_atoms_off_the_template():
    x = _unit(build_cluster("fcc:Cu:layers=3/2/3"), "fcc")
    _, occupied = T.register(x, "fcc")
    template = occupied[:-3]
    out = T.site_targets(occupied, template, 64, np.random.default_rng(0))
    assert out[3] == 3
    assert out[1].sum() == len(occupied) - 3
