"""Sampling: the CbLDM pipeline over ordinary diffusers schedulers.

The pipeline wires the paper's three networks to a scheduler and owns no
maths of its own except the paper's Eq. (8). Four samplers are one
argument apart:

``"ddpm"``
    The plain ancestral reverse process, every one of the T steps by
    default (``DDPMScheduler``).
``"ddim"``
    Deterministic DDIM, 50 steps by default (``DDIMScheduler``).
``"dpm"``
    Deterministic DPM-Solver++ (2nd order), 20 steps by default
    (``DPMSolverMultistepScheduler``).
``"cbldm"``
    The paper's accelerated sampler (Alg. 4): denoise Gaussian noise from
    the top of the schedule down to step ``t2`` with the `base` sampler,
    draw ``x0*`` from the conditional prior ``p(z | c)`` of the structure
    VAE, estimate ``x_t1`` from the two with Eq. (8) and finish from
    ``t1`` with the `base` sampler. The steps between ``t2`` and ``t1``
    are skipped. ``t1 == t2`` is the plain reverse process.

Eq. (8), ``x_t1 = a x0* + u x_t2`` with ``u = sqrt(1 - abar_1) /
sqrt(1 - abar_2)`` and ``a = sqrt(abar_1) - sqrt(abar_2) u``, is the
deterministic (DDIM) jump from ``t2`` to ``t1`` with the clean sample
estimated by the prior draw. It is applied to the prior draw ``x0*``
itself, as in the reference code: only then does the estimate have the
marginal of ``x_t1`` when ``x0*`` is right (see ``docs/theory_model.rst``;
Alg. 4 line 3 of the paper diffuses ``x0*`` to ``t1`` first, which breaks
that property).

Any of them can be guided towards a structure type (``target_types``):
at every step the clean sample the denoiser implies, ``x0 = (x_t -
sqrt(1 - abar) eps) / sqrt(abar)``, is moved down the gradient of the
structure VAE's type cross-entropy for the target type by
``type_guidance`` (in latent units per unit of gradient), clipped to
``[-PRIOR_CLIP, PRIOR_CLIP]``, and the step is taken with the noise
estimate that this corrected ``x0`` implies. This is guidance of the
clean-sample estimate with the decoder's own type head as the
classifier (in the spirit of Dhariwal & Nichol's classifier guidance,
whose classifier reads ``x_t``); it needs no training.

Step indices follow diffusers: the state "at step t" has been noised with
``abar_t = alphas_cumprod[t]``, t in [0, T); stepping at t = 0 returns
the clean sample.
"""

import math

import numpy as np
import torch

from diffpy_cbldm.arguments import check_count
from diffpy_cbldm.model.blocks import reparameterize

__all__ = [
    "BASE_SAMPLERS",
    "CbLDMPipeline",
    "DEFAULT_STEPS",
    "DEFAULT_T1",
    "DEFAULT_T2",
    "PRIOR_CLIP",
    "SAMPLERS",
    "blend_prior",
    "guide_clean_estimate",
    "make_scheduler",
]

SAMPLERS = ("cbldm", "ddpm", "ddim", "dpm")
"""Accepted values of ``sampler``."""

BASE_SAMPLERS = ("ddpm", "dpm")
"""Samplers the cbldm sampler can run its two segments with. They take an
arbitrary list of steps; diffusers' DDIMScheduler does not, and DPM-Solver
of first order is DDIM."""

DEFAULT_STEPS = {"ddpm": None, "ddim": 50, "dpm": 20}
"""Default network evaluations per sampler; None means every step."""

PRIOR_CLIP = 4.0
"""The cbldm sampler clips its prior draw ``x0*`` to ``[-PRIOR_CLIP,
PRIOR_CLIP]`` in diffusion units (the training latents times
``latent_scale``: unit variance, 1 % of their values beyond 4) before
Eq. (8), as diffusers' ``clip_sample`` clips a scheduler's estimate of
the clean sample. For PDFs unlike the training data the conditional
prior's variance reaches its clamp (standard deviation 148 in latent
units); unclipped, such draws gave latents of ``|z|`` up to 330 that
decoded to atoms thousands of ångströms apart (the HCP reference PDF of
``shared/data/diffpy-reference``, Fe, whose neighbour distance of 2.34 Å
lies below the training set's 2.49-2.98 Å)."""

