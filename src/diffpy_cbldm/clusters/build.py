"""Every mono-metallic cluster of seven structure types, 5 to 256 atoms.

CbLDM trains on simulated nanoparticles of seven structure types
(:data:`STRUCTURE_TYPES`). This module enumerates their distinct shapes
with ASE's cluster builders, removes duplicates by shape, and builds any
shape for any metal:

- fcc, bcc, sc: cuts of the lattice by the {100}, {110} and {111} plane
  families (``ase.cluster.FaceCenteredCubic`` ...) around four centres
  (an atom, a bond midpoint, two interstitial holes: :data:`CENTRES`),
  and blocks of a x b x c conventional cells (``ase.lattice.cubic``);
- hcp: cuts by the {0001}, {10-10} and {10-11} families
  (``ase.cluster.HexagonalClosedPacked``) around four centres, and
  blocks of hexagonal cells (``ase.lattice.hexagonal``), ideal c/a;
- icosahedral: Mackay icosahedra (``ase.cluster.Icosahedron``);
- decahedral: Ino/Marks decahedra (``ase.cluster.Decahedron``);
- octahedral: regular and truncated octahedra
  (``ase.cluster.Octahedron``).

ASE has 3 icosahedra and 15 octahedra of 5-256 atoms, too few to split
by shape, so these two families are extended with incomplete outer
shells, between consecutive Mackay icosahedra and consecutive regular
octahedra: shell atoms are added to the complete inner cluster
("added") or removed from the complete outer one ("removed") one at a
time, always the atom with the most (fewest) nearest neighbours, as in
a nearest-neighbour bond-counting model. See ``docs/theory_clusters.rst``.

Every shape is built with a unit nearest-neighbour (NN) distance and
scaled to the metal's. Two clusters have the same shape when their
sorted lists of pair distances, in units of their NN distance, agree
(:func:`shape_key`).

Cluster specs (:func:`build_cluster`, the ``cbldm`` command line)::

    TYPE:ELEMENT[:FIELD=VALUE[,FIELD=VALUE...]]

    fcc:Cu:layers=5/4/3[,surfaces=100/110/111][,center=atom]
    fcc:Cu:size=2/3/4                      (block of 2x3x4 cells)
    hcp:Co:layers=3/2/4[,surfaces=0001/10-10/10-11][,covera=1.62]
    hcp:Co:size=3/3/4[,covera=1.62]
    icosahedral:Pt:shells=3[,added=K | ,removed=K]
    decahedral:Pt:p=3,q=2[,r=1]
    octahedral:Au:length=7[,cutoff=2][,added=K | ,removed=K]

and ``nn=2.77`` (Å) in any of them; without it the element's own NN
distance (:data:`METALS`) is used. ``covera`` changes the c/a of an hcp
shape without changing its atoms: they are chosen at the ideal c/a,
then the cluster is stretched along c.
"""

import copy
import functools
import itertools
import logging
import math
import re
from dataclasses import dataclass, field

import numpy as np

from diffpy_cbldm.clusters.metals import METALS, Metal

__all__ = [
    "CENTRES",
    "IDEAL_COVERA",
    "METALS",
    "MAX_ATOMS",
    "MIN_ATOMS",
    "Metal",
    "STRUCTURE_TYPES",
    "TYPE_PRIORITY",
    "ClusterShape",
    "build_cluster",
    "enumerate_shapes",
    "nn_distance",
    "parse_spec",
    "same_shape",
    "shape_key",
]

logger = logging.getLogger(__name__)

STRUCTURE_TYPES = (
    "fcc",
    "bcc",
    "sc",
    "hcp",
    "icosahedral",
    "decahedral",
    "octahedral",
)
"""The seven structure types, in the order of their integer labels."""

TYPE_PRIORITY = (
    "icosahedral",
    "decahedral",
    "octahedral",
    "fcc",
    "hcp",
    "bcc",
    "sc",
)
"""Which type a shape made by several types gets: the first listed."""

MIN_ATOMS = 5
MAX_ATOMS = 256

SHAPE_TOL = 1e-3
"""Default resolution of :func:`shape_key`, in units of the NN distance."""

BOND_CUTOFF = 1.2
"""Two atoms are nearest neighbours closer than this many NN distances.

Covers the 5 % longer intra-shell bonds of Mackay icosahedra; the
second-neighbour distance of every structure here is at least 1.15.
"""

IDEAL_COVERA = math.sqrt(8.0 / 3.0)
"""The c/a of hcp shapes unless a spec sets ``covera``."""

_CUBIC = ("fcc", "bcc", "sc")
_LATTICE_CONSTANT = {
    "sc": 1.0,
    "bcc": 2.0 / math.sqrt(3.0),
    "fcc": math.sqrt(2.0),
}
_FACTORY = {
    "fcc": "FaceCenteredCubic",
    "bcc": "BodyCenteredCubic",
    "sc": "SimpleCubic",
    "hcp": "HexagonalClosedPacked",
}
_SURFACES = {
    "fcc": ((1, 0, 0), (1, 1, 0), (1, 1, 1)),
    "bcc": ((1, 0, 0), (1, 1, 0), (1, 1, 1)),
    "sc": ((1, 0, 0), (1, 1, 0), (1, 1, 1)),
    "hcp": ((0, 0, 0, 1), (1, 0, -1, 0), (1, 0, -1, 1)),
}

CENTRES = {
    "sc": {
        "atom": (0.0, 0.0, 0.0),
        "bond": (0.5, 0.0, 0.0),
        "face": (0.5, 0.5, 0.0),
        "cube": (0.5, 0.5, 0.5),
    },
    "bcc": {
        "atom": (0.0, 0.0, 0.0),
        "bond": (0.25, 0.25, 0.25),
        "octahedral": (0.5, 0.5, 0.0),
        "tetrahedral": (0.5, 0.25, 0.0),
    },
    "fcc": {
        "atom": (0.0, 0.0, 0.0),
        "bond": (0.25, 0.25, 0.0),
        "octahedral": (0.5, 0.5, 0.5),
        "tetrahedral": (0.25, 0.25, 0.25),
    },
    "hcp": {
        "atom": (0.0, 0.0, 0.0),
        "bond": (0.5, 0.0, 0.0),
        "octahedral": (2.0 / 3.0, 1.0 / 3.0, 0.25),
        "tetrahedral": (0.0, 0.0, 0.375),
    },
}
"""Centres of the lattice cuts, as fractions of the conventional cell.

An atom, the midpoint of a nearest-neighbour bond, and the centres of
the interstitial holes (the square window and the cubic hole of sc).
"""

