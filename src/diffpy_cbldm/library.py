"""LibraryGenerator: screen a library of known clusters against a PDF.

The baseline every generative model must beat (cluster mining, Banerjee
et al., Acta Cryst. A 76, 24 (2020)): compute the PDF of every cluster of
a library with the measurement's Q settings, stretch each to the best
nearest-neighbour distance, and propose the clusters whose PDFs match the
data best after a free scale. Same interface as
:class:`~diffpy_cbldm.generator.CbLDMGenerator`.

The library is one metal per shape of a training set (by default its
``train`` split), so that shapes in the validation and test splits are
absent and an evaluation on them is fair.

How the stretch is done: scaling a cluster's coordinates by s turns
G(r) into ``G(r / s) / s^2`` (exact for the pair sum; the Q-space
broadening changes slightly), so each library PDF is computed once, at a
nearest-neighbour distance of :attr:`LibraryGenerator.NN`, on a fine grid
and read off at ``r / s`` for every trial s; the free scale absorbs
``1 / s^2``.
"""

import logging
import time

import numpy as np

from diffpy_cbldm.arguments import check_count, check_number
from diffpy_cbldm.conventions import Conventions, model_input
from diffpy_cbldm.generator import (
    _element,
    _fit_points,
    _given_count,
    as_pdf_data,
    refine_candidates,
    set_raw_rw,
)

__all__ = ["LibraryGenerator"]

logger = logging.getLogger(__name__)


def _on_grid(i, left, right, size):
    """Weights of data points gathered on a grid of `size` points: each
    point's `left` onto grid point `i`, its `right` (unless None) onto
    ``i + 1``; float32, to multiply the stored library PDFs."""
    out = np.bincount(i, left, minlength=size)
    if right is not None:
        out[1:] += np.bincount(i, right, minlength=size - 1)
    return out.astype(np.float32)


