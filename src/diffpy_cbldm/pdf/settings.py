"""Acquisition and calculation settings of a PDF, in DiffPy's names.

One frozen dataclass carries every convention a computed G(r) depends on,
so the same object can configure the calculator, be stored with a dataset
and travel inside a weights manifest.
"""

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

__all__ = ["PDFSettings"]


@dataclass(frozen=True)
class PDFSettings:
    """Settings of a Debye PDF calculation, following DiffPy.

    Attributes
    ----------
    rmin, rmax, rstep : float
        The r-grid in Å: ``r = rstep * arange(ceil(rmin/rstep),
        ceil(rmax/rstep))``, as DiffPy builds it (``rmax`` excluded). It
        must hold at least one point: settings whose range holds no
        multiple of `rstep` are refused.
    qmin, qmax : float
        The Q-range of F(Q) in Å⁻¹ that enters the sine transform.
    qdamp : float
        Instrumental Q-resolution damping in Å⁻¹: G(r) is multiplied by
        ``exp(-(qdamp r)^2 / 2)``.
    qbroad : float
        Q-resolution peak broadening in Å⁻¹ (Jeong model).
    delta1, delta2 : float
        Correlated-motion peak sharpening in Å and Å² (Jeong model).
    scale : float
        Overall scale factor of G(r).
    biso : float
        Isotropic displacement parameter Biso = 8 π² Uiso in Å² applied to
        every atom that carries no per-atom value.
    """

    rmin: float = 0.0
    rmax: float = 30.0
    rstep: float = 0.01
    qmin: float = 0.0
    qmax: float = 25.0
    qdamp: float = 0.0
    qbroad: float = 0.0
    delta1: float = 0.0
    delta2: float = 0.0
    scale: float = 1.0
    biso: float = 0.3

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value):
                raise ValueError(
                    f"PDF setting {f.name}={value!r} is not finite"
                )
        nonnegative = ("rmin", "qmin", "qdamp", "qbroad", "biso")
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ValueError(
                    f"PDF setting {name}={getattr(self, name)!r} is negative"
                )
        if self.rstep <= 0:
            raise ValueError(f"PDF setting rstep={self.rstep!r} must be > 0")
        if self.rmax <= self.rmin:
            raise ValueError(
                f"PDF settings need rmax > rmin, got rmin={self.rmin!r}, "
                f"rmax={self.rmax!r}"
            )
        if _grid_steps(self.rmin, self.rmax, self.rstep)[1] == 0:
            raise ValueError(
                f"PDF settings rmin={self.rmin!r}, rmax={self.rmax!r}, "
                f"rstep={self.rstep!r} give an empty r-grid: no multiple "
                "of rstep lies in [rmin, rmax); widen the range or refine "
                "the step"
            )
        if self.qmax <= self.qmin:
            raise ValueError(
                f"PDF settings need qmax > qmin, got qmin={self.qmin!r}, "
                f"qmax={self.qmax!r}"
            )

    @property
    def uiso(self):
        """Uiso = Biso / (8 π²) in Å²."""
        return self.biso / (8 * np.pi**2)

    @property
    def rgrid(self):
        """The r-grid in Å, built exactly as DiffPy builds it."""
        return rgrid(self.rmin, self.rmax, self.rstep)

    def replace(self, **changes):
        """Return a copy with some settings changed."""
        return replace(self, **changes)

    def to_dict(self):
        """Plain dict of the settings, for JSON manifests and HDF5 attrs."""
        return asdict(self)


def rgrid(rmin, rmax, rstep):
    """DiffPy's r-grid: multiples of `rstep` from `rmin` up to, not
    including, `rmax` (``pdfutils_getRgrid`` in libdiffpy)."""
    lo, n = _grid_steps(rmin, rmax, rstep)
    return rstep * np.arange(lo, lo + n, dtype=float)


def _grid_steps(rmin, rmax, rstep):
    """(first multiple of `rstep`, number of points) of `rgrid`."""
    lo = int(np.ceil(rmin / rstep - 1e-9))
    hi = int(np.ceil(rmax / rstep - 1e-9))
    return lo, max(hi - lo, 0)