# The lattice cuts are computed on a cylinder of lattice points along z
# (radius, half length in NN units), large enough for every cut with up
# to MAX_ATOMS atoms: hcp cuts include rods along c.
_CLOUD = {"fcc": (14.0, 14.0), "bcc": (14.0, 14.0), "sc": (14.0, 14.0)}
_CLOUD["hcp"] = (12.0, 90.0)
_CLOUD_MARGIN = 1.5
_ON_PLANE = 1e-9

_EXTENDED = ("icosahedral", "octahedral")
_SHELL_FIELDS = ("added", "removed")
_BUILDER_FIELDS = {
    "lattice": ("layers", "surfaces", "center"),
    "block": ("size",),
    "Icosahedron": ("shells", "added", "removed"),
    "Decahedron": ("p", "q", "r"),
    "Octahedron": ("length", "cutoff", "added", "removed"),
}


# ----------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class ClusterShape:
    """One cluster shape: a structure type, a builder and its parameters.

    Attributes
    ----------
    stype : str
        One of :data:`STRUCTURE_TYPES`.
    builder : str
        ``"FaceCenteredCubic"``, ``"BodyCenteredCubic"``,
        ``"SimpleCubic"``, ``"HexagonalClosedPacked"`` (lattice cuts),
        ``"block"`` (blocks of unit cells), ``"Icosahedron"``,
        ``"Decahedron"`` or ``"Octahedron"``.
    params : tuple of (str, value)
        The builder's parameters as (name, value) pairs sorted by name;
        values are ints, strs, floats or tuples of them.
    natoms : int
        Number of atoms.
    shape_id : str
        ``"stype/builder/name=value,..."``; the part after the second
        slash is also valid in a cluster spec.
    """

    stype: str
    builder: str
    params: tuple
    natoms: int
    shape_id: str = field(init=False)

    def __post_init__(self):
        if not _is_int(self.natoms) or self.natoms < 1:
            raise ValueError(
                f"natoms must be a positive integer, got {self.natoms!r}"
            )
        params = _check_params(self.stype, self.builder, dict(self.params))
        object.__setattr__(self, "params", _params_tuple(params))
        object.__setattr__(
            self,
            "shape_id",
            f"{self.stype}/{self.builder}/{_format_params(self.params)}",
        )

    @property
    def family(self):
        """The shape_id of the complete cluster this one derives from.

        Shapes with an incomplete outer shell that share a parent differ
        by a few surface atoms; keep them on one side of a train/test
        split. For every other shape this is its own shape_id.
        """
        params = [(k, v) for k, v in self.params if k not in _SHELL_FIELDS]
        return f"{self.stype}/{self.builder}/{_format_params(params)}"

    @property
    def spec_fields(self):
        """The ``FIELD=VALUE,...`` part of a spec for this shape."""
        return _format_params(self.params)

    def unit_positions(self):
        """Positions with a unit NN distance, centred on the centroid.

        Returns
        -------
        ndarray, shape (natoms, 3)
            Cartesian positions in units of the NN distance.
        """
        x = _unit_positions(self.stype, self.builder, self.params)
        if len(x) != self.natoms:
            raise ValueError(
                f"shape {self.shape_id} has {len(x)} atoms, not "
                f"natoms={self.natoms}"
            )
        return x

    def build(self, element="Cu", nn=None):
        """The cluster of `element`, scaled to its NN distance.

        Parameters
        ----------
        element : str, default "Cu"
            Chemical symbol. Without `nn` it must be one of
            :data:`METALS`.
        nn : float, optional
            Nearest-neighbour distance in Å (default: the element's).

        Returns
        -------
        ase.Atoms
            ``natoms`` atoms centred on the origin, no cell, no periodic
            boundary conditions; ``atoms.info`` holds ``stype``,
            ``shape_id``, ``element`` and ``nn`` (Å).
        """
        from ase import Atoms

        nn = _check_element_nn(element, nn)
        atoms = Atoms(
            symbols=[element] * self.natoms,
            positions=self.unit_positions() * nn,
        )
        atoms.info.update(
            stype=self.stype,
            shape_id=self.shape_id,
            element=element,
            nn=nn,
        )
        return atoms


#: Nearest-neighbour distances a cluster may be built at, Å: from the
#: shortest metal bonds (Be 2.2 Å, with room below) to Cs (5.3 Å).
NN_RANGE = (1.5, 6.0)


def _check_element_nn(element, nn):
    from ase.data import chemical_symbols

    if not isinstance(element, str) or element not in chemical_symbols[1:]:
        raise ValueError(f"unknown element {element!r}: not a chemical symbol")
    if nn is None:
        if element not in METALS:
            raise ValueError(
                f"element {element!r} has no tabulated NN distance; give "
                f"nn= in Å or use one of {', '.join(METALS)}"
            )
        return METALS[element].nn
    if isinstance(nn, bool) or not isinstance(nn, (int, float)):
        raise ValueError(f"nn must be a number in Å, got {nn!r}")
    if not (math.isfinite(nn) and nn > 0):
        raise ValueError(f"nn must be a positive distance in Å, got {nn}")
    if not NN_RANGE[0] <= nn <= NN_RANGE[1]:
        # 0.277 for Pt is a distance in nm.
        raise ValueError(
            f"nn must be a nearest-neighbour distance of {NN_RANGE[0]:g}-"
            f"{NN_RANGE[1]:g} Å, got {nn}"
        )
    return float(nn)


# ----------------------------------------------------------------------
# Shape comparison


