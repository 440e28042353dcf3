"""The conventions a trained CbLDM depends on, in one place.

A set of weights only makes sense with the data conventions it was trained
with: the r-grid and the settings of the PDFs, how a PDF is normalised
before it reaches the network, the width sigma of the Laplacian, the rule
that orders the atoms in the Laplacian and the largest cluster it holds.
:class:`Conventions` carries all of them; it is saved in every weights
manifest and read back from there, never re-typed.

:func:`normalise_pdf` is the one place a PDF is scaled for the network.
"""

import sys
from dataclasses import dataclass, field, fields

import numpy as np

from diffpy_cbldm.pdf.peaks import NN_RANGE, first_peak
from diffpy_cbldm.pdf.settings import PDFSettings

__all__ = [
    "Conventions",
    "MIN_RMAX",
    "PDF_NORMALISATIONS",
    "model_input",
    "normalise_pdf",
    "stretch_factor",
]

PDF_NORMALISATIONS = ("max-abs",)
"""Known PDF normalisations; ``"max-abs"`` is ``G / max|G|`` on the grid."""


# Conventions fields that manifests written before them lack.
_OPTIONAL = {"nn_peak"}


def _model_pdf_settings():
    # Table 1 of the CbLDM paper: r 0-30 Å in 0.01 Å steps (3000 points),
    # Q 0.7-25 Å^-1, Biso 0.3 Å^2, delta2 0. Qdamp varies per structure
    # in the training set; the nominal value here is 0.
    return PDFSettings(
        rmin=0.0, rmax=30.0, rstep=0.01, qmin=0.7, qmax=25.0, biso=0.3
    )


def _default_sigma():
    from diffpy_cbldm.clusters.laplacian import DEFAULT_SIGMA

    return float(DEFAULT_SIGMA)


def _default_ordering_rule():
    # Read when a Conventions is made, not when this module is imported,
    # so that this module stays importable on its own.
    try:
        from diffpy_cbldm.clusters.order import ORDERING_RULE
    except ImportError as err:
        raise ImportError(
            "the default atom ordering rule is ORDERING_RULE in "
            "diffpy_cbldm.clusters.order, which could not be imported "
            f"({err}); pass ordering_rule= explicitly"
        ) from err
    return str(ORDERING_RULE)