DEFAULT_T1 = 600
DEFAULT_T2 = 700
"""Default skip of the cbldm sampler, from step 700 to 600 of T = 1000:
chosen on the validation split for the mmnp-v1 weights (paper, section
3.3; ``benchmarks/sampler_sweep.py``: longer skips blend in more of the
conditional prior, whose draws decode to compact clusters, and gave a
worse refined Rw). :func:`diffpy_cbldm.training.train` writes these into
the weights it exports, and weights carry their own in the manifest's
``sampler_defaults``."""

_DPM_LAMBDA_MIN = -5.1
# DPM-Solver clips log-SNR at -5.1 for the cosine schedule (diffusers'
# recommendation): its first step is then t = 995, not 999.


def make_scheduler(kind, config):
    """A fresh diffusers scheduler for the model's noise schedule.

    Parameters
    ----------
    kind : {"ddpm", "ddim", "dpm"}
        ``"ddpm"`` is also the scheduler whose ``add_noise`` training uses.
    config : CbLDMConfig
        Supplies ``num_train_timesteps`` and ``beta_schedule``.

    Returns
    -------
    DDPMScheduler, DDIMScheduler or DPMSolverMultistepScheduler
        Noise prediction, no clipping of samples (latents are not
        bounded). DDPM uses "trailing" step spacing, so that sampling
        starts from the last, pure-noise step. DDIM uses "leading"
        spacing (first step 1000 - 1000/steps): at t = 999 of the cosine
        schedule ``sqrt(alpha_bar)`` is 5e-5 (4.7e-3 at t = 996), and
        DDIM's estimate of the clean latent divides the network's error
        by it; with trailing spacing the DDIM latents of the trained
        mmnp-v1 denoiser reached ``|z|`` of about 8000 instead of about
        20. DPM-Solver clips its log-SNR instead.
    """
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
    )

    common = {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_schedule": config.beta_schedule,
        "prediction_type": "epsilon",
    }
    if kind == "ddpm":
        return DDPMScheduler(
            **common,
            clip_sample=False,
            variance_type="fixed_small",
            timestep_spacing="trailing",
        )
    if kind == "ddim":
        return DDIMScheduler(
            **common,
            clip_sample=False,
            set_alpha_to_one=True,
            timestep_spacing="leading",
        )
    if kind == "dpm":
        return DPMSolverMultistepScheduler(
            **common,
            algorithm_type="dpmsolver++",
            solver_order=2,
            lambda_min_clipped=_DPM_LAMBDA_MIN,
        )
    raise ValueError(
        f"unknown scheduler {kind!r}; choose one of ('ddpm', 'ddim', 'dpm')"
    )


def blend_prior(x0_prior, x_t2, alpha_bar_t1, alpha_bar_t2):
    """Eq. (8) of the paper: estimate ``x_t1`` from ``x_t2`` and ``x0*``.

    ``x_t1 = a x0* + u x_t2``, ``u = sqrt(1 - abar_1) / sqrt(1 - abar_2)``,
    ``a = sqrt(abar_1) - sqrt(abar_2) u``.

    If ``x_t2 = sqrt(abar_2) x0 + sqrt(1 - abar_2) eps`` and ``x0* = x0``,
    the result is ``sqrt(abar_1) x0 + sqrt(1 - abar_1) eps``: exactly
    distributed as ``q(x_t1 | x0)``. If ``x0* = x0 + U`` the error is
    ``a U`` (Eq. 9). With ``abar_1 == abar_2``, ``a = 0`` and the result
    is ``x_t2``.

    Parameters
    ----------
    x0_prior : torch.Tensor
        Draw from the conditional prior, in diffusion units.
    x_t2 : torch.Tensor, same shape
        Sample denoised from Gaussian noise down to step t2.
    alpha_bar_t1, alpha_bar_t2 : float
        Cumulative signal fractions, ``0 < abar_2 <= abar_1 < 1``.
    """
    ab1, ab2 = float(alpha_bar_t1), float(alpha_bar_t2)
    if not 0 < ab2 <= ab1 < 1:
        raise ValueError(
            "Eq. (8) needs 0 < alpha_bar_t2 <= alpha_bar_t1 < 1 (t1 at or "
            f"after t2), got alpha_bar_t1={ab1!r}, alpha_bar_t2={ab2!r}"
        )
    u = math.sqrt(1 - ab1) / math.sqrt(1 - ab2)
    a = math.sqrt(ab1) - math.sqrt(ab2) * u
    return a * x0_prior + u * x_t2