def _positions_of(atoms_or_positions, name="positions"):
    x = getattr(atoms_or_positions, "positions", atoms_or_positions)
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must be an (N, 3) array of positions, got shape {x.shape}"
        )
    if len(x) < 2:
        raise ValueError(f"{name} holds {len(x)} atom(s); need at least 2")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return x


def nn_distance(atoms_or_positions):
    """The nearest-neighbour distance: the shortest interatomic distance.

    Parameters
    ----------
    atoms_or_positions : ase.Atoms or array_like, shape (N, 3)
        Cartesian positions in Å, N >= 2.

    Returns
    -------
    float
        The NN distance in Å.

    Raises
    ------
    ValueError
        For fewer than two atoms, a bad shape, NaN, or two atoms on the
        same spot.
    """
    from scipy.spatial import cKDTree
    from scipy.spatial.distance import pdist

    x = _positions_of(atoms_or_positions)
    if len(x) <= 2000:
        nn = float(pdist(x).min())
    else:
        d, _ = cKDTree(x).query(x, k=2)
        nn = float(d[:, 1].min())
    if nn <= 0.0:
        raise ValueError("two atoms sit on the same spot (distance 0)")
    return nn


def shape_key(positions, tol=SHAPE_TOL):
    """A hashable fingerprint of a cluster's shape.

    The sorted list of all pair distances divided by the NN distance,
    each rounded to a multiple of `tol`. It does not change under
    translation, rotation, reflection, permutation of the atoms or a
    change of scale: two clusters have the same shape when their keys
    are equal.

    Parameters
    ----------
    positions : ase.Atoms or array_like, shape (N, 3)
        Cartesian positions (any unit).
    tol : float, default 1e-3
        Resolution in units of the NN distance.

    Returns
    -------
    bytes
        The rounded distances as int64 bytes (N (N - 1) / 2 of them).

    Notes
    -----
    Rounding puts a bin edge every `tol`: coordinates that carry noise
    (e.g. written with 5 decimals) can put a distance on the other side
    of an edge, and then equal shapes get different keys. Geometries
    built here are exact to about 1e-12 and keys are reliable for them;
    compare noisy coordinates with :func:`same_shape`.
    """
    from scipy.spatial.distance import pdist

    if not (isinstance(tol, (int, float)) and 0 < tol < 0.5):
        raise ValueError(f"tol must be between 0 and 0.5, got {tol!r}")
    return _key_of_distances(pdist(_positions_of(positions)), tol)


def same_shape(a, b, tol=SHAPE_TOL):
    """Whether two clusters have the same shape, allowing for noise.

    True when they have as many atoms and their sorted pair distances,
    in units of each one's NN distance, differ by at most `tol`. Unlike
    comparing :func:`shape_key` values this has no bin edges, so it
    suits coordinates read from files.

    Parameters
    ----------
    a, b : ase.Atoms or array_like, shape (N, 3)
        Cartesian positions (any unit, each its own).
    tol : float, default 1e-3
        Largest difference, in units of the NN distance.

    Returns
    -------
    bool
    """
    from scipy.spatial.distance import pdist

    if not (isinstance(tol, (int, float)) and 0 < tol < 0.5):
        raise ValueError(f"tol must be between 0 and 0.5, got {tol!r}")
    xa = _positions_of(a, "a")
    xb = _positions_of(b, "b")
    if len(xa) != len(xb):
        return False
    da, db = np.sort(pdist(xa)), np.sort(pdist(xb))
    if da[0] <= 0.0 or db[0] <= 0.0:
        raise ValueError("two atoms sit on the same spot (distance 0)")
    return bool(np.max(np.abs(da / da[0] - db / db[0])) <= tol)


def _key_of_distances(d, tol=SHAPE_TOL):
    nn = d.min()
    if nn <= 0.0:
        raise ValueError("two atoms sit on the same spot (distance 0)")
    return np.round(np.sort(d) / (nn * tol)).astype(np.int64).tobytes()


def _is_three_dimensional(x):
    """False for atoms on one line or in one plane (no structure type)."""
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    return bool(s[2] > 1e-6 * max(s[0], 1.0))


def _normalised(x):
    """Positions centred on their centroid, scaled to a unit NN distance."""
    x = np.asarray(x, dtype=float)
    x = x - x.mean(axis=0)
    return x / nn_distance(x)


# ----------------------------------------------------------------------
# Lattice cuts with ase.cluster's plane-family semantics


@functools.lru_cache(maxsize=4)
def _factory(lattice):
    """ASE's cluster factory of `lattice`, unit NN distance (ideal c/a)."""
    import ase.cluster

    f = copy.copy(getattr(ase.cluster, _FACTORY[lattice]))
    if lattice == "hcp":
        f.lattice_constant = (1.0, IDEAL_COVERA)
    else:
        f.lattice_constant = _LATTICE_CONSTANT[lattice]
    f.set_basis()
    return f


def _three_index(miller):
    """(h, k, i, l) Miller-Bravais indices to ASE's (h, k, l)."""
    return (
        tuple(miller)
        if len(miller) == 3
        else (miller[0], miller[1], miller[3])
    )


