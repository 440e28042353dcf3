"""Compact fragments: every few-atom piece of a site arrangement that is
the set of sites nearest some centre.

A cluster of a handful of atoms has a handful of distances. Its PDF is
a few peaks, its atom count must be exact to be within 10 %, and a
learned generator trained on larger particles places such clusters
poorly (docs/benchmarks/evaluate.rst: CbLDM reads 7-atom decahedra as
8-10-atom hcp pieces). They need no generator either: the closed-shell
pieces of the seven arrangements of :mod:`diffpy_cbldm.clusters
.templates` (fcc, bcc, sc, hcp lattices; Mackay icosahedron;
five-fold decahedron) number about a hundred up to 16 atoms, few enough
to compare each with the data.

A *compact fragment* of `n` atoms is the `n` sites nearest a centre,
when the `n`-th and the next site are not equally far from it (a shell
cut in two has no unique piece, and its many subsets would let tiny
clusters fit noise). Centres are the centroids of the groups of one
to four sites near the arrangement's origin that lie within
:data:`_GROUP_SPAN` of each other: the 13-atom icosahedron and
cuboctahedron are the 13 sites nearest an atom, the pentagonal
bipyramid the 7 nearest the middle of a bond on the five-fold axis, the
tetrahedron the 4 nearest a tetrahedron's centroid, the simple-cubic
2 x 2 x 2 cube the 8 nearest the middle of a cube's diagonal.
"""

import functools
import itertools

import numpy as np

from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
from diffpy_cbldm.clusters.templates import seed_sites

__all__ = ["FRAGMENT_ATOMS", "compact_fragments", "fragment_centres"]

FRAGMENT_ATOMS = 16
"""Largest compact fragment offered, atoms."""

_GROUP_SPAN = 1.75
"""Largest distance within a group of sites whose centroid is a centre,
NN units: the body diagonal of a simple-cubic cube (sqrt 3), so that
every arrangement's cells are spanned."""

_SHELL_TOL = 1e-3
"""Sites whose distances to a centre differ by less (NN units) are one
shell."""


def fragment_centres(stype):
    """Centres of the compact fragments of `stype`, NN units.

    The centroids of the groups of one to four sites within 1.6 NN
    distances of the arrangement's origin
    (:func:`~diffpy_cbldm.clusters.templates.seed_sites`) whose sites
    are at most :data:`_GROUP_SPAN` apart, those within one NN
    distance of the origin.

    Returns
    -------
    ndarray, shape (m, 3)
    """
    x = seed_sites(stype, radius=2.6)
    near = x[np.linalg.norm(x, axis=1) <= 1.6]
    close = (
        np.linalg.norm(near[:, None] - near[None], axis=-1)
        <= _GROUP_SPAN + 1e-6
    )
    out = []
    for size in (1, 2, 3, 4):
        for group in itertools.combinations(range(len(near)), size):
            if all(close[i, j] for i, j in itertools.combinations(group, 2)):
                out.append(near[list(group)].mean(axis=0))
    c = np.array(out)
    return c[np.linalg.norm(c, axis=1) <= 1.0 + 1e-6]


def _fingerprint(y):
    """Sorted interatomic distances, rounded: equal for congruent
    fragments (and, at these sizes, only for them)."""
    from scipy.spatial.distance import pdist

    return tuple(np.round(np.sort(pdist(y)), 2))


@functools.lru_cache(maxsize=len(STRUCTURE_TYPES))
def _fragments_of(stype):
    x = seed_sites(stype, radius=6.0)
    picked, seen, out = set(), set(), []
    for c in fragment_centres(stype):
        d = np.linalg.norm(x - c, axis=1)
        order = np.argsort(d, kind="stable")
        d = d[order]
        for n in range(2, FRAGMENT_ATOMS + 1):
            sites = frozenset(order[:n].tolist())
            if d[n] - d[n - 1] < _SHELL_TOL or sites in picked:
                continue
            picked.add(sites)
            y = x[order[:n]]
            key = _fingerprint(y)
            if key not in seen:
                seen.add(key)
                out.append(y - y.mean(axis=0))
    return tuple(out)


def compact_fragments(stype, sizes):
    """The distinct compact fragments of `stype` with a size in `sizes`.

    Parameters
    ----------
    stype : str
        One of :data:`~diffpy_cbldm.clusters.build.STRUCTURE_TYPES`.
    sizes : iterable of int
        Atom counts wanted, each from 2 to :data:`FRAGMENT_ATOMS`.

    Returns
    -------
    list of ndarray
        Positions (n, 3) in NN units, centred on their centroid; no two
        fragments congruent (of one type; an octahedral fragment is an
        fcc one too, and is listed under both).

    Raises
    ------
    ValueError
        An unknown type or a size outside 2-:data:`FRAGMENT_ATOMS`.
    """
    if stype not in STRUCTURE_TYPES:
        raise ValueError(
            f"unknown structure type {stype!r}; valid: {STRUCTURE_TYPES}"
        )
    sizes = set(sizes)
    bad = sorted(n for n in sizes if not 2 <= n <= FRAGMENT_ATOMS)
    if bad:
        raise ValueError(
            f"compact fragments have 2 to {FRAGMENT_ATOMS} atoms; "
            f"asked for {bad}"
        )
    return [y.copy() for y in _fragments_of(stype) if len(y) in sizes]
