"""Site templates: every cluster of a structure type as a subset of one
fixed set of sites.

All clusters of one structure type are pieces of one infinite
arrangement of sites: the fcc, bcc, sc or hcp lattice (octahedra are fcc),
the Mackay icosahedron, the five-fold twinned decahedron. A *template* is a
finite set of those sites, in units of the nearest-neighbour (NN)
distance, in the orientation of ASE's cluster builders (the orientation
the training set keeps: canonical ordering reorders and centres atoms but
never rotates them). :func:`register` finds where a cluster sits in its
type's template: the translation ``t`` (the template position of the
cluster's centroid) and the sites it occupies. A cluster is then a
structure type plus a set of occupied sites, and any set of occupied
sites is a cluster whose bonds are all exact, which is what the template
decoder of :class:`diffpy_cbldm.model.StructureVAE` builds on.

Templates are made from data (:func:`build_templates`): the union of the
sites that the clusters of the training split occupy, widened by one
shell of neighbouring sites, so that a cluster slightly larger than any
seen in training still fits.
"""

import functools

import numpy as np

from diffpy_cbldm.clusters.build import (
    IDEAL_COVERA,
    STRUCTURE_TYPES,
    _factory,
    nn_distance,
)

__all__ = [
    "MATCH_TOL",
    "SEARCH_RADIUS",
    "build_templates",
    "neighbour_sites",
    "register",
    "site_targets",
    "seed_sites",
    "snap",
    "template_frame",
]

MATCH_TOL = 0.02
"""An atom sits on a site closer than this, in NN units."""

SEARCH_RADIUS = 2.0
"""Largest centroid offset ``|t|`` tried by :func:`register` (NN units)."""

_LATTICE = {
    "fcc": "fcc",
    "octahedral": "fcc",
    "bcc": "bcc",
    "sc": "sc",
    "hcp": "hcp",
}


def template_frame(positions, stype, covera=None):
    """Positions in template units: centred, unit NN, ideal hcp c/a.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        A cluster in the builders' orientation, any NN distance.
    stype : str
        Its structure type.
    covera : float, optional
        c/a of an hcp cluster; it is squeezed back to the ideal c/a.

    Returns
    -------
    ndarray, shape (n, 3)
    """
    x = np.asarray(positions, dtype=float)
    x = x - x.mean(axis=0)
    if stype == "hcp" and covera is not None and np.isfinite(covera):
        x = x * np.array([1.0, 1.0, IDEAL_COVERA / covera])
    return x / nn_distance(x)


def _lattice_ball(lattice, radius):
    f = _factory(lattice)
    basis = f.lattice_basis
    n = int(np.ceil(radius / np.linalg.norm(basis, axis=1).min())) + 2
    axis = np.arange(-n, n + 1)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)
    x = (grid.reshape(-1, 1, 3) + f.atomic_basis[None]).reshape(-1, 3)
    x = x @ basis
    return x[np.linalg.norm(x, axis=1) <= radius]


def _unit(x):
    x = x - x.mean(axis=0)
    return x / nn_distance(x)


@functools.lru_cache(maxsize=2)
def _finite_arrangement(stype):
    """Sites of the icosahedral and decahedral arrangements, unit NN.

    The Mackay icosahedron of 5 shells (309 sites, more than any cluster
    of at most 256 atoms needs); the decahedral column: ASE's Ino
    decahedron p = q = 9 centred on an axis atom, repeated along the
    five-fold axis (the arrangement is periodic there with one NN
    distance) to +-40 NN.
    """
    if stype == "icosahedral":
        from ase.cluster import Icosahedron

        return _unit(Icosahedron("Cu", noshells=5).get_positions())
    from ase.cluster import Decahedron

    x = _unit(Decahedron("Cu", p=9, q=9, r=0).get_positions())
    axis = np.hypot(x[:, 0], x[:, 1]) < 1e-6
    x = x - x[axis][np.argmin(np.abs(x[axis, 2]))]
    column = np.concatenate([x + [0.0, 0.0, k] for k in range(-40, 41)])
    _, keep = np.unique(np.round(column, 3), axis=0, return_index=True)
    column = column[np.sort(keep)]
    return column[np.abs(column[:, 2]) <= 40.0]


@functools.lru_cache(maxsize=2)
def _finite_tree(stype):
    from scipy.spatial import cKDTree

    return cKDTree(_finite_arrangement(stype))


