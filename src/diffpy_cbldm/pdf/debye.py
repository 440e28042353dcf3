"""Debye-sum PDF of finite clusters, following DiffPy's DebyePDFCalculator.

The calculation reproduces libdiffpy's ``DebyePDFCalculator`` step by step
(see ``docs/theory_debye.rst``):

1. The reduced structure function is summed over atom pairs on a coarse
   Q-grid ``Q_k = k * qstep``, ``qstep = pi / rcalchi``, where ``rcalchi``
   is ``rmax`` extended by the termination ripples and the widest peak::

       F(Q_k) = 2 / (N <f(Q_k)>^2) * sum_{i<j} f_i f_j
                * exp(-sigma_ij^2 Q_k^2 / 2) * sin(Q_k d_ij) / d_ij,

   ``sigma_ij^2 = (U_i + U_j) * (1 - delta1/d - delta2/d^2 + (qbroad d)^2)``
   (Jeong's correlated-motion model) for pairs with
   ``rcalclo <= d_ij <= rcalchi``, and ``F = 0`` for ``k < kmin``, the
   first grid point at or above ``qmin``.
2. ``G(r) = 2/pi * qstep * sum_k F(Q_k) sin(Q_k r)`` is evaluated by a
   zero-padded FFT on a grid of step ``drpad <= rstep`` and interpolated
   linearly onto the output r.
3. The envelopes ``scale`` and ``exp(-(qdamp r)^2 / 2)`` multiply G(r);
   there is no ``-4 pi rho0 r`` baseline for a finite cluster.

libdiffpy also ends a pair's loop over Q once its term drops below
``debyeprecision = 1e-6`` (in units of f^2 / Å); those terms are kept here,
a difference far below double-precision round-off of the normalised F(Q).

Two evaluations of the pair sum in step 1 give the same F(Q):

``direct``
    every pair at every Q_k, chunked over pairs; exact and differentiable,
    chosen whenever a gradient is needed or atoms fall into many classes.
``histogram``
    pair distances of each pair class (element pair and Uiso pair) are
    spread onto a grid of step ``HISTOGRAM_STEP`` with 4-point Lagrange
    weights; ``sum_b H_b sin(Q r_b) / r_b`` then gives F(Q), by angle
    addition from small sine tables for a few clusters, by one product
    with a cached (bins x Q) sine matrix for many. The Lagrange
    interpolation error of ``sin(Qd)/d`` is O((Q h)^4), below 1e-5 in Rw
    at Qmax = 25 Å⁻¹.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from diffpy_cbldm.pdf.formfactors import (
    check_atomic_numbers,
    xray_form_factor,
)
from diffpy_cbldm.pdf.settings import PDFSettings

__all__ = ["DebyePDFCalculator", "check_cluster", "MIN_DISTANCE"]

#: Closest approach of two atoms, in Å, that `check_cluster` accepts.
MIN_DISTANCE = 0.5

#: Step in Å of the distance histogram of the ``histogram`` pair sum.
HISTOGRAM_STEP = 0.01

# libdiffpy constants (PDFUtils.hpp, DebyePDFCalculator.cpp, mathutils).
_MAX_EXTENSION = 10.0
_TERMINATION_RIPPLES = 6
_PEAK_PRECISION = 3.33e-6
_SQRT_DOUBLE_EPS = math.sqrt(np.finfo(float).eps)
_DOUBLE_EPS = np.finfo(float).eps
_SIGMA_TO_FWHM = 2 * math.sqrt(2 * math.log(2))

# Most atom classes (element x Uiso) the histogram pair sum handles; more
# classes are summed pair by pair.
_MAX_HISTOGRAM_CLASSES = 6
# Elements of the largest (pairs x Q) block held in memory at once.
_BLOCK_ELEMENTS = 1 << 22
# From this many histogram rows (clusters x pair classes) on, F(Q) comes
# from one GEMM with a cached (bins x Q) sine matrix; below, from the
# angle-addition tables, which need no such matrix.
_KERNEL_ROWS = 16
# Largest cluster whose float32 distance histogram accumulates in float32.
_FLOAT32_HISTOGRAM_ATOMS = 400


@dataclass(frozen=True)
class _DebyeGrid:
    """The Q-grid and r-limits of one Debye sum, as libdiffpy sets them.

    Attributes
    ----------
    qstep : float
        Step of the Q-grid in Å⁻¹.
    kmin, nq : int
        F(Q_k) is summed for ``kmin <= k < nq``.
    rcalclo, rcalchi : float
        Pairs with ``rcalclo <= d <= rcalchi`` (Å) enter the sum.
    npad : int
        F is zero-padded to ``npad`` points (a power of 2) before the FFT.
    """

    qstep: float
    kmin: int
    nq: int
    rcalclo: float
    rcalchi: float
    npad: int

    @property
    def drpad(self):
        """Step in Å of the r-grid the FFT gives, before interpolation."""
        return math.pi / (self.npad * self.qstep)

    def q(self):
        """The Q_k in Å⁻¹ for which F(Q) is summed, shape (nq - kmin,)."""
        return self.qstep * np.arange(self.kmin, self.nq, dtype=float)


def _msd_sharpening(r, delta1, delta2, qbroad):
    """Jeong's ratio sigma^2 / (U_i + U_j) of a pair at distance `r` (Å),
    ``1 - delta1/r - delta2/r^2 + (qbroad r)^2``, and 0 at r = 0 as in
    libdiffpy. `r` is a float, an ndarray or a tensor."""
    lib = torch if torch.is_tensor(r) else np
    at_zero = r < _DOUBLE_EPS
    r = lib.where(at_zero, 1.0, r)
    ratio = 1 - delta1 / r - delta2 / r**2 + (qbroad * r) ** 2
    return lib.where(at_zero, 0.0, ratio)


def _steps_up(x, step):
    """``pdfutils_rminSteps``: ceil(x/step), one less when x sits on the
    lower grid point within libdiffpy's epsilon."""
    n = math.ceil(x / step)
    if abs(x - (n - 1) * step) < _SQRT_DOUBLE_EPS:
        n -= 1
    return n


