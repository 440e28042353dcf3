"""The samplers: Eq. (8) against its analytic guarantees, every sampler's
output, and whole sampling runs against the exact answer for Gaussian
latents (where the ideal noise predictor is known in closed form)."""

import math
from dataclasses import replace

import pytest
import torch

from diffpy_cbldm.model.pipeline import (
    CbLDMPipeline,
    blend_prior,
    make_scheduler,
)
from diffpy_cbldm.model.registry import build_modules
from tests.model.tiny import tiny_config

# diffusers 0.42 DPM-Solver trips a numpy 2 copy= deprecation; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)

SAMPLER_CASES = [
    {"sampler": "ddpm"},
    {"sampler": "ddpm", "steps": 10},
    {"sampler": "ddim", "steps": 10},
    {"sampler": "dpm", "steps": 8},
    {"sampler": "cbldm", "t1": 30, "t2": 60},
    {"sampler": "cbldm", "base": "dpm", "steps": 8, "t1": 30, "t2": 60},
]


@pytest.fixture(scope="module")
def alphas_cumprod():
    """abar_t of the model's cosine schedule, T = 1000."""
    return make_scheduler("ddpm", tiny_config()).alphas_cumprod.double()


@pytest.fixture(scope="module")
def pipe():
    """Tiny untrained networks, T = 100 so that full runs are quick."""
    torch.manual_seed(0)
    config = tiny_config(num_train_timesteps=100)
    m = build_modules(config)
    return CbLDMPipeline(
        m["condition_vae"], m["structure_vae"], m["denoiser"], config
    )


def conditions(batch, seed=0):
    return torch.randn(
        batch, 2, 125, generator=torch.Generator().manual_seed(seed)
    )


# --- Eq. (8) -------------------------------------------------------------


@pytest.mark.parametrize(
    "t1, t2", [(0, 999), (100, 300), (400, 700), (500, 501)]
)
def test_blend_of_consistent_pair_is_the_forward_marginal(
    alphas_cumprod, t1, t2
):
    # x_t2 built from x0 and eps: the estimate must be exactly the x_t1
    # that the same x0 and eps give, sqrt(abar_1) x0 + sqrt(1-abar_1) eps.
    g = torch.Generator().manual_seed(t1)
    x0 = torch.randn(64, 1, 16, 16, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 1, 16, 16, generator=g, dtype=torch.float64)
    ab1, ab2 = alphas_cumprod[t1].item(), alphas_cumprod[t2].item()
    x_t2 = math.sqrt(ab2) * x0 + math.sqrt(1 - ab2) * eps
    expected = math.sqrt(ab1) * x0 + math.sqrt(1 - ab1) * eps
    torch.testing.assert_close(
        blend_prior(x0, x_t2, ab1, ab2), expected, rtol=0, atol=1e-12
    )


def test_blend_marginal_mean_and_variance(alphas_cumprod):
    # Monte Carlo over eps: mean sqrt(abar_1) x0, variance 1 - abar_1.
    ab1, ab2 = alphas_cumprod[400].item(), alphas_cumprod[700].item()
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((200000,), 0.8, dtype=torch.float64)
    eps = torch.randn(200000, generator=g, dtype=torch.float64)
    x_t2 = math.sqrt(ab2) * x0 + math.sqrt(1 - ab2) * eps
    x_t1 = blend_prior(x0, x_t2, ab1, ab2)
    assert x_t1.mean().item() == pytest.approx(0.8 * math.sqrt(ab1), abs=5e-3)
    assert x_t1.var().item() == pytest.approx(1 - ab1, rel=1e-2)


def test_blend_error_is_a_times_prior_error(alphas_cumprod):
    # Eq. (9): x0* = x0 + U moves the estimate by a U,
    # a = sqrt(abar_1) - sqrt(abar_2) sqrt(1-abar_1) / sqrt(1-abar_2).
    ab1, ab2 = alphas_cumprod[200].item(), alphas_cumprod[600].item()
    a = math.sqrt(ab1) - math.sqrt(ab2) * math.sqrt(1 - ab1) / math.sqrt(
        1 - ab2
    )
    g = torch.Generator().manual_seed(2)
    x0, x_t2, U = torch.randn(3, 500, generator=g, dtype=torch.float64)
    diff = blend_prior(x0 + U, x_t2, ab1, ab2) - blend_prior(
        x0, x_t2, ab1, ab2
    )
    torch.testing.assert_close(diff, a * U)


