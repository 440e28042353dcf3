"""Refining which sites a cluster occupies: its shape and size, against
a PDF.

A template-decoded candidate is a structure type plus a set of occupied
sites of that type's arrangement (:mod:`diffpy_cbldm.clusters.templates`).
Its bonds are exact, but its outline (which surface sites are filled,
how long a rod is, how many atoms there are) is only as good as the
decoder's guess. :func:`refine_sites` improves the outline the way a
crystallographer edits a cluster by hand, one atom at a time: it adds an
atom on an empty site bonded to the cluster, removes one, or moves one
to another site, whichever lowers Rw most against the data, and stops
when no move lowers it by more than an information criterion's penalty
(:data:`MOVE_PENALTY`). Positions stay on the arrangement; the
continuous refinement (:func:`diffpy_cbldm.refine.refine_cluster`) comes
after. :func:`refine_candidate_sites`, which
:func:`~diffpy_cbldm.generator.refine_candidates` and ``solve`` call,
keeps each candidate's atom count by default (:data:`COUNT_WINDOW`):
with noise, free counts drift to smaller particles that fit no better
(docs/user_refinement.rst).

Every trial is cheap because, at fixed displacement parameters, a
single-element cluster's G(r) is a sum over its atom pairs of one pair's
G(r), which depends on the pair distance only (the Debye sum, DiffPy's
envelopes included; the 2/N normalisation is taken up by the free
scale). :class:`PairProfiles` tabulates that one-pair G(r) on the data's
r-points for distances on a fine grid, once per data set; adding or
removing atom ``a`` then changes G by the sum of the profiles of ``a``'s
distances to the occupied sites, which :func:`refine_sites` keeps for
every site of the search and updates after each move.
"""

import logging
import time

import numpy as np

__all__ = [
    "PairProfiles",
    "refine_sites",
    "PROFILE_STEP",
    "MAX_MOVES",
    "SEARCH_RSTEP",
    "MOVE_PENALTY",
    "COUNT_WINDOW",
    "refine_candidate_sites",
    "check_count_window",
]

logger = logging.getLogger(__name__)

#: Distance step, in Å, of the one-pair G(r) table of :class:`PairProfiles`
#: (linear interpolation between its rows).
PROFILE_STEP = 0.01

#: Spacing, in Å, of the r-points the search compares (every k-th point
#: of the data); the Rw reported afterwards uses them all.
SEARCH_RSTEP = 0.02

#: The information-criterion penalty of one move (:func:`refine_sites`):
#: 2 is Akaike's.
MOVE_PENALTY = 2.0

#: How far :func:`refine_candidate_sites` lets a candidate's atom count
#: move, as a fraction of it.
COUNT_WINDOW = 0.0

#: Most moves :func:`refine_sites` makes on one cluster.
MAX_MOVES = 60

# Moves are only taken when they lower Rw by more than this.
_MIN_GAIN = 1e-5
# Sites closer than this many NN distances are bonded.
_BOND = 1.3
# Removals tried as the first half of a move, best first.
_MOVE_SOURCES = 4


