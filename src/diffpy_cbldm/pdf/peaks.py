"""Reading a length off a PDF: the nearest-neighbour peak."""

import numpy as np

__all__ = ["MIN_PEAK_FRACTION", "NN_RANGE", "first_peak"]

NN_RANGE = (1.8, 3.6)
"""Where the nearest-neighbour peak of a metal is looked for, Å: it lies
at 2.2-3.1 Å for every metal the package knows, and G(r) has no other
maximum below the second-neighbour shell."""


MIN_PEAK_FRACTION = 0.5
"""A maximum counts as the nearest-neighbour peak when it is at least this
fraction of the highest maximum in the window."""


def first_peak(
    r, g, rmin=NN_RANGE[0], rmax=NN_RANGE[1], min_fraction=MIN_PEAK_FRACTION
):
    """Position of the nearest-neighbour peak of G(r).

    The peak is the first local maximum of G between `rmin` and `rmax`
    that reaches `min_fraction` of the highest maximum there. Taking the
    highest maximum instead would read the second shell of a simple-cubic
    particle, whose sqrt(2) shell (12 neighbours) can outgrow the first
    (6) and lies inside the window for neighbour distances below 2.55 Å;
    the fraction keeps noise wiggles on the rising edge out. Its grid
    point is refined by the vertex of the parabola through it and its two
    neighbours, so the result is not limited to the r-step. Points where
    G is not finite are passed over when looking for maxima, but the
    parabola needs both neighbours of the peak: a NaN or inf there is an
    error, not a NaN position.

    Parameters
    ----------
    r, g : array_like, shape (n,)
        The PDF, r in Å, increasing.
    rmin, rmax : float
        Search window, Å.
    min_fraction : float
        Smallest height of the peak relative to the highest maximum in
        the window.

    Returns
    -------
    float
        Peak position in Å.

    Raises
    ------
    ValueError
        When the window holds fewer than three points of the grid, G
        has no positive interior maximum in it (a PDF that only rises or
        falls there, or only ripples below zero, has no nearest-neighbour
        peak to read), or G is not finite next to the peak.
    """
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    inside = np.flatnonzero((r >= rmin) & (r <= rmax) & np.isfinite(g))
    if len(inside) < 3:
        raise ValueError(
            f"the PDF has {len(inside)} points between {rmin} and {rmax} Å;"
            " cannot find its nearest-neighbour peak"
        )
    y = g[inside]
    # Interior points higher than the left and not lower than the right
    # neighbour: a flat top counts once, at its first point.
    local = np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:])) + 1
    if not len(local):
        k = inside[np.argmax(y)]
        raise ValueError(
            f"G(r) has no maximum between {rmin} and {rmax} Å (largest at "
            f"the window edge, r = {r[k]:.3f} Å); cannot find its "
            "nearest-neighbour peak"
        )
    top = y[local].max()
    if top <= 0:
        # Only the ripples of a PDF without pairs in the window (Fourier
        # termination), no peak.
        raise ValueError(
            f"G(r) has no positive maximum between {rmin} and {rmax} Å "
            f"(highest {top:.3g}); cannot find its nearest-neighbour peak"
        )
    k = inside[local[y[local] >= min_fraction * top][0]]
    for j in (k - 1, k + 1):
        if not np.isfinite(g[j]):
            raise ValueError(
                f"G(r) = {float(g[j])!r} at r = {r[j]:.4g} Å, next to the "
                f"nearest-neighbour peak at r = {r[k]:.4g} Å: the peak "
                "position is read from the parabola through the peak and "
                "its two neighbours, which must be finite"
            )
    y0, y1, y2 = g[k - 1], g[k], g[k + 1]
    x0, x1, x2 = r[k - 1], r[k], r[k + 1]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
    if a >= 0:
        return float(r[k])
    return float(-b / (2 * a))
