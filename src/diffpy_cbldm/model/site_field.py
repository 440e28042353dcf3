"""The template decoder: a structure type and occupied template sites.

A cluster of CbLDM's training set is a structure type and a set of sites
of that type's template (:mod:`diffpy_cbldm.clusters.templates`). This
decoder reads a latent as exactly that:

- a *type head* gives the logits of the seven structure types;
- a *site field* gives, for any template site ``s``, the logit that it is
  occupied: features of ``s`` (its coordinates, radius and Fourier
  features, plus an embedding of the type) pass through two layers that
  the latent modulates (FiLM: ``silu(a * (1 + gamma(z)) + beta(z))``).
  A modulated layer of coordinates is a set of half-space tests
  ``n . s < d``, which is how lattice cuts and facetted particles are
  made;
- a *scale head* gives the nearest-neighbour distance in Å (its log).

Decoding keeps the ``n`` sites of highest logit of the most probable type
(``n`` from the structure VAE's count head): every decoded cluster is a
piece of a real lattice or twinned arrangement with exact bonds, for
any latent. With ``connected=True`` the ``n`` sites are also one piece
(:func:`~diffpy_cbldm.clusters.bonds.connected_selection`): the top
``n`` sites can include stray sites or fragments apart from the rest.
The sites are buffers, saved with the weights.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SiteField"]

_COORDINATE_SCALE = 4.0
"""Coordinates and radii enter the field divided by this (NN units)."""


class SiteField(nn.Module):
    """Type, scale and site-occupancy heads of a latent.

    Parameters
    ----------
    latent_dim : int
        Values in one (flattened) latent.
    counts : sequence of int
        Sites of each structure type's template, in type order.
    width : int
        Width of the site features and of the modulated layers.
    hidden : int
        Width of the latent's trunk MLP.
    frequencies : int
        Random Fourier frequencies of the site features.
    """

    def __init__(
        self, latent_dim, counts, width=128, hidden=1024, frequencies=32
    ):
        super().__init__()
        counts = [int(c) for c in counts]
        if not counts or min(counts) < 1:
            raise ValueError(
                f"every structure type needs template sites, got {counts}"
            )
        self.counts = counts
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        self.offsets = offsets
        self.register_buffer("sites", torch.zeros(offsets[-1], 3))
        # Fourier frequencies in cycles per NN distance; drawn from a
        # fixed seed (and saved) so that a network is its weights.
        g = torch.Generator().manual_seed(0)
        self.register_buffer(
            "frequencies", 0.3 * torch.randn(3, frequencies, generator=g)
        )
        types = len(counts)
        self.trunk = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
        )
        self.type_head = nn.Linear(hidden, types)
        self.scale_head = nn.Linear(hidden, 1)
        self.film = nn.Linear(hidden, 4 * width)
        self.site_in = nn.Linear(4 + 2 * frequencies, width)
        self.type_embedding = nn.Embedding(types, width)
        self.site_mid = nn.Linear(width, width)
        self.site_out = nn.Linear(width, 1)
        self._neighbours = {}

    def set_sites(self, templates):
        """Load the template sites: a sequence of (m_t, 3) arrays in type
        order, NN units, with the counts this field was built for."""
        sizes = [len(t) for t in templates]
        if sizes != self.counts:
            raise ValueError(
                f"templates of {sizes} sites, this field was built for "
                f"{self.counts}"
            )
        x = torch.cat(
            [torch.as_tensor(t, dtype=torch.float32) for t in templates]
        )
        self.sites.copy_(x)
        self._neighbours = {}

    def neighbours(self, stype):
        """Bonded sites of each site of structure type ``stype``'s
        template (within :data:`~diffpy_cbldm.clusters.bonds.BOND_FACTOR`
        nearest-neighbour distances, which are 1 in a template): a list
        of int arrays of local indices, computed once."""
        from diffpy_cbldm.clusters.bonds import BOND_FACTOR, bonded_neighbours

        if stype not in self._neighbours:
            sites = self.sites[self.offsets[stype] : self.offsets[stype + 1]]
            self._neighbours[stype] = bonded_neighbours(
                sites.double().cpu().numpy(), BOND_FACTOR
            )
        return self._neighbours[stype]

    def type_sites(self, stype):
        """Global indices of the sites of structure type ``stype`` (int)."""
        return torch.arange(
            self.offsets[stype],
            self.offsets[stype + 1],
            device=self.sites.device,
        )

    def heads(self, z):
        """Trunk features, type logits (B, types) and ln NN in Å (B,)."""
        h = self.trunk(z.reshape(z.shape[0], -1))
        return h, self.type_head(h), self.scale_head(h).squeeze(-1) + 1.0

    def site_logits(self, h, stype, index):
        """Occupancy logits of sites.

        Parameters
        ----------
        h : torch.Tensor, shape (B, hidden)
            Trunk features (:meth:`heads`).
        stype : torch.Tensor of int, shape (B,)
            Structure type whose template the sites belong to.
        index : torch.Tensor of int, shape (B, K)
            Global site indices.

        Returns
        -------
        torch.Tensor, shape (B, K)
        """
        s = self.sites[index]  # (B, K, 3)
        phase = 2 * math.pi * (s @ self.frequencies)
        radius = s.norm(dim=-1, keepdim=True)
        features = torch.cat(
            [
                s / _COORDINATE_SCALE,
                radius / _COORDINATE_SCALE,
                torch.sin(phase),
                torch.cos(phase),
            ],
            dim=-1,
        )
        a = self.site_in(features.to(h.dtype))
        a = a + self.type_embedding(stype)[:, None, :]
        g1, b1, g2, b2 = self.film(h)[:, None, :].chunk(4, dim=-1)
        a = F.silu(a * (1 + g1) + b1)
        a = F.silu(self.site_mid(a) * (1 + g2) + b2)
        return self.site_out(a).squeeze(-1)

    def _logits_by_type(self, h, stype):
        """Occupancy logits over the whole template of each latent's type:
        yields (type, rows of the batch, their site indices (R, m_t),
        float logits (R, m_t)), one type at a time."""
        for t in stype.unique().tolist():
            rows = (stype == t).nonzero().squeeze(-1)
            index = self.type_sites(t).expand(len(rows), -1)
            logits = self.site_logits(h[rows], stype[rows], index).float()
            yield t, rows, index, logits

    def expected_counts(self, z):
        """Sum of the occupancy probabilities over the template of each
        latent's most probable type: the field's own atom count, (B,)."""
        h, type_logits, _ = self.heads(z)
        out = torch.zeros(z.shape[0], device=z.device)
        for _, rows, _, logits in self._logits_by_type(
            h, type_logits.argmax(dim=-1)
        ):
            out[rows] = torch.sigmoid(logits).sum(-1)
        return out

    def occupancy(self, z):
        """Score every site of each latent's template, once.

        Returns
        -------
        stype : torch.Tensor of int, shape (B,)
            Most probable structure type of each latent.
        nn : torch.Tensor, shape (B,)
            Decoded nearest-neighbour distance in Å.
        logits : list of torch.Tensor
            ``logits[b]``: float occupancy logits of the sites of
            ``stype[b]``'s template, in the template's order.
        """
        h, type_logits, log_nn = self.heads(z)
        stype = type_logits.argmax(dim=-1)
        logits = [None] * z.shape[0]
        for _, rows, _, values in self._logits_by_type(h, stype):
            for k, row in enumerate(rows.tolist()):
                logits[row] = values[k]
        return stype, torch.exp(log_nn.float()), logits

    def place(self, occupancy, atoms, size, connected=False):
        """Clusters from an :meth:`occupancy`: positions in Å.

        The ``atoms[b]`` sites of highest logit, ordered by decreasing
        logit, scaled by the decoded NN distance. With `connected`, the
        ``atoms[b]`` sites of highest logit that are one piece
        (:func:`~diffpy_cbldm.clusters.bonds.connected_selection`: when
        the top sites fall apart, their largest part grown by the best
        sites bonded to it).

        Returns
        -------
        positions : torch.Tensor, shape (B, size, 3)
            Zero padded from row ``atoms[b]`` on.
        replaced : list of int
            Sites of the plain top ``atoms[b]`` not in the selection (0
            without `connected`).
        """
        from diffpy_cbldm.clusters.bonds import connected_selection

        stype, nn, logits = occupancy
        positions = torch.zeros(len(logits), size, 3, device=nn.device)
        replaced = [0] * len(logits)
        for row, values in enumerate(logits):
            t = int(stype[row])
            n = min(int(atoms[row]), self.counts[t], size)
            if connected:
                top, replaced[row] = connected_selection(
                    values.detach().cpu().numpy(), n, self.neighbours(t)
                )
                if len(top) < n:
                    raise RuntimeError(
                        f"the template of structure type {t} is not one "
                        f"piece: {n} bonded sites cannot be joined"
                    )
                top = torch.as_tensor(top, device=values.device)
            else:
                top = values.topk(n).indices
            positions[row, :n] = self.sites[self.offsets[t] + top]
        return positions * nn[:, None, None], replaced

    def decode(self, z, atoms, size, connected=False):
        """Clusters from latents: :meth:`place` of their :meth:`occupancy`.

        Returns
        -------
        positions : torch.Tensor, shape (B, size, 3)
            In Å, zero padded.
        stype : torch.Tensor of int, shape (B,)
        """
        occupancy = self.occupancy(z)
        return self.place(occupancy, atoms, size, connected)[0], occupancy[0]
