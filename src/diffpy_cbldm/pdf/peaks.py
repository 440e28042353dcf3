"""Reading a length off a PDF: the nearest-neighbour peak."""

import numpy as np

__all__ = ["NN_RANGE", "first_peak"]

NN_RANGE = (1.8, 3.6)
"""Where the nearest-neighbour peak of a metal is looked for, Å: it lies
at 2.2-3.1 Å for every metal the package knows, and G(r) has no other
maximum below the second-neighbour shell."""


def first_peak(r, g, rmin=NN_RANGE[0], rmax=NN_RANGE[1]):
    """Position of the highest maximum of G(r) between `rmin` and `rmax`.

    The grid point of the maximum is refined by the vertex of the parabola
    through it and its two neighbours, so the result is not limited to
    the r-step.

    Parameters
    ----------
    r, g : array_like, shape (n,)
        The PDF, r in Å, increasing.
    rmin, rmax : float
        Search window, Å.

    Returns
    -------
    float
        Peak position in Å.

    Raises
    ------
    ValueError
        When the window holds fewer than three points of the grid, or G
        has no interior maximum in it (a PDF that only rises or falls
        there has no nearest-neighbour peak to read).
    """
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    inside = np.flatnonzero((r >= rmin) & (r <= rmax) & np.isfinite(g))
    if len(inside) < 3:
        raise ValueError(
            f"the PDF has {len(inside)} points between {rmin} and {rmax} Å;"
            " cannot find its nearest-neighbour peak"
        )
    k = inside[np.argmax(g[inside])]
    if k in (inside[0], inside[-1]):
        raise ValueError(
            f"G(r) has no maximum between {rmin} and {rmax} Å (largest at "
            f"the window edge, r = {r[k]:.3f} Å); cannot find its "
            "nearest-neighbour peak"
        )
    y0, y1, y2 = g[k - 1], g[k], g[k + 1]
    x0, x1, x2 = r[k - 1], r[k], r[k + 1]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
    if a >= 0:
        return float(r[k])
    return float(-b / (2 * a))
