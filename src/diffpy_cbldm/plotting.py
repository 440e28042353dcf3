"""Figures of PDF fits, drawn the way PDFgui draws them.

matplotlib is imported inside the functions, with the non-interactive Agg
canvas, so importing this module costs nothing and needs no display.
"""

import numpy as np

__all__ = ["plot_pdf_fit"]

#: Most observed points drawn as circles; finer data are thinned evenly.
MAX_CIRCLES = 600


def plot_pdf_fit(r, gobs, gcalc, *, rw=None, title=None, ax=None):
    """Draw observed and calculated G(r) and their difference, PDFgui
    style.

    The observed PDF is drawn as open circles, the calculated one as a
    line, and the difference Gobs - Gcalc as a line offset below both,
    with its zero marked by a dashed line.

    Parameters
    ----------
    r : array_like, shape (n,)
        Radial distances in Å.
    gobs, gcalc : array_like, shape (n,)
        Observed and calculated G(r) in Å⁻².
    rw : float, optional
        Agreement factor, shown in the title.
    title : str, optional
        Title text; ``Rw = ...`` is appended when `rw` is given.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new Agg figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on (``ax.figure`` is the figure).
    """
    r = np.asarray(r, dtype=float)
    gobs = np.asarray(gobs, dtype=float)
    gcalc = np.asarray(gcalc, dtype=float)
    if not r.shape == gobs.shape == gcalc.shape or r.ndim != 1:
        raise ValueError(
            "r, Gobs and Gcalc must be 1-D arrays of one length, got shapes "
            f"{r.shape}, {gobs.shape}, {gcalc.shape}"
        )
    if ax is None:
        ax = _agg_figure(figsize=(7, 4.5), layout="constrained").add_subplot()
    gdiff = gobs - gcalc
    # PDFgui puts the difference curve just below the lowest data point.
    span = max(np.ptp(gobs), np.ptp(gcalc), np.finfo(float).tiny)
    offset = min(gobs.min(), gcalc.min()) - gdiff.max() - 0.05 * span
    ax.plot(
        r,
        gobs,
        linestyle="none",
        # Every point of a finely sampled G(r) would merge into a band.
        markevery=max(1, len(r) // MAX_CIRCLES),
        marker="o",
        markersize=4,
        markerfacecolor="none",
        markeredgecolor="tab:blue",
        markeredgewidth=0.8,
        label="Gobs",
    )
    ax.plot(r, gcalc, color="tab:red", linewidth=1.5, label="Gcalc")
    ax.plot(r, gdiff + offset, color="tab:green", linewidth=1, label="Gdiff")
    ax.axhline(offset, color="black", linestyle="--", linewidth=0.6)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("G (Å$^{-2}$)")
    ax.set_xlim(r.min(), r.max())
    text = title or ""
    if rw is not None:
        text = f"{text}  Rw = {rw:.4f}" if text else f"Rw = {rw:.4f}"
    if text:
        ax.set_title(text)
    ax.legend(loc="upper right", frameon=False)
    return ax


def plot_ranked_fits(results, path=None, top=4, *, fig=None):
    """The best `top` fits of a ranked solve, one PDFgui-style panel each.

    Parameters
    ----------
    results : sequence of RefinementResult
        Ranked, best first.
    path : str or Path, optional
        Also save the figure there (written atomically).
    top : int
    fig : matplotlib.figure.Figure, optional
        An empty figure to draw in (e.g. ``plt.figure()`` to show it with
        pyplot); by default a new Agg figure, which leaves pyplot and the
        matplotlib backend alone.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from pathlib import Path

    from diffpy_cbldm.atomic import atomic_path

    shown = list(results)[:top]
    if not shown:
        raise ValueError("plot_ranked_fits needs at least one result")
    if fig is None:
        fig = _agg_figure()
    fig.set_size_inches(7, 3.2 * len(shown))
    axes = fig.subplots(len(shown), 1, squeeze=False)
    for rank, (result, ax) in enumerate(zip(shown, axes[:, 0]), 1):
        plot_pdf_fit(
            result.r,
            result.gobs,
            result.gcalc,
            rw=result.rw,
            title=f"#{rank}: {result.atoms.get_chemical_formula()}",
            ax=ax,
        )
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    return fig


def _agg_figure(**kwargs):
    """A matplotlib Figure on its own Agg canvas (pyplot and the backend
    left alone); `kwargs` go to ``Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