class PairProfiles:
    """G(r) of one atom pair against its distance, on the data's r-points.

    Parameters
    ----------
    settings : dict
        Q settings of the data (``qmin``, ``qmax``, ``qdamp``,
        ``qbroad``), as :func:`diffpy_cbldm.refine.refine_cluster`
        resolves them.
    r : array_like
        The data's r-points in Å over the fit range (uniform); every
        ``stride``-th is used, so that the points are about
        :data:`SEARCH_RSTEP` apart.
    uiso, delta2 : float
        Isotropic displacement (Å²) of every atom and the correlated
        motion term delta2 (Å²).
    element : str
        The metal (its form factor cancels for one element, but the
        engine needs one).
    dmax : float
        Longest pair distance to tabulate, in Å; longer pairs are left
        out.
    """

    def __init__(self, settings, r, uiso, delta2, element, dmax):
        import torch
        from ase.data import atomic_numbers

        from diffpy_cbldm.pdf.debye import DebyePDFCalculator

        r = np.asarray(r, dtype=float)
        step = float(np.median(np.diff(r)))
        stride = max(1, int(round(SEARCH_RSTEP / step)))
        calc = DebyePDFCalculator(
            rmin=float(r[0]),
            rmax=float(r[-1]) + step / 2,
            rstep=step,
            biso=8 * np.pi**2 * float(uiso),
            delta2=float(delta2),
            **{k: settings[k] for k in ("qmin", "qmax", "qdamp", "qbroad")},
        )
        self.r = r[::stride]
        self.step = PROFILE_STEP
        self.dmin = 0.5
        d = np.arange(self.dmin, float(dmax) + 2 * self.step, self.step)
        pos = np.zeros((len(d), 2, 3))
        pos[:, 1, 0] = d
        z = torch.full((len(d), 2), atomic_numbers[element])
        table = []
        with torch.no_grad():
            for start in range(0, len(d), 1024):
                g = calc.compute(
                    torch.as_tensor(pos[start : start + 1024]),
                    z[start : start + 1024],
                    r=self.r,
                )
                table.append(g.numpy())
        # G of an N-atom cluster is 2/N times the sum of its pair rows.
        self.table = np.concatenate(table)
        self.dmax = float(d[-2])
        # Independent points of the compared range (Nyquist: one per
        # pi / (Qmax - Qmin)).
        self.independent = (
            (self.r[-1] - self.r[0])
            * (settings["qmax"] - settings["qmin"])
            / np.pi
        )

    def observed(self, data):
        """The data's G and Rw weights at :attr:`r`: ``gobs, w``."""
        from diffpy_cbldm.pdf.rw import weights

        k = np.searchsorted(data.r, self.r - 1e-9)
        if not np.allclose(data.r[k], self.r, atol=1e-6):
            raise ValueError(
                f"{data.name}: its r-points are not those the pair "
                "profiles were made for"
            )
        dg = None if data.dg is None else data.dg[k]
        return data.g[k], weights(data.g[k], dg)

    def weights(self, distances):
        """Rows and weights of the table that interpolate `distances`:
        ``rows`` (k,) int and ``w`` (k, 2), rows ``rows`` and ``rows + 1``.
        Distances beyond the table get weight 0."""
        f = (np.asarray(distances, dtype=float) - self.dmin) / self.step
        inside = f <= len(self.table) - 2  # False for inf and NaN
        f = np.clip(np.where(inside, f, 0.0), 0.0, None)
        rows = np.minimum(np.floor(f).astype(int), len(self.table) - 2)
        w1 = np.clip(f - rows, 0.0, 1.0)
        w = np.stack([1.0 - w1, w1], axis=-1)
        w[~inside] = 0.0
        return rows, w

    def pair_sums(self, distances):
        """Sum of the profiles of the pair `distances` along the last axis:
        ``distances`` (..., k) -> (..., nr)."""
        from scipy.sparse import csr_matrix

        distances = np.asarray(distances, dtype=float)
        shape = distances.shape
        m = int(np.prod(shape[:-1], dtype=int))
        rows, w = self.weights(distances.reshape(-1))
        out_rows = np.repeat(np.arange(m), shape[-1])
        s = csr_matrix(
            (
                w.T.reshape(-1),
                (np.tile(out_rows, 2), np.concatenate([rows, rows + 1])),
            ),
            shape=(m, len(self.table)),
        )
        return np.asarray(s @ self.table).reshape(*shape[:-1], len(self.r))


def _search_sites(occupied, stype):
    """Sites of the arrangement within two bonds of an occupied one
    (template units): the occupied first, then the others."""
    from diffpy_cbldm.clusters.templates import neighbour_sites

    first = neighbour_sites(occupied, stype)
    second = neighbour_sites(np.concatenate([occupied, first]), stype)
    return np.concatenate([occupied, first, second])