@functools.lru_cache(maxsize=32)
def _layer_table(lattice, surfaces, center, scale):
    """Lattice points of a cylinder and the layers each one needs.

    ``ase.cluster`` keeps a lattice point p when, for every plane normal
    n of every family s, ``n . (p - c) < get_layer_distance(n, l_s +
    0.1)``. M[i, s] is the smallest layer count l_s for which point i
    passes all normals of family s, so the cut with layers (l_1, l_2,
    ...) is the set of points with ``M[i] <= layers``.

    Returns
    -------
    P : ndarray, shape (n, 3)
        Points relative to the centre, unit-lattice units.
    M : ndarray of int, shape (n, nsurfaces)
    inner : ndarray of bool, shape (n,)
        Points at least ``_CLOUD_MARGIN`` from the cylinder's surface.
    """
    from ase.cluster.factory import reduce_miller
    from ase.spacegroup import Spacegroup

    f = _factory(lattice)
    radius, half = (scale * v for v in _CLOUD[lattice])
    basis = f.lattice_basis
    c = np.dot(CENTRES[lattice][center], basis)
    n_ab = int(math.ceil(radius / np.linalg.norm(basis[0]) * 1.2)) + 2
    n_c = int(math.ceil(half / basis[2, 2])) + 2
    axes = (np.arange(-n_ab, n_ab + 1),) * 2 + (np.arange(-n_c, n_c + 1),)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    P = (grid @ basis)[:, None, :] + (f.atomic_basis @ basis)[None]
    P = P.reshape(-1, 3) - c
    rho = np.hypot(P[:, 0], P[:, 1])
    keep = (rho < radius) & (np.abs(P[:, 2]) < half)
    P, rho = P[keep], rho[keep]
    inner = (rho < radius - _CLOUD_MARGIN) & (
        np.abs(P[:, 2]) < half - _CLOUD_MARGIN
    )

    group = Spacegroup(f.spacegroup)
    M = np.zeros((len(P), len(surfaces)), dtype=np.int64)
    for j, s in enumerate(surfaces):
        s = reduce_miller(np.array(_three_index(s)))
        for normal in group.equivalent_reflections(s.reshape(1, 3)):
            proj = P @ f.miller_to_direction(normal)
            rmax = _plane_distances(lattice, tuple(normal), 32)
            while rmax[-1] <= proj.max():
                rmax = _plane_distances(lattice, tuple(normal), 2 * len(rmax))
            # An atom exactly on a boundary plane (possible around an
            # off-lattice centre) is outside, as in exact arithmetic;
            # ASE's own answer there depends on rounding.
            need = np.searchsorted(rmax, proj + _ON_PLANE, side="right") + 1
            M[:, j] = np.maximum(M[:, j], need)
    return P, M, inner


@functools.lru_cache(maxsize=1024)
def _plane_distances(lattice, normal, n):
    """Where ase.cluster puts the outer plane of 1, 2, ..., n layers.

    Returns
    -------
    ndarray, shape (n,)
        ``get_layer_distance(normal, l + 0.1)`` for l = 1..n, in
        unit-lattice units. ASE repeats a pattern of plane spacings
        (e.g. the alternating spacings of hcp {10-10}), so the first 16
        values are asked from ASE and the rest continue the pattern.
    """
    f = _factory(lattice)
    first = np.array(
        [
            f.get_layer_distance(np.array(normal), layers + 0.1)
            for layers in range(1, 17)
        ]
    )
    step = np.diff(first)
    period = next(
        (
            p
            for p in range(1, 8)
            if np.allclose(step[p:], step[:-p], atol=1e-9)
        ),
        None,
    )
    if n <= len(first):
        return first[:n]
    if period is None:  # a long pattern (high-index plane): ask ASE
        return np.array(
            [
                f.get_layer_distance(np.array(normal), layers + 0.1)
                for layers in range(1, n + 1)
            ]
        )
    more = np.resize(step[len(step) - period :], n - len(first))
    return np.concatenate([first, first[-1] + np.cumsum(more)])


def _lattice_cut(lattice, surfaces, layers, center, covera):
    """Positions of one cut, on a cloud large enough to hold it.

    The atoms are chosen on the ideal lattice (c/a = sqrt(8/3) for hcp);
    another `covera` then stretches the cut along c about its centre.
    So a shape keeps its atoms whatever its c/a.
    """
    for scale in (1, 2):
        P, M, inner = _layer_table(lattice, surfaces, center, scale)
        sel = np.all(M <= np.asarray(layers), axis=1)
        if np.all(inner[sel]):
            return _stretch_c(P[sel], covera)
    radius, half = (2 * v for v in _CLOUD[lattice])
    raise ValueError(
        f"the {lattice} cut with surfaces {_format_value(surfaces)} and "
        f"layers {_format_value(layers)} is too large: it does not fit "
        f"in a cylinder of radius {radius:g} and half length {half:g} "
        "NN distances"
    )


# ----------------------------------------------------------------------
# Building one shape


def _block(lattice, size, covera):
    """A block of a x b x c conventional cells (``ase.lattice`` blocks).

    The same atoms as ``ase.lattice.cubic.FaceCenteredCubic(size=...)``
    (etc.) and ``ase.lattice.hexagonal.HexagonalClosedPacked``: every
    basis atom of every cell, no atoms added on the far faces.
    """
    f = _factory(lattice)
    cells = np.array(list(itertools.product(*map(range, size))), float)
    x = cells[:, None, :] + f.atomic_basis[None]
    return _stretch_c(x.reshape(-1, 3) @ f.lattice_basis, covera)


def _stretch_c(x, covera):
    """Positions of the ideal hcp lattice moved to another c/a."""
    if covera == IDEAL_COVERA:
        return x
    return x * np.array([1.0, 1.0, covera / IDEAL_COVERA])


@functools.lru_cache(maxsize=4096)
def _parent_positions(builder, params):
    """A complete cluster of an ase.cluster builder, unit-NN units.

    Returns
    -------
    ndarray, shape (n, 3)
        Read-only positions, centred on the centroid.
    """
    import ase.cluster

    p = dict(params)
    a = math.sqrt(2.0)  # fcc lattice constant for a unit NN distance
    if builder == "Icosahedron":
        x = ase.cluster.Icosahedron("Cu", p["shells"], latticeconstant=a)
    elif builder == "Decahedron":
        x = ase.cluster.Decahedron(
            "Cu", p["p"], p["q"], p["r"], latticeconstant=a
        )
    else:
        x = ase.cluster.Octahedron(
            "Cu", p["length"], p["cutoff"], latticeconstant=a
        )
    x = x.positions - x.positions.mean(axis=0)
    if len(x) > 1:
        x = x / nn_distance(x)
    x.flags.writeable = False
    return x