@lru_cache(maxsize=4096)
def _debye_grid(settings, max_uiso):
    """libdiffpy's Q-grid and extended r-range for `settings` and the
    largest Uiso of the structure (``cacheRlimitsData``,
    ``updateQstep``, ``getPDFAtQmin``)."""
    s = settings
    # Widest peak: Debye-Waller width of the largest pair MSD, broadened
    # by the Jeong ratio where it exceeds 1 (JeongPeakWidth::maxWidth).
    maxmsd = 2 * max_uiso
    maxfwhm = _SIGMA_TO_FWHM * math.sqrt(maxmsd) if maxmsd > 0 else 0.0
    ratio = max(
        float(_msd_sharpening(s.rmin, s.delta1, s.delta2, s.qbroad)),
        float(_msd_sharpening(s.rmax, s.delta1, s.delta2, s.qbroad)),
    )
    maxfwhm *= math.sqrt(max(1.0, ratio))
    # GaussianProfile::xboundhi at DEFAULT_PEAKPRECISION.
    halfbound = math.sqrt(-math.log(_PEAK_PRECISION) / (4 * math.log(2)))
    ext_tails = halfbound * maxfwhm
    ext_ripples = _TERMINATION_RIPPLES * 2 * math.pi / s.qmax
    ext = min(_MAX_EXTENSION, ext_ripples + ext_tails)
    lo_steps = max(0, _steps_up(s.rmin - ext, s.rstep))
    hi_steps = math.ceil((s.rmax + ext) / s.rstep)
    rcalclo = lo_steps * s.rstep
    rcalchi = hi_steps * s.rstep
    if s.qmax * rcalchi / math.pi > 4:
        qstep = math.pi / rcalchi
    else:
        qstep = s.qmax / 4
    nq = math.ceil(s.qmax / qstep)
    kmin = min(_steps_up(s.qmin, qstep), nq)
    nfromdr = math.ceil(math.pi / s.rstep / qstep)
    npad = 2 ** math.ceil(math.log2(max(nq, nfromdr)))
    return _DebyeGrid(qstep, kmin, nq, rcalclo, rcalchi, npad)


def _histogram_nodes(nbins, h, device):
    """Distances r_b = (b - 1) h of the histogram bins, float64 tensor.
    Bin 0 sits at -h: sin(Qr)/r is even, so a pair closer than h needs no
    special case."""
    return h * (torch.arange(nbins, dtype=torch.float64, device=device) - 1)


class _SineTables:
    """sin(Q_k r_b) on the histogram nodes by angle addition.

    With b = c * width + f, r_b = R_c + r_f (R_c = c width h,
    r_f = (f - 1) h) and
    sin(Q R_c + Q r_f) = sin(Q R_c) cos(Q r_f) + cos(Q R_c) sin(Q r_f),
    so (nbins / width + width) * nq sines and cosines, evaluated in
    float64, stand for the nbins * nq of the full matrix.
    """

    def __init__(self, grid, nbins, h, dtype, device):
        self.width = max(1, math.isqrt(nbins))
        self.coarse = math.ceil(nbins / self.width)
        self.nbins = nbins
        q = torch.as_tensor(grid.q(), dtype=torch.float64, device=device)
        steps = torch.arange(
            max(self.width, self.coarse), dtype=torch.float64, device=device
        )
        r_coarse = (h * self.width * steps[: self.coarse]).unsqueeze(-1)
        r_fine = (h * (steps[: self.width] - 1)).unsqueeze(-1)
        self.sin_c = torch.sin(r_coarse * q).to(dtype)
        self.cos_c = torch.cos(r_coarse * q).to(dtype)
        self.sin_f = torch.sin(r_fine * q).to(dtype)
        self.cos_f = torch.cos(r_fine * q).to(dtype)
        self.q = q.to(dtype)

    def weighted_sums(self, weights):
        """sum_b weights[..., b] sin(Q_k r_b): (..., nbins) -> (..., nq),
        without forming the (nbins, nq) matrix."""
        pad = self.coarse * self.width - self.nbins
        w = torch.nn.functional.pad(weights, (0, pad))
        w = w.reshape(*weights.shape[:-1], self.coarse, self.width)
        return (
            self.sin_c * (w @ self.cos_f) + self.cos_c * (w @ self.sin_f)
        ).sum(dim=-2)

    def rows(self, bins):
        """The rows sin(Q_k r_b) of the given bins, shape (len(bins), nq)."""
        c = torch.div(bins, self.width, rounding_mode="floor")
        f = bins % self.width
        return self.sin_c[c] * self.cos_f[f] + self.cos_c[c] * self.sin_f[f]


