"""The agreement factor Rw, as DiffPy defines it, in one place.

``Rw = sqrt( sum w (Gobs - Gcalc)^2 / sum w Gobs^2 )`` with weights
``w = 1 / dG^2`` when uncertainties are given and ``w = 1`` otherwise
(PDFgui and diffpy.srfit's ``FitResults``). With uncertainties, the
expected Rw of a model that is right up to the noise is
``Rexp = sqrt( (N - P) / sum w Gobs^2 )`` (N points, P refined
parameters), as Rietveld programs report it.
"""

import numpy as np

__all__ = [
    "rw",
    "rexp",
    "best_scale",
    "rw_free_scale",
    "rw_free_scale_from_sums",
    "weights",
]


def weights(gobs, dg=None):
    """The weights ``1 / dG^2`` of Rw (ones without `dg`), checked."""
    if dg is None:
        return np.ones_like(gobs)
    dg = np.asarray(dg, dtype=float)
    if dg.shape != gobs.shape:
        raise ValueError(
            f"dG has shape {dg.shape} but G has shape {gobs.shape}"
        )
    # Written so that NaN fails too (NaN > 0 is False).
    bad = ~(np.isfinite(dg) & (dg > 0))
    if np.any(bad):
        i = int(np.argmax(bad.reshape(-1)))
        raise ValueError(
            "dG must be positive and finite everywhere to weight Rw; got "
            f"dG[{i}]={float(dg.reshape(-1)[i])!r}"
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
        Standard uncertainties of `gobs`, positive and finite; uniform
        weights when omitted.

    Returns
    -------
    float or ndarray
        Rw, one value per leading index.

    Raises
    ------
    ValueError
        When `dg` has another shape than `gobs`, or a value that is not
        positive and finite (zero, negative, NaN, inf), naming the first.
    """
    gobs = np.asarray(gobs, dtype=float)
    gcalc = np.asarray(gcalc, dtype=float)
    w = weights(gobs, dg)
    num = np.sum(w * (gobs - gcalc) ** 2, axis=-1)
    den = np.sum(w * gobs**2, axis=-1)
    if np.any(den == 0):
        raise ValueError("Rw is undefined: observed G(r) is all zeros")
    return np.sqrt(num / den)


def rexp(gobs, dg, n_parameters=0):
    """The expected Rw: what a model right up to the noise described by
    `dg` scores, ``sqrt((N - P) / sum (Gobs / dG)^2)``.

    It assumes independent errors of standard deviation dG at each point.
    Errors in a measured G(r) are correlated over about pi / Qmax, and
    dG from a data reduction seldom includes that, so compare Rw with
    Rexp as a guide, not a test.

    Parameters
    ----------
    gobs, dg : array_like, shape (n,)
        Observed G(r) and its standard uncertainties.
    n_parameters : int
        Refined parameters P, subtracted from the N points.

    Returns
    -------
    float
    """
    gobs = np.asarray(gobs, dtype=float)
    w = weights(gobs, dg)
    den = np.sum(w * gobs**2)
    if den == 0:
        raise ValueError("Rexp is undefined: observed G(r) is all zeros")
    dof = gobs.size - int(n_parameters)
    if dof <= 0:
        raise ValueError(
            f"Rexp needs more points than parameters, got {gobs.size} "
            f"points and {n_parameters} parameters"
        )
    return float(np.sqrt(dof / den))


def best_scale(gobs, gcalc, dg=None):
    """The scale s >= 0 minimising Rw(gobs, s * gcalc), in closed form.

    A PDF scale factor is positive: when `gcalc` anti-correlates with
    `gobs` the best admissible scale is 0, and Rw is 1.
    """
    gobs = np.asarray(gobs, dtype=float)
    gcalc = np.asarray(gcalc, dtype=float)
    w = weights(gobs, dg)
    den = np.sum(w * gcalc**2, axis=-1)
    num = np.sum(w * gobs * gcalc, axis=-1)
    s = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.maximum(s, 0.0)


def rw_free_scale(gobs, gcalc, dg=None):
    """Rw after the best free (non-negative) scale of `gcalc`; returns
    (rw, scale)."""
    s = best_scale(gobs, gcalc, dg)
    return rw(gobs, np.expand_dims(s, -1) * gcalc, dg), s


def rw_free_scale_from_sums(obs_calc, calc_calc, obs_obs):
    """Rw after the best non-negative scale, from the weighted sums
    ``sum w Gobs Gcalc``, ``sum w Gcalc^2`` and ``sum w Gobs^2``: with
    the best scale ``s = max(0, obs_calc / calc_calc)``,
    ``Rw^2 = 1 - s (2 obs_calc - s calc_calc) / obs_obs``, which is what
    :func:`rw_free_scale` computes from the curves. Screening many
    curves needs only these sums (:class:`diffpy_cbldm.library.
    LibraryGenerator`). Arrays broadcast; Rw is 1 for a curve of zeros.
    """
    obs_calc = np.asarray(obs_calc, dtype=float)
    calc_calc = np.asarray(calc_calc, dtype=float)
    if np.any(np.asarray(obs_obs) == 0):
        raise ValueError("Rw is undefined: observed G(r) is all zeros")
    positive = calc_calc > 0
    s = np.where(positive, obs_calc / np.where(positive, calc_calc, 1), 0)
    s = np.maximum(s, 0.0)
    explained = s * (2 * obs_calc - s * calc_calc) / obs_obs
    # Round-off can push a perfect match a hair below zero.
    return np.sqrt(np.clip(1.0 - explained, 0.0, None))