@functools.lru_cache(maxsize=8)
def _second_shell(stype):
    """The second-shortest site distance of the arrangement, NN units."""
    x = seed_sites(stype, radius=3.0)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1).round(3)
    return float(np.unique(d[d > 1.001])[0])


def seed_sites(stype, radius=SEARCH_RADIUS + 3.0):
    """Sites of the arrangement of `stype` within `radius` of its origin.

    Lattices are centred on an atom, the icosahedron on its centre, the
    decahedron on an atom of its five-fold axis.
    """
    if stype in _LATTICE:
        return _lattice_ball(_LATTICE[stype], radius)
    if stype not in STRUCTURE_TYPES:
        raise ValueError(
            f"unknown structure type {stype!r}; valid: {STRUCTURE_TYPES}"
        )
    x = _finite_arrangement(stype)
    return x[np.linalg.norm(x, axis=1) <= radius]


def snap(y, stype, tol=MATCH_TOL):
    """The sites nearest to points `y`, and which points are on one.

    Lattices are tested analytically (integer fractional coordinates of
    some basis atom), the icosahedral and decahedral arrangements by a
    nearest-site search.

    Returns
    -------
    sites : ndarray, shape (n, 3)
        The exact site nearest to each point (meaningful where `on`).
    on : ndarray of bool, shape (n,)
        Points within `tol` (NN units) of a site.
    """
    y = np.asarray(y, dtype=float)
    if stype not in _LATTICE:
        d, index = _finite_tree(stype).query(y)
        return _finite_arrangement(stype)[index], d < tol
    f = _factory(_LATTICE[stype])
    basis = f.lattice_basis
    inverse = np.linalg.inv(basis)
    best = np.full(len(y), np.inf)
    sites = np.zeros_like(y)
    for b in f.atomic_basis:
        frac = y @ inverse - b
        exact = (np.round(frac) + b) @ basis
        d = np.linalg.norm(exact - y, axis=1)
        closer = d < best
        best[closer] = d[closer]
        sites[closer] = exact[closer]
    return sites, best < tol


def register(x, stype, tol=MATCH_TOL, radius=SEARCH_RADIUS):
    """Where a cluster sits in the site arrangement of its type.

    Tries every translation that puts the atom nearest the centroid on a
    site within `radius` of it and keeps, among those that put *every*
    atom on a site, the smallest (ties broken by the coordinates, so that
    equal clusters register alike).

    Parameters
    ----------
    x : ndarray, shape (n, 3)
        The cluster in template units (:func:`template_frame`).
    stype : str

    Returns
    -------
    t : ndarray, shape (3,)
        The position of the cluster's centroid in the arrangement.
    sites : ndarray, shape (n, 3)
        The exact site of each atom, ``x + t`` up to `tol`.

    Raises
    ------
    ValueError
        When no translation within `radius` puts all atoms on sites.
    """
    from scipy.spatial import cKDTree

    best = None
    # A cluster's shortest distance is its unit; a small cut may have no
    # nearest-neighbour bond, so its unit is then the second shell.
    for unit in (1.0, _second_shell(stype)):
        y = x * unit
        seeds = seed_sites(
            stype, radius=np.linalg.norm(y, axis=1).min() + radius
        )
        a = int(np.argmin(np.einsum("ij,ij->i", y, y)))
        for s in cKDTree(seeds).query_ball_point(y[a], radius):
            t = seeds[s] - y[a]
            sites, on = snap(y + t, stype, tol)
            if not on.all():
                continue
            key = (round(float(t @ t), 6), *np.round(t, 4))
            if best is None or key < best[0]:
                best = (key, t, sites)
        if best is not None:
            break
    if best is None:
        raise ValueError(
            f"the {stype} cluster of {len(x)} atoms is not a piece of the "
            f"{stype} arrangement within {radius} NN of its centroid"
        )
    return best[1], best[2]


def neighbour_sites(occupied, stype, reach=1.0 + MATCH_TOL):
    """The empty sites of the arrangement within `reach` (NN units) of
    an occupied one.

    Parameters
    ----------
    occupied : ndarray, shape (n, 3)
        Exact sites (:func:`register`), template units.
    stype : str
    reach : float
        Largest distance from an occupied site; the default takes the
        bonded shell.

    Returns
    -------
    ndarray, shape (m, 3)
        Distinct sites, none of them occupied, in a fixed order.
    """
    from scipy.spatial import cKDTree

    occupied = np.asarray(occupied, dtype=float)
    tree = cKDTree(occupied)
    if stype in _LATTICE:
        ball = seed_sites(stype, radius=reach)
        steps = ball[np.linalg.norm(ball, axis=1) > 0.5]
        near = (occupied[:, None] + steps[None]).reshape(-1, 3)
        near, on = snap(near, stype)
        near = _distinct(near[on])
    else:
        every = _finite_arrangement(stype)
        d, _ = tree.query(every)
        near = every[d < reach]
    d, _ = tree.query(near)
    return near[d > MATCH_TOL]