class LibraryGenerator:
    """Propose the library clusters whose PDFs best match the data.

    Parameters
    ----------
    dataset : str or Path
        A training set (``cbldm dataset build``).
    split : str
        Its split that forms the library ("train" by default).
    nn_range : (float, float)
        Nearest-neighbour distances (Å) tried for every cluster.
    nn_steps : int
        Number of trial distances.
    """

    NN = 2.75
    """Nearest-neighbour distance (Å) the library is stored at."""

    def __init__(
        self, dataset, split="train", nn_range=(2.2, 3.1), nn_steps=46
    ):
        from diffpy_cbldm.dataset.store import open_dataset
        from diffpy_cbldm.evaluation import nearest_neighbour_distance

        nn_steps = check_count("nn_steps", nn_steps)
        try:
            lo, hi = (check_number("nn_range", value) for value in nn_range)
        except (TypeError, ValueError):
            lo = hi = None
        if lo is None or not 0 < lo <= hi:
            raise ValueError(
                "nn_range must be two distances 0 < low <= high in Å, got "
                f"{nn_range!r}"
            )
        with open_dataset(dataset) as ds:
            rows = ds.split_indices(split)
            shape_index = ds.array("shape_index")[rows]
            _, first = np.unique(shape_index, return_index=True)
            self.rows = rows[np.sort(first)]
            names = ds.manifest["structure_types"]
            types = ds.array("structure_type")[self.rows]
            self.types = np.array([names[int(t)] for t in types])
            self.natoms = ds.array("natoms")[self.rows].astype(int)
            self.positions = []
            for i, n in zip(self.rows, self.natoms):
                x = ds.file["positions"][i, :n].astype(float)
                x *= self.NN / nearest_neighbour_distance(x)
                self.positions.append(x)
        self.dataset = str(dataset)
        self.split = split
        self.name = f"library {split} of {dataset}"
        self.stretch = np.linspace(lo, hi, nn_steps) / self.NN
        self._cache = {}  # Q settings -> (r, float32 PDFs), a few at most

    def __len__(self):
        return len(self.positions)

    def __repr__(self):
        return (
            f"LibraryGenerator({self.dataset!r}, split={self.split!r}, "
            f"{len(self)} clusters)"
        )

    CACHED = 4
    """Library PDF sets kept in memory (about 200 MB each for 4,000
    clusters: the PDFs, their squares and neighbour products)."""

    def _library_pdfs(self, settings, rmax, batch=64):
        """G(r) of every library cluster without the Qdamp envelope, for
        the data's Qmin and Qbroad and its Qmax rounded to 0.5 Å⁻¹, on a
        fine grid from 0 to rmax / min(stretch). Qdamp multiplies G(r) by
        ``exp(-(qdamp r)^2 / 2)`` (DiffPy's convention), so it is applied
        after the stretch in :meth:`screen`; the computed sets are cached
        per rounded Q settings.

        Returns the grid, the PDFs L (clusters, grid), L^2 and the
        products of neighbouring points ``L[:, i] L[:, i + 1]``, all the
        screening needs (float32)."""
        from ase import Atoms

        from diffpy_cbldm.pdf.debye import DebyePDFCalculator
        from diffpy_cbldm.refine import DEFAULTS

        top = round(rmax / self.stretch.min() + 0.5, 0)
        q = {
            "qmin": round(settings["qmin"], 2),
            "qmax": round(2 * settings["qmax"]) / 2,
            "qbroad": round(settings["qbroad"], 3),
        }
        key = (q["qmin"], q["qmax"], q["qbroad"], top)
        if key not in self._cache:
            t0 = time.perf_counter()
            calc = DebyePDFCalculator(
                rmin=0.0,
                rmax=top,
                rstep=0.01,
                biso=8 * np.pi**2 * DEFAULTS["uiso"],
                **q,
            )
            pdfs = []
            for k in range(0, len(self), batch):
                chunk = [
                    Atoms(f"Au{len(x)}", positions=x)
                    for x in self.positions[k : k + batch]
                ]
                r, g = calc.batch(chunk)
                pdfs.append(g.astype(np.float32))
            while len(self._cache) >= self.CACHED:
                self._cache.pop(next(iter(self._cache)))
            g = np.concatenate(pdfs)
            self._cache[key] = (r, g, g * g, g[:, :-1] * g[:, 1:])
            logger.info(
                "library PDFs: %d clusters in %.1f s",
                len(self),
                time.perf_counter() - t0,
            )
        return self._cache[key]

    def screen(self, data):
        """Rw (free scale) of every library cluster at its best stretch.

        Scaling a cluster by s turns its G(r) into ``G(r / s) / s^2``,
        read off the stored fine grid by linear interpolation; the
        ``1 / s^2`` goes into the free scale. The interpolated curves
        are never formed: Rw after the best scale needs only the sums
        ``sum w Gobs Gcalc`` and ``sum w Gcalc^2``
        (:func:`~diffpy_cbldm.pdf.rw.rw_free_scale_from_sums`), and with
        ``Gcalc(r_j) = (1 - f_j) L[i_j] + f_j L[i_j + 1]`` both are
        products of the stored L, L^2 and ``L[i] L[i + 1]`` with vectors
        over the grid, one each per trial stretch.

        Returns
        -------
        rw : ndarray, shape (len(self),)
        stretch : ndarray, shape (len(self),)
            The best factor on the library's coordinates.
        """
        from diffpy_cbldm.pdf.rw import rw_free_scale_from_sums, weights

        settings, r, gobs, dg = _fit_points(as_pdf_data(data))
        w = weights(gobs, dg)
        grid, lib, squares, products = self._library_pdfs(settings, r[-1])
        best = np.full(len(self), np.inf)
        best_s = np.ones(len(self))
        step = grid[1] - grid[0]
        m = len(grid)
        envelope = np.exp(-0.5 * (settings["qdamp"] * r) ** 2)
        obs = w * gobs * envelope  # weights of the sum w Gobs Gcalc
        calc = w * envelope**2  # and of the sum w Gcalc^2
        obs_obs = np.sum(w * gobs**2)
        for s in self.stretch:
            x = r / s / step
            i = np.clip(x.astype(int), 0, m - 2)
            f = x - i
            obs_calc = lib @ _on_grid(i, obs * (1 - f), obs * f, m)
            calc_calc = squares @ _on_grid(
                i, calc * (1 - f) ** 2, calc * f**2, m
            ) + products @ _on_grid(i, 2 * calc * f * (1 - f), None, m - 1)
            rw = rw_free_scale_from_sums(obs_calc, calc_calc, obs_obs)
            better = rw < best
            best[better] = rw[better]
            best_s[better] = s
        return best, best_s

    def propose(
        self,
        data,
        n=10,
        seed=None,
        *,
        element=None,
        count=None,
        count_width=None,
        **unused,
    ):
        """The `n` best-matching library clusters, best first.

        Parameters
        ----------
        data : anything :func:`~diffpy_cbldm.generator.as_pdf_data`
            accepts.
        n : int
        seed : ignored (screening is deterministic); accepted so that
            both generators share one call.
        element : str, optional
            Default: the data header's composition.
        count, count_width : float, optional
            An atom count known from elsewhere and its uncertainty (a
            standard deviation of ln n, default 0.05), as for
            :meth:`CbLDMGenerator.propose
            <diffpy_cbldm.generator.CbLDMGenerator.propose>`: only library
            clusters within two widths of it (``count * exp(±2
            count_width)``, ±10 % by default) are screened, and fewer
            than `n` are returned when fewer are there.

        Returns
        -------
        list of ase.Atoms
            ``atoms.info``: ``n_atoms``, ``rw``, ``rw_uiso`` and
            ``rw_delta2`` (free scale, unrefined, at the data's
            displacement, as for CbLDM candidates:
            :func:`~diffpy_cbldm.generator.set_raw_rw`), ``screen_rw``
            (the screening value, at Uiso 0.005 Å²), ``structure_type``,
            ``library_row``, ``generator``, ``count_given`` and
            ``count_given_width`` (None when no count was given).

        Raises
        ------
        ValueError
            As :meth:`CbLDMGenerator.propose
            <diffpy_cbldm.generator.CbLDMGenerator.propose>` for the data,
            `n`, `element`, `count` and `count_width`; no library cluster
            within two widths of `count`.
        """
        from ase import Atoms

        n = check_count("n", n)
        if unused:
            raise TypeError(
                f"LibraryGenerator.propose got unexpected keyword(s) "
                f"{sorted(unused)}"
            )
        given = _given_count(count, count_width, Conventions().max_atoms)
        pdf = as_pdf_data(data)
        element = _element(pdf, element)
        # The same checks of the data as CbLDM's (r-range, zeros, NaN).
        model_input(pdf.r, pdf.g, Conventions(), source=pdf.name)
        near = None
        if given["count_given"] is not None:
            # Checked before the (slow) screening.
            distance = np.abs(np.log(self.natoms / given["count_given"]))
            near = distance <= 2 * given["count_given_width"]
            if not near.any():
                raise ValueError(
                    f"no cluster of the {self.name} has "
                    f"{given['count_given']:g} atoms within "
                    f"±{2 * given['count_given_width']:g} in ln n "
                    f"(it holds {self.natoms.min()}-{self.natoms.max()})"
                )
            n = min(n, int(near.sum()))
        rw, stretch = self.screen(pdf)
        if near is not None:
            rw = np.where(near, rw, np.inf)
        order = np.argsort(rw, kind="stable")[:n]
        candidates = []
        for k in order:
            x = self.positions[k] * stretch[k]
            atoms = Atoms(f"{element}{len(x)}", positions=x)
            atoms.info.update(
                n_atoms=len(atoms),
                screen_rw=float(rw[k]),
                structure_type=str(self.types[k]),
                library_row=int(self.rows[k]),
                generator="library",
                candidate=int(len(candidates)),
                **given,
            )
            candidates.append(atoms)
        set_raw_rw(candidates, pdf)
        return candidates

    def solve(
        self,
        data,
        n=10,
        *,
        element=None,
        count=None,
        count_width=None,
        progress=True,
        **options,
    ):
        """Propose, refine each candidate, rank by Rw (as
        :meth:`CbLDMGenerator.solve`: the Q settings among `options` go
        into the data's header first, so that the library is screened
        with them too)."""
        from diffpy_cbldm.refine import Q_SETTINGS

        pdf = as_pdf_data(data, **{k: options.get(k) for k in Q_SETTINGS})
        candidates = self.propose(
            pdf, n, element=element, count=count, count_width=count_width
        )
        return refine_candidates(candidates, pdf, progress=progress, **options)
