"""Acquisition settings and measurement noise drawn per training sample.

A measured PDF depends on the instrument (Qmin, Qmax, Qdamp, Qbroad), on
the sample's thermal and correlated motion (Biso, delta2) and on counting
noise. The training set draws all of them per sample from ranges that
contain the CbLDM paper's own setting (Table 1: Qmin 0.7, Qmax 25,
Qdamp 0-0.1 Å⁻¹, Biso 0.3 Å², delta2 0) and the ranges of real
synchrotron measurements, so that the model does not learn one instrument.

Every PDF is computed on one fixed output grid, r = 0, 0.01, ..., 29.99 Å
(3000 points, DiffPy's grid for rmin 0, rmax 30, rstep 0.01): the model's
input grid.

Noise model
-----------
Counting noise enters the reduced structure function F(Q) = Q [S(Q) - 1],
and G(r) is its sine transform up to Qmax. With a roughly constant error on
S(Q), the error on F(Q) grows like Q, and the error on G(r) is then, apart
from r -> 0 where every sine vanishes, independent of r and correlated
over about pi / Qmax (Toby & Egami, Acta Cryst. A 48, 336 (1992)). We
draw exactly that: white Gaussian noise on a Q grid between Qmin and Qmax,
weighted by Q, sine-transformed onto the r-grid and scaled so that its
root-mean-square over the grid is ``noise_level * max|G|``. Noise levels of
0-3 % of the highest PDF peak span clean synchrotron data of large
particles to noisy data of small clusters.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.fft

from diffpy_cbldm.pdf.settings import PDFSettings, rgrid

__all__ = [
    "Acquisition",
    "AcquisitionRanges",
    "OUTPUT_GRID",
    "PAPER_SETTINGS",
    "draw_settings",
    "output_rgrid",
    "pdf_noise",
]

# The model's input grid in Å: rmin, rmax (excluded), rstep.
OUTPUT_GRID = {"rmin": 0.0, "rmax": 30.0, "rstep": 0.01}

# Table 1 of the CbLDM paper (Qdamp there spans 0-0.1; 0.04 is
# DeepStruc's default).
PAPER_SETTINGS = PDFSettings(
    rmin=0.0,
    rmax=30.0,
    rstep=0.01,
    qmin=0.7,
    qmax=25.0,
    qdamp=0.04,
    biso=0.3,
    delta2=0.0,
)


def output_rgrid():
    """The fixed output r-grid in Å, shape (3000,)."""
    return rgrid(**OUTPUT_GRID)


@dataclass(frozen=True)
class AcquisitionRanges:
    """Ranges (low, high) from which each sample's settings are drawn.

    Every value is drawn uniformly and independently. A range with
    ``low == high`` fixes that setting.

    Attributes
    ----------
    qmin, qmax : tuple of float
        Q-range of the sine transform in Å⁻¹.
    qdamp : tuple of float
        Instrumental resolution damping in Å⁻¹. Real synchrotron set-ups
        give 0.02-0.06; the upper end 0.1 is kept because the paper's
        training data reach it.
    qbroad : tuple of float
        Resolution peak broadening in Å⁻¹.
    biso : tuple of float
        Isotropic displacement parameter in Å², the same for every atom.
    delta2 : tuple of float
        Correlated-motion sharpening in Å².
    scale : tuple of float
        Overall scale of G(r); fixed to 1 by default, since the model
        normalises its input.
    noise : tuple of float
        Noise level: root-mean-square of the added noise over the r-grid
        divided by max|G| of the noiseless PDF (dimensionless).
    """

    qmin: tuple = (0.5, 1.5)
    qmax: tuple = (18.0, 28.0)
    qdamp: tuple = (0.0, 0.1)
    qbroad: tuple = (0.0, 0.02)
    biso: tuple = (0.1, 1.5)
    delta2: tuple = (0.0, 4.0)
    scale: tuple = (1.0, 1.0)
    noise: tuple = (0.0, 0.03)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"acquisition range {f.name}={value!r} is not a pair "
                    "(low, high) of numbers"
                ) from None
            if not (np.isfinite(low) and np.isfinite(high)):
                raise ValueError(
                    f"acquisition range {f.name}={value!r} is not finite"
                )
            if low < 0 or high < low:
                raise ValueError(
                    f"acquisition range {f.name}={value!r} must satisfy "
                    "0 <= low <= high"
                )
            object.__setattr__(self, f.name, (low, high))
        if self.qmin[1] >= self.qmax[0]:
            raise ValueError(
                f"acquisition ranges overlap: qmin up to {self.qmin[1]} "
                f"reaches qmax from {self.qmax[0]}; need max(qmin) < "
                "min(qmax)"
            )
        if self.scale[0] <= 0:
            raise ValueError(
                f"acquisition range scale={self.scale!r} must be > 0"
            )

    def contains(self, settings, noise_level=0.0):
        """True when `settings` (a PDFSettings) and `noise_level` lie in
        the ranges and use the output grid."""
        grid = all(
            np.isclose(getattr(settings, k), v) for k, v in OUTPUT_GRID.items()
        )
        values = {
            f.name: getattr(settings, f.name, None) for f in fields(self)
        }
        values["noise"] = noise_level
        inside = all(
            low - 1e-12 <= values[name] <= high + 1e-12
            for name, (low, high) in asdict(self).items()
        )
        return grid and inside and settings.delta1 == 0.0

    def to_dict(self):
        """Plain dict {name: [low, high]}, for the dataset manifest."""
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) for k, v in values.items()})


@dataclass(frozen=True)
class Acquisition:
    """One drawn measurement: PDF settings, noise level and noise seed.

    Attributes
    ----------
    settings : PDFSettings
        Calculation settings on the output grid.
    noise_level : float
        Root-mean-square of the noise over the r-grid divided by max|G|.
    noise_seed : int
        Seed of the noise realisation (see :func:`pdf_noise`).
    """

    settings: PDFSettings
    noise_level: float
    noise_seed: int

    def add_noise(self, g):
        """Return `g` plus this acquisition's noise, and the noise rms.

        Parameters
        ----------
        g : numpy.ndarray, shape (3000,)
            Noiseless G(r) on the output grid, in Å⁻².

        Returns
        -------
        noisy : numpy.ndarray, shape (3000,)
        sigma : float
            Root-mean-square of the added noise, ``noise_level *
            max|g|``, in Å⁻².
        """
        g = np.asarray(g, dtype=float)
        sigma = float(self.noise_level * np.max(np.abs(g)))
        return g + self.noise(sigma), sigma

    def noise(self, sigma):
        """This acquisition's noise realisation scaled to root-mean-square
        `sigma` (Å⁻²) on the output grid; zeros when `sigma` is 0."""
        s = self.settings
        if sigma == 0.0:
            return np.zeros(len(s.rgrid))
        return sigma * pdf_noise(s.rgrid, s.qmin, s.qmax, self.noise_seed)


def draw_settings(rng, ranges=None):
    """Draw one acquisition from `ranges`.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the draw order is fixed, so the same
        generator state gives the same acquisition.
    ranges : AcquisitionRanges, optional
        Defaults to ``AcquisitionRanges()``.

    Returns
    -------
    Acquisition
        Settings on the output grid (delta1 = 0), noise level and seed.
    """
    ranges = AcquisitionRanges() if ranges is None else ranges

    def uniform(name):
        low, high = getattr(ranges, name)
        return float(rng.uniform(low, high)) if high > low else low

    settings = PDFSettings(
        **OUTPUT_GRID,
        qmin=uniform("qmin"),
        qmax=uniform("qmax"),
        qdamp=uniform("qdamp"),
        qbroad=uniform("qbroad"),
        biso=uniform("biso"),
        delta2=uniform("delta2"),
        scale=uniform("scale"),
    )
    noise_level = uniform("noise")
    noise_seed = int(rng.integers(0, 2**32))
    return Acquisition(settings, noise_level, noise_seed)


def pdf_noise(r, qmin, qmax, seed):
    """Band-limited noise in G(r) with unit root-mean-square over `r`.

    White Gaussian noise on F(Q), weighted by Q, on a Q grid of step
    pi / (2 R) between `qmin` and `qmax` (R = rmax of the grid), is
    sine-transformed onto `r`: the result vanishes at r = 0, is otherwise
    stationary and is correlated over about pi / `qmax`, as in measured
    PDFs.

    Parameters
    ----------
    r : numpy.ndarray, shape (nr,)
        Uniform r-grid in Å starting at 0 or above.
    qmin, qmax : float
        Q-range of the transform in Å⁻¹.
    seed : int
        Seed of the realisation.

    Returns
    -------
    numpy.ndarray, shape (nr,)
        Noise with ``sqrt(mean(noise**2)) == 1``.
    """
    r = np.asarray(r, dtype=float)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"noise needs a 1-D r-grid, got shape {r.shape}")
    rstep = r[1] - r[0]
    if not np.allclose(np.diff(r), rstep) or r[0] < 0:
        raise ValueError("noise needs a uniform r-grid starting at r >= 0")
    if not 0 <= qmin < qmax:
        raise ValueError(
            f"noise needs 0 <= qmin < qmax, got qmin={qmin!r}, qmax={qmax!r}"
        )
    # Q_k = k pi / (m rstep) and r_j = j rstep make sin(Q_k r_j) the
    # kernel sin(pi j k / m) of a type-I discrete sine transform.
    first = int(round(r[0] / rstep))
    m = 2 * (first + r.size)
    q = np.arange(1, m) * np.pi / (m * rstep)
    inside = (q >= qmin) & (q <= qmax)
    amplitude = np.zeros(m - 1)
    rng = np.random.default_rng(seed)
    amplitude[inside] = rng.standard_normal(inside.sum()) * q[inside]
    transform = scipy.fft.dst(amplitude, type=1)
    noise = np.concatenate([[0.0], transform])[first : first + r.size]
    return noise / np.sqrt(np.mean(noise**2))