@lru_cache(maxsize=16)
def _sine_tables(grid, nbins, h, dtype, device):
    """`_SineTables`, cached per Q-grid (they are small)."""
    return _SineTables(grid, nbins, h, dtype, device)


@lru_cache(maxsize=4)
def _sine_matrix(grid, nbins, h, dtype, device):
    """sin(Q_k r_b) for all histogram nodes, shape (nbins, nq - kmin)."""
    tables = _sine_tables(grid, nbins, h, dtype, device)
    return tables.rows(torch.arange(nbins, device=device))


@lru_cache(maxsize=4)
def _sinc_rows(tables, bins, h, zero_bin):
    """sin(Q_k r_b) / r_b for the histogram bins `bins` (a tuple), shape
    (len(bins), nq), the r -> 0 limit Q at `zero_bin`. Cached: a
    refinement with fixed positions asks for the same bins every call."""
    index = torch.as_tensor(bins, dtype=torch.long, device=tables.q.device)
    r = (index.to(torch.float64) - zero_bin) * h
    inverse_r = torch.where(index == zero_bin, 0.0, 1 / r)
    sinc = tables.rows(index) * inverse_r.to(tables.q.dtype).unsqueeze(-1)
    sinc[index == zero_bin] = tables.q
    return sinc


def _unique(values):
    """``torch.unique(values, return_inverse=True)``, fast when all
    values are equal (the usual case: one element, one Uiso)."""
    if bool((values == values[0]).all()):
        return values[:1], torch.zeros_like(values, dtype=torch.long)
    return torch.unique(values, return_inverse=True)


def _lagrange_weights(f):
    """4-point Lagrange interpolation weights of the nodes -1, 0, 1, 2 at
    fractional position ``0 <= f < 1``; a tuple of four tensors."""
    fm1, fp1, fm2 = f - 1, f + 1, f - 2
    a, b = f * fm1, fp1 * fm2
    return a * fm2 * (-1 / 6), b * fm1 * 0.5, b * f * (-0.5), a * fp1 * (1 / 6)


@lru_cache(maxsize=64)
def _upper_pairs(n, device):
    """Pairs i < j of n atoms: (i, j) and their index in the flattened
    n x n distance matrix."""
    iu, ju = torch.triu_indices(n, n, offset=1, device=device)
    return iu, ju, iu * n + ju


@lru_cache(maxsize=256)
def _block_pairs(n, first_row, rows, device):
    """Pairs i < j with i in ``first_row .. first_row + rows - 1``: (i, j)
    and their index in the (rows, n - first_row) block of the distance
    matrix that holds columns ``first_row .. n - 1``."""
    width = n - first_row
    r = torch.arange(rows, device=device).unsqueeze(-1)
    c = torch.arange(width, device=device)
    local = torch.nonzero(c > r)
    i = first_row + local[:, 0]
    j = first_row + local[:, 1]
    return i, j, local[:, 0] * width + local[:, 1]


def _squared_distances(rows, columns):
    """Squared distances between two sets of points of shapes (s, 3, m)
    and (s, 3, n), returned as (s, m, n). Coordinates are rows so that
    every difference runs over contiguous memory."""
    d2 = None
    for k in range(3):
        dx = rows[:, k].unsqueeze(-1) - columns[:, k].unsqueeze(-2)
        d2 = dx * dx if d2 is None else torch.addcmul(d2, dx, dx)
    return d2