def refine_sites(
    atoms,
    data,
    profiles,
    *,
    max_moves=MAX_MOVES,
    min_atoms=None,
    max_atoms=None,
    penalty=None,
):
    """Edit a cluster's occupied sites, one atom at a time, to fit a PDF.

    Parameters
    ----------
    atoms : ase.Atoms
        A single-element cluster whose ``info["structure_type"]`` names
        its arrangement and whose atoms sit on that arrangement's sites
        (a template-decoded candidate or a compact fragment).
    data : PDFData
        The measured PDF.
    profiles : PairProfiles
        One-pair G(r) for the data's fit points and displacement.
    max_moves : int
        Most moves made.
    min_atoms, max_atoms : int, optional
        Bounds of the atom count: by default the data set's smallest
        cluster (:data:`diffpy_cbldm.clusters.build.MIN_ATOMS`) and no
        upper bound.
    penalty : float, optional
        A move is taken only when it lowers Rw² by at least the factor
        ``exp(-penalty / N)``, N the independent points of the fit range
        (``(rmax - rmin) (Qmax - Qmin) / pi``): an information criterion
        that counts every move as one parameter, so that the search
        stops before it fits the noise. Default :data:`MOVE_PENALTY`;
        0 takes every move that lowers Rw by more than 1e-5.

    Returns
    -------
    ase.Atoms
        The edited cluster (a copy; positions on the arrangement in the
        input's scale and place), with ``info["site_start_atoms"]``
        (the input's atom count), ``info["site_moves"]``,
        ``info["site_added"]``, ``info["site_removed"]`` (atoms added,
        removed; a move counts one of each), and ``info["site_rw"]``
        (Rw of the search's model, before and after).

    Raises
    ------
    ValueError
        When the cluster is not on its type's arrangement.
    """
    from ase import Atoms
    from scipy.spatial.distance import cdist

    from diffpy_cbldm.clusters.build import MIN_ATOMS, nn_distance
    from diffpy_cbldm.clusters.templates import register, template_frame

    if min_atoms is None:
        min_atoms = MIN_ATOMS

    stype = atoms.info.get("structure_type")
    x = atoms.get_positions()
    centre = x.mean(axis=0)
    nn = nn_distance(x)
    t, occ = register(template_frame(x, stype), stype)
    pool = _search_sites(occ, stype)
    m = len(pool)
    occupied = np.zeros(m, dtype=bool)
    occupied[: len(occ)] = True
    dist = cdist(pool, pool) * nn
    dist[dist > profiles.dmax] = np.inf
    np.fill_diagonal(dist, np.inf)
    bonded = dist < _BOND * nn
    gobs, w = profiles.observed(data)
    wgo = w * gobs
    den = float(gobs @ wgo)
    # field[s]: G of site s's pairs with the occupied sites; the
    # cluster's G is half their sum over the occupied sites.
    field = profiles.pair_sums(dist[:, occupied])
    g = 0.5 * field[occupied].sum(axis=0)

    def rw_of(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            chi = den - np.where(b > 0, a * a / b, 0.0)
        return np.sqrt(np.clip(chi, 0.0, None) / den)

    if penalty is None:
        penalty = MOVE_PENALTY
    factor = np.exp(-0.5 * float(penalty) / profiles.independent)

    def enough(rw):
        """Largest Rw a move must reach to be taken."""
        return min(rw - _MIN_GAIN, rw * factor)

    rw_start = rw_now = float(rw_of(g @ wgo, g @ (w * g)))
    added = removed = moves = 0
    max_atoms = np.inf if max_atoms is None else max_atoms
    started = time.perf_counter()
    for _ in range(int(max_moves)):
        count = int(occupied.sum())
        wg = w * g
        ga, gb = g @ wgo, g @ wg
        fa, fc = field @ wgo, field @ wg
        fq = (field * field) @ w
        options = []  # (Rw, removed site, added site)
        neighbours = bonded[:, occupied].sum(axis=1)
        empty = np.flatnonzero(~occupied & (neighbours > 0))
        full = np.flatnonzero(occupied)
        adds = rw_of(ga + fa[empty], gb + 2 * fc[empty] + fq[empty])
        drops = rw_of(ga - fa[full], gb - 2 * fc[full] + fq[full])
        if count < max_atoms and len(empty):
            k = int(np.argmin(adds))
            options.append((adds[k], None, empty[k]))
        if count > min_atoms:
            k = int(np.argmin(drops))
            options.append((drops[k], full[k], None))
        single = min(options, key=lambda o: o[0]) if options else None
        if single is not None and single[0] <= enough(rw_now):
            pass  # an atom added or removed helps: no need to move one
        elif len(full) > 1 and len(empty):
            # Moves: each of the best removals with every addition, each
            # of the best additions with every removal; the site added
            # must stay bonded to the cluster without the one removed.
            drop = full[np.argsort(drops)[:_MOVE_SOURCES]]
            put = empty[np.argsort(adds)[:_MOVE_SOURCES]]
            rem = np.concatenate(
                [np.repeat(drop, len(empty)), np.tile(full, len(put))]
            )
            add = np.concatenate(
                [np.tile(empty, len(drop)), np.repeat(put, len(full))]
            )
            ok = neighbours[add] > bonded[add, rem]
            rem, add = rem[ok], add[ok]
            if len(rem):
                p = profiles.pair_sums(dist[rem, add][:, None])
                fb = field[add] - p  # their fields without the removed
                new_a = ga - fa[rem] + fa[add] - p @ wgo
                new_b = (
                    gb
                    + fq[rem]
                    - 2 * fc[rem]
                    + ((fb * fb) @ w)
                    + 2 * (fb @ wg)
                    - 2 * ((fb * field[rem]) @ w)
                )
                rws = rw_of(new_a, new_b)
                k = int(np.argmin(rws))
                options.append((rws[k], rem[k], add[k]))
        if not options:
            break
        best = min(options, key=lambda o: o[0])
        if best[0] > enough(rw_now):
            break
        rw_now, a, b = float(best[0]), best[1], best[2]
        if a is not None:
            g = g - field[a]
            field -= profiles.pair_sums(dist[:, a][:, None])
            occupied[a] = False
            removed += 1
        if b is not None:
            g = g + field[b]
            field += profiles.pair_sums(dist[:, b][:, None])
            occupied[b] = True
            added += 1
        moves += 1
    sites = pool[occupied]
    symbol = atoms.get_chemical_symbols()[0]
    new = Atoms(
        f"{symbol}{len(sites)}",
        positions=(sites - t) * nn + centre,
    )
    new.info.update(atoms.info)
    new.info.update(
        n_atoms=len(new),
        site_start_atoms=len(x),
        site_moves=moves,
        site_added=added,
        site_removed=removed,
        site_rw=(float(rw_start), float(rw_now)),
    )
    logger.debug(
        "site refinement: %d -> %d atoms, Rw %.4f -> %.4f in %d moves, "
        "%.2f s",
        len(occ),
        len(sites),
        rw_start,
        rw_now,
        moves,
        time.perf_counter() - started,
    )
    return new


def check_count_window(value, name="count_window"):
    """A count window (:func:`refine_candidate_sites`) as a float, its
    default :data:`COUNT_WINDOW` for None; a ValueError that names
    `name` for a negative value or NaN (``inf`` is allowed)."""
    window = COUNT_WINDOW if value is None else float(value)
    if not window >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return window


def refine_candidate_sites(
    candidates,
    pdf,
    *,
    max_moves=None,
    rmin=None,
    rmax=None,
    penalty=None,
    count_window=None,
    progress=True,
):
    """:func:`refine_sites` for every candidate that sits on a site
    arrangement, with one table of pair profiles.

    The atomic displacement of the profiles is the candidates' own
    ``rw_uiso`` and ``rw_delta2`` (the data's displacement that
    :meth:`~diffpy_cbldm.CbLDMGenerator.propose` refined), else that of
    :func:`~diffpy_cbldm.generator.data_displacement` with the candidate
    that fits best as it is.

    Parameters
    ----------
    candidates : sequence of ase.Atoms
    pdf : PDFData
        The data, with the Q settings of the fit in its header.
    max_moves : int, optional
        Most moves per candidate (default :data:`MAX_MOVES`); 0 returns
        the candidates unchanged.
    rmin, rmax : float, optional
        The fit range (default: from 1.5 Å to the data's end).
    penalty : float, optional
        As for :func:`refine_sites`.
    count_window : float, optional
        How far the atom count may move from each candidate's own, as a
        fraction of it: counts from ``n (1 - count_window)`` to
        ``n (1 + count_window)``; 0 keeps every count and only moves
        atoms. Default :data:`COUNT_WINDOW`; ``inf`` bounds nothing.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of ase.Atoms
        Edited copies; a candidate of several elements, of another
        element than the first editable one (the pair profiles are that
        element's), without a ``structure_type``, or off its
        arrangement, is returned as it is, with ``info["site_moves"]``
        None.
    """
    from tqdm.auto import tqdm

    from diffpy_cbldm.arguments import check_count
    from diffpy_cbldm.clusters.build import MIN_ATOMS, STRUCTURE_TYPES
    from diffpy_cbldm.generator import (
        _fit_points,
        candidate_rw,
        data_displacement,
    )

    if max_moves is None:
        max_moves = MAX_MOVES
    max_moves = check_count("max_moves", max_moves, least=0)
    window = check_count_window(count_window)
    candidates = list(candidates)
    editable = [
        k
        for k, atoms in enumerate(candidates)
        if len(atoms) > 1
        and atoms.info.get("structure_type") in STRUCTURE_TYPES
        and len(set(atoms.numbers)) == 1
    ]
    out = []
    for atoms in candidates:
        atoms = atoms.copy()
        atoms.info["site_moves"] = None
        out.append(atoms)
    if max_moves == 0 or not editable:
        return out
    settings, r, _, _ = _fit_points(pdf, rmax, rmin)
    first = candidates[editable[0]].info
    if first.get("rw_uiso") is not None and first.get("rw_delta2") is not None:
        uiso, delta2 = first["rw_uiso"], first["rw_delta2"]
    else:
        raw = candidate_rw([candidates[k] for k in editable], pdf)
        best = candidates[editable[int(np.argmin(raw))]]
        uiso, delta2 = data_displacement(best, pdf)
    element = candidates[editable[0]].get_chemical_symbols()[0]
    profiles = PairProfiles(
        settings, r, uiso, delta2, element, dmax=float(r[-1]) + 10.5
    )
    for k in tqdm(editable, desc="editing sites", disable=not progress):
        if candidates[k].get_chemical_symbols()[0] != element:
            continue
        n = len(candidates[k])
        least, most = MIN_ATOMS, None
        if np.isfinite(window):
            least = max(least, int(np.ceil(n * (1 - window))))
            most = int(np.floor(n * (1 + window)))
        try:
            out[k] = refine_sites(
                candidates[k],
                pdf,
                profiles,
                max_moves=max_moves,
                penalty=penalty,
                min_atoms=least,
                max_atoms=most,
            )
        except ValueError as exc:
            logger.info("candidate %d: sites not edited: %s", k, exc)
    return out
