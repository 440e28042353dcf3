"""The agreement factor Rw, as DiffPy defines it, in one place.

``Rw = sqrt( sum w (Gobs - Gcalc)^2 / sum w Gobs^2 )`` with weights
``w = 1 / dG^2`` when uncertainties are given and ``w = 1`` otherwise
(PDFgui and diffpy.srfit's ``FitResults``).
"""

import numpy as np

__all__ = ["rw", "best_scale", "rw_free_scale"]


def _weights(gobs, dg):
    if dg is None:
        return np.ones_like(gobs)
    dg = np.asarray(dg, dtype=float)
    if dg.shape != gobs.shape:
        raise ValueError(
            f"dG has shape {dg.shape} but G has shape {gobs.shape}"
        )
    if np.any(dg <= 0):
        raise ValueError(
            "dG must be positive everywhere to weight Rw; got "
            f"min(dG)={dg.min()!r}"
        )
    return 1.0 / dg**2


def rw(gobs, gcalc, dg=None):
    """DiffPy's weighted agreement factor between observed and calculated
    G(r).

    Parameters
    ----------
    gobs, gcalc : array_like, shape (..., n)
        Observed and calculated G(r) on the same grid. Leading axes are
        broadcast, so many calculated curves can be scored at once.
    dg : array_like, shape (n,), optional
        Standard uncertainties of `gobs`; uniform weights when omitted.

    Returns
    -------
    float or ndarray
        Rw, one value per leading index.
    """
    gobs = np.asarray(gobs, dtype=float)
    gcalc = np.asarray(gcalc, dtype=float)
    w = _weights(gobs, dg)
    num = np.sum(w * (gobs - gcalc) ** 2, axis=-1)
    den = np.sum(w * gobs**2, axis=-1)
    if np.any(den == 0):
        raise ValueError("Rw is undefined: observed G(r) is all zeros")
    return np.sqrt(num / den)


def best_scale(gobs, gcalc, dg=None):
    """The scale s >= 0 minimising Rw(gobs, s * gcalc), in closed form.

    A PDF scale factor is positive: when `gcalc` anti-correlates with
    `gobs` the best admissible scale is 0, and Rw is 1.
    """
    gobs = np.asarray(gobs, dtype=float)
    gcalc = np.asarray(gcalc, dtype=float)
    w = _weights(gobs, dg)
    den = np.sum(w * gcalc**2, axis=-1)
    num = np.sum(w * gobs * gcalc, axis=-1)
    s = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.maximum(s, 0.0)


def rw_free_scale(gobs, gcalc, dg=None):
    """Rw after the best free (non-negative) scale of `gcalc`; returns
    (rw, scale)."""
    s = best_scale(gobs, gcalc, dg)
    return rw(gobs, np.expand_dims(s, -1) * gcalc, dg), s