class _ClusterPairs:
    """The atom pairs of a batch of clusters, their distances in chunks.

    Parameters
    ----------
    xyz : tensor, shape (sum(natoms), 3)
        Positions of the real atoms, cluster after cluster.
    natoms : list of int
        Atoms of each cluster.
    grid : _DebyeGrid
        Pairs outside ``[rcalclo, rcalchi]`` and coincident atoms are
        left out, as libdiffpy's bond generator and Debye sum leave them.
    """

    #: Elements of the distance matrices of one chunk: small enough for
    #: the CPU cache, which matters more than the number of torch calls.
    matrix_elements = 1 << 18

    def __init__(self, xyz, natoms, grid):
        self.xyz = xyz
        self.natoms = natoms
        self.nclusters = len(natoms)
        self.grid = grid
        self.starts = np.concatenate([[0], np.cumsum(natoms)[:-1]])

    def chunks(self, atoms=False):
        """Yield ``(d, keep, cluster, i, j)`` per chunk of pairs.

        d : tensor, shape (m,)
            Pair distances in Å, differentiable w.r.t. `xyz`; 1 for the
            pairs left out.
        keep : tensor of bool, shape (m,), or None
            Which pairs enter the sum; None when all do.
        cluster : tensor of int64, shape (m,)
            Cluster index of each pair.
        i, j : tensor of int64, shape (m,), or None
            Flat atom indices of the pairs when `atoms` is true.
        """
        device = self.xyz.device
        groups = {}
        for b, n in enumerate(self.natoms):
            if n > 1:
                groups.setdefault(n, []).append(b)
        for n, members in groups.items():
            if n * n > self.matrix_elements:
                for b in members:
                    yield from self._row_blocks(b, n, atoms)
                continue
            iu, ju, flat = _upper_pairs(n, device)
            per_chunk = self.matrix_elements // (n * n)
            for c0 in range(0, len(members), per_chunk):
                sub = members[c0 : c0 + per_chunk]
                first = torch.as_tensor(self.starts[sub], device=device)
                atom = first.unsqueeze(-1) + torch.arange(n, device=device)
                coords = self.xyz[atom].transpose(1, 2)
                d2 = _squared_distances(coords, coords)
                d2 = d2.reshape(len(sub), -1).index_select(1, flat)
                cluster = torch.as_tensor(sub, device=device)
                cluster = cluster.repeat_interleave(len(iu))
                i = j = None
                if atoms:
                    i = (first.unsqueeze(-1) + iu).reshape(-1)
                    j = (first.unsqueeze(-1) + ju).reshape(-1)
                yield (*self._in_range(d2.reshape(-1)), cluster, i, j)

    def _row_blocks(self, b, n, atoms):
        """Pairs of one large cluster, a block of rows of its upper
        triangle at a time."""
        device = self.xyz.device
        first = int(self.starts[b])
        coords = self.xyz[first : first + n].T.unsqueeze(0)
        step = max(1, self.matrix_elements // n)
        for row in range(0, n - 1, step):
            rows = min(step, n - 1 - row)
            i, j, flat = _block_pairs(n, row, rows, device)
            d2 = _squared_distances(
                coords[:, :, row : row + rows], coords[:, :, row:]
            )
            d2 = d2.reshape(-1).index_select(0, flat)
            cluster = torch.full_like(i, b)
            if atoms:
                yield (*self._in_range(d2), cluster, first + i, first + j)
            else:
                yield (*self._in_range(d2), cluster, None, None)

    def _in_range(self, d2):
        """Distances from squared distances, and which pairs enter the
        sum: coincident atoms and pairs outside the extended r-range stay
        out. Their distance is set to 1 before the square root, whose
        derivative at 0 is infinite."""
        grid = self.grid
        lo2 = max(grid.rcalclo, _SQRT_DOUBLE_EPS) ** 2
        hi2 = grid.rcalchi**2
        dmin2, dmax2 = torch.aminmax(d2.detach())
        if dmin2 >= lo2 and dmax2 <= hi2:
            return torch.sqrt(d2), None
        keep = (d2.detach() >= lo2) & (d2.detach() <= hi2)
        return torch.sqrt(torch.where(keep, d2, 1.0)), keep


def _atoms_uiso(atoms):
    """Per-atom Uiso in Å² from ``atoms.arrays``, or None when absent."""
    has_u = "uiso" in atoms.arrays
    has_b = "biso" in atoms.arrays
    if has_u and has_b:
        raise ValueError(
            "atoms.arrays has both 'uiso' and 'biso': keep only one"
        )
    if not (has_u or has_b):
        return None
    name = "uiso" if has_u else "biso"
    values = np.asarray(atoms.arrays[name], dtype=float).reshape(-1)
    bad = ~np.isfinite(values) | (values < 0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"atoms.arrays[{name!r}][{i}]={float(values[i])!r} must be finite "
            f"and >= 0"
        )
    return values if has_u else values / (8 * np.pi**2)


def check_cluster(atoms):
    """Raise ValueError unless `atoms` is a cluster the calculator accepts.

    Parameters
    ----------
    atoms : ase.Atoms
        The cluster; Cartesian positions in Å.

    Raises
    ------
    ValueError
        When the cluster has no atoms, a position is not finite, an
        element has no X-ray form factor, or two atoms are closer than
        `MIN_DISTANCE` (the message names the pair and the distance).
    """
    n = len(atoms)
    if n == 0:
        raise ValueError("cluster has zero atoms")
    xyz = np.asarray(atoms.positions, dtype=float)
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(
            f"atom {i} ({atoms[i].symbol}) has a non-finite position "
            f"{xyz[i].tolist()}"
        )
    check_atomic_numbers(atoms.numbers)
    if n > 1:
        from scipy.spatial import cKDTree

        pairs = cKDTree(xyz).query_pairs(MIN_DISTANCE, output_type="ndarray")
        if len(pairs):
            d = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)
            k = int(np.argmin(d))
            i, j = sorted(int(x) for x in pairs[k])
            raise ValueError(
                f"atoms {i} and {j} are {d[k]:.4g} Å apart, closer than "
                f"{MIN_DISTANCE} Å"
            )


