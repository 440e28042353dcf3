"""The three networks: shapes, the Laplacian form of decoded matrices, the
conditional prior and the KL term."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.cluster import Icosahedron, Octahedron

from diffpy_cbldm.clusters.laplacian import laplacian
from diffpy_cbldm.clusters.order import canonicalize
from diffpy_cbldm.model.blocks import gaussian_kl
from diffpy_cbldm.model.pipeline import make_scheduler
from diffpy_cbldm.model.registry import build_modules
from tests.model.tiny import tiny_config


@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture
def modules(config):
    torch.manual_seed(0)
    return build_modules(config)


@pytest.fixture(scope="module")
def laplacians(config):
    """Padded Laplacians of two canonically ordered clusters, (2, 256, 256)."""
    clusters = [
        Icosahedron("Au", 3, latticeconstant=4.08),
        Octahedron("Cu", 7, latticeconstant=3.61),
    ]
    sigma = config.conventions.sigma
    return torch.tensor(
        np.array([laplacian(canonicalize(a), sigma) for a in clusters])
    )


def conditions(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, 125, generator=g)


def test_condition_vae_shapes(modules):
    cvae = modules["condition_vae"]
    pdf = torch.rand(3, 3000) * 2 - 1
    mu, logvar = cvae.encode(pdf)
    assert mu.shape == logvar.shape == (3, 2, 125)
    assert cvae.decode(mu).shape == (3, 3000)


def test_condition_is_the_posterior_mean(modules):
    cvae = modules["condition_vae"]
    pdf = torch.rand(2, 3000)
    z_c = cvae.condition(pdf)
    assert torch.equal(z_c, cvae.encode(pdf)[0])
    assert torch.equal(z_c, cvae.condition(pdf))


def test_condition_vae_loss_parts(modules, config):
    out = modules["condition_vae"].loss(torch.rand(4, 3000))
    assert set(out) == {"loss", "rec", "kl"}
    w = config.condition.kl_weight
    assert out["loss"].item() == pytest.approx(
        out["rec"].item() + w * out["kl"].item()
    )
    assert out["kl"].item() >= 0


def test_condition_vae_rejects_wrong_grid(modules):
    with pytest.raises(ValueError, match=r"\(B, 3000\).*\(2, 1500\)"):
        modules["condition_vae"].encode(torch.zeros(2, 1500))


def test_gaussian_kl_is_zero_when_equal():
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.all(gaussian_kl(mu, logvar, mu, logvar) == 0)


def test_gaussian_kl_matches_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    g = torch.Generator().manual_seed(3)
    mq, lq, mp, lp = torch.randn(4, 10, generator=g, dtype=torch.float64)
    expected = kl_divergence(
        Normal(mq, torch.exp(0.5 * lq)), Normal(mp, torch.exp(0.5 * lp))
    )
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), expected)
    # the N(0, 1) prior by default: KL(N(1, 1) || N(0, 1)) = 1/2
    assert gaussian_kl(torch.ones(1), torch.zeros(1)).item() == 0.5


def test_structure_vae_shapes(modules, laplacians):
    svae = modules["structure_vae"]
    z_c = conditions(2)
    mu, logvar = svae.encode(laplacians, z_c)
    mu_p, logvar_p = svae.prior(z_c)
    for t in (mu, logvar, mu_p, logvar_p):
        assert t.shape == (2, 1, 16, 16)
    assert svae.decode(mu).shape == (2, 256, 256)


def test_decoded_matrices_are_graph_laplacians(modules):
    svae = modules["structure_vae"]
    L = svae.decode(torch.randn(3, 1, 16, 16) * 3)
    assert torch.equal(L, L.transpose(-1, -2))
    off = L - torch.diag_embed(torch.diagonal(L, dim1=-2, dim2=-1))
    assert off.max() <= 0
    torch.testing.assert_close(
        L.sum(dim=-1), torch.zeros(3, 256), atol=1e-4, rtol=0
    )
    assert torch.diagonal(L, dim1=-2, dim2=-1).min() >= 0


def test_decoded_padding_follows_the_atom_count(modules):
    svae = modules["structure_vae"]
    z = torch.randn(2, 1, 16, 16) * 3
    L = svae.decode(z, atoms=torch.tensor([13, 147]))
    for b, n in enumerate((13, 147)):
        assert torch.all(L[b, n:, :] == 0) and torch.all(L[b, :, n:] == 0)
        assert torch.all(torch.diagonal(L[b])[:n] > 0)
    # without a count, the count head decides
    predicted = svae.count_atoms(z)
    assert predicted.shape == (2,) and predicted.min() >= 1
    L = svae.decode(z)
    for b in range(2):
        n = int(predicted[b])
        assert torch.all(L[b, n:, :] == 0)


def test_count_loss_is_cross_entropy_of_the_atom_count(modules, laplacians):
    svae = modules["structure_vae"]
    g = torch.Generator().manual_seed(0)
    out = svae.loss(laplacians, conditions(2), generator=g)
    # same draw of z: recompute the cross-entropy independently
    g = torch.Generator().manual_seed(0)
    mu, logvar = svae.encode(laplacians, conditions(2))
    from diffpy_cbldm.model.blocks import reparameterize

    z = reparameterize(mu, logvar, g)
    logp = torch.log_softmax(svae.count_logits(z), dim=-1)
    expected = -(logp[0, 55 - 1] + logp[1, 231 - 1]) / 2  # 55 and 231 atoms
    assert out["count"].item() == pytest.approx(expected.item(), rel=1e-5)


def _with_count_prior(config, mean, logvar):
    """A structure VAE whose count prior is the constant Gaussian
    (mean, logvar) in ln n, whatever the condition."""
    structure = replace(config.structure, count_prior=True)
    torch.manual_seed(0)
    net = build_modules(replace(config, structure=structure))["structure_vae"]
    last = net.count_prior_head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([mean, logvar]))
    return net


def test_count_prior_loss_is_the_gaussian_nll_of_ln_n(config, laplacians):
    net = _with_count_prior(config, np.log(100.0), np.log(0.25))
    out = net.loss(laplacians, conditions(2))
    # 55 and 231 atoms; NLL without its constant 0.5 ln(2 pi)
    expected = np.mean(
        [
            0.5 * (np.log(0.25) + (np.log(n) - np.log(100.0)) ** 2 / 0.25)
            for n in (55, 231)
        ]
    )
    assert out["count_prior"].item() == pytest.approx(expected, rel=1e-5)
    total = (
        out["rec"]
        + config.structure.count_weight * (out["count"] + out["count_prior"])
        + config.structure.kl_weight * out["kl"]
        + config.structure.distance_weight * out["dist"]
    )
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)


def test_count_prior_combines_with_the_latent_count(config):
    z = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    z_c = conditions(3)
    sharp = _with_count_prior(config, np.log(50.0), -10.0)
    assert sharp.count_atoms(z, z_c).tolist() == [50, 50, 50]
    logp = sharp.count_log_probs(z, z_c)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3))
    # A flat prior leaves the latent's own count; no z_c: the latent's.
    flat = _with_count_prior(config, np.log(50.0), 5.0)
    latent_only = torch.log_softmax(flat.count_logits(z), dim=-1)
    assert torch.equal(flat.count_atoms(z), latent_only.argmax(-1) + 1)
    wide = torch.log_softmax(
        latent_only
        - 0.5
        * (torch.log(torch.arange(1.0, 257)) - np.log(50.0)) ** 2
        / np.exp(5.0),
        dim=-1,
    )
    assert torch.allclose(flat.count_log_probs(z, z_c), wide, atol=1e-5)


def test_count_prior_needs_the_head(modules):
    with pytest.raises(ValueError, match="has no count prior"):
        modules["structure_vae"].count_prior(conditions(1))


def test_conditional_prior_depends_on_condition(modules):
    svae = modules["structure_vae"]
    mu_a, lv_a = svae.prior(conditions(1, seed=1))
    mu_b, lv_b = svae.prior(conditions(1, seed=2))
    assert (mu_a - mu_b).abs().max() > 1e-3
    assert (lv_a - lv_b).abs().max() > 1e-3


def test_encoder_sees_the_condition(modules, laplacians):
    svae = modules["structure_vae"]
    mu_a, _ = svae.encode(laplacians[:1], conditions(1, seed=1))
    mu_b, _ = svae.encode(laplacians[:1], conditions(1, seed=2))
    assert (mu_a - mu_b).abs().max() > 1e-4


def test_structure_kl_is_kl_to_the_conditional_prior(modules, laplacians):
    from torch.distributions import Normal, kl_divergence

    svae = modules["structure_vae"]
    z_c = conditions(2)
    with torch.no_grad():
        mu, logvar = svae.encode(laplacians, z_c)
        mu_p, logvar_p = svae.prior(z_c)
        out = svae.loss(laplacians, z_c)
    expected = kl_divergence(
        Normal(mu, torch.exp(0.5 * logvar)),
        Normal(mu_p, torch.exp(0.5 * logvar_p)),
    ).mean()
    assert out["kl"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_structure_kl_vanishes_when_posterior_equals_prior(
    modules, laplacians
):
    svae = modules["structure_vae"]
    # Posterior head and prior output layer both give N(0.3, e^-1) for
    # every input: the KL must be exactly zero, the loss pure reconstruction.
    with torch.no_grad():
        head = svae.encoder_head[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.3, -1.0]))
        last = svae.prior_net[-1]
        last.weight.zero_()
        last.bias.copy_(
            torch.cat([torch.full((256,), 0.3), torch.full((256,), -1.0)])
        )
        out = svae.loss(laplacians, conditions(2), beta=10.0)
    assert out["kl"].item() == pytest.approx(0.0, abs=1e-7)
    w = svae.config.count_weight
    wd = svae.config.distance_weight
    assert out["loss"].item() == pytest.approx(
        out["rec"].item() + w * out["count"].item() + wd * out["dist"].item(),
        rel=1e-6,
    )


def test_distance_error_is_zero_for_the_true_geometry(config):
    """Decoded positions equal to the true ones (any rotation): the
    distance term vanishes and grows with a stretch as (s - 1)^2 d^2."""
    from scipy.spatial.transform import Rotation

    svae = build_modules(config, ["structure_vae"])["structure_vae"]
    atoms = Icosahedron("Au", 3)
    x = canonicalize(atoms).positions
    n = len(x)
    L = torch.as_tensor(laplacian(x, svae.config.sigma, dtype=np.float64))
    W = (torch.diag_embed(torch.diagonal(L)) - L)[None].float()
    rot = Rotation.from_euler("xyz", [0.3, 1.1, -0.4]).as_matrix()
    for stretch, expected in ((1.0, 0.0), (1.1, None)):
        y = np.zeros((256, 3))
        y[:n] = stretch * x @ rot.T
        svae.decode_positions = lambda z, y=y: torch.as_tensor(y)[None]
        got = svae._distance_error(
            torch.zeros(1, 1, 16, 16), W, torch.tensor([n])
        )
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        off = ~np.eye(n, dtype=bool)
        exact = np.mean(((stretch - 1) * d[off] / svae.config.sigma) ** 2)
        assert got.item() == pytest.approx(exact, rel=1e-3, abs=1e-5)


def _expected_rec_of_zero_weights(laplacians):
    n = (torch.diagonal(laplacians, dim1=-2, dim2=-1) > 0).sum(-1).double()
    off = laplacians.double() * (1 - torch.eye(256, dtype=torch.float64))
    return ((off**2).sum(dim=(-2, -1)) / n**2).mean().item()


def test_structure_rec_counts_per_atom_pair(modules, laplacians):
    # All decoded atoms 100 sigma apart: W = 0, so rec = sum of the squared
    # off-diagonal entries / n^2; the diagonal (row sums) is not counted.
    svae = modules["structure_vae"]
    with torch.no_grad():
        svae.decoder[-1].weight.zero_()
        spread = torch.zeros(256, 3)
        spread[:, 0] = 100.0 * torch.arange(256)
        svae.decoder[-1].bias.copy_(spread.reshape(-1))
        out = svae.loss(laplacians, conditions(2))
    expected = _expected_rec_of_zero_weights(laplacians)
    assert out["rec"].item() == pytest.approx(expected, rel=1e-5)


def test_patch_decoder_rec_counts_per_atom_pair(config, laplacians):
    structure = replace(config.structure, decoder="patches")
    svae = build_modules(replace(config, structure=structure))["structure_vae"]
    with torch.no_grad():
        svae.decoder[-2].weight.zero_()
        svae.decoder[-2].bias.fill_(-1.0)  # relu -> W = 0 -> L = 0
        out = svae.loss(laplacians, conditions(2))
    expected = _expected_rec_of_zero_weights(laplacians)
    assert out["rec"].item() == pytest.approx(expected, rel=1e-5)


def test_coordinate_decoder_gives_laplacians_of_its_positions(modules):

    svae = modules["structure_vae"]
    z = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    atoms = torch.tensor([13, 40])
    with torch.no_grad():
        x = svae.decode_positions(z).double()
        L = svae.decode(z, atoms=atoms).double()
    for b, n in enumerate(atoms.tolist()):
        expected = laplacian(
            x[b, :n].numpy(), svae.config.sigma, size=256, dtype=np.float64
        )
        assert np.allclose(L[b].numpy(), expected, atol=1e-5)


def test_structure_vae_learns_to_reconstruct(config, laplacians):
    torch.manual_seed(1)
    svae = build_modules(config, ["structure_vae"])["structure_vae"]
    z_c = conditions(2)
    opt = torch.optim.Adam(svae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = svae.loss(laplacians, z_c, generator=g)["rec"].item()
    for _ in range(100):
        out = svae.loss(laplacians, z_c, beta=1e-4, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["rec"].item() < 0.25 * first
    with torch.no_grad():
        mu, _ = svae.encode(laplacians, z_c)
    assert svae.count_atoms(mu).tolist() == [55, 231]


def test_structure_vae_rejects_wrong_size(modules):
    with pytest.raises(ValueError, match=r"\(B, 256, 256\).*\(1, 128, 128\)"):
        modules["structure_vae"].encode(
            torch.zeros(1, 128, 128), conditions(1)
        )


def test_structure_vae_rejects_wrong_condition(modules, laplacians):
    with pytest.raises(ValueError, match="250 values"):
        modules["structure_vae"].prior(torch.zeros(2, 2, 100))


def test_denoiser_shapes_and_scalar_step(modules):
    den = modules["denoiser"]
    x = torch.randn(3, 1, 16, 16)
    eps = den(x, torch.tensor([0, 500, 999]), conditions(3))
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    assert den(x, 10, conditions(3)).shape == x.shape


def test_denoiser_uses_the_condition(modules):
    den = modules["denoiser"]
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([300])
    a = den(x, t, conditions(1, seed=1))
    b = den(x, t, conditions(1, seed=2))
    assert (a - b).abs().max() > 1e-6


def test_denoiser_loss_reproducible(modules, config):
    den = modules["denoiser"]
    scheduler = make_scheduler("ddpm", config)
    x0, z_c = torch.randn(4, 1, 16, 16), conditions(4)
    a = den.loss(
        x0, z_c, scheduler, generator=torch.Generator().manual_seed(5)
    )
    b = den.loss(
        x0, z_c, scheduler, generator=torch.Generator().manual_seed(5)
    )
    assert a.ndim == 0 and torch.isfinite(a) and a.item() == b.item()


def test_denoiser_rejects_wrong_latent(modules):
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        modules["denoiser"](torch.zeros(2, 1, 8, 8), 3, conditions(2))


def test_bf16_autocast_training_step(modules, laplacians):
    svae = modules["structure_vae"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = svae.loss(laplacians, conditions(2))
    out["loss"].backward()
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])


def test_importing_the_package_does_not_import_torch():
    code = (
        "import sys, diffpy_cbldm.model, diffpy_cbldm.weights, "
        "diffpy_cbldm.conventions; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
