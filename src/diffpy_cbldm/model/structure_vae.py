"""The structure VAE with a conditional prior (paper, section 3.1, Alg. 2).

Encoder ``q(z | L, c)``: the padded Laplacian of a cluster, seen through
its adjacency ``W = diag(L) - L`` (values in [0, 1]), is cut into
``patch_size`` squares by a strided convolution, convolved down to the
latent grid, joined there with the prior's mean and log-variance maps
(that is how the encoder sees the condition), and mapped to the moments of
a (1, 16, 16) latent.

Prior ``p(z | c)``: an MLP of the latent condition (not N(0, I)).

Decoder ``p(L | z)``, unconditional, of one of two kinds
(``config.decoder``). "coordinates" (the default): an MLP of the latent
gives ``size`` atomic positions and ``W_ij = exp(-d_ij^2 / 2 sigma^2)`` of
them, so every decoded matrix is the Laplacian of a geometry that exists
in 3-D. "patches": convolutions and self-attention from the latent back
to the patch grid, a pixel shuffle to the full matrix, then
``W = relu((h + h^T) / 2)`` with a zero diagonal. An MLP of the latent
classifies the number of atoms n (1 ... size); the atoms come first in the
canonical order, so rows and columns from n on are set to zero. Finally
``L = diag(W 1) - W``. Every decoded matrix is therefore the Laplacian of
a graph on exactly n atoms: symmetric, zero row sums, non-positive
off-diagonal, zero padding. During training the mask uses the true n
(teacher forcing) and the count is learned by its own cross-entropy.
With ``config.count_prior`` the prior network has a count head too: a
Gaussian in ln n from the condition alone, combined with the latent's
count distribution when decoding (:meth:`StructureVAE.count_atoms`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffpy_cbldm.model.blocks import (
    Downsample2d,
    ResBlock2d,
    SelfAttention2d,
    Upsample2d,
    gaussian_kl,
    group_norm,
    log_n_nll,
    reparameterize,
    split_moments,
)
from diffpy_cbldm.model.config import StructureVAEConfig
from diffpy_cbldm.model.site_field import SiteField

__all__ = [
    "FIELD_COUNT_WIDTH",
    "StructureVAE",
    "adjacency",
    "atom_counts",
    "laplacian_from_adjacency",
]


FIELD_COUNT_WIDTH = 0.4
"""Width in ln n of the template decoder's count distribution about the
site field's expected count (:meth:`StructureVAE.count_log_probs`)."""


def adjacency(L):
    """Edge weights ``W = diag(L) - L`` of Laplacians, (B, N, N)."""
    return torch.diag_embed(torch.diagonal(L, dim1=-2, dim2=-1)) - L


def atom_counts(L):
    """Atoms of exact padded Laplacians: rows with a positive diagonal.

    (B, N, N) -> (B,) long. For training targets, whose padding is exactly
    zero; a decoded or noisy matrix needs
    :func:`diffpy_cbldm.clusters.laplacian.atom_count_from_laplacian`.
    """
    return (torch.diagonal(L, dim1=-2, dim2=-1) > 0).sum(dim=-1)


def laplacian_from_adjacency(W):
    """``L = diag(W 1) - W`` for (B, N, N) weights with zero diagonal."""
    return torch.diag_embed(W.sum(dim=-1)) - W


