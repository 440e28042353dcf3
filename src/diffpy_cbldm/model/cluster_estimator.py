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

The instrument's resolution damps G(r) by exp(-(Qdamp r)^2 / 2), which
looks much like the fall of a smaller particle's shape function; with
Qdamp unknown the two are confused. The estimator therefore holds two
readers of the same design: the *blind* one reads any PDF; the
*informed* one reads PDFs whose Qdamp is known (a calibrated instrument,
the data header), each first damped further to one reference Qdamp, the
top of the training range, so that the envelope no longer varies. Both
are trained on every training PDF; a PDF is read by the informed reader
when its Qdamp is given, else by the blind one.
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


def _reader(config):
    """(features, head): average pooling, strided 1-D convolutions and
    an MLP from a PDF to 2 + 7 numbers."""
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
    features = nn.Sequential(*layers, nn.Flatten())
    head = nn.Sequential(
        nn.Linear(previous * length, config.hidden),
        nn.SiLU(),
        nn.Linear(config.hidden, 2 + len(STRUCTURE_TYPES)),
    )
    return features, head


def _read(features, head, pdf):
    h = head(features(pdf[:, None, :])).float()
    return h[:, 0] + LOG_N_OFFSET, h[:, 1].clamp(-10.0, 5.0), h[:, 2:]


class ClusterEstimator(nn.Module):
    """ln n (mean and log-variance) and structure-type logits of a PDF.

    Parameters
    ----------
    config : ClusterEstimatorConfig
        With ``qdamp_reference`` set, the estimator also holds the
        informed reader (``self.informed``) for PDFs of known Qdamp.
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or ClusterEstimatorConfig()
        self.features, self.head = _reader(config)
        self.reads_qdamp = config.qdamp_reference is not None
        if self.reads_qdamp:
            self.informed = nn.Module()
            self.informed.features, self.informed.head = _reader(config)
            r = torch.arange(config.n_points) * float(config.rstep)
            self.register_buffer("r", r, persistent=False)

    def damp_to_reference(self, pdf, qdamp):
        """PDFs of known Qdamp damped to ``config.qdamp_reference``.

        Multiplying by exp(-(q_ref^2 - Qdamp^2) r^2 / 2) turns DiffPy's
        resolution envelope exp(-(Qdamp r)^2 / 2) into that of q_ref
        (a Qdamp above q_ref is left as it is); the result is normalised
        again to a largest absolute value of 1.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
            Normalised PDFs.
        qdamp : torch.Tensor, shape (B,)
            Qdamp of each PDF in Å⁻¹, finite and >= 0.

        Returns
        -------
        torch.Tensor, shape (B, n_points)
        """
        extra = (self.config.qdamp_reference**2 - qdamp**2).clamp(min=0)
        damped = pdf * torch.exp(-0.5 * extra[:, None] * self.r**2)
        damped = damped / damped.abs().amax(dim=-1, keepdim=True)
        return damped.to(pdf.dtype)

    def _known(self, pdf, qdamp):
        """Checked Qdamp as a float tensor and the mask of known rows."""
        if qdamp is None:
            return None, torch.zeros(
                len(pdf), dtype=torch.bool, device=pdf.device
            )
        if not self.reads_qdamp:
            raise ValueError(
                "this cluster estimator does not read Qdamp "
                "(qdamp_reference is None); pass qdamp=None"
            )
        qdamp = torch.as_tensor(qdamp, dtype=torch.float32).to(pdf.device)
        if qdamp.shape != (len(pdf),):
            raise ValueError(
                f"ClusterEstimator: qdamp must have shape ({len(pdf)},), "
                f"got {tuple(qdamp.shape)}"
            )
        if (qdamp < 0).any():
            raise ValueError(
                f"ClusterEstimator: Qdamp must be >= 0 Å⁻¹, got "
                f"{qdamp[qdamp < 0].tolist()}"
            )
        return qdamp, torch.isfinite(qdamp)

    def read_blind(self, pdf):
        """The blind reader's (mean, logvar, type_logits) for `pdf`."""
        return _read(self.features, self.head, pdf)

    def read_informed(self, pdf, qdamp):
        """The informed reader's (mean, logvar, type_logits) for PDFs of
        known Qdamp (Å⁻¹, finite)."""
        damped = self.damp_to_reference(pdf, qdamp)
        return _read(self.informed.features, self.informed.head, damped)

    def forward(self, pdf, qdamp=None):
        """Estimates for normalised PDFs.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
            PDFs normalised by :func:`diffpy_cbldm.conventions
            .normalise_pdf`.
        qdamp : torch.Tensor, shape (B,), optional
            Qdamp of each PDF in Å⁻¹, NaN where unknown; rows with a
            value are read by the informed reader. Only for an estimator
            that reads Qdamp (``config.qdamp_reference`` set).

        Returns
        -------
        mean, logvar : torch.Tensor, each (B,)
            Of ln n, float32.
        type_logits : torch.Tensor, shape (B, 7)
            In the order of ``STRUCTURE_TYPES``, float32.
        """
        check_pdf_batch(pdf, self.config.n_points, "ClusterEstimator")
        qdamp, known = self._known(pdf, qdamp)
        # Each row is read once, by the reader its Qdamp calls for.
        if not known.any():
            return self.read_blind(pdf)
        if known.all():
            return self.read_informed(pdf, qdamp)
        blind = self.read_blind(pdf[~known])
        informed = self.read_informed(pdf[known], qdamp[known])
        out = []
        for part_blind, part_informed in zip(blind, informed):
            whole = part_blind.new_empty((len(pdf),) + part_blind.shape[1:])
            whole[~known] = part_blind
            whole[known] = part_informed
            out.append(whole)
        return tuple(out)

    def loss(self, pdf, natoms, stype, qdamp=None):
        """Negative log-likelihood of the counts and types of a batch.

        Parameters
        ----------
        pdf : torch.Tensor, shape (B, n_points)
        natoms : torch.Tensor of int, shape (B,)
        stype : torch.Tensor of int, shape (B,)
            Indices into ``STRUCTURE_TYPES``.
        qdamp : torch.Tensor, shape (B,), optional
            Qdamp of each PDF (Å⁻¹, all known): the informed reader is
            trained on them as well.

        Returns
        -------
        dict of scalar tensors
            ``count`` (Gaussian NLL of ln n without its constant, per
            cluster), ``type`` (cross-entropy), ``loss`` (their sum, over
            both readers when `qdamp` is given), and, not
            differentiated, ``abs_error`` (the mean absolute error of
            ln n), ``within_10pct`` (share of means within 10 % of the
            count) and ``type_accuracy``; the blind reader's under these
            names, the informed reader's with ``_qdamp`` appended.
        """
        check_pdf_batch(pdf, self.config.n_points, "ClusterEstimator")
        terms = _terms(self.read_blind(pdf), natoms, stype)
        if qdamp is not None:
            qdamp, known = self._known(pdf, qdamp)
            if not known.all():
                raise ValueError(
                    "ClusterEstimator.loss: every Qdamp must be known"
                )
            informed = _terms(self.read_informed(pdf, qdamp), natoms, stype)
            terms["loss"] = terms["loss"] + informed["loss"]
            terms.update({f"{k}_qdamp": v for k, v in informed.items()})
        return terms


def _terms(outputs, natoms, stype):
    mean, logvar, logits = outputs
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