def guide_clean_estimate(
    structure_vae, x, eps, alpha_bar, target_types, scale, latent_scale=1.0
):
    """Noise estimate whose clean sample is guided towards a type.

    Parameters
    ----------
    structure_vae : StructureVAE
        With the template decoder (its type head is the classifier).
    x : torch.Tensor, shape (B, lc, 16, 16)
        The state at this step, in diffusion units.
    eps : torch.Tensor
        The denoiser's noise estimate for `x`.
    alpha_bar : float
        ``abar_t`` of this step.
    target_types : torch.Tensor of int, shape (B,)
        Indices into ``STRUCTURE_TYPES``.
    scale : float
        Step down the gradient of the type cross-entropy, in latent
        units per unit of gradient; 0 returns `eps`.
    latent_scale : float
        Diffusion units per latent unit.

    Returns
    -------
    torch.Tensor
        ``(x - sqrt(abar) x0') / sqrt(1 - abar)`` with ``x0'`` the guided
        clean estimate, clipped to ``[-PRIOR_CLIP, PRIOR_CLIP]``.
    """
    if scale == 0:
        return eps
    root, rest = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    x0 = (x - rest * eps) / root
    with torch.enable_grad():
        z = (x0 / latent_scale).detach().requires_grad_(True)
        logits = structure_vae.type_logits(z).float()
        loss = torch.nn.functional.cross_entropy(
            logits, target_types.to(logits.device), reduction="sum"
        )
        (gradient,) = torch.autograd.grad(loss, z)
    x0 = x0 - scale * latent_scale * gradient.to(x0.dtype)
    x0 = x0.clamp(-PRIOR_CLIP, PRIOR_CLIP)
    return (x - root * x0) / rest


def _levels(start, stop, points):
    """`points` integer steps from `start` down to `stop`, both included."""
    grid = np.linspace(start, stop, max(points, 1)).round().astype(int)
    return sorted(set(grid.tolist()) | {start, stop}, reverse=True)