@dataclass(frozen=True)
class Conventions:
    """Every data convention a set of CbLDM weights depends on.

    Attributes
    ----------
    pdf : PDFSettings
        Settings of the PDFs the model was trained on; its r-grid (Å) is
        the grid the condition network reads (3000 points by default).
    pdf_normalisation : str
        How a PDF is scaled before the network sees it; ``"max-abs"``
        divides G(r) by its largest absolute value on the grid.
    sigma : float
        Width in Å of the Gaussian edge weights of the Laplacian,
        ``W_ij = exp(-d_ij^2 / (2 sigma^2))``.
    ordering_rule : str
        Name of the rule that puts the atoms in canonical order before
        the Laplacian is built (``diffpy_cbldm.clusters.order``).
    max_atoms : int
        Side of the zero-padded Laplacian image; the largest cluster.
    nn_peak : float or None
        Position in Å of the nearest-neighbour peak that every input PDF
        is stretched to along r (:func:`model_input`): the median of the
        training PDFs' peaks, written when the weights are exported.
        None (weights from before it existed) leaves inputs unstretched.
    """

    pdf: PDFSettings = field(default_factory=_model_pdf_settings)
    pdf_normalisation: str = "max-abs"
    sigma: float = field(default_factory=_default_sigma)
    ordering_rule: str = field(default_factory=_default_ordering_rule)
    max_atoms: int = 256
    nn_peak: float | None = None

    def __post_init__(self):
        if not isinstance(self.pdf, PDFSettings):
            raise ValueError(
                f"Conventions.pdf must be a PDFSettings, got {self.pdf!r}"
            )
        if self.pdf_normalisation not in PDF_NORMALISATIONS:
            raise ValueError(
                f"Conventions.pdf_normalisation={self.pdf_normalisation!r} "
                f"is not one of {PDF_NORMALISATIONS}"
            )
        sigma = self.sigma
        if not (isinstance(sigma, (int, float)) and np.isfinite(sigma)):
            raise ValueError(
                f"Conventions.sigma={sigma!r} must be a finite length in Å"
            )
        if sigma <= 0:
            raise ValueError(f"Conventions.sigma={sigma!r} must be > 0 Å")
        if not isinstance(self.ordering_rule, str) or not self.ordering_rule:
            raise ValueError(
                "Conventions.ordering_rule must be a non-empty string, got "
                f"{self.ordering_rule!r}"
            )
        if (
            isinstance(self.max_atoms, bool)
            or not isinstance(self.max_atoms, int)
            or self.max_atoms < 1
        ):
            raise ValueError(
                "Conventions.max_atoms must be a positive integer, got "
                f"{self.max_atoms!r}"
            )
        peak = self.nn_peak
        if peak is not None and (
            isinstance(peak, bool)
            or not isinstance(peak, (int, float))
            or not NN_RANGE[0] < peak < NN_RANGE[1]
        ):
            raise ValueError(
                f"Conventions.nn_peak={peak!r} must be None or a length in "
                f"Å between {NN_RANGE[0]} and {NN_RANGE[1]}"
            )

    @property
    def rgrid(self):
        """The model's r-grid in Å, shape (n_points,)."""
        return self.pdf.rgrid

    @property
    def n_points(self):
        """Number of r-points of a model PDF (3000 by default)."""
        return len(self.pdf.rgrid)

    def to_dict(self):
        """Plain, JSON-ready dict of every convention."""
        d = {
            "pdf": self.pdf.to_dict(),
            "pdf_normalisation": self.pdf_normalisation,
            "sigma": float(self.sigma),
            "ordering_rule": self.ordering_rule,
            "max_atoms": int(self.max_atoms),
        }
        # Left out when None, so that the settings of training runs made
        # before the field existed still compare equal on resume.
        if self.nn_peak is not None:
            d["nn_peak"] = float(self.nn_peak)
        return d

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            When a key is missing or unknown, or a value is invalid.
        """
        if not isinstance(d, dict):
            raise ValueError(f"conventions must be a dict, got {d!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        missing = sorted(names - set(d) - _OPTIONAL)
        if unknown:
            raise ValueError(f"unknown conventions field(s) {unknown}")
        if missing:
            raise ValueError(f"conventions field(s) {missing} missing")
        pdf = d["pdf"]
        if not isinstance(pdf, dict):
            raise ValueError(
                f"conventions field 'pdf' must be a dict: {pdf!r}"
            )
        pdf_names = {f.name for f in fields(PDFSettings)}
        bad = sorted(set(pdf) - pdf_names)
        if bad:
            raise ValueError(f"unknown PDF setting(s) {bad} in conventions")
        return cls(**{**d, "pdf": PDFSettings(**pdf)})


def normalise_pdf(g, conventions):
    """Scale PDFs the way the network expects them.

    Parameters
    ----------
    g : numpy.ndarray or torch.Tensor, shape (n_points,) or (B, n_points)
        G(r) in Å⁻² on the model's r-grid (``conventions.rgrid``).
    conventions : Conventions
        Supplies the grid length and the normalisation rule.

    Returns
    -------
    Same type and shape as `g`
        For ``"max-abs"``: each curve divided by its largest absolute
        value, so it lies in [-1, 1]. Floating input keeps its dtype.

    Raises
    ------
    ValueError
        When the last axis does not match the grid, `g` has more than two
        axes, holds NaN/infinity, or a curve is zero everywhere (row
        named).
    """
    n = conventions.n_points
    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(g, torch.Tensor)
    if not is_tensor:
        g = np.asarray(g)
        if not np.issubdtype(g.dtype, np.floating):
            g = g.astype(float)
    if g.ndim not in (1, 2) or g.shape[-1] != n:
        raise ValueError(
            f"PDF must have shape ({n},) or (B, {n}) on the model's r-grid "
            f"(r {conventions.pdf.rmin}-{conventions.pdf.rmax} Å, step "
            f"{conventions.pdf.rstep} Å), got shape {tuple(g.shape)}"
        )
    if is_tensor:
        finite = torch.isfinite(g).reshape(-1, n).all(dim=1)
        scale = g.abs().amax(dim=-1, keepdim=True)
        zero = (scale == 0).reshape(-1)
        bad_rows = (~finite).nonzero().reshape(-1).tolist()
        zero_rows = zero.nonzero().reshape(-1).tolist()
    else:
        finite = np.isfinite(g).reshape(-1, n).all(axis=1)
        scale = np.abs(g).max(axis=-1, keepdims=True)
        bad_rows = np.flatnonzero(~finite).tolist()
        zero_rows = np.flatnonzero(scale.reshape(-1) == 0).tolist()
    if bad_rows:
        raise ValueError(f"PDF row(s) {bad_rows[:10]} contain NaN or infinity")
    if zero_rows:
        raise ValueError(
            f"PDF row(s) {zero_rows[:10]} are zero everywhere and cannot be "
            "normalised"
        )
    return g / scale


def stretch_factor(r, g, conventions, *, source="the data"):
    """How much :func:`model_input` stretches a PDF along r.

    ``conventions.nn_peak / first_peak(r, G)``, or 1 when the conventions
    have no ``nn_peak``. The stretched PDF is that of the particle
    enlarged by this factor k, seen with Qmax / k and Qdamp / k: a Qdamp
    given with the data is divided by k before a network reads it.

    Raises
    ------
    ValueError
        With ``nn_peak``, when G has no nearest-neighbour peak at
        1.8-3.6 Å (`source` named).
    """
    if conventions.nn_peak is None:
        return 1.0
    try:
        peak = first_peak(r, g)
    except ValueError as exc:
        raise ValueError(
            f"{source}: {exc}; the model reads PDFs of metal particles"
        ) from None
    return conventions.nn_peak / peak


MIN_RMAX = 8.0
"""Shortest measured r-range (Å) a PDF must reach for the model: below it
the data hold little more than the first few coordination shells."""


def model_input(r, g, conventions, *, source="the data"):
    """Map a measured PDF onto the model's r-grid, normalised.

    This is the one place where a measurement meets the network. On the
    model grid (``conventions.rgrid``, 0-30 Å by default):

    * inside the measured range, G is linearly interpolated;
    * below the first measured point, G is the straight line from
      G(0) = 0 (exact for any PDF) to the first measured value;
    * beyond the last measured point, G is zero (a cluster's PDF has
      died away by 30 Å for all but the largest clusters; the model
      learned from PDFs that end at the grid's end);
    * the result is normalised with :func:`normalise_pdf`.

    Before that, when the conventions give ``nn_peak``, r is stretched by
    ``nn_peak / first_peak(r, G)``, so that the data's nearest-neighbour
    peak sits where the training PDFs have theirs on average. A PDF is
    then read the same whatever the metal's bond length: the training
    metals' neighbour distances span 2.49-2.98 Å, and a particle outside
    that range (a 2.25 Å bcc W cluster, a 2.34 Å Fe one) would otherwise
    be read as a wrong type. A stretch by k is the PDF of the particle
    enlarged by k, measured to Qmax / k with Qdamp / k (within the
    training ranges for k = 0.8-1.25; :func:`stretch_factor`); the
    generator scales its candidates back to the data's own peak.

    The Q-space settings of the measurement (qmax, qdamp...) are not
    corrected for: the training set drew them over ranges that contain
    those of typical synchrotron data (``diffpy_cbldm.dataset
    .acquisition``), so the model has seen their effects.

    Parameters
    ----------
    r, g : array_like, shape (n,)
        Measured r (Å, increasing) and G(r) (Å⁻²).
    conventions : Conventions
    source : str
        Named in error messages (e.g. the file path).

    Returns
    -------
    numpy.ndarray, shape (conventions.n_points,)

    Raises
    ------
    ValueError
        When the data end before :data:`MIN_RMAX`, start beyond the
        model grid, hold NaN/infinity, have an r that does not increase,
        or are zero everywhere; with
        ``nn_peak``, when G has no nearest-neighbour peak at 1.8-3.6 Å.
    """
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if r.ndim != 1 or r.shape != g.shape or len(r) < 2:
        raise ValueError(
            f"{source}: r and G must be 1-D arrays of the same length >= 2, "
            f"got shapes {r.shape} and {g.shape}"
        )
    bad = np.flatnonzero(~(np.isfinite(r) & np.isfinite(g)))
    if len(bad):
        raise ValueError(
            f"{source}: NaN or infinity at point {bad[0]} (r={r[bad[0]]!r}, "
            f"G={g[bad[0]]!r})"
        )
    steps = np.flatnonzero(~(np.diff(r) > 0))
    if len(steps):
        k = int(steps[0]) + 1
        raise ValueError(
            f"{source}: r must increase, but point {k} (r={r[k]!r}) follows "
            f"r={r[k - 1]!r}"
        )
    if r[-1] < MIN_RMAX:
        raise ValueError(
            f"{source}: the PDF ends at r = {r[-1]:g} Å; the model needs "
            f"data to at least {MIN_RMAX:g} Å to say anything about a "
            "structure"
        )
    if not np.any(np.abs(g) > 0):
        raise ValueError(
            f"{source}: G(r) is zero everywhere; there is nothing to solve"
        )
    r = r * stretch_factor(r, g, conventions, source=source)
    grid = conventions.rgrid
    if r[0] >= grid[-1]:
        raise ValueError(
            f"{source}: the PDF starts at r = {r[0]:g} Å, beyond the model's "
            f"r-grid (0-{grid[-1]:g} Å)"
        )
    inside = (grid >= r[0]) & (grid <= r[-1])
    if not np.any(np.abs(g[(r >= grid[0]) & (r <= grid[-1])]) > 0):
        raise ValueError(
            f"{source}: G(r) is zero everywhere in {grid[0]:g}-{grid[-1]:g} "
            "Å; there is nothing to solve"
        )
    out = np.zeros_like(grid)
    out[inside] = np.interp(grid[inside], r, g)
    below = grid < r[0]
    if r[0] > 0:
        out[below] = g[0] * grid[below] / r[0]
    return normalise_pdf(out, conventions)
