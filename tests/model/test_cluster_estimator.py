"""The cluster estimator: shapes, checks, that it can learn the sizes and
types of real clusters from their Debye PDFs, and how its count estimate
enters the atom count."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.cluster import Icosahedron, Octahedron

from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
from diffpy_cbldm.conventions import Conventions, normalise_pdf
from diffpy_cbldm.model.config import CbLDMConfig, ClusterEstimatorConfig
from diffpy_cbldm.model.cluster_estimator import ClusterEstimator
from diffpy_cbldm.model.registry import build_modules
from diffpy_cbldm.pdf.debye import DebyePDFCalculator
from tests.model.tiny import tiny_config


@pytest.fixture(scope="module")
def pdfs():
    """Normalised PDFs of eight Au clusters of 6-147 atoms on the model's
    r-grid, their counts and types (octahedral, icosahedral)."""
    conventions = Conventions()
    r = conventions.rgrid
    calc = DebyePDFCalculator(
        rmin=float(r[0]),
        rmax=float(r[-1]) + 0.005,
        rstep=conventions.pdf.rstep,
        qmax=25.0,
        qdamp=0.02,
        biso=0.5,
    )
    clusters = [Octahedron("Au", k, latticeconstant=4.08) for k in (2, 3, 4)]
    clusters += [Octahedron("Au", k, latticeconstant=4.08) for k in (5, 6)]
    clusters += [Icosahedron("Au", k, latticeconstant=4.08) for k in (2, 3, 4)]
    _, g = calc.batch(clusters)
    g = torch.as_tensor(np.asarray(g)[:, : conventions.n_points])
    counts = torch.tensor([len(c) for c in clusters])
    types = torch.tensor(
        [STRUCTURE_TYPES.index("octahedral")] * 5
        + [STRUCTURE_TYPES.index("icosahedral")] * 3
    )
    return normalise_pdf(g.float(), conventions), counts, types


def test_outputs_mean_and_logvar_of_ln_n(pdfs):
    torch.manual_seed(0)
    net = ClusterEstimator()
    mean, logvar, logits = net(pdfs[0])
    assert mean.shape == logvar.shape == (len(pdfs[1]),)
    assert logits.shape == (len(pdfs[1]), len(STRUCTURE_TYPES))
    assert torch.isfinite(mean).all() and torch.isfinite(logvar).all()
    # Starts near the middle of the 5-256 atom range.
    assert mean.exp().min() > 5 and mean.exp().max() < 256


def test_rejects_pdfs_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(B, 3000\).*\(2, 2999\)"):
        ClusterEstimator()(torch.zeros(2, 2999))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kernel": 4}, "kernel must be odd"),
        ({"pool": 7}, "divisible by pool=7"),
        ({"channels": ()}, "channels"),
        ({"hidden": 0}, "hidden must be a positive integer"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        ClusterEstimatorConfig(**changes)


def test_config_must_match_the_r_grid():
    with pytest.raises(ValueError, match="estimator.n_points=1500"):
        CbLDMConfig(estimator=ClusterEstimatorConfig(n_points=1500))


def test_estimator_written_before_it_read_qdamp_does_not_read_it():
    d = ClusterEstimatorConfig().to_dict()
    assert d["qdamp_reference"] == 0.1
    del d["qdamp_reference"]
    old = ClusterEstimatorConfig.from_dict(d)
    assert old.qdamp_reference is None
    net = ClusterEstimator(old)
    assert not net.reads_qdamp
    with pytest.raises(ValueError, match="does not read Qdamp"):
        net(torch.zeros(1, 3000), torch.tensor([0.04]))


def test_weights_from_before_the_estimator_load_with_its_default():
    d = json.loads(json.dumps(CbLDMConfig().to_dict()))
    del d["estimator"]
    assert CbLDMConfig.from_dict(d).estimator == ClusterEstimatorConfig()


def test_learns_the_sizes_and_types_of_real_clusters(pdfs):
    """Eight Debye PDFs of 6-147 atoms: after 1000 Adam steps (cosine
    decay; seeds 0-4 all pass) every estimate is within 10 % of its
    count, the predicted spread of ln n is below 0.1 (an untrained
    network puts them all at about 30 atoms) and every type is right."""
    g, counts, types = pdfs
    torch.manual_seed(0)
    net = ClusterEstimator(ClusterEstimatorConfig(channels=(8, 8), hidden=32))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
    first = net.loss(g, counts, types)
    for _ in range(1000):
        terms = net.loss(g, counts, types)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        decay.step()
    mean, logvar, logits = net(g)
    ratio = (mean.exp() / counts).detach()
    assert ((ratio - 1).abs() <= 0.1).all(), ratio
    assert (torch.exp(0.5 * logvar) < 0.1).all()
    last = net.loss(g, counts, types)
    assert last["within_10pct"] == 1.0
    assert last["type_accuracy"] == 1.0
    assert last["loss"] == last["count"] + last["type"]
    assert last["abs_error"] < 0.1 * first["abs_error"]


def test_a_sharp_estimate_sets_the_decoded_count():
    """The estimate multiplies the latent's own count distribution (a
    normalised product with a Gaussian in ln n): a sharp one decides the
    count whatever the latent."""
    torch.manual_seed(0)
    config = tiny_config()
    svae = build_modules(config, ["structure_vae"])["structure_vae"]
    z = torch.randn(3, config.structure.latent_channels, 16, 16)
    sharp = (torch.full((3,), np.log(40.0)), torch.full((3,), -10.0))
    assert svae.count_atoms(z, prior=sharp).tolist() == [40, 40, 40]
    mean, sd = np.log(30.0), 0.3
    prior = (torch.full((3,), mean), torch.full((3,), 2 * np.log(sd)))
    with torch.no_grad():
        own = svae.count_log_probs(z).double().numpy()
        got = svae.count_log_probs(z, prior=prior).double().numpy()
    log_n = np.log(np.arange(1, own.shape[1] + 1))
    product = own - 0.5 * (log_n - mean) ** 2 / sd**2
    product -= np.log(np.exp(product).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, product, atol=1e-4)


def test_is_built_and_saved_as_cluster_estimator():
    config = replace(
        tiny_config(), estimator=ClusterEstimatorConfig(channels=(4,))
    )
    net = build_modules(config, ["cluster_estimator"])["cluster_estimator"]
    assert isinstance(net, ClusterEstimator)
    assert net.config == config.estimator


def test_damping_to_the_reference_is_a_pdf_measured_with_it():
    """Independent check against the Debye engine: a PDF computed with
    Qdamp 0.03, damped to the reference 0.1, is the PDF computed with
    Qdamp 0.1 (normalised alike); one computed with 0.15 is left as it
    is."""
    conventions = Conventions()
    r = conventions.rgrid
    atoms = Octahedron("Au", 5, latticeconstant=4.08)

    def pdf(qdamp):
        calc = DebyePDFCalculator(
            rmin=float(r[0]),
            rmax=float(r[-1]) + 0.005,
            rstep=conventions.pdf.rstep,
            qmax=25.0,
            qdamp=qdamp,
            biso=0.5,
        )
        g = np.asarray(calc(atoms)[1])[: conventions.n_points]
        return normalise_pdf(
            torch.as_tensor(g, dtype=torch.float32), conventions
        )

    net = ClusterEstimator()
    assert net.config.qdamp_reference == 0.1
    g = torch.stack([pdf(0.03), pdf(0.15)])
    damped = net.damp_to_reference(g, torch.tensor([0.03, 0.15]))
    assert torch.allclose(damped[0], pdf(0.1), atol=1e-5)
    assert torch.allclose(damped[1], g[1], atol=1e-6)


def test_rows_of_known_qdamp_go_to_the_informed_reader(pdfs):
    torch.manual_seed(0)
    net = ClusterEstimator().eval()
    g = pdfs[0]
    nan = torch.full((len(g),), float("nan"))
    for a, b in zip(net(g), net(g, nan)):
        assert torch.equal(a, b)
    qdamp = torch.tensor([0.02, float("nan")] * 4)
    mixed = net(g, qdamp)
    blind = net.read_blind(g)
    informed = net.read_informed(g[::2], qdamp[::2])
    for m, b, i in zip(mixed, blind, informed):
        assert torch.allclose(m[1::2], b[1::2])
        assert torch.allclose(m[::2], i)
        assert not torch.allclose(m[::2], b[::2])


def test_loss_trains_both_readers(pdfs):
    g, counts, types = pdfs
    net = ClusterEstimator()
    terms = net.loss(g, counts, types, torch.full((len(g),), 0.02))
    blind = net.loss(g, counts, types)
    assert torch.allclose(terms["loss"], blind["loss"] + terms["loss_qdamp"])
    terms["loss"].backward()
    assert net.head[0].weight.grad.abs().sum() > 0
    assert net.informed.head[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="every Qdamp must be known"):
        net.loss(g, counts, types, torch.full((len(g),), float("nan")))


@pytest.mark.parametrize(
    "qdamp, message",
    [
        (torch.tensor([0.02]), r"shape \(8,\)"),
        (torch.full((8,), -0.01), ">= 0"),
    ],
)
def test_rejects_bad_qdamp(pdfs, qdamp, message):
    with pytest.raises(ValueError, match=message):
        ClusterEstimator()(pdfs[0], qdamp)


@pytest.mark.parametrize("q", [0.0, 1.5, True, "0.1"])
def test_config_rejects_bad_qdamp_reference(q):
    with pytest.raises(ValueError, match="qdamp_reference"):
        ClusterEstimatorConfig(qdamp_reference=q)