class CbLDMPipeline:
    """Normalised PDF -> candidate Laplacians with a trained CbLDM.

    Parameters
    ----------
    condition_vae : ConditionVAE
    structure_vae : StructureVAE
    denoiser : LatentDenoiser
    config : CbLDMConfig
    defaults : dict, optional
        Defaults for :meth:`sample_latents` keywords (``sampler``,
        ``base``, ``steps``, ``t1``, ``t2``), e.g. the ``sampler_defaults``
        of a weights manifest.

    Notes
    -----
    No network here has dropout or batch normalisation, so train/eval
    mode does not change the samples; sampling runs without gradients.
    """

    _DEFAULT_KEYS = ("sampler", "base", "steps", "t1", "t2")

    def __init__(
        self, condition_vae, structure_vae, denoiser, config, defaults=None
    ):
        self.condition_vae = condition_vae
        self.structure_vae = structure_vae
        self.denoiser = denoiser
        self.config = config
        defaults = dict(defaults or {})
        unknown = sorted(set(defaults) - set(self._DEFAULT_KEYS))
        if unknown:
            raise ValueError(
                f"unknown sampler default(s) {unknown}; known: "
                f"{list(self._DEFAULT_KEYS)}"
            )
        self.defaults = defaults

    def _resolve(self, sampler, base, steps, t1, t2):
        d = self.defaults
        sampler = sampler if sampler is not None else d.get("sampler", "cbldm")
        if sampler not in SAMPLERS:
            raise ValueError(
                f"unknown sampler {sampler!r}; choose one of {SAMPLERS}"
            )
        if sampler == "cbldm":
            base = base if base is not None else d.get("base", "ddpm")
            if base not in BASE_SAMPLERS:
                raise ValueError(
                    f"unknown base sampler {base!r} for cbldm; choose one of "
                    f"{BASE_SAMPLERS}"
                )
            t1 = t1 if t1 is not None else d.get("t1", DEFAULT_T1)
            t2 = t2 if t2 is not None else d.get("t2", DEFAULT_T2)
        elif t1 is not None or t2 is not None:
            raise ValueError(
                f"t1/t2 only apply to the cbldm sampler, not {sampler!r}"
            )
        kind = base if sampler == "cbldm" else sampler
        default_sampler = d.get("sampler", "cbldm")
        default_kind = (
            d.get("base", "ddpm")
            if default_sampler == "cbldm"
            else default_sampler
        )
        if steps is None and (default_sampler, default_kind) == (
            sampler,
            kind,
        ):
            # The default step count belongs to the default sampler only.
            steps = d.get("steps")
        if steps is None:
            steps = DEFAULT_STEPS[kind]
        if steps is not None:
            check_count("steps", steps)
        return sampler, kind, steps, t1, t2

    def _step_through(
        self, scheduler, x, z_c, timesteps, generator, guide=None
    ):
        """Apply ``scheduler.step`` at each of `timesteps` in turn, the
        noise estimates corrected by :func:`guide_clean_estimate` when
        `guide` is ``(target_types, type_guidance)``."""
        abar = scheduler.alphas_cumprod
        for t in timesteps:
            t_batch = torch.full(
                (x.shape[0],), int(t), dtype=torch.long, device=x.device
            )
            eps = self.denoiser(x, t_batch, z_c)
            if guide is not None:
                eps = guide_clean_estimate(
                    self.structure_vae,
                    x,
                    eps,
                    float(abar[int(t)]),
                    *guide,
                    latent_scale=self.config.latent_scale,
                )
            x = scheduler.step(eps, int(t), x, generator=generator).prev_sample
        return x

    def _top_step(self, kind):
        """First step a sampler of this kind starts from pure noise."""
        T = self.config.num_train_timesteps
        if kind == "dpm":
            scheduler = make_scheduler("dpm", self.config)
            scheduler.set_timesteps(1)
            return int(scheduler.timesteps[0])
        return T - 1

    def _cbldm_segments(self, kind, steps, t1, t2):
        """Step lists of the two segments: top -> t2 and t1 -> clean."""
        top = self._top_step(kind)
        t1 = check_count("t1", t1, least=0)
        t2 = check_count("t2", t2, least=0)
        if not t1 <= t2 <= top:
            raise ValueError(
                f"the cbldm sampler needs 0 <= t1 <= t2 <= {top} ({kind} "
                f"starts at step {top}), got t1={t1}, t2={t2}"
            )
        length1, length2 = top - t2, t1 + 1
        if steps is None:  # every step of both segments
            n1, n2 = length1, length2
        else:
            # The second segment runs from t1 to 0, both evaluated: two
            # evaluations at least when t1 > 0; the first needs one.
            least2 = min(2, length2)
            least = least2 + (1 if length1 else 0)
            if steps < least:
                raise ValueError(
                    f"the cbldm sampler needs steps >= {least} with t1={t1}"
                    f", t2={t2} ({kind} starts at step {top}), got "
                    f"steps={steps}"
                )
            n1 = round(steps * length1 / (length1 + length2))
            n1 = min(max(n1, 1 if length1 else 0), steps - least2)
            n2 = steps - n1
        first = _levels(top, t2, min(n1, length1) + 1)
        second = _levels(t1, 0, min(n2, length2))
        return first, second

    @torch.no_grad()
    def sample_latents(
        self,
        z_c,
        n_per_condition,
        *,
        sampler=None,
        base=None,
        steps=None,
        t1=None,
        t2=None,
        generator=None,
        target_types=None,
        type_guidance=0.0,
    ):
        """Draw latents for each condition.

        Parameters
        ----------
        z_c : torch.Tensor, shape (B, 2, 125)
            Latent conditions (:meth:`ConditionVAE.condition`).
        n_per_condition : int
            Candidates per condition.
        sampler : {"cbldm", "ddpm", "ddim", "dpm"}, optional
            Default ``"cbldm"`` (or ``defaults["sampler"]``).
        base : {"ddpm", "dpm"}, optional
            The sampler S of the cbldm sampler's two segments; default
            ``"ddpm"``.
        steps : int, optional
            Network evaluations. Defaults: ddpm every step, ddim 50,
            dpm 20; cbldm shares them between its two segments in
            proportion to their lengths (ddpm base: every step of both).
        t1, t2 : int, optional
            Steps of the cbldm skip, ``0 <= t1 <= t2 < T``; defaults
            :data:`DEFAULT_T1`, :data:`DEFAULT_T2`.
        generator : torch.Generator, optional
            Makes the result reproducible.
        target_types : torch.Tensor of int, shape (B,), optional
            A structure type per condition (indices into
            ``STRUCTURE_TYPES``) to guide the sampler towards (module
            docstring); needs the template decoder.
        type_guidance : float
            Strength of that guidance, >= 0; 0 (default) samples
            unguided.

        Returns
        -------
        torch.Tensor, shape (B * n_per_condition, latent_channels, 16, 16)
            Latents in structure-VAE units (divided by ``latent_scale``),
            the candidates of condition b in rows ``b*n ... (b+1)*n - 1``.
        """
        check_count("n_per_condition", n_per_condition)
        sampler, kind, steps, t1, t2 = self._resolve(
            sampler, base, steps, t1, t2
        )
        cfg = self.config
        if z_c.ndim < 2 or z_c[0].numel() != cfg.condition.condition_dim:
            raise ValueError(
                f"z_c must hold conditions of {cfg.condition.condition_dim} "
                f"values, shape (B, 2, 125), got {tuple(z_c.shape)}"
            )
        if isinstance(type_guidance, bool) or not (
            isinstance(type_guidance, (int, float))
            and math.isfinite(type_guidance)
            and type_guidance >= 0
        ):
            raise ValueError(
                f"type_guidance must be a finite number >= 0, got "
                f"{type_guidance!r}"
            )
        guide = None
        if target_types is not None and type_guidance > 0:
            target_types = torch.as_tensor(target_types, device=z_c.device)
            if target_types.shape != (z_c.shape[0],):
                raise ValueError(
                    f"target_types must hold one type per condition, "
                    f"shape ({z_c.shape[0]},), got {tuple(target_types.shape)}"
                )
            guide = (
                target_types.repeat_interleave(n_per_condition),
                float(type_guidance),
            )
        device = z_c.device
        gen_device = generator.device if generator is not None else device
        z_c = z_c.repeat_interleave(n_per_condition, dim=0)
        shape = (z_c.shape[0], *cfg.structure.latent_shape)
        x = torch.randn(
            shape, generator=generator, device=gen_device, dtype=z_c.dtype
        ).to(device)

        if sampler != "cbldm":
            scheduler = make_scheduler(kind, cfg)
            n = cfg.num_train_timesteps if steps is None else steps
            scheduler.set_timesteps(n)
            timesteps = scheduler.timesteps.tolist()
            if len(set(timesteps)) != len(timesteps):
                raise ValueError(
                    f"steps={n} is too many for the {kind} sampler: its "
                    f"step list repeats steps (it covers {len(set(timesteps))}"
                    " distinct ones)"
                )
            x = self._step_through(
                scheduler, x, z_c, scheduler.timesteps, generator, guide
            )
            return x / cfg.latent_scale

        first, second = self._cbldm_segments(kind, steps, t1, t2)
        scheduler = make_scheduler(kind, cfg)
        scheduler.set_timesteps(timesteps=first)
        # Stepping at every listed step but the last lands on step t2.
        x = self._step_through(scheduler, x, z_c, first[:-1], generator, guide)
        if t1 < t2:
            abar = scheduler.alphas_cumprod
            mu_p, logvar_p = self.structure_vae.prior(z_c)
            x0_prior = reparameterize(mu_p, logvar_p, generator)
            x0_prior = (x0_prior * cfg.latent_scale).clamp(
                -PRIOR_CLIP, PRIOR_CLIP
            )
            x = blend_prior(x0_prior, x, abar[t1], abar[t2]).to(x.dtype)
        scheduler = make_scheduler(kind, cfg)
        scheduler.set_timesteps(timesteps=second)
        x = self._step_through(scheduler, x, z_c, second, generator, guide)
        return x / cfg.latent_scale

    @torch.no_grad()
    def __call__(self, pdf, n_per_condition, **sampling):
        """Candidate Laplacians for normalised PDFs.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
            PDFs on the model's r-grid, normalised with
            :func:`diffpy_cbldm.conventions.normalise_pdf`.
        n_per_condition : int
            Candidates per PDF.
        **sampling
            Keywords of :meth:`sample_latents`.

        Returns
        -------
        torch.Tensor, shape (B * n_per_condition, size, size)
            Padded Laplacians, those of PDF b in rows ``b*n ...``.
        """
        z_c = self.condition_vae.condition(pdf)
        latents = self.sample_latents(z_c, n_per_condition, **sampling)
        # The count from the latent and, where the weights have one, the
        # condition's count prior, as propose decodes it.
        atoms = self.structure_vae.count_atoms(
            latents, z_c.repeat_interleave(n_per_condition, dim=0)
        )
        return self.structure_vae.decode(latents, atoms=atoms)