def test_blend_with_equal_steps_returns_x_t2(alphas_cumprod):
    ab = alphas_cumprod[450].item()
    x0, x_t2 = torch.randn(2, 100, dtype=torch.float64)
    torch.testing.assert_close(blend_prior(x0, x_t2, ab, ab), x_t2)


def test_blend_rejects_t1_before_t2(alphas_cumprod):
    with pytest.raises(ValueError, match="alpha_bar_t2 <= alpha_bar_t1"):
        blend_prior(
            torch.zeros(1),
            torch.zeros(1),
            alphas_cumprod[700],
            alphas_cumprod[400],
        )


# --- every sampler on the tiny networks ----------------------------------


@pytest.mark.parametrize("kw", SAMPLER_CASES, ids=lambda kw: str(kw))
def test_sampler_shape_finite_and_seeded(pipe, kw):
    z_c = conditions(2)
    a = pipe.sample_latents(
        z_c, 3, generator=torch.Generator().manual_seed(7), **kw
    )
    b = pipe.sample_latents(
        z_c, 3, generator=torch.Generator().manual_seed(7), **kw
    )
    c = pipe.sample_latents(
        z_c, 3, generator=torch.Generator().manual_seed(8), **kw
    )
    assert a.shape == (6, 1, 16, 16)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cbldm_with_t1_equal_t2_is_plain_ddpm(pipe):
    # The paper: "setting T1 equal to T2 aligns the sampling process of
    # CbLDM with that of a general Latent Diffusion Model".
    z_c = conditions(1)
    plain = pipe.sample_latents(
        z_c, 2, sampler="ddpm", generator=torch.Generator().manual_seed(3)
    )
    same = pipe.sample_latents(
        z_c,
        2,
        sampler="cbldm",
        t1=45,
        t2=45,
        generator=torch.Generator().manual_seed(3),
    )
    torch.testing.assert_close(same, plain, rtol=0, atol=0)


def test_cbldm_draws_from_the_conditional_prior(pipe):
    z_c = conditions(1)
    prior_bias = pipe.structure_vae.prior_net[-1].bias

    def run(t1, t2):
        return pipe.sample_latents(
            z_c,
            2,
            sampler="cbldm",
            t1=t1,
            t2=t2,
            generator=torch.Generator().manual_seed(4),
        )

    before_skip, before_plain = run(30, 60), run(45, 45)
    with torch.no_grad():
        prior_bias[:256] += 5.0  # move the prior mean
    try:
        after_skip, after_plain = run(30, 60), run(45, 45)
    finally:
        with torch.no_grad():
            prior_bias[:256] -= 5.0
    assert (after_skip - before_skip).abs().max() > 0.1
    assert torch.equal(after_plain, before_plain)


# --- exact answer for Gaussian latents -----------------------------------


class GaussianOracle(torch.nn.Module):
    """Ideal noise predictor when x0 ~ N(m, s^2 I):
    E[eps | x_t] = sqrt(1-abar) (x_t - sqrt(abar) m) / (abar s^2 + 1 - abar).
    """

    def __init__(self, m, s, alphas_cumprod):
        super().__init__()
        self.m, self.s, self.abar = m, s, alphas_cumprod.float()
        self.calls = 0

    def forward(self, x_t, t, z_c):
        self.calls += 1
        ab = self.abar[t].view(-1, 1, 1, 1)
        return (
            (1 - ab).sqrt()
            * (x_t - ab.sqrt() * self.m)
            / (ab * self.s**2 + 1 - ab)
        )


@pytest.fixture(scope="module")
def gaussian_pipe(alphas_cumprod):
    """T = 1000 pipeline whose denoiser is ideal for x0 ~ N(m, s^2) and
    whose conditional prior is that same Gaussian."""
    config = tiny_config()
    m = 0.6 * torch.sin(torch.arange(256.0) / 7).reshape(1, 1, 16, 16)
    s = 0.4
    svae = build_modules(config, ["structure_vae"])["structure_vae"]
    with torch.no_grad():
        last = svae.prior_net[-1]
        last.weight.zero_()
        last.bias.copy_(
            torch.cat([m.flatten(), torch.full((256,), 2 * math.log(s))])
        )
    oracle = GaussianOracle(m, s, alphas_cumprod)
    pipe = CbLDMPipeline(None, svae, oracle, config)
    return pipe, m, s