class DebyePDFCalculator:
    """G(r) of finite clusters by the Debye equation, as DiffPy computes it.

    Parameters
    ----------
    rmin, rmax, rstep, qmin, qmax, qdamp, qbroad, delta1, delta2, scale, \
biso : float
        PDF settings with DiffPy's names and units (Å, Å⁻¹, Å²); see
        `PDFSettings`, which validates them.
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``.
    device : str or torch.device, optional
        Where `compute` works; by default where its inputs are.
    method : {"auto", "direct", "histogram"}
        How the pair sum is evaluated (see the module docstring). "auto"
        uses "direct" when a gradient is required or atoms fall into more
        than 6 (element, Uiso) classes, "histogram" otherwise.

    Examples
    --------
    >>> from ase.cluster import Icosahedron
    >>> calc = DebyePDFCalculator(qmin=0.7, qmax=25.0, biso=0.3)
    >>> r, g = calc(Icosahedron("Au", 3))
    """

    def __init__(
        self,
        rmin=0.0,
        rmax=30.0,
        rstep=0.01,
        qmin=0.0,
        qmax=25.0,
        qdamp=0.0,
        qbroad=0.0,
        delta1=0.0,
        delta2=0.0,
        scale=1.0,
        biso=0.3,
        *,
        dtype=torch.float64,
        device=None,
        method="auto",
    ):
        self._settings = PDFSettings(
            rmin=rmin,
            rmax=rmax,
            rstep=rstep,
            qmin=qmin,
            qmax=qmax,
            qdamp=qdamp,
            qbroad=qbroad,
            delta1=delta1,
            delta2=delta2,
            scale=scale,
            biso=biso,
        )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"dtype must be torch.float32 or torch.float64, got {dtype}"
            )
        if method not in ("auto", "direct", "histogram"):
            raise ValueError(
                f"method must be 'auto', 'direct' or 'histogram', got "
                f"{method!r}"
            )
        self.dtype = dtype
        self.device = None if device is None else torch.device(device)
        self.method = method

    @classmethod
    def from_settings(cls, settings, **kw):
        """Calculator for a `PDFSettings`; `kw` are dtype/device/method."""
        if not isinstance(settings, PDFSettings):
            raise TypeError(
                f"settings must be a PDFSettings, got {type(settings)}"
            )
        return cls(**settings.to_dict(), **kw)

    @property
    def settings(self):
        """The `PDFSettings` of this calculator."""
        return self._settings

    @property
    def rgrid(self):
        """The output r-grid in Å (DiffPy's, rmax excluded), ndarray."""
        return self._settings.rgrid

    def qgrid(self, max_uiso=None):
        """DiffPy's Q-grid ``Q_k = k qstep``, k = 0 .. nq-1, in Å⁻¹.

        Parameters
        ----------
        max_uiso : float, optional
            Largest Uiso (Å²) of the structure, which sets the r-range
            extension and so qstep; ``settings.uiso`` by default.

        Returns
        -------
        ndarray, shape (nq,)
            F(Q) is summed for the points at or above qmin.
        """
        u = self._settings.uiso if max_uiso is None else float(max_uiso)
        grid = _debye_grid(self._settings, max(u, 0.0))
        return grid.qstep * np.arange(grid.nq, dtype=float)

    def __repr__(self):
        fields = ", ".join(
            f"{k}={v!r}" for k, v in self._settings.to_dict().items()
        )
        return f"{type(self).__name__}({fields}, dtype={self.dtype})"

    # ase.Atoms front ends -------------------------------------------------

    def __call__(self, atoms):
        """G(r) of one cluster.

        Parameters
        ----------
        atoms : ase.Atoms
            Positions in Å; per-atom ``arrays["uiso"]`` (Å²) or
            ``arrays["biso"]`` (Å²) override the setting `biso`.

        Returns
        -------
        r, g : ndarray, shape (nr,)
            The r-grid in Å and G(r) in Å⁻².
        """
        r, g = self.batch([atoms])
        return r, g[0]

    def batch(self, clusters):
        """G(r) of many clusters of any sizes, computed together.

        Parameters
        ----------
        clusters : sequence of ase.Atoms

        Returns
        -------
        r : ndarray, shape (nr,)
        G : ndarray, shape (len(clusters), nr)
        """
        clusters = list(clusters)
        if not clusters:
            raise ValueError("batch needs at least one cluster, got none")
        per_atom_uiso = []
        for k, atoms in enumerate(clusters):
            try:
                check_cluster(atoms)
                per_atom_uiso.append(_atoms_uiso(atoms))
            except ValueError as err:
                raise ValueError(f"cluster {k}: {err}") from None
        nmax = max(len(a) for a in clusters)
        b = len(clusters)
        xyz = np.zeros((b, nmax, 3))
        z = np.zeros((b, nmax), dtype=np.int64)
        mask = np.zeros((b, nmax), dtype=bool)
        uiso = np.full((b, nmax), self._settings.uiso)
        for k, atoms in enumerate(clusters):
            n = len(atoms)
            xyz[k, :n] = atoms.positions
            z[k, :n] = atoms.numbers
            mask[k, :n] = True
            if per_atom_uiso[k] is not None:
                uiso[k, :n] = per_atom_uiso[k]
        device = self.device or torch.device("cpu")
        with torch.no_grad():
            g = self.compute(
                torch.as_tensor(xyz, dtype=self.dtype, device=device),
                torch.as_tensor(z, device=device),
                mask=torch.as_tensor(mask, device=device),
                uiso=torch.as_tensor(uiso, dtype=self.dtype, device=device),
            )
        return self.rgrid, g.cpu().numpy()

    # torch engine ---------------------------------------------------------

    def compute(self, positions, numbers, mask=None, uiso=None, r=None):
        """G(r) of one cluster or a padded batch, as a torch tensor.

        Parameters
        ----------
        positions : tensor, shape (N, 3) or (B, N, 3)
            Cartesian coordinates in Å.
        numbers : tensor of int, shape (N,) or (B, N)
            Atomic numbers.
        mask : tensor of bool, shape (N,) or (B, N), optional
            True for real atoms, False for padding; all True by default.
        uiso : tensor, shape (N,) or (B, N), optional
            Isotropic displacement parameters in Å²; by default
            ``settings.biso / (8 pi^2)`` for every atom.
        r : array_like, shape (nr,), optional
            Distances in Å (>= 0) at which to evaluate G, instead of the
            settings' grid; interpolated from the same FFT grid. They must
            lie within the calculator's ``[rmin, rmax]``, give or take one
            ``rstep``: the pair sum leaves out pairs outside that range
            (extended by the termination ripples and the widest peak), so
            G beyond it would be wrong.

        Returns
        -------
        tensor, shape (nr,) or (B, nr)
            G(r) in Å⁻², in the calculator's dtype, differentiable with
            respect to `positions` and `uiso`.

        Raises
        ------
        ValueError
            For mismatched shapes, a cluster without atoms, non-finite
            positions or Uiso, an element without form factor, or an `r`
            outside ``[rmin - rstep, rmax + rstep]`` (both ranges are
            named).

        Notes
        -----
        Atoms closer than `MIN_DISTANCE` are not rejected here (DiffPy
        does not either); call `check_cluster` for that.
        """
        pos, z, mask, uiso, single = self._prepare(
            positions, numbers, mask, uiso
        )
        r = self._output_r(r)
        max_uiso = (
            torch.where(mask, uiso.detach(), 0.0).amax(dim=1).clamp(min=0)
        ).tolist()
        grids = [_debye_grid(self._settings, u) for u in max_uiso]
        groups = {}
        for k, grid in enumerate(grids):
            groups.setdefault(grid, []).append(k)
        pieces = []
        for grid, members in groups.items():
            # Clusters whose largest Uiso differ get different Q-grids.
            parts, idx = (pos, z, mask, uiso), None
            if len(groups) > 1:
                idx = torch.as_tensor(members, device=pos.device)
                parts = tuple(t[idx] for t in parts)
            fq = self._structure_function(*parts, grid)
            pieces.append((idx, self._sine_transform(fq, grid, r)))
        if len(pieces) == 1:
            g = pieces[0][1]
        else:
            g = torch.zeros(
                (pos.shape[0], len(r)), dtype=self.dtype, device=pos.device
            )
            for idx, part in pieces:
                g = g.index_copy(0, idx, part)
        g = g * self._envelope(r, g.device)
        return g[0] if single else g

    # internals --------------------------------------------------------------

    def _prepare(self, positions, numbers, mask, uiso):
        """Check shapes and values; return batched tensors on one device."""
        device = self.device
        if not torch.is_tensor(positions):
            positions = torch.as_tensor(np.asarray(positions, dtype=float))
        if device is None:
            device = positions.device
        pos = positions.to(device=device, dtype=self.dtype)
        if pos.dim() not in (2, 3) or pos.shape[-1] != 3:
            raise ValueError(
                f"positions must have shape (N, 3) or (B, N, 3), got "
                f"{tuple(pos.shape)}"
            )
        single = pos.dim() == 2
        if single:
            pos = pos.unsqueeze(0)
        shape = pos.shape[:2]

        def batched(name, value, dtype):
            t = torch.as_tensor(value, device=device)
            t = t.to(dtype) if dtype is not None else t
            t = t.unsqueeze(0) if single else t
            if t.shape != shape:
                want = tuple(shape[1:]) if single else tuple(shape)
                got = tuple(t.shape[1:]) if single else tuple(t.shape)
                raise ValueError(
                    f"{name} must have shape {want} like positions, got {got}"
                )
            return t

        z = batched("numbers", numbers, torch.long)
        if mask is None:
            mask = torch.ones(shape, dtype=torch.bool, device=device)
        else:
            mask = batched("mask", mask, torch.bool)
        if uiso is None:
            uiso = torch.full(
                shape, self._settings.uiso, dtype=self.dtype, device=device
            )
        else:
            uiso = batched("uiso", uiso, self.dtype)
        counts = mask.sum(dim=1)
        if bool((counts == 0).any()):
            k = int(torch.argmin(counts))
            raise ValueError(f"cluster {k} has zero atoms")
        bad = mask & ~torch.isfinite(pos.detach()).all(dim=-1)
        if bool(bad.any()):
            k, i = (int(x) for x in torch.nonzero(bad)[0])
            raise ValueError(
                f"cluster {k}, atom {i}: non-finite position "
                f"{pos[k, i].tolist()}"
            )
        bad = mask & ~torch.isfinite(uiso.detach())
        if bool(bad.any()):
            k, i = (int(x) for x in torch.nonzero(bad)[0])
            raise ValueError(
                f"cluster {k}, atom {i}: non-finite uiso {uiso[k, i].item()}"
            )
        zvalid = torch.where(mask, z, 1)
        try:
            check_atomic_numbers(zvalid.cpu().numpy())
        except ValueError as err:
            raise ValueError(f"numbers: {err}") from None
        # Padding atoms sit at the origin so that no NaN reaches a gradient.
        pos = torch.where(mask.unsqueeze(-1), pos, torch.zeros_like(pos))
        return pos, zvalid, mask, uiso, single

    def _output_r(self, r):
        if r is None:
            return self._settings.rgrid
        if torch.is_tensor(r):
            r = r.detach().cpu().numpy()
        r = np.asarray(r, dtype=float)
        if r.ndim != 1 or r.size == 0:
            raise ValueError(
                f"r must be a non-empty 1-D array, got shape {r.shape}"
            )
        bad = ~np.isfinite(r) | (r < 0)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(f"r[{i}]={float(r[i])!r} must be finite and >= 0")
        # Pairs outside the extended calculation range are not summed and
        # the FFT grid ends there: G outside [rmin, rmax] would be wrong.
        s = self._settings
        lo, hi = float(r.min()), float(r.max())
        if lo < s.rmin - s.rstep or hi > s.rmax + s.rstep:
            raise ValueError(
                f"r spans {lo:g}-{hi:g} Å, outside the calculator's range "
                f"rmin={s.rmin:g} to rmax={s.rmax:g} Å (tolerance one "
                f"rstep, {s.rstep:g} Å); G there would miss pairs: build "
                "the calculator with rmin and rmax covering r"
            )
        return r

    def _envelope(self, r, device):
        """Scale and Q-resolution envelopes of libdiffpy."""
        s = self._settings
        env = np.full(len(r), s.scale)
        if s.qdamp > 0:
            env = env * np.exp(-0.5 * (s.qdamp * r) ** 2)
        return torch.as_tensor(env, dtype=self.dtype, device=device)

    def _jeong_is_trivial(self):
        s = self._settings
        return s.delta1 == 0 and s.delta2 == 0 and s.qbroad == 0

    def _structure_function(self, pos, z, mask, uiso, grid):
        """F(Q_k) for kmin <= k < nq, shape (B, nq - kmin), with DiffPy's
        normalisation ``1 / (N <f>^2)``."""
        device = pos.device
        bsize = mask.shape[0]
        q = torch.as_tensor(grid.q(), dtype=self.dtype, device=device)
        # Real atoms only, flattened cluster after cluster.
        atom = torch.nonzero(mask.reshape(-1))[:, 0]
        xyz = pos.reshape(-1, 3)[atom]
        u = uiso.reshape(-1)[atom]
        natoms = mask.sum(dim=1)
        cluster_of_atom = torch.repeat_interleave(
            torch.arange(bsize, device=device), natoms
        )
        elements, e = _unique(z.reshape(-1)[atom])
        ff = torch.as_tensor(
            xray_form_factor(elements.cpu().numpy(), grid.q()),
            dtype=self.dtype,
            device=device,
        )
        counts = torch.zeros(
            (bsize, len(elements)), dtype=self.dtype, device=device
        )
        counts.index_put_(
            (cluster_of_atom, e),
            torch.ones_like(u, dtype=self.dtype),
            accumulate=True,
        )
        favg = counts @ ff / natoms.unsqueeze(-1)
        norm = natoms.unsqueeze(-1) * favg**2
        needs_grad = torch.is_grad_enabled() and (
            pos.requires_grad or uiso.requires_grad
        )
        method = self.method
        if method == "auto":
            n_classes = len(elements) * len(_unique(u)[0])
            direct = needs_grad or n_classes > _MAX_HISTOGRAM_CLASSES
            method = "direct" if direct else "histogram"
        pairs = _ClusterPairs(xyz, natoms.tolist(), grid)
        if method == "direct":
            total = self._pair_sum_direct(pairs, e, u, ff, q)
        else:
            total = self._pair_sum_histogram(pairs, e, u, ff, q, grid)
        return total / norm

    def _sigma2(self, msd, d):
        """Peak variance of pairs with MSD `msd` at distance `d` (Jeong)."""
        msd = msd.clamp(min=0)
        if self._jeong_is_trivial():
            return msd
        s = self._settings
        ratio = _msd_sharpening(d, s.delta1, s.delta2, s.qbroad)
        return msd * ratio.clamp(min=0)

    def _pair_sum_direct(self, pairs, e, u, ff, q):
        """sum_{i<j} 2 f_i f_j exp(-sigma^2 Q^2/2) sin(Qd)/d, pair by pair.

        Returns
        -------
        tensor, shape (B, nq - kmin)
        """
        q2 = q * q
        several = ff.shape[0] > 1
        total = torch.zeros(
            (pairs.nclusters, len(q)), dtype=self.dtype, device=q.device
        )
        step = max(1, _BLOCK_ELEMENTS // len(q))
        for d_all, keep_all, cl_all, i_all, j_all in pairs.chunks(atoms=True):
            for p0 in range(0, len(d_all), step):
                d = d_all[p0 : p0 + step]
                i, j = i_all[p0 : p0 + step], j_all[p0 : p0 + step]
                sigma2 = self._sigma2(u[i] + u[j], d).unsqueeze(-1)
                weight = 1 / d
                if keep_all is not None:
                    weight = weight * keep_all[p0 : p0 + step]
                term = torch.exp(-0.5 * sigma2 * q2) * torch.sin(
                    d.unsqueeze(-1) * q
                )
                term = term * weight.unsqueeze(-1)
                if several:
                    term = term * (ff[e[i]] * ff[e[j]])
                total = total.index_add(0, cl_all[p0 : p0 + step], term)
        if not several:
            total = total * ff[0] ** 2
        return 2 * total

    def _pair_sum_histogram(self, pairs, e, u, ff, q, grid):
        """The same sum from per-class distance histograms.

        Returns
        -------
        tensor, shape (B, nq - kmin)
        """
        device = q.device
        h = HISTOGRAM_STEP
        # Nodes from -h to beyond rcalchi + 2h (see _histogram_nodes).
        nbins = int(grid.rcalchi / h) + 4
        # Atom classes: (element, Uiso value). Pair classes: ordered pairs
        # of atom classes, the lower class first.
        u_values, u_idx = _unique(u)
        nu = len(u_values)
        a = e * nu + u_idx
        natom_classes = ff.shape[0] * nu
        nclasses = natom_classes * natom_classes
        rows = pairs.nclusters * nclasses
        # Bins of a crystalline cluster collect thousands of pairs: large
        # clusters accumulate in float64 whatever the dtype (float32 sums
        # cost Rw 1e-4 at 1000 atoms, 1e-6 at 256).
        accumulate = self.dtype
        if max(pairs.natoms) > _FLOAT32_HISTOGRAM_ATOMS:
            accumulate = torch.float64
        # Flat histogram: one row of nbins per (cluster, pair class), a
        # last row that collects the pairs left out of the sum, and spare
        # bins at the end so that node offsets -1 .. 2 can be added as
        # shifted views.
        padded = torch.zeros(
            (rows + 1) * nbins + 3, dtype=accumulate, device=device
        )
        several = natom_classes > 1
        for d, keep, row, i, j in pairs.chunks(atoms=several):
            if several:
                ai, aj = a[i], a[j]
                lo, hi = torch.minimum(ai, aj), torch.maximum(ai, aj)
                row = row * nclasses + lo * natom_classes + hi
            if keep is not None:
                row = torch.where(keep, row, rows)
            t = d * (1 / h)
            b0 = torch.floor(t)
            weights = _lagrange_weights(t - b0)
            # Node b0 + offset is bin b0 + offset + 1.
            index = row * nbins + b0.long()
            for offset, w in zip(range(-1, 3), weights):
                padded[offset + 1 :].index_add_(0, index, w.to(accumulate))
        hist = padded[: rows * nbins]
        hist = hist.view(pairs.nclusters, nclasses, nbins).to(self.dtype)
        if several:
            used = torch.nonzero(hist.abs().sum(dim=(0, 2)) > 0)[:, 0]
            hist = hist[:, used]
        else:
            used = torch.zeros(1, dtype=torch.long, device=device)
        lo = torch.div(used, natom_classes, rounding_mode="floor")
        hi = used % natom_classes
        msd = (u_values[lo % nu] + u_values[hi % nu]).clamp(min=0)
        ffprod = ff[lo // nu] * ff[hi // nu]
        # sum_b H_b sin(Q r_b) / r_b, with the r -> 0 limit Q at r = 0.
        tables = _sine_tables(grid, nbins, h, self.dtype, device)
        r = _histogram_nodes(nbins, h, device)
        at_zero = r.abs() < 0.5 * h
        inverse_r = torch.where(at_zero, 0.0, 1 / torch.where(at_zero, 1, r))
        inverse_r = inverse_r.to(self.dtype)
        zero_bin = int(torch.nonzero(at_zero)[0, 0])
        if self._jeong_is_trivial():
            weights = hist * inverse_r
            if weights.shape[0] * weights.shape[1] >= _KERNEL_ROWS:
                # Many rows: one GEMM with the full sine matrix, cached.
                sine = _sine_matrix(grid, nbins, h, self.dtype, device)
                per_class = weights @ sine
            else:
                per_class = tables.weighted_sums(weights)
            per_class = per_class + hist[..., zero_bin, None] * q
            dw = torch.exp(-0.5 * msd.unsqueeze(-1) * (q * q))
            return 2 * (per_class * (dw * ffprod)).sum(dim=1)
        # Jeong widths depend on r: a (bins x Q) kernel, for the bins in
        # use only.
        bins = torch.nonzero(hist.abs().sum(dim=(0, 1)) > 0)[:, 0]
        sinc = _sinc_rows(tables, tuple(bins.tolist()), h, zero_bin)
        s = self._settings
        ratio = _msd_sharpening(r[bins].abs(), s.delta1, s.delta2, s.qbroad)
        ratio = ratio.clamp(min=0).to(self.dtype)
        hist = hist[..., bins]
        total = torch.zeros(
            (pairs.nclusters, len(q)), dtype=self.dtype, device=device
        )
        for k in range(len(used)):
            exponent = torch.outer(-0.5 * msd[k] * ratio, q * q)
            kernel = sinc * torch.exp(exponent)
            total = total + (hist[:, k] @ kernel) * ffprod[k]
        return 2 * total

    def _sine_transform(self, fq, grid, r):
        """G(r) = 2/pi qstep sum_k F_k sin(Q_k r) by libdiffpy's padded FFT
        and linear interpolation from its grid of step drpad."""
        npad = grid.npad
        period = 2 * npad
        fpad = torch.zeros(
            (fq.shape[0], period), dtype=self.dtype, device=fq.device
        )
        fpad = torch.cat([fpad[:, : grid.kmin], fq, fpad[:, grid.nq :]], dim=1)
        # -Im rfft(F)_j = sum_k F_k sin(2 pi k j / period), j = 0 .. npad,
        # i.e. the sine sum at r_j = j drpad.
        sine = -torch.fft.rfft(fpad, dim=-1).imag
        gpad = sine * (2 / math.pi * grid.qstep)
        x = r / grid.drpad
        lo = np.floor(x).astype(np.int64)
        if lo.max() + 1 > npad:
            # Beyond rcalchi: the sine sum is odd and periodic.
            gpad = torch.cat([gpad, -gpad[:, 1:npad].flip(-1)], dim=1)
        w = torch.as_tensor(x - lo, dtype=self.dtype, device=fq.device)
        lo_idx = torch.as_tensor(lo % period, device=fq.device)
        hi_idx = torch.as_tensor((lo + 1) % period, device=fq.device)
        return gpad[:, lo_idx] * (1 - w) + gpad[:, hi_idx] * w