@functools.lru_cache(maxsize=256)
def _outer_shell_orders(builder, parent):
    """Completion orders of the outer shell of a complete cluster.

    The core is the set of atoms with 12 nearest neighbours, the outer
    shell the rest. Growth adds shell atoms to the core one at a time,
    always one with the most occupied neighbours; erosion removes them
    from the complete cluster, always one with the fewest. Ties go to
    the atom nearest the first one moved (a compact island or hole),
    then to the lower index.

    Returns
    -------
    x : ndarray, shape (n, 3)
        The complete cluster, unit NN distance.
    core : ndarray of bool, shape (n,)
    grow, erode : ndarray of int
        Shell atom indices in the order they are added / removed.
    """
    from scipy.spatial.distance import pdist, squareform

    x = _parent_positions(builder, parent)
    d = squareform(pdist(x))
    bonds = (d < BOND_CUTOFF) & (d > 0)
    core = bonds.sum(axis=1) == 12
    shell = np.flatnonzero(~core)

    def order(present, sign):
        # sign +1: add the best-bound vacancy; -1: remove the worst-bound
        count = bonds[:, present].sum(axis=1)
        left = list(shell)
        seed = None
        result = []
        while left:
            idx = np.array(left)
            score = sign * count[idx]
            ties = idx[score == score.max()]
            if seed is not None and len(ties) > 1:
                r = np.round(d[seed, ties], 6)
                ties = ties[r == r.min()]
            pick = int(ties.min())
            seed = pick if seed is None else seed
            result.append(pick)
            left.remove(pick)
            count += sign * bonds[:, pick]
        return np.array(result, dtype=np.int64)

    grow = order(core, +1)
    erode = order(np.ones(len(x), dtype=bool), -1)
    return x, core, grow, erode


def _incomplete_shell(builder, params):
    """Positions of a cluster with an incomplete outer shell."""
    parent = _params_tuple(
        {k: v for k, v in params.items() if k not in _SHELL_FIELDS}
    )
    x, core, grow, erode = _outer_shell_orders(builder, parent)
    nshell = len(grow)
    mode = "added" if "added" in params else "removed"
    k = params[mode]
    if not 1 <= k <= nshell - 1:
        raise ValueError(
            f"{mode}={k} is out of range for {builder} "
            f"{_format_params(parent)}: its outer shell has {nshell} "
            f"atoms, so {mode} must be 1-{nshell - 1}"
        )
    keep = core.copy() if mode == "added" else np.ones(len(x), dtype=bool)
    if mode == "added":
        keep[grow[:k]] = True
    else:
        keep[erode[:k]] = False
    return _normalised(x[keep])


def _unit_positions(stype, builder, params):
    p = dict(params)
    if builder == "block":
        return _normalised(
            _block(stype, p["size"], p.get("covera", IDEAL_COVERA))
        )
    if builder == _FACTORY.get(stype):
        x = _lattice_cut(
            stype,
            p["surfaces"],
            p["layers"],
            p["center"],
            p.get("covera", IDEAL_COVERA),
        )
        return _normalised(x)
    if "added" in p or "removed" in p:
        return _incomplete_shell(builder, p)
    return _parent_positions(builder, params).copy()


# ----------------------------------------------------------------------
# Parameters: checking and formatting


def _format_value(v):
    if isinstance(v, tuple) and v and isinstance(v[0], tuple):
        return "/".join("".join(str(i) for i in m) for m in v)
    if isinstance(v, tuple):
        return "/".join(str(i) for i in v)
    return str(v)


def _format_params(params):
    return ",".join(f"{k}={_format_value(v)}" for k, v in params)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _want_int(name, v, low, where):
    if not _is_int(v) or v < low:
        raise ValueError(
            f"{where}: {name} must be an integer >= {low}, got {v!r}"
        )
    return int(v)


def _want_ints(name, v, n, low, where):
    if not (isinstance(v, tuple) and len(v) == n):
        raise ValueError(
            f"{where}: {name} must be {n} integers (e.g. "
            f"{'/'.join(['2'] * n)}), got {_format_value(v)!r}"
        )
    return tuple(_want_int(name, i, low, where) for i in v)


def _check_params(stype, builder, p):
    """Validate a builder's parameters; return them with defaults."""
    if stype not in STRUCTURE_TYPES:
        raise ValueError(
            f"unknown structure type {stype!r}; valid types: "
            f"{', '.join(STRUCTURE_TYPES)}"
        )
    where = f"{stype}/{builder}"
    kinds = _builders_of(stype)
    if builder not in kinds:
        raise ValueError(
            f"{where}: unknown builder {builder!r} for {stype}; valid: "
            f"{', '.join(kinds)}"
        )
    kind = "lattice" if builder == _FACTORY.get(stype) else builder
    valid = _BUILDER_FIELDS[kind] + (("covera",) if stype == "hcp" else ())
    unknown = sorted(set(p) - set(valid))
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(unknown)}; valid "
            f"fields: {', '.join(valid)}"
        )
    out = {}
    if "covera" in p:
        c = p["covera"]
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            raise ValueError(f"{where}: covera must be a number, got {c!r}")
        if not 1.0 <= c <= 3.0:
            raise ValueError(
                f"{where}: covera (c/a) must be between 1 and 3, got {c}"
            )
        out["covera"] = float(c)
    if kind == "lattice":
        surfaces = p.get("surfaces", _SURFACES[stype])
        out["surfaces"] = _check_surfaces(stype, surfaces, where)
        if "layers" not in p:
            raise ValueError(f"{where}: missing field layers")
        out["layers"] = _want_ints(
            "layers", p["layers"], len(out["surfaces"]), 1, where
        )
        center = p.get("center", "atom")
        if center not in CENTRES[stype]:
            raise ValueError(
                f"{where}: unknown center {center!r}; valid centres for "
                f"{stype}: {', '.join(CENTRES[stype])}"
            )
        out["center"] = center
    elif kind == "block":
        if "size" not in p:
            raise ValueError(f"{where}: missing field size")
        out["size"] = _want_ints("size", p["size"], 3, 1, where)
    elif kind == "Icosahedron":
        if "shells" not in p:
            raise ValueError(f"{where}: missing field shells")
        out["shells"] = _want_int("shells", p["shells"], 1, where)
    elif kind == "Decahedron":
        for name in ("p", "q"):
            if name not in p:
                raise ValueError(f"{where}: missing field {name}")
            out[name] = _want_int(name, p[name], 1, where)
        out["r"] = _want_int("r", p.get("r", 0), 0, where)
    else:
        if "length" not in p:
            raise ValueError(f"{where}: missing field length")
        out["length"] = _want_int("length", p["length"], 1, where)
        out["cutoff"] = _want_int("cutoff", p.get("cutoff", 0), 0, where)
        limit = (out["length"] - 1) // 2
        if out["cutoff"] > limit:
            raise ValueError(
                f"{where}: cutoff={out['cutoff']} is too large for "
                f"length={out['length']}: it must be 0-{limit}"
            )
    if kind in ("Icosahedron", "Octahedron"):
        if "added" in p and "removed" in p:
            raise ValueError(f"{where}: give added or removed, not both")
        for name in ("added", "removed"):
            if name in p:
                out[name] = _want_int(name, p[name], 1, where)
    return out