@pytest.mark.parametrize(
    "kw",
    [
        ({"sampler": "ddpm"}, 0.01),
        ({"sampler": "ddim", "steps": 250}, 0.01),
        # DDIM is first order: 50 steps leave 3.5 % of the spread out.
        ({"sampler": "ddim", "steps": 50}, 0.05),
        ({"sampler": "dpm", "steps": 20}, 0.015),
    ],
    ids=["ddpm-1000", "ddim-250", "ddim-50", "dpm-20"],
)
def test_plain_samplers_recover_the_gaussian(gaussian_pipe, kw):
    kw, tolerance = kw
    pipe, m, s = gaussian_pipe
    n = 400
    x = pipe.sample_latents(
        conditions(1), n, generator=torch.Generator().manual_seed(0), **kw
    )
    assert (x.mean(dim=0) - m).abs().max().item() < 5 * s / math.sqrt(n)
    assert (x - m).std().item() == pytest.approx(s, rel=tolerance)


@pytest.mark.parametrize("base", ["ddpm", "dpm"])
def test_cbldm_sampler_on_the_gaussian(gaussian_pipe, alphas_cumprod, base):
    # x0* is drawn from the prior independently of x_t2, so the estimate
    # of x_t1 has the right mean but its variance is short by
    # 2 u a sqrt(abar_2) s^2. The probability-flow ODE (dpm) maps it to
    # x0 with std s * sqrt(var_hat / var_true).
    pipe, m, s = gaussian_pipe
    t1, t2, n = 400, 700, 400
    kw = {"steps": 100} if base == "dpm" else {}
    x = pipe.sample_latents(
        conditions(1),
        n,
        sampler="cbldm",
        base=base,
        t1=t1,
        t2=t2,
        generator=torch.Generator().manual_seed(0),
        **kw,
    )
    assert (x.mean(dim=0) - m).abs().max().item() < 5 * s / math.sqrt(n)
    if base == "dpm":
        ab1, ab2 = alphas_cumprod[t1].item(), alphas_cumprod[t2].item()
        u = math.sqrt(1 - ab1) / math.sqrt(1 - ab2)
        a = math.sqrt(ab1) - math.sqrt(ab2) * u
        var_true = ab1 * s**2 + 1 - ab1
        var_hat = var_true - 2 * u * a * math.sqrt(ab2) * s**2
        expected = s * math.sqrt(var_hat / var_true)
        assert (x - m).std().item() == pytest.approx(expected, rel=0.01)


def test_cbldm_skips_the_steps_between_t2_and_t1(gaussian_pipe):
    pipe, _, _ = gaussian_pipe
    oracle = pipe.denoiser
    oracle.calls = 0
    pipe.sample_latents(conditions(1), 1, sampler="cbldm", t1=400, t2=700)
    # steps 999..701 land on 700; steps 400..0 finish: 299 + 401 calls
    assert oracle.calls == 299 + 401
    oracle.calls = 0
    pipe.sample_latents(conditions(1), 1, sampler="ddpm")
    assert oracle.calls == 1000


def test_cbldm_step_budget_is_shared(gaussian_pipe):
    pipe, _, _ = gaussian_pipe
    oracle = pipe.denoiser
    oracle.calls = 0
    pipe.sample_latents(
        conditions(1), 1, sampler="cbldm", base="dpm", steps=20, t1=400, t2=700
    )
    assert oracle.calls == 20
    # The fewest: one evaluation to t2, two from t1 to clean (both ends).
    for steps, t1 in ((3, 600), (6, 50), (2, 0)):
        oracle.calls = 0
        pipe.sample_latents(
            conditions(1), 1, sampler="cbldm", base="dpm", steps=steps, t1=t1
        )
        assert oracle.calls == steps, (steps, t1)
    with pytest.raises(ValueError, match="needs steps >= 3 with t1=600"):
        pipe.sample_latents(
            conditions(1), 1, sampler="cbldm", base="dpm", steps=2, t1=600
        )


# --- the whole pipeline and its defaults ---------------------------------


def test_pipeline_returns_laplacians(pipe):
    pdf = torch.rand(2, 3000) * 2 - 1
    L = pipe(
        pdf,
        3,
        sampler="ddim",
        steps=5,
        generator=torch.Generator().manual_seed(0),
    )
    assert L.shape == (6, 256, 256)
    assert torch.equal(L, L.transpose(-1, -2))