class StructureVAE(nn.Module):
    """VAE of padded cluster Laplacians with a prior conditioned on the PDF.

    Parameters
    ----------
    config : StructureVAEConfig
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or StructureVAEConfig()
        p = config.patch_size
        lc = config.latent_channels
        side = config.latent_size
        ec = config.encoder_channels

        hidden = config.prior_hidden
        self.prior_net = nn.Sequential(
            nn.Linear(config.condition_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * lc * side * side),
        )

        self.stem = nn.Conv2d(1, ec[0], p, stride=p)
        body = []
        for level, c in enumerate(ec):
            body += [ResBlock2d(c, c) for _ in range(config.encoder_blocks)]
            if level + 1 < len(ec):
                body.append(Downsample2d(c, ec[level + 1]))
        self.encoder_body = nn.Sequential(*body)
        self.encoder_join = nn.Conv2d(ec[-1] + 2 * lc, ec[-1], 1)
        self.encoder_head = nn.Sequential(
            SelfAttention2d(ec[-1]) if config.attention else nn.Identity(),
            ResBlock2d(ec[-1], ec[-1]),
            group_norm(ec[-1]),
            nn.SiLU(),
            nn.Conv2d(ec[-1], 2 * lc, 3, padding=1),
        )

        if config.decoder == "template":
            self.decoder = SiteField(
                lc * side * side,
                config.template_sites,
                width=config.field_width,
                hidden=config.coordinate_hidden,
                frequencies=config.field_frequencies,
            )
        elif config.decoder == "coordinates":
            width = config.coordinate_hidden
            self.decoder = nn.Sequential(
                nn.Linear(lc * side * side, width),
                nn.SiLU(),
                nn.Linear(width, width),
                nn.SiLU(),
                nn.Linear(width, 3 * config.size),
            )
        else:
            self.decoder = self._patch_decoder(config)
        self.count_head = nn.Sequential(
            nn.Linear(lc * side * side, hidden),
            nn.SiLU(),
            nn.Linear(hidden, config.size),
        )
        if config.count_prior:
            self.count_prior_head = nn.Sequential(
                nn.Linear(config.condition_dim, hidden),
                nn.SiLU(),
                nn.Linear(hidden, hidden),
                nn.SiLU(),
                nn.Linear(hidden, 2),
            )

    @staticmethod
    def _patch_decoder(config):
        p = config.patch_size
        lc = config.latent_channels
        dc = config.decoder_channels
        dec = [nn.Conv2d(lc, dc[0], 3, padding=1)]
        for level, c in enumerate(dc):
            for _ in range(config.decoder_blocks):
                dec.append(ResBlock2d(c, c))
                if level == 0 and config.attention:
                    dec.append(SelfAttention2d(c))
            if level + 1 < len(dc):
                dec.append(Upsample2d(c, dc[level + 1]))
        # The patch head is a per-cell MLP, not one linear map: a linear
        # map from C features would confine every decoded p x p patch to
        # one C-dimensional subspace of R^(p^2).
        dec += [
            group_norm(dc[-1]),
            nn.SiLU(),
            nn.Conv2d(dc[-1], config.head_channels, 1),
            nn.SiLU(),
            nn.Conv2d(config.head_channels, p * p, 1),
            nn.PixelShuffle(p),
        ]
        return nn.Sequential(*dec)

    def _check_laplacian(self, L):
        n = self.config.size
        if L.ndim != 3 or L.shape[1:] != (n, n):
            raise ValueError(
                f"StructureVAE expects padded Laplacians of shape (B, {n}, "
                f"{n}), got {tuple(L.shape)}"
            )

    def _check_condition(self, z_c):
        if z_c.ndim < 2 or z_c[0].numel() != self.config.condition_dim:
            raise ValueError(
                "StructureVAE expects latent conditions of "
                f"{self.config.condition_dim} values each, shape (B, ...), "
                f"got {tuple(z_c.shape)}"
            )

    def prior(self, z_c):
        """Conditional prior ``p(z | c)``.

        Parameters
        ----------
        z_c : torch.Tensor, shape (B, 2, 125)
            Latent conditions from :meth:`ConditionVAE.condition`.

        Returns
        -------
        mu_p, logvar_p : torch.Tensor, each (B, latent_channels, 16, 16)
        """
        self._check_condition(z_c)
        side = self.config.latent_size
        h = self.prior_net(z_c.reshape(z_c.shape[0], -1))
        return split_moments(h.reshape(z_c.shape[0], -1, side, side))

    def _posterior(self, L, mu_p, logvar_p):
        W = adjacency(L).unsqueeze(1)  # (B, 1, N, N), values in [0, 1]
        h = self.encoder_body(self.stem(W))  # (B, C, 16, 16)
        h = self.encoder_join(torch.cat([h, mu_p, logvar_p], dim=1))
        return split_moments(self.encoder_head(h))

    def encode(self, L, z_c):
        """Posterior ``q(z | L, c)``.

        Parameters
        ----------
        L : torch.Tensor, shape (B, size, size)
            Padded Laplacians of canonically ordered clusters.
        z_c : torch.Tensor, shape (B, 2, 125)
            Their latent conditions.

        Returns
        -------
        mu, logvar : torch.Tensor, each (B, latent_channels, 16, 16)
        """
        self._check_laplacian(L)
        if z_c.shape[0] != L.shape[0]:
            raise ValueError(
                f"{L.shape[0]} Laplacians but {z_c.shape[0]} conditions"
            )
        return self._posterior(L, *self.prior(z_c))

    def count_logits(self, z):
        """Logits of the atom count, (B, lc, 16, 16) -> (B, size); class k
        is k + 1 atoms."""
        return self.count_head(z.reshape(z.shape[0], -1))

    def count_prior(self, z_c):
        """The count the condition alone implies: mean and log-variance
        of ln n, each (B,). Needs ``config.count_prior``."""
        if not self.config.count_prior:
            raise ValueError(
                "this structure VAE has no count prior (config.count_prior"
                " is False)"
            )
        self._check_condition(z_c)
        h = self.count_prior_head(z_c.reshape(z_c.shape[0], -1))
        return h[:, 0], h[:, 1].clamp(-10.0, 5.0)

    def count_log_probs(self, z, z_c=None, *, prior=None):
        """Log-probabilities of 1 ... size atoms, (B, size).

        The latent's count distribution alone, or, given the latent
        conditions `z_c` (one per latent) and a network with
        ``config.count_prior``, the normalised product of the latent's and
        the condition's count distributions (the condition's Gaussian in
        ln n evaluated at n = 1 ... size). `prior`, the mean and
        log-variance of ln n from elsewhere (each (B,), e.g. the
        :class:`~diffpy_cbldm.model.cluster_estimator.ClusterEstimator`),
        takes the condition's place. The latent's distribution is
        its count head's, except with the template decoder: there it is a
        Gaussian in ln n of width :data:`FIELD_COUNT_WIDTH` about the
        site field's expected count
        (:meth:`SiteField.expected_counts`), which reconstructs the
        count of held-out clusters better than the count head
        (docs/benchmarks/model_quality.rst).
        """
        log_n = torch.log(
            torch.arange(1, self.config.size + 1, device=z.device).float()
        )
        if self.config.decoder == "template":
            expected = self.decoder.expected_counts(z).clamp(min=1.0)
            logp = torch.log_softmax(
                -0.5
                * ((log_n[None] - torch.log(expected)[:, None]) ** 2)
                / FIELD_COUNT_WIDTH**2,
                dim=-1,
            )
        else:
            logp = torch.log_softmax(self.count_logits(z).float(), dim=-1)
        if prior is not None:
            mean, logvar = prior
        elif z_c is None or not self.config.count_prior:
            return logp
        else:
            mean, logvar = self.count_prior(z_c)
        nll = log_n_nll(log_n[None], mean[:, None], logvar[:, None])
        return torch.log_softmax(logp - nll, dim=-1)

    def count_atoms(self, z, z_c=None, *, prior=None):
        """Most probable number of atoms of each latent, (B,) long
        (:meth:`count_log_probs`)."""
        return self.count_log_probs(z, z_c, prior=prior).argmax(dim=-1) + 1

    def decode_positions(self, z, atoms=None, connected=False):
        """Positions in Å, (B, size, 3), rows from the atom count on are
        padding.

        The coordinate decoder's positions, or the template decoder's
        occupied sites (:meth:`SiteField.decode`; `atoms` as in
        :meth:`decode`; `connected` keeps them one piece). Not for
        ``config.decoder == "patches"``.
        """
        if self.config.decoder == "template":
            if atoms is None:
                atoms = self.count_atoms(z)
            return self.decoder.decode(
                z, atoms, self.config.size, connected=connected
            )[0]
        if self.config.decoder != "coordinates":
            raise ValueError(
                "decode_positions needs the coordinate or template decoder,"
                f" this network has decoder={self.config.decoder!r}"
            )
        x = self.decoder(z.reshape(z.shape[0], -1))
        return self.config.sigma * x.reshape(z.shape[0], self.config.size, 3)

    def decode_both_ways(self, z, atoms=None):
        """Template decoder: the clusters as decoded and joined into one
        piece, from one scoring of the sites (:meth:`SiteField.occupancy`).

        Returns
        -------
        plain, joined : torch.Tensor, shape (B, size, 3)
            :meth:`decode_positions` with ``connected`` False and True.
        replaced : list of int
            Sites of each plain cluster that its joined one replaced.
        """
        if self.config.decoder != "template":
            raise ValueError(
                "only the template decoder selects sites, this network has "
                f"decoder={self.config.decoder!r}"
            )
        if atoms is None:
            atoms = self.count_atoms(z)
        occupancy = self.decoder.occupancy(z)
        plain = self.decoder.place(occupancy, atoms, self.config.size)[0]
        joined, replaced = self.decoder.place(
            occupancy, atoms, self.config.size, connected=True
        )
        return plain, joined, replaced

    def type_logits(self, z):
        """Structure-type logits of each latent (template decoder), (B, 7)
        in the order of ``STRUCTURE_TYPES``; differentiable in `z`."""
        if self.config.decoder != "template":
            raise ValueError(
                "only the template decoder decodes a structure type, this "
                f"network has decoder={self.config.decoder!r}"
            )
        return self.decoder.heads(z)[1]

    def structure_types(self, z):
        """Most probable structure type of each latent (template decoder),
        (B,) long, indices into ``STRUCTURE_TYPES``."""
        return self.type_logits(z).argmax(dim=-1)

    def decode(self, z, atoms=None):
        """Laplacians from latents, (B, lc, 16, 16) -> (B, size, size).

        Parameters
        ----------
        z : torch.Tensor, shape (B, latent_channels, 16, 16)
        atoms : torch.Tensor of int, shape (B,), optional
            Number of atoms of each matrix; by default the latent's own
            reading, ``count_atoms(z)`` without the condition's count
            prior (pass ``count_atoms(z, z_c)`` to include it, as
            ``propose`` and :class:`~diffpy_cbldm.model.CbLDMPipeline`
            do).

        Returns
        -------
        torch.Tensor, shape (B, size, size)
            Symmetric, zero row sums, non-positive off-diagonal, and zero
            from row and column ``atoms`` on.
        """
        if atoms is None:
            atoms = self.count_atoms(z)
        if self.config.decoder in ("coordinates", "template"):
            return self.positions_laplacian(
                self.decode_positions(z, atoms), atoms
            )
        h = self.decoder(z).squeeze(1)  # (B, size, size)
        return self._masked_laplacian(
            torch.relu(0.5 * (h + h.transpose(-1, -2))), atoms
        )

    def positions_laplacian(self, x, atoms):
        """The decoded Laplacians of positions from
        :meth:`decode_positions`: ``W_ij = exp(-d_ij^2 / 2 sigma^2)``,
        zero from row and column ``atoms`` on, ``L = diag(W 1) - W``.
        What :meth:`decode` returns, for a caller that also needs the
        positions (decoding them once)."""
        x = x.float()
        sq = (x * x).sum(-1)
        d2 = sq[:, :, None] + sq[:, None, :] - 2 * x @ x.transpose(-1, -2)
        W = torch.exp(-d2.clamp(min=0) / (2 * self.config.sigma**2))
        return self._masked_laplacian(W, atoms)

    def _masked_laplacian(self, W, atoms):
        """``L = diag(W 1) - W`` of `W` with a zero diagonal and zero
        rows and columns from ``atoms`` on."""
        n = W.shape[-1]
        index = torch.arange(n, device=W.device)
        real = (index < atoms.reshape(-1, 1).to(W.device)).to(W.dtype)
        mask = (
            real[:, :, None]
            * real[:, None, :]
            * (1 - torch.eye(n, dtype=W.dtype, device=W.device))
        )
        return laplacian_from_adjacency(W * mask)

    def loss(self, L, z_c, *, beta=None, generator=None, sites=None):
        """Negative ELBO with the conditional prior (paper, Alg. 2).

        Parameters
        ----------
        L : torch.Tensor, shape (B, size, size)
            Exact padded Laplacians (padding exactly zero).
        z_c : torch.Tensor, shape (B, 2, 125)
        beta : float, optional
            Weight of the KL term; defaults to ``config.kl_weight``.
        generator : torch.Generator, optional
            Source of the reparameterisation noise.
        sites : dict of torch.Tensor, optional
            Targets of the template decoder (required by it): ``stype``
            (B,), ``nn`` (B,) in Å, and for K sampled sites of each
            cluster's template ``index`` (B, K, global site indices),
            ``label`` (1 occupied, 0 empty) and ``weight`` (B, K; 0 for
            padding, the inverse sampling fraction otherwise), see
            :func:`diffpy_cbldm.clusters.templates.site_targets`.

        Returns
        -------
        dict of scalar tensors
            ``rec``: squared error of the off-diagonal entries (the
            edge weights W) of the matrix decoded with the true atom
            count, divided by each cluster's n^2 atom pairs, averaged over
            the batch; ``count``:
            cross-entropy of the atom count in nats; ``kl``:
            ``KL(q(z|L,c) || p(z|c))`` in nats per latent element;
            with the coordinate decoder also ``dist``, the mean square
            error of the decoded distances in sigma^2
            (:meth:`_distance_error`); with ``config.count_prior`` also
            ``count_prior``, the Gaussian negative log-likelihood of ln n
            under :meth:`count_prior` (without its constant); ``loss =
            rec + count_weight * (count + count_prior) + beta * kl (+
            distance_weight * dist)``. With the template decoder ``rec``
            is instead the binary cross-entropy of the site occupancies
            (weighted sum over the sampled sites, per atom), and the
            terms ``type`` (cross-entropy of the structure type) and
            ``scale`` (squared error of ln NN) are added to the loss.
        """
        if beta is None:
            beta = self.config.kl_weight
        self._check_laplacian(L)
        mu_p, logvar_p = self.prior(z_c)
        mu, logvar = self._posterior(L, mu_p, logvar_p)
        z = reparameterize(mu, logvar, generator)
        atoms = atom_counts(L)
        if self.config.decoder == "template":
            if sites is None:
                raise ValueError(
                    "the template decoder's loss needs the site targets "
                    "(sites=...)"
                )
            h, type_logits, log_nn = self.decoder.heads(z)
            logits = self.decoder.site_logits(
                h, sites["stype"], sites["index"]
            ).float()
            bce = F.binary_cross_entropy_with_logits(
                logits, sites["label"].float(), reduction="none"
            )
            rec = ((bce * sites["weight"]).sum(-1) / atoms.clamp(min=1)).mean()
            out = {
                "rec": rec,
                "type": F.cross_entropy(type_logits.float(), sites["stype"]),
                "scale": (
                    (log_nn.float() - torch.log(sites["nn"].float())) ** 2
                ).mean(),
            }
            return self._finish_loss(
                out, z, atoms, mu, logvar, mu_p, logvar_p, z_c, beta
            )
        # Off-diagonal entries only: the diagonal is the row sum of the
        # rest, and weighing its (large, correlated) errors in made the
        # decoder settle on blurred row averages (docs/theory_model.rst).
        W_hat = adjacency(self.decode(z, atoms=atoms).float())
        W = adjacency(L.float())
        pairs = atoms.clamp(min=1).float() ** 2
        rec = (((W_hat - W) ** 2).sum((-2, -1)) / pairs).mean()
        out = {"rec": rec}
        if self.config.decoder == "coordinates":
            out["dist"] = self._distance_error(z, W, atoms)
        return self._finish_loss(
            out, z, atoms, mu, logvar, mu_p, logvar_p, z_c, beta
        )

    def _finish_loss(
        self, out, z, atoms, mu, logvar, mu_p, logvar_p, z_c, beta
    ):
        """Add the count, count prior and KL terms; ``loss`` is the sum of
        every term (weighted) in `out` and these."""
        out["count"] = F.cross_entropy(
            self.count_logits(z).float(), (atoms - 1).clamp(min=0)
        )
        out["kl"] = gaussian_kl(
            mu.float(), logvar.float(), mu_p.float(), logvar_p.float()
        ).mean()
        if self.config.count_prior:
            mean, lv = self.count_prior(z_c)
            log_n = torch.log(atoms.clamp(min=1).float())
            out["count_prior"] = log_n_nll(log_n, mean, lv).mean()
        weights = {
            "count": self.config.count_weight,
            "count_prior": self.config.count_weight,
            "kl": beta,
            "dist": self.config.distance_weight,
        }
        out["loss"] = sum(weights.get(k, 1.0) * v for k, v in out.items())
        return out

    def _distance_error(self, z, W, atoms):
        """Mean square error of the decoded interatomic distances, in
        units of sigma^2, over each cluster's atom pairs.

        The true distances are read from the Laplacian itself,
        ``d = sigma sqrt(-2 ln W)``; pairs whose weight underflowed
        (W < 1e-30, that is d > 11.7 sigma) are left out.
        Unlike the error of W, whose gradient vanishes once atoms are a
        few sigma apart, this term pulls distant atoms back.
        """
        sigma = self.config.sigma
        x = self.decode_positions(z).float() / sigma
        diff = x[:, :, None, :] - x[:, None, :, :]
        d_hat = torch.sqrt((diff * diff).sum(-1) + 1e-8)
        usable = W > 1e-30
        d = torch.sqrt(-2 * torch.log(torch.where(usable, W, 1.0)))
        n = W.shape[-1]
        index = torch.arange(n, device=W.device)
        real = index < atoms.reshape(-1, 1).to(W.device)
        mask = (real[:, :, None] & real[:, None, :] & usable).float()
        mask = mask * (1 - torch.eye(n, device=W.device))
        pairs = mask.sum((-2, -1)).clamp(min=1)
        return ((((d_hat - d) ** 2) * mask).sum((-2, -1)) / pairs).mean()

    def forward(self, L, z_c):
        """Deterministic reconstruction through the posterior mean."""
        return self.decode(self.encode(L, z_c)[0])
