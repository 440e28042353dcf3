"""The condition VAE: compress a normalised PDF into a latent condition.

First stage of CbLDM (paper, section 3.2, Alg. 1). A PDF of 3000 points is
folded into (6, 500), six r-segments of 5 Å stacked as channels, and 1-D
convolutions compress it to a (2, 125) latent. The posterior mean is the
condition ``z_c`` the other two networks read.
"""

import torch.nn.functional as F
from torch import nn

from diffpy_cbldm.model.blocks import (
    Downsample1d,
    ResBlock1d,
    Upsample1d,
    check_pdf_batch,
    gaussian_kl,
    group_norm,
    reparameterize,
    split_moments,
)
from diffpy_cbldm.model.config import ConditionVAEConfig

__all__ = ["ConditionVAE"]


class ConditionVAE(nn.Module):
    """VAE of normalised PDFs with a N(0, I) prior.

    Parameters
    ----------
    config : ConditionVAEConfig
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or ConditionVAEConfig()
        ch = config.channels
        nb = config.blocks_per_level

        enc = [nn.Conv1d(config.fold, ch[0], 3, padding=1)]
        for level, c in enumerate(ch):
            enc += [ResBlock1d(c, c) for _ in range(nb)]
            if level + 1 < len(ch):
                enc.append(Downsample1d(c, ch[level + 1]))
        enc += [
            group_norm(ch[-1]),
            nn.SiLU(),
            nn.Conv1d(ch[-1], 2 * config.latent_channels, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*enc)

        dec = [nn.Conv1d(config.latent_channels, ch[-1], 3, padding=1)]
        for level in range(len(ch) - 1, -1, -1):
            c = ch[level]
            dec += [ResBlock1d(c, c) for _ in range(nb)]
            if level > 0:
                dec.append(Upsample1d(c, ch[level - 1]))
        dec += [
            group_norm(ch[0]),
            nn.SiLU(),
            nn.Conv1d(ch[0], config.fold, 3, padding=1),
        ]
        self.decoder = nn.Sequential(*dec)

    def encode(self, pdf):
        """Posterior ``q(z_c | pdf)``.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
            PDFs normalised by :func:`diffpy_cbldm.conventions
            .normalise_pdf`.

        Returns
        -------
        mu, logvar : torch.Tensor, each (B, latent_channels, length)
        """
        check_pdf_batch(pdf, self.config.n_points, "ConditionVAE")
        folded = pdf.reshape(pdf.shape[0], self.config.fold, -1)
        return split_moments(self.encoder(folded))

    def decode(self, z):
        """Reconstruct PDFs, (B, latent_channels, length) -> (B, n_points)."""
        return self.decoder(z).reshape(z.shape[0], -1)

    def condition(self, pdf):
        """The latent condition the other networks read: the posterior mean.

        (B, n_points) -> (B, latent_channels, length); deterministic.
        """
        return self.encode(pdf)[0]

    def loss(self, pdf, *, kl_weight=None, generator=None):
        """Negative ELBO of a batch, as the paper's Alg. 1 trains it.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
        kl_weight : float, optional
            Defaults to ``config.kl_weight``.
        generator : torch.Generator, optional
            Source of the reparameterisation noise.

        Returns
        -------
        dict of scalar tensors
            ``rec``: mean squared error per r-point; ``kl``: KL to N(0, I)
            in nats per latent element; ``loss = rec + kl_weight * kl``.
        """
        if kl_weight is None:
            kl_weight = self.config.kl_weight
        mu, logvar = self.encode(pdf)
        z = reparameterize(mu, logvar, generator)
        rec = F.mse_loss(self.decode(z).float(), pdf.float())
        kl = gaussian_kl(mu.float(), logvar.float()).mean()
        return {"loss": rec + kl_weight * kl, "rec": rec, "kl": kl}

    def forward(self, pdf):
        """Deterministic reconstruction through the posterior mean."""
        return self.decode(self.condition(pdf))