def _distinct(x):
    """Rows of `x` without repeats (equal to 1e-4 NN), exact values."""
    _, keep = np.unique(np.round(x, 4), axis=0, return_index=True)
    return x[np.sort(keep)]


def build_templates(occupied, grow=1.0 + MATCH_TOL):
    """Templates from the sites that clusters occupy, one per type.

    Parameters
    ----------
    occupied : dict
        ``{stype: iterable of (n, 3) arrays}``: the exact sites of
        clusters (:func:`register`), the training split's.
    grow : float
        Sites within this distance (NN units) of an occupied site are
        added: one shell of neighbours.

    Returns
    -------
    dict
        ``{stype: ndarray (m, 3)}``, sites sorted by distance from the
        origin (ties by coordinates).
    """
    out = {}
    for stype, sites in occupied.items():
        used = _distinct(np.concatenate(list(sites)))
        near = neighbour_sites(used, stype, grow)
        sites = _distinct(np.concatenate([used, near]))
        order = np.lexsort((*sites.T[::-1], np.linalg.norm(sites, axis=1)))
        out[stype] = sites[order]
    return out


def site_targets(
    occupied, template, k, rng, shell=1.5, max_shell=None, tree=None
):
    """Training targets of the template decoder for one cluster.

    The occupancy of every site of a template is known, but the
    templates hold thousands of sites; the loss sees `k` of them: every
    occupied site, the empty sites within `shell` NN of one (where the
    surface of the cluster is decided; at most `max_shell` of them,
    default ``k // 2``, drawn at random beyond that) and empty sites
    drawn at random from the rest (at least half of what the occupied
    sites leave, when there are that many). Each carries the inverse of the
    fraction of its group that was drawn, so a weighted sum over the `k`
    is an unbiased estimate of the sum over the whole template.

    Parameters
    ----------
    occupied : ndarray, shape (n, 3)
        The cluster's sites (:func:`register`).
    template : ndarray, shape (m, 3)
    k : int
        Sites per cluster, at least ``n``.
    rng : numpy.random.Generator
    tree : scipy.spatial.cKDTree, optional
        Of `template`, when making the targets of many clusters.

    Returns
    -------
    index : ndarray of int, shape (k,)
        Template sites (0 in padding).
    label : ndarray of float32, shape (k,)
        1 for occupied sites.
    weight : ndarray of float32, shape (k,)
        0 in padding.
    missing : int
        Atoms on no template site (left out of the targets).
    """
    from scipy.spatial import cKDTree

    tree = tree or cKDTree(template)
    d, atoms = tree.query(occupied)
    on = d < 1e-3
    atoms = np.unique(atoms[on])
    if len(atoms) > k:
        raise ValueError(f"{len(atoms)} occupied sites, more than k = {k}")
    empty = np.ones(len(template), bool)
    empty[atoms] = False
    near = np.zeros(len(template), bool)
    for hits in tree.query_ball_point(template[atoms], shell):
        near[hits] = True
    near &= empty
    groups = [(atoms, 1.0)]
    budget = k - len(atoms)
    far = np.flatnonzero(empty & ~near)
    # The shell gets at most half of what is left when far sites exist,
    # so that both groups are represented.
    half = budget - min(len(far), budget // 2)
    for pool, cap in (
        (np.flatnonzero(near), min(max_shell or k // 2, half)),
        (far, None),
    ):
        take = min(len(pool), budget if cap is None else min(cap, budget))
        if take:
            chosen = np.sort(rng.choice(pool, size=take, replace=False))
            groups.append((chosen, len(pool) / take))
            budget -= take
    index = np.zeros(k, np.int64)
    label = np.zeros(k, np.float32)
    weight = np.zeros(k, np.float32)
    start = 0
    for g, (chosen, w) in enumerate(groups):
        index[start : start + len(chosen)] = chosen
        label[start : start + len(chosen)] = 1.0 if g == 0 else 0.0
        weight[start : start + len(chosen)] = w
        start += len(chosen)
    return index, label, weight, int((~on).sum())
