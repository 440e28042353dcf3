"""Bonds of a cluster: its nearest-neighbour distance, which atoms are
bonded, whether it is one piece, and how to pick sites that are.

Two atoms are bonded when they are closer than :data:`BOND_FACTOR` times
the cluster's nearest-neighbour distance. A real particle is one piece;
a generated candidate may carry stray atoms or fragments.
"""

import heapq

import numpy as np

__all__ = [
    "BOND_FACTOR",
    "bonded_neighbours",
    "connected_parts",
    "connected_selection",
    "nearest_neighbour_distance",
]

BOND_FACTOR = 1.3
"""Atoms closer than this times the cluster's median nearest-neighbour
distance are bonded (:func:`connected_parts`): past the first shell of
every lattice here (bcc's second shell is at 1.15, fcc's at 1.41)."""


def nearest_neighbour_distance(positions):
    """Median over atoms of the distance to their nearest neighbour, Å."""
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, dtype=float)
    if len(positions) < 2:
        raise ValueError("a nearest-neighbour distance needs two atoms")
    d, _ = cKDTree(positions).query(positions, k=2)
    return float(np.median(d[:, 1]))


def connected_parts(positions, bond_factor=BOND_FACTOR):
    """Pieces of a cluster: the number of connected parts, atoms bonded
    when closer than `bond_factor` times the median nearest-neighbour
    distance, and how many atoms lie outside the largest part.

    A real particle is one piece; a candidate in several has stray atoms
    or fragments.

    Returns
    -------
    (int, int)
        Parts and atoms outside the largest part; (1, 0) for fewer than
        two atoms.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    x = np.asarray(positions, dtype=float)
    if len(x) < 2:
        return 1, 0
    tree = cKDTree(x)
    cutoff = bond_factor * nearest_neighbour_distance(x)
    bonds = tree.sparse_distance_matrix(tree, cutoff, output_type="coo_matrix")
    parts, labels = connected_components(bonds, directed=False)
    return int(parts), int(len(x) - np.bincount(labels).max())


def bonded_neighbours(positions, cutoff):
    """Neighbour lists: for each site, the indices of the sites closer
    than `cutoff` (in the units of `positions`), a list of int arrays."""
    from scipy.spatial import cKDTree

    x = np.asarray(positions, dtype=float)
    pairs = cKDTree(x).query_pairs(cutoff, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.argsort(i, kind="stable")
    i, j = i[order], j[order]
    bounds = np.searchsorted(i, np.arange(len(x) + 1))
    return [j[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def connected_selection(scores, n, neighbours):
    """The `n` sites of highest score that form one piece.

    The `n` best sites are kept when they are bonded into one piece
    (``neighbours`` from :func:`bonded_neighbours`). Otherwise the largest
    of their parts (of equal ones, that with the best site) is kept and
    grown one site at a time by the best-scoring site bonded to it, until
    it holds `n` sites (or every site it can reach).

    Parameters
    ----------
    scores : array_like, shape (m,)
        Score of each site (for example an occupancy logit).
    n : int
        Sites to select, 1 <= n <= m.
    neighbours : list of int arrays
        Sites bonded to each site.

    Returns
    -------
    selected : numpy.ndarray of int, shape (n,)
        Site indices by decreasing score; fewer than `n` when the part
        runs out of bonded sites to grow by (never in a template, which
        is one piece).
    replaced : int
        Sites of the plain top `n` that are not in the selection.
    """
    scores = np.asarray(scores, dtype=float)
    if len(neighbours) != len(scores):
        raise ValueError(
            f"{len(scores)} scores for {len(neighbours)} neighbour lists"
        )
    if not 1 <= n <= len(scores):
        raise ValueError(f"cannot select {n} of {len(scores)} sites")
    top = np.argsort(-scores, kind="stable")[:n]
    in_top = np.zeros(len(scores), dtype=bool)
    in_top[top] = True
    label = np.full(len(scores), -1)
    parts = []
    for site in top:  # parts in order of their best site
        if label[site] >= 0:
            continue
        label[site] = len(parts)
        part, stack = [site], [site]
        while stack:
            for other in neighbours[stack.pop()]:
                if in_top[other] and label[other] == -1:
                    label[other] = label[site]
                    part.append(other)
                    stack.append(other)
        parts.append(part)
    if len(parts) == 1:
        return top, 0
    largest = max(parts, key=len)  # the first of equal ones
    chosen = np.zeros(len(scores), dtype=bool)
    chosen[largest] = True
    frontier = [
        (-scores[other], int(other))
        for site in largest
        for other in neighbours[site]
        if not chosen[other]
    ]
    heapq.heapify(frontier)
    count = len(largest)
    while count < n and frontier:
        _, site = heapq.heappop(frontier)
        if chosen[site]:
            continue
        chosen[site] = True
        count += 1
        for other in neighbours[site]:
            if not chosen[other]:
                heapq.heappush(frontier, (-scores[other], int(other)))
    selected = np.flatnonzero(chosen)
    selected = selected[np.argsort(-scores[selected], kind="stable")]
    return selected, int(n - np.count_nonzero(in_top[selected]))