def _builders_of(stype):
    if stype in _FACTORY:
        return (_FACTORY[stype], "block")
    return {
        "icosahedral": ("Icosahedron",),
        "decahedral": ("Decahedron",),
        "octahedral": ("Octahedron",),
    }[stype]


def _check_surfaces(stype, surfaces, where):
    n = 4 if stype == "hcp" else 3
    example = "0001/10-10/10-11" if stype == "hcp" else "100/110/111"
    if not (isinstance(surfaces, tuple) and surfaces):
        raise ValueError(
            f"{where}: surfaces must be Miller indices such as "
            f"{example}, got {surfaces!r}"
        )
    out = []
    for s in surfaces:
        s = tuple(s) if isinstance(s, (tuple, list)) else s
        if not (
            isinstance(s, tuple)
            and len(s) == n
            and all(_is_int(i) and -9 <= i <= 9 for i in s)
            and any(s)
        ):
            raise ValueError(
                f"{where}: bad surface {_format_value((s,))!r}: need {n} "
                f"one-digit Miller indices such as {example}"
            )
        if n == 4 and s[0] + s[1] + s[2] != 0:
            raise ValueError(
                f"{where}: bad surface {_format_value((s,))}: the first "
                "three Miller-Bravais indices must sum to 0"
            )
        out.append(tuple(int(i) for i in s))
    families = [_family(stype, s) for s in out]
    for i, j in itertools.combinations(range(len(out)), 2):
        if families[i] == families[j]:
            raise ValueError(
                f"{where}: surfaces {_format_value((out[i],))} and "
                f"{_format_value((out[j],))} belong to the same family"
            )
    if not _encloses(stype, frozenset().union(*families)):
        raise ValueError(
            f"{where}: surfaces {_format_value(tuple(out))} do not enclose "
            "a finite cluster (their plane normals must point all round)"
        )
    return tuple(out)


def _encloses(stype, normals):
    """Whether planes with these normals bound a finite region.

    They do when the origin lies strictly inside the convex hull of the
    unit normals.
    """
    from scipy.spatial import ConvexHull, QhullError

    f = _factory(stype)
    n = np.array([f.miller_to_direction(np.array(m)) for m in normals])
    try:
        hull = ConvexHull(n)
    except QhullError:  # fewer than 4 normals, or all in one plane
        return False
    return bool(np.all(hull.equations[:, -1] < -1e-9))


@functools.lru_cache(maxsize=64)
def _family(stype, s):
    from ase.cluster.factory import reduce_miller
    from ase.spacegroup import Spacegroup

    group = {"sc": 221, "bcc": 229, "fcc": 225, "hcp": 194}[stype]
    s = reduce_miller(np.array(_three_index(s)))
    eq = Spacegroup(group).equivalent_reflections(s.reshape(1, 3))
    return frozenset(map(tuple, eq.tolist()))


# ----------------------------------------------------------------------
# Enumeration


def _check_range(min_atoms, max_atoms):
    for name, v in (("min_atoms", min_atoms), ("max_atoms", max_atoms)):
        if not _is_int(v) or not MIN_ATOMS <= v <= MAX_ATOMS:
            raise ValueError(
                f"{name} must be an integer in {MIN_ATOMS}-{MAX_ATOMS}, "
                f"got {v!r}"
            )
    if min_atoms > max_atoms:
        raise ValueError(
            f"min_atoms={min_atoms} is larger than max_atoms={max_atoms}"
        )


def _check_types(types):
    if isinstance(types, str):
        types = (types,)
    types = tuple(types)
    if not types:
        raise ValueError(
            f"no structure type given; valid types: "
            f"{', '.join(STRUCTURE_TYPES)}"
        )
    for t in types:
        if t not in STRUCTURE_TYPES:
            raise ValueError(
                f"unknown structure type {t!r}; valid types: "
                f"{', '.join(STRUCTURE_TYPES)}"
            )
    return tuple(t for t in STRUCTURE_TYPES if t in types)


def _lattice_cut_candidates(stype, lo, hi):
    """All distinct cuts with lo-hi atoms, per centre: (params, x)."""
    surfaces = _SURFACES[stype]
    for center in CENTRES[stype]:
        P, M, inner = _layer_table(stype, surfaces, center, 1)
        shape = M.max(axis=0) + 1
        hist = np.zeros(shape, dtype=np.int64)
        np.add.at(hist, tuple(M.T), 1)
        count = hist.cumsum(0).cumsum(1).cumsum(2)
        # A layer triple is "tight" when every one of its planes touches
        # an atom: each distinct cut has exactly one tight triple.
        tight = (
            (np.diff(count, axis=0, prepend=0) > 0)
            & (np.diff(count, axis=1, prepend=0) > 0)
            & (np.diff(count, axis=2, prepend=0) > 0)
        )
        tight[0, :, :] = tight[:, 0, :] = tight[:, :, 0] = False
        hits = np.argwhere(tight & (count >= lo) & (count <= hi))
        # Only points whose own smallest cut fits can be in any cut here.
        fits = count[tuple(M.T)] <= hi
        P, M, inner = P[fits], M[fits], inner[fits]
        for layers in sorted(map(tuple, hits.tolist())):
            sel = np.all(M <= np.asarray(layers), axis=1)
            x = P[sel]
            if not _is_three_dimensional(x):
                continue
            if not np.all(inner[sel]):
                raise RuntimeError(
                    f"{stype} cut {layers} around {center} reaches the "
                    "edge of the lattice cloud; enlarge _CLOUD"
                )
            params = dict(surfaces=surfaces, layers=layers, center=center)
            yield params, x