def test_pipeline_counts_atoms_with_the_conditions_prior():
    """With ``count_prior`` the Laplacians have the atom counts of the
    latent and the condition's Gaussian together, as propose decodes."""
    torch.manual_seed(0)
    base = tiny_config(num_train_timesteps=100)
    config = replace(base, structure=replace(base.structure, count_prior=True))
    m = build_modules(config)
    pipe = CbLDMPipeline(
        m["condition_vae"], m["structure_vae"], m["denoiser"], config
    )
    pdf = torch.rand(2, 3000) * 2 - 1
    options = dict(sampler="ddim", steps=3)
    L = pipe(pdf, 4, generator=torch.Generator().manual_seed(0), **options)
    z_c = pipe.condition_vae.condition(pdf)
    latents = pipe.sample_latents(
        z_c, 4, generator=torch.Generator().manual_seed(0), **options
    )
    svae = pipe.structure_vae
    with_prior = svae.count_atoms(latents, z_c.repeat_interleave(4, dim=0))
    assert not torch.equal(with_prior, svae.count_atoms(latents))
    assert torch.equal(L, svae.decode(latents, atoms=with_prior))
    assert not torch.equal(L, svae.decode(latents))


def test_defaults_apply(pipe):
    with_defaults = CbLDMPipeline(
        pipe.condition_vae,
        pipe.structure_vae,
        pipe.denoiser,
        pipe.config,
        defaults={"sampler": "ddim", "steps": 4},
    )
    a = with_defaults.sample_latents(
        conditions(1), 2, generator=torch.Generator().manual_seed(1)
    )
    b = pipe.sample_latents(
        conditions(1),
        2,
        sampler="ddim",
        steps=4,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
        ({"sampler": "cbldm", "base": "ddim"}, "unknown base sampler 'ddim'"),
        ({"sampler": "cbldm", "t1": 60, "t2": 30}, r"t1=60, t2=30"),
        ({"sampler": "cbldm", "t1": 10, "t2": 100}, r"t2 <= 99"),
        ({"sampler": "cbldm", "t1": 1.5, "t2": 30}, "t1 must be an integer"),
        ({"sampler": "ddim", "t1": 10}, "only apply to the cbldm"),
        ({"sampler": "ddim", "steps": 0}, "steps must be at least 1, got 0"),
        ({"sampler": "dpm", "steps": 100}, "repeats steps"),
    ],
)
def test_bad_sampler_arguments(pipe, kw, message):
    with pytest.raises(ValueError, match=message):
        pipe.sample_latents(conditions(1), 1, **kw)


def test_bad_candidate_count(pipe):
    with pytest.raises(ValueError, match="n_per_condition"):
        pipe.sample_latents(conditions(1), 0)


def test_bad_condition_shape(pipe):
    with pytest.raises(ValueError, match="250 values"):
        pipe.sample_latents(torch.zeros(1, 2, 100), 1, sampler="ddim", steps=2)


def test_unknown_default(pipe):
    with pytest.raises(ValueError, match="unknown sampler default"):
        CbLDMPipeline(None, None, None, pipe.config, defaults={"eta": 0.5})


@pytest.mark.parametrize("steps", [10, 20, 50, 250])
def test_ddim_first_step_is_not_numerically_singular(steps):
    """DDIM's estimate of the clean latent, (x - sqrt(1 - abar) eps) /
    sqrt(abar), must not divide by ~0 at its first step: with "trailing"
    spacing it started at t = 999, where sqrt(abar) = 5e-5, and the
    trained model's DDIM latents blew up to ~1e4 (DDPM and DPM-Solver
    were unaffected: measured |z| ~ 20-60)."""
    from diffpy_cbldm.model import CbLDMConfig

    config = CbLDMConfig()  # T = 1000, cosine schedule
    scheduler = make_scheduler("ddim", config)
    scheduler.set_timesteps(steps)
    first = int(scheduler.timesteps[0])
    alpha_bar = float(scheduler.alphas_cumprod[first])
    assert alpha_bar**0.5 > 1e-3, (first, alpha_bar)


