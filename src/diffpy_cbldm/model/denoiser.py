"""The latent denoiser: noise prediction conditioned on the PDF embedding.

Third stage of CbLDM (paper, Alg. 3). A diffusers ``UNet2DModel`` predicts
the noise in a (1, 16, 16) latent; the latent condition (2, 125) is mapped
by an MLP to a vector that is added to the timestep embedding of every
residual block (``class_embed_type="identity"``). The reference code
cross-attends to the condition as a single token, which is the same
thing: attention over one key returns its value at every pixel.
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffpy_cbldm.model.config import DenoiserConfig

__all__ = ["LatentDenoiser"]


class LatentDenoiser(nn.Module):
    """Conditional noise predictor ``eps_theta(x_t, t, z_c)``.

    Parameters
    ----------
    config : DenoiserConfig
    """

    def __init__(self, config=None):
        super().__init__()
        # diffusers takes seconds to import: only when a denoiser is built.
        from diffusers import UNet2DModel

        self.config = config = config or DenoiserConfig()
        embed_dim = 4 * config.channels[0]
        down = tuple(
            "AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention
        )
        up = tuple(
            "AttnUpBlock2D" if a else "UpBlock2D"
            for a in reversed(config.attention)
        )
        self.unet = UNet2DModel(
            sample_size=config.sample_size,
            in_channels=config.latent_channels,
            out_channels=config.latent_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=config.channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
            attention_head_dim=config.attention_head_dim,
            class_embed_type="identity",
        )
        self.condition_embedding = nn.Sequential(
            nn.Linear(config.condition_dim, embed_dim),
            nn.SiLU(),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, x_t, t, z_c):
        """Predict the noise in `x_t`.

        Parameters
        ----------
        x_t : torch.Tensor, shape (B, latent_channels, 16, 16)
            Noisy latents at diffusion steps `t`.
        t : torch.Tensor, shape (B,) or scalar, integer
            Diffusion steps in [0, T).
        z_c : torch.Tensor, shape (B, 2, 125)
            Latent conditions.

        Returns
        -------
        torch.Tensor, same shape as `x_t`
        """
        c = self.config
        if x_t.ndim != 4 or x_t.shape[1:] != (
            c.latent_channels,
            c.sample_size,
            c.sample_size,
        ):
            raise ValueError(
                "LatentDenoiser expects latents of shape (B, "
                f"{c.latent_channels}, {c.sample_size}, {c.sample_size}), "
                f"got {tuple(x_t.shape)}"
            )
        if z_c.shape[0] != x_t.shape[0] or z_c[0].numel() != c.condition_dim:
            raise ValueError(
                f"LatentDenoiser expects {x_t.shape[0]} conditions of "
                f"{c.condition_dim} values, got {tuple(z_c.shape)}"
            )
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        emb = self.condition_embedding(z_c.reshape(z_c.shape[0], -1))
        return self.unet(x_t, t, class_labels=emb).sample

    def loss(self, x0, z_c, scheduler, generator=None):
        """One DDPM training step's loss (paper, Alg. 3).

        Draws ``t ~ U{0, T-1}`` and ``eps ~ N(0, I)``, forms
        ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with
        ``scheduler.add_noise`` and returns the mean squared error of the
        predicted noise (the paper uses L1; MSE is the DDPM objective).

        Parameters
        ----------
        x0 : torch.Tensor, shape (B, latent_channels, 16, 16)
            Clean latents, already multiplied by ``latent_scale``.
        z_c : torch.Tensor, shape (B, 2, 125)
        scheduler : diffusers scheduler
            Supplies ``num_train_timesteps`` and ``add_noise``.
        generator : torch.Generator, optional
            Source of `t` and the noise.

        Returns
        -------
        torch.Tensor
            Scalar loss (float32).
        """
        device = generator.device if generator is not None else x0.device
        steps = scheduler.config.num_train_timesteps
        t = torch.randint(
            0, steps, (x0.shape[0],), generator=generator, device=device
        ).to(x0.device)
        noise = torch.randn(
            x0.shape, generator=generator, device=device, dtype=x0.dtype
        ).to(x0.device)
        x_t = scheduler.add_noise(x0, noise, t)
        return F.mse_loss(self(x_t, t, z_c).float(), noise.float())
