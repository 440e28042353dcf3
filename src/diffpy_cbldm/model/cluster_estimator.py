"""The cluster estimator: how many atoms, and which structure type, a PDF
implies.

The atom count and the structure type are what the structure latents
sampled for a PDF get wrong most often, although the decoder reproduces
both for a posterior latent (docs/benchmarks/model_quality.rst): the
latent condition ``z_c`` that the prior and the denoiser read keeps
little of them (a network of ``z_c`` alone puts a third of validation
PDFs within 10 % of the count). Both are written in the PDF itself:
G(r) dies out at the particle's diameter, the relative heights of the
coordination shells fall with the share of surface atoms, and the
shells' positions and splitting tell the packing. This small network
reads the normalised PDF (average pooling, strided 1-D convolutions and
an MLP) and gives the mean and log-variance of ln n, trained by their
Gaussian negative log-likelihood, and logits of the structure type,
trained by cross-entropy. The generator multiplies the count estimate
into each latent's own count distribution
(:meth:`StructureVAE.count_log_probs`) and guides the sampler towards
latents of the estimated type
(:meth:`~diffpy_cbldm.model.pipeline.CbLDMPipeline.sample_latents`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
from diffpy_cbldm.model.blocks import check_pdf_batch, log_n_nll
from diffpy_cbldm.model.config import ClusterEstimatorConfig

__all__ = ["ClusterEstimator", "LOG_N_OFFSET"]

LOG_N_OFFSET = 4.0
"""The network's mean output is ln n minus this (ln 55 ≈ 4.0, the middle
of the 5-256 atom range), so that it starts near typical sizes."""


class ClusterEstimator(nn.Module):
    """ln n (mean and log-variance) and structure-type logits of a PDF.

    Parameters
    ----------
    config : ClusterEstimatorConfig
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or ClusterEstimatorConfig()
        layers = [nn.AvgPool1d(config.pool)]
        length = config.n_points // config.pool
        previous = 1
        pad = config.kernel // 2
        for c in config.channels:
            layers += [
                nn.Conv1d(previous, c, config.kernel, stride=2, padding=pad),
                nn.SiLU(),
            ]
            length = (length + 2 * pad - config.kernel) // 2 + 1
            previous = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(previous * length, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, 2 + len(STRUCTURE_TYPES)),
        )

    def forward(self, pdf):
        """Estimates for normalised PDFs.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
            PDFs normalised by :func:`diffpy_cbldm.conventions
            .normalise_pdf`.

        Returns
        -------
        mean, logvar : torch.Tensor, each (B,)
            Of ln n, float32.
        type_logits : torch.Tensor, shape (B, 7)
            In the order of ``STRUCTURE_TYPES``, float32.
        """
        check_pdf_batch(pdf, self.config.n_points, "ClusterEstimator")
        h = self.head(self.features(pdf[:, None, :])).float()
        return h[:, 0] + LOG_N_OFFSET, h[:, 1].clamp(-10.0, 5.0), h[:, 2:]

    def loss(self, pdf, natoms, stype):
        """Negative log-likelihood of the counts and types of a batch.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
        natoms : torch.Tensor of int, shape (B,)
        stype : torch.Tensor of int, shape (B,)
            Indices into ``STRUCTURE_TYPES``.

        Returns
        -------
        dict of scalar tensors
            ``count`` (Gaussian NLL of ln n without its constant, per
            cluster), ``type`` (cross-entropy), ``loss`` (their sum), and,
            not differentiated, ``abs_error`` (the mean absolute error of
            ln n), ``within_10pct`` (share of means within 10 % of the
            count) and ``type_accuracy``.
        """
        mean, logvar, logits = self(pdf)
        log_n = torch.log(natoms.float())
        count = log_n_nll(log_n, mean, logvar).mean()
        kind = F.cross_entropy(logits, stype)
        with torch.no_grad():
            ratio = torch.exp(mean - log_n)
            within = ((ratio - 1).abs() <= 0.1).float().mean()
            accuracy = (logits.argmax(dim=-1) == stype).float().mean()
        return {
            "loss": count + kind,
            "count": count,
            "type": kind,
            "abs_error": (mean.detach() - log_n).abs().mean(),
            "within_10pct": within,
            "type_accuracy": accuracy,
        }