def test_cbldm_clips_a_wild_prior_draw(alphas_cumprod):
    # A prior far outside the training latents (mean 1000, std 148, as
    # the clamp allows) must not carry the sample away: the draw is
    # clipped to +-PRIOR_CLIP in diffusion units before Eq. (8).
    from diffpy_cbldm.model.pipeline import PRIOR_CLIP

    config = tiny_config()
    m = torch.zeros(1, 1, 16, 16)
    svae = build_modules(config, ["structure_vae"])["structure_vae"]
    with torch.no_grad():
        last = svae.prior_net[-1]
        last.weight.zero_()
        last.bias.copy_(
            torch.cat([torch.full((256,), 1e3), torch.full((256,), 10.0)])
        )
    pipe = CbLDMPipeline(
        None, svae, GaussianOracle(m, 1.0, alphas_cumprod), config
    )
    x = pipe.sample_latents(
        conditions(1),
        50,
        sampler="cbldm",
        t1=400,
        t2=700,
        generator=torch.Generator().manual_seed(0),
    )
    abar = alphas_cumprod
    u = math.sqrt((1 - abar[400]) / (1 - abar[700]))
    a = math.sqrt(abar[400]) - math.sqrt(abar[700]) * u
    # x_t1 = a x0* + u x_t2 with |x0*| <= 4: far below the 1000 unclipped
    assert PRIOR_CLIP == 4.0
    assert x.abs().max().item() < 10 * (a * PRIOR_CLIP + u)
    assert x.abs().max().item() < 50


# --- guidance towards a structure type -----------------------------------


@pytest.fixture(scope="module")
def template_pipe(alphas_cumprod):
    """T = 1000 pipeline whose denoiser is ideal for x0 ~ N(0, I) and
    whose structure VAE, untrained, has the template decoder (its type
    head is the guide's classifier)."""
    from dataclasses import replace

    from diffpy_cbldm.clusters import templates as T
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
    from tests.model.test_site_field import template_net

    sites = [T.seed_sites(s, radius=2.0) for s in STRUCTURE_TYPES]
    svae = template_net(sites, field_width=16, field_frequencies=4).eval()
    config = replace(tiny_config(), structure=svae.config)
    oracle = GaussianOracle(torch.zeros(1, 1, 16, 16), 1.0, alphas_cumprod)
    return CbLDMPipeline(None, svae, oracle, config)


def test_guided_estimate_lowers_the_type_cross_entropy(template_pipe):
    """One guided step: the clean estimate implied by the returned noise
    has a lower cross-entropy for the target type than the unguided one;
    scale 0 returns the noise estimate itself."""
    from diffpy_cbldm.model.pipeline import guide_clean_estimate

    svae = template_pipe.structure_vae
    g = torch.Generator().manual_seed(1)
    # Small values: the clean estimates stay inside the clip.
    x = 0.5 * torch.randn(6, *svae.config.latent_shape, generator=g)
    eps = 0.5 * torch.randn(x.shape, generator=g)
    abar = 0.5
    target = torch.tensor([0, 1, 2, 3, 4, 5])

    def cross_entropy(noise):
        x0 = (x - math.sqrt(1 - abar) * noise) / math.sqrt(abar)
        logits = svae.type_logits(x0)
        return torch.nn.functional.cross_entropy(
            logits, target, reduction="none"
        )

    assert guide_clean_estimate(svae, x, eps, abar, target, 0.0) is eps
    guided = guide_clean_estimate(svae, x, eps, abar, target, 0.1)
    with torch.no_grad():
        before, after = cross_entropy(eps), cross_entropy(guided)
    assert (after < before).all(), (before, after)


def test_guidance_samples_the_target_type(template_pipe):
    """With the ideal denoiser of N(0, I) latents, the untrained type
    head reads none of 40 draws as type 0 (fcc); guidance towards it
    turns a good share of them into it, the more the stronger, and keeps
    every value inside the clip."""
    z_c = conditions(1)
    svae = template_pipe.structure_vae
    share = {}
    for scale in (0.0, 3.0, 10.0):
        torch.manual_seed(0)
        z = template_pipe.sample_latents(
            z_c,
            40,
            sampler="dpm",
            steps=10,
            target_types=torch.tensor([0]),
            type_guidance=scale,
        )
        assert torch.isfinite(z).all()
        if scale:
            assert z.abs().max() <= 4.0 + 1e-5
        share[scale] = (svae.structure_types(z) == 0).float().mean().item()
    assert share[0.0] == 0
    assert 0 < share[3.0] < share[10.0]
    assert share[10.0] >= 0.25


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"type_guidance": -1.0}, "type_guidance must be a finite number"),
        ({"type_guidance": float("nan")}, "type_guidance must be a finite"),
        (
            {"type_guidance": 1.0, "target_types": torch.tensor([1, 2])},
            r"one type per condition, shape \(1,\)",
        ),
    ],
)
def test_bad_guidance_arguments(template_pipe, kw, message):
    with pytest.raises(ValueError, match=message):
        template_pipe.sample_latents(conditions(1), 1, **kw)