def _block_candidates(stype, lo, hi):
    per_cell = {"sc": 1, "bcc": 2, "fcc": 4, "hcp": 2}[stype]
    top = hi // per_cell
    for a in range(1, top + 1):
        for b in range(a, top // a + 1):
            c_low = b if stype in _CUBIC else 1
            for c in range(c_low, top // (a * b) + 1):
                if per_cell * a * b * c < lo:
                    continue
                yield {"size": (a, b, c)}, None


def _range_while(start, fits):
    """Integers from `start` while `fits` holds (monotone predicates)."""
    n = start
    while fits(n):
        yield n
        n += 1


def _decahedron_candidates(lo, hi):
    def size(p, q, r):
        params = (("p", p), ("q", q), ("r", r))
        return len(_parent_positions("Decahedron", params))

    for p in _range_while(1, lambda p: size(p, 1, 0) <= hi):
        # (1, q, 0) is a chain of q atoms along the five-fold axis.
        r0 = 1 if p == 1 else 0
        for q in _range_while(1, lambda q: size(p, q, r0) <= hi):
            for r in _range_while(r0, lambda r: size(p, q, r) <= hi):
                if size(p, q, r) >= lo:
                    yield {"p": p, "q": q, "r": r}, None


def _complete_octahedra(hi):
    """ASE's (truncated) octahedra with at most `hi` atoms."""
    import ase.cluster

    for length in itertools.count(1):
        sizes = {
            cutoff: len(ase.cluster.Octahedron("Cu", length, cutoff))
            for cutoff in range((length - 1) // 2 + 1)
        }
        if min(sizes.values()) > hi:
            return
        for cutoff, n in sizes.items():
            if n <= hi:
                yield {"length": length, "cutoff": cutoff}, n


def _complete_icosahedra(hi):
    """Mackay icosahedra with at most `hi` atoms."""
    for shells in itertools.count(1):
        n = (10 * shells**3 - 15 * shells**2 + 11 * shells - 3) // 3
        if n > hi:
            return
        yield {"shells": shells}, n


def _shell_parents(builder, hi):
    """Complete clusters whose outer shell is filled or emptied here.

    Consecutive Mackay icosahedra, and consecutive regular octahedra of
    the same centre (length L - 2 inside length L): every parent whose
    core (its 12-coordinated atoms) has fewer than `hi` atoms.
    """
    for n in itertools.count(2):
        p = {"shells": n} if builder == "Icosahedron" else {"length": n}
        if builder == "Octahedron":
            p["cutoff"] = 0
        x, core, grow, _ = _outer_shell_orders(builder, _params_tuple(p))
        if core.sum() >= hi:
            return
        yield p, len(x), int(core.sum()), len(grow)


def _incomplete_shell_candidates(builder, lo, hi):
    """Grown shells first, then eroded ones: (params, None)."""
    parents = list(_shell_parents(builder, hi))
    for mode in ("added", "removed"):
        for p, n, ncore, nshell in parents:
            for k in range(1, nshell):
                size = ncore + k if mode == "added" else n - k
                if lo <= size <= hi:
                    yield {**p, mode: k}, None


def _params_tuple(p):
    return tuple(sorted(p.items()))


def _candidates(stype, lo, hi, extended):
    """(builder, params, unit positions or None), in priority order."""
    if stype in _FACTORY:
        for params, x in _lattice_cut_candidates(stype, lo, hi):
            yield _FACTORY[stype], params, x
        for params, x in _block_candidates(stype, lo, hi):
            yield "block", params, x
        return
    if stype == "decahedral":
        for params, x in _decahedron_candidates(lo, hi):
            yield "Decahedron", params, x
        return
    builder, complete = {
        "icosahedral": ("Icosahedron", _complete_icosahedra),
        "octahedral": ("Octahedron", _complete_octahedra),
    }[stype]
    for params, n in complete(hi):
        if n >= lo:
            yield builder, params, None
    if extended:
        for params, x in _incomplete_shell_candidates(builder, lo, hi):
            yield builder, params, x


def enumerate_shapes(
    types=STRUCTURE_TYPES,
    min_atoms=MIN_ATOMS,
    max_atoms=MAX_ATOMS,
    progress=False,
    incomplete_shells=True,
):
    """Every distinct cluster shape of the given types and sizes.

    Parameters
    ----------
    types : str or sequence of str, default STRUCTURE_TYPES
        Structure types to enumerate.
    min_atoms, max_atoms : int, default 5 and 256
        Size range, inclusive, within 5-256.
    progress : bool, default False
        Show a tqdm progress bar over the types.
    incomplete_shells : bool, default True
        Extend the icosahedral and octahedral families with incomplete
        outer shells (module docstring); False gives ASE's complete
        clusters only.

    Returns
    -------
    list of ClusterShape
        Sorted by type (in :data:`STRUCTURE_TYPES` order), atom count
        and shape_id. No two have the same :func:`shape_key`, and the
        result is the same subset of the full enumeration whatever
        `types` asks for. Clusters whose atoms lie on one line or in one
        plane are left out (a monolayer has no structure type).

    Raises
    ------
    ValueError
        For an unknown type or a size range outside 5-256.

    Notes
    -----
    A shape made by several builders keeps the first: within a type,
    lattice cuts (centres in :data:`CENTRES` order) before blocks, and
    complete clusters before grown, then eroded, shells. A shape made
    by several types (e.g. every complete octahedron is also an fcc
    cut) gets the first type of :data:`TYPE_PRIORITY`, the most
    specific description.
    """
    from scipy.spatial.distance import pdist

    types = _check_types(types)
    _check_range(min_atoms, max_atoms)
    needed = TYPE_PRIORITY[: 1 + max(map(TYPE_PRIORITY.index, types))]
    if progress:
        from tqdm import tqdm

        needed = tqdm(needed, desc="structure types", unit="type")
    claimed = set()
    shapes = []
    for stype in needed:
        extended = incomplete_shells and stype in _EXTENDED
        found = []
        for builder, params, x in _candidates(
            stype, min_atoms, max_atoms, extended
        ):
            params = _params_tuple(params)
            if x is None:
                x = _unit_positions(stype, builder, params)
            if not min_atoms <= len(x) <= max_atoms:
                continue
            if not _is_three_dimensional(x):
                continue
            key = _key_of_distances(pdist(x))
            if key in claimed:
                continue
            claimed.add(key)
            found.append(ClusterShape(stype, builder, params, len(x)))
        logger.info("%s: %d distinct shapes", stype, len(found))
        if stype in types:
            shapes.extend(found)
    rank = {t: i for i, t in enumerate(STRUCTURE_TYPES)}
    return sorted(shapes, key=lambda s: (rank[s.stype], s.natoms, s.shape_id))


# ----------------------------------------------------------------------
# Cluster specs


_SPEC_HELP = (
    "a spec is TYPE:ELEMENT[:FIELD=VALUE,...], e.g. "
    "'icosahedral:Pt:shells=3', 'fcc:Cu:layers=5/4/3', "
    "'hcp:Co:size=3/3/4', 'decahedral:Pt:p=3,q=2,r=1', "
    "'octahedral:Au:length=7,cutoff=2'"
)


def _parse_value(spec, name, text):
    where = f"spec {spec!r}: field {name}"
    if name == "center":
        return text
    if name in ("covera", "nn"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a number") from None
    if name == "surfaces":
        out = []
        for token in text.split("/"):
            digits = re.fullmatch(r"(-?\d)+", token)
            if not digits:
                raise ValueError(
                    f"{where}: {token!r} is not a Miller index such as "
                    "100 or 10-10"
                )
            out.append(tuple(int(i) for i in re.findall(r"-?\d", token)))
        return tuple(out)
    parts = text.split("/")
    try:
        values = tuple(int(v) for v in parts)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an integer") from None
    if name in ("layers", "size"):
        return values
    if len(values) != 1:
        raise ValueError(f"{where}: {text!r} is not one integer")
    return values[0]


def parse_spec(spec):
    """Split a cluster spec into its parts.

    Parameters
    ----------
    spec : str
        ``TYPE:ELEMENT[:FIELD=VALUE,...]`` (module docstring).

    Returns
    -------
    shape : ClusterShape
    element : str
    nn : float or None
        The ``nn=`` field in Å, if given.

    Raises
    ------
    ValueError
        Naming the bad part of the spec and the valid choices.
    """
    if not isinstance(spec, str):
        raise ValueError(f"a cluster spec must be a string, got {spec!r}")
    parts = spec.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"bad spec {spec!r}: {_SPEC_HELP}")
    stype = parts[0].strip().lower()
    element = parts[1].strip()
    if stype not in STRUCTURE_TYPES:
        raise ValueError(
            f"spec {spec!r}: unknown structure type {parts[0]!r}; valid "
            f"types: {', '.join(STRUCTURE_TYPES)}"
        )
    fields = {}
    text = parts[2].strip() if len(parts) == 3 else ""
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ValueError(
                f"spec {spec!r}: {item!r} is not FIELD=VALUE; {_SPEC_HELP}"
            )
        if name in fields:
            raise ValueError(f"spec {spec!r}: field {name} given twice")
        fields[name] = _parse_value(spec, name, value)
    nn = fields.pop("nn", None)
    if stype in _FACTORY:
        builder = "block" if "size" in fields else _FACTORY[stype]
        if "size" in fields and "layers" in fields:
            raise ValueError(
                f"spec {spec!r}: give layers (a lattice cut) or size (a "
                "block), not both"
            )
        if not ("size" in fields or "layers" in fields):
            raise ValueError(
                f"spec {spec!r}: {stype} needs layers=H/K/L (a lattice "
                "cut) or size=A/B/C (a block)"
            )
    else:
        builder = _builders_of(stype)[0]
    try:
        params = _check_params(stype, builder, fields)
        _check_element_nn(element, nn)
        x = _unit_positions(stype, builder, _params_tuple(params))
    except ValueError as exc:
        raise ValueError(f"spec {spec!r}: {exc}") from None
    if len(x) < 2:
        given = ", ".join(f"{k}={v}" for k, v in fields.items())
        raise ValueError(
            f"spec {spec!r}: {given or 'the defaults'} give {len(x)} atom; "
            "a cluster needs at least 2 (a PDF needs pairs): choose a "
            "larger one"
        )
    shape = ClusterShape(stype, builder, _params_tuple(params), len(x))
    return shape, element, nn


def build_cluster(spec):
    """Build the cluster a spec describes.

    Parameters
    ----------
    spec : str
        ``TYPE:ELEMENT[:FIELD=VALUE,...]``, e.g.
        ``"icosahedral:Pt:shells=3"``,
        ``"octahedral:Au:length=7,cutoff=2"``,
        ``"fcc:Cu:surfaces=100/110/111,layers=5/4/3"``,
        ``"decahedral:Pt:p=3,q=2,r=1"``, ``"hcp:Co:size=3/3/4"``. The
        fields of each type are listed in the module docstring; ``nn=``
        (Å) overrides the element's NN distance.

    Returns
    -------
    ase.Atoms
        As :meth:`ClusterShape.build`; ``atoms.info["spec"]`` holds
        `spec`.

    Raises
    ------
    ValueError
        For a malformed spec, an unknown type, element or field, or a
        bad value; the message names it and lists the valid choices.
    """
    shape, element, nn = parse_spec(spec)
    atoms = shape.build(element, nn)
    atoms.info["spec"] = spec
    return atoms
