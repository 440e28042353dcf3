"""The graph Laplacian of a cluster, and the way back to coordinates (aDGP).

CbLDM represents a cluster of ``n`` atoms by the Laplacian ``L = D - W`` of
the fully connected graph on its atoms, with Gaussian weights

    ``W_ij = exp(-d_ij^2 / (2 sigma^2))`` for ``i != j``, ``W_ii = 0``,
    ``D = diag(sum_j W_ij)``,

padded with zeros to a ``size x size`` image (``MAX_ATOMS = 256``). The
atoms occupy the leading ``n x n`` block in the order given; put them in
canonical order first (:func:`diffpy_cbldm.clusters.order.canonicalize`).

Going back, :func:`positions_from_laplacian` solves the assigned distance
geometry problem: it counts the atoms from the diagonal, builds a starting
structure (classical MDS of the distances ``sqrt(-2 sigma^2 ln W_ij)``, or
the paper's spectral embedding ``L y = lambda D y``) and minimises the
mean-square misfit between the Laplacian of the positions and ``L``.

The width ``sigma`` (Å) is a convention stored with data and weights; it
is an explicit argument everywhere. ``DEFAULT_SIGMA`` is the value chosen
from the aDGP benchmark (``docs/benchmarks/adgp.rst``).
"""

import logging
import math
import sys
import time

import numpy as np

__all__ = [
    "DEFAULT_SIGMA",
    "MAX_ATOMS",
    "atom_count_from_laplacian",
    "initial_positions",
    "laplacian",
    "laplacian_misfit",
    "perturb_laplacian",
    "positions_from_laplacian",
]

logger = logging.getLogger(__name__)

MAX_ATOMS = 256
"""Largest cluster a Laplacian image holds; images are MAX_ATOMS square."""

DEFAULT_SIGMA = 3.0
"""Gaussian width in Å that recovered coordinates best in the benchmark.

Exact Laplacians give RMSD below 1e-3 Å at 2, 2.5, 3 and 11.4 Å alike.
With 2 % multiplicative noise, 2-3 Å give 0.02-0.05 Å on compact clusters
and 11.4 Å up to 0.6 Å. With 2 % additive noise, a two-layer plate folds
at 2 and 2.5 Å (RMSD up to 1.4 Å) and comes back at 3 Å (0.17 Å); at
11.4 Å a 66 Å rod does not (2.7 Å). See docs/benchmarks/adgp.rst.
"""

ATOM_TOL = 0.05
"""A row is an atom when its diagonal exceeds this fraction of the largest.

The diagonal ``D_ii`` is the atom's weighted coordination number; in 449
ase clusters of 2-256 atoms the smallest is at least 0.19 of the largest
for sigma 2-3 Å (0.57 at 11.4 Å), and a padding row is zero.
"""

SYMMETRY_TOL = 1e-6
"""Largest accepted ``max|L - L.T|`` as a fraction of ``max|L|``."""

NO_EDGE = 1e-12
"""A Laplacian block whose entries are all below this has no edges (every
pair at least 7.4 sigma apart); the aDGP then returns its start."""

_METHODS = {"lbfgs": "L-BFGS-B", "trust-constr": "trust-constr"}
_INITS = ("mds", "spectral")
_DEFAULT_MAX_ITER = {"lbfgs": 5000, "trust-constr": 1000}


def _check_sigma(sigma):
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(
            f"sigma must be a length in Å, got {sigma!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"sigma must be a positive length in Å, got {sigma!r}"
        )
    return value


def _is_torch_tensor(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _positions_array(atoms_or_positions):
    if hasattr(atoms_or_positions, "get_positions"):
        x = atoms_or_positions.get_positions()
    else:
        x = np.asarray(atoms_or_positions, dtype=float)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(
            f"positions must be an (N, 3) array in Å, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"positions contain NaN or infinity, first at atom {bad[0]}"
        )
    return x


def _check_size(n_atoms, size):
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if n_atoms > size:
        raise ValueError(
            f"{n_atoms} atoms do not fit a {size} x {size} Laplacian; "
            f"pass size >= {n_atoms}"
        )


def laplacian(
    atoms_or_positions, sigma, *, size=MAX_ATOMS, dtype=np.float32, mask=None
):
    """Zero-padded graph Laplacian of one cluster or a batch of clusters.

    Parameters
    ----------
    atoms_or_positions : ase.Atoms, array_like (N, 3) or torch.Tensor
        Atom positions in Å, in the order they take in the matrix. A
        torch tensor may be one cluster (N, 3) or a batch (B, N, 3); the
        result is then a torch tensor on the same device, computed in the
        tensor's floating dtype and cast to `dtype`.
    sigma : float
        Gaussian width in Å of the edge weights.
    size : int, default MAX_ATOMS
        Side of the returned matrix; rows and columns past the atoms are
        zero.
    dtype : numpy dtype or torch.dtype, default numpy.float32
        Type of the result (a numpy dtype is mapped to the matching torch
        dtype for tensor input).
    mask : array_like or torch.Tensor of bool, shape (B, N) or (N,), optional
        Torch input only: True for real atoms. Atoms must come first
        (each row of the mask is True then False), so the atoms occupy
        the leading block of each matrix. Padding atoms get no weights.

    Returns
    -------
    numpy.ndarray, shape (size, size), or torch.Tensor, shape (..., size,
    size)
        ``L = D - W``; the leading ``n x n`` block holds the atoms.

    Raises
    ------
    ValueError
        When sigma <= 0, positions are not (N, 3) or hold NaN, there are
        more atoms than `size`, or the mask does not put atoms first.
    """
    sigma = _check_sigma(sigma)
    if _is_torch_tensor(atoms_or_positions):
        return _laplacian_torch(atoms_or_positions, sigma, size, dtype, mask)
    if mask is not None:
        raise ValueError("mask is only accepted with torch tensor positions")
    x = _positions_array(atoms_or_positions)
    n = len(x)
    _check_size(n, size)
    # Squared distances from coordinate differences, not |a|^2 + |b|^2 -
    # 2 a.b, so that close pairs keep full precision.
    d2 = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    w = np.exp(-d2 / (2.0 * sigma**2))
    np.fill_diagonal(w, 0.0)
    out = np.zeros((size, size), dtype=dtype)
    out[:n, :n] = np.diag(w.sum(axis=1)) - w
    return out


def _laplacian_torch(x, sigma, size, dtype, mask):
    import torch

    if not isinstance(dtype, torch.dtype):
        dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    single = x.dim() == 2
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(
            "torch positions must be (N, 3) or (B, N, 3) in Å, got shape "
            f"{tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError("positions contain NaN or infinity")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    batch, n, _ = x.shape
    _check_size(n, size)
    if mask is None:
        mask = torch.ones(batch, n, dtype=torch.bool, device=x.device)
    else:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=x.device)
        if single and mask.dim() == 1:
            mask = mask.unsqueeze(0)
        if mask.shape != (batch, n):
            raise ValueError(
                f"mask must have shape {(batch, n)}, got {tuple(mask.shape)}"
            )
        holes = mask[:, 1:] & ~mask[:, :-1]
        if holes.any():
            row = int(holes.any(dim=1).nonzero()[0, 0])
            raise ValueError(
                f"mask row {row} has padding before an atom; atoms must "
                "come first"
            )
    d2 = (x[:, :, None, :] - x[:, None, :, :]).pow(2).sum(-1)  # (B, N, N)
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~torch.eye(n, dtype=torch.bool, device=x.device)
    w = torch.exp(-d2 / (2.0 * sigma**2)) * pair
    lap = torch.diag_embed(w.sum(-1)) - w
    out = torch.zeros(batch, size, size, dtype=dtype, device=x.device)
    out[:, :n, :n] = lap.to(dtype)
    return out[0] if single else out


def _matrix(L):
    """Float64 numpy copy of a square, finite matrix, or ValueError."""
    if _is_torch_tensor(L):
        L = L.detach().cpu().double().numpy()
    L = np.array(L, dtype=float)
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(
            f"a Laplacian must be a square 2-D matrix, got shape {L.shape}"
        )
    if not np.all(np.isfinite(L)):
        bad = np.argwhere(~np.isfinite(L))
        i, j = bad[0]
        raise ValueError(
            f"Laplacian holds {len(bad)} NaN or infinite entries, first "
            f"at ({i}, {j})"
        )
    return L


def _atom_rows(L, tol):
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie between 0 and 1, got {tol!r}")
    diag = np.diag(L)
    top = diag.max()
    if not np.any(L):
        raise ValueError("Laplacian is all zero: it holds no atoms")
    if top <= 0:
        raise ValueError(
            "Laplacian holds no atoms: no positive diagonal entry "
            f"(largest {top!r})"
        )
    return np.flatnonzero(diag > tol * top)


def atom_count_from_laplacian(L, tol=ATOM_TOL):
    """Number of atoms in a (padded, possibly noisy) Laplacian.

    An atom's row has diagonal ``D_ii = sum_j W_ij``, its weighted
    coordination number; a padding row has zero. A row counts as an atom
    when ``D_ii > tol * max_k D_kk``. The rule is scale free (it does not
    depend on sigma or on a normalisation of L) and ignores padding noise
    below `tol` times the largest diagonal.

    Parameters
    ----------
    L : array_like or torch.Tensor, shape (size, size)
        Laplacian, atoms first.
    tol : float, default ATOM_TOL (0.05)
        Threshold as a fraction of the largest diagonal entry.

    Returns
    -------
    int
        Number of diagonal entries above the threshold.

    Raises
    ------
    ValueError
        When L is not square, holds NaN, or has no positive diagonal
        (for example an all-zero matrix).
    """
    return len(_atom_rows(_matrix(L), tol))


def _pair_weights(x, sigma):
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    w = np.exp(-d2 / (2.0 * sigma**2))
    np.fill_diagonal(w, 0.0)
    return w


def laplacian_misfit(positions, L, sigma):
    """Mean-square misfit between the Laplacian of `positions` and `L`.

    ``f = mean_ij (L(X)_ij - L_ij)^2`` over the n x n block, and its
    analytic gradient. With ``R = L(X) - L``, each weight ``W_ij`` enters
    ``L_ij``, ``L_ji``, ``L_ii`` and ``L_jj``, so
    ``df/dW_ij = 2 (R_ii + R_jj - 2 R_ij) / n^2`` for each pair, and
    ``dW_ij/dx_i = -W_ij (x_i - x_j) / sigma^2``.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        Trial positions in Å.
    L : array_like, shape (n, n)
        Target Laplacian (the atoms' block only, no padding).
    sigma : float
        Gaussian width in Å.

    Returns
    -------
    f : float
        Mean-square misfit (units of L squared).
    grad : numpy.ndarray, shape (n, 3)
        ``df/dx`` in units of L squared per Å.
    """
    sigma = _check_sigma(sigma)
    x = _positions_array(positions)
    L = np.asarray(L, dtype=float)
    n = len(x)
    if L.shape != (n, n):
        raise ValueError(
            f"L has shape {L.shape} but {n} positions need ({n}, {n})"
        )
    w = _pair_weights(x, sigma)
    resid = np.diag(w.sum(axis=1)) - w - L
    r_diag = np.diag(resid)
    coupling = (r_diag[:, None] + r_diag[None, :] - 2.0 * resid) * w
    grad = (-2.0 / (sigma**2 * n * n)) * (
        coupling.sum(axis=1)[:, None] * x - coupling @ x
    )
    return float(np.mean(resid**2)), grad


def _noise_floor(w):
    """Weight below which -2 sigma^2 ln W is not trusted as a distance.

    An exact Laplacian has no negative weights; additive noise makes
    about half the weights of distant pairs negative, and their rms is
    the noise level. Weights within five noise levels of zero are
    treated as unknown: at three, a 256-atom cluster has tens of distant
    pairs whose noise passes for a bond, and their short cuts fold the
    shortest-path distances.
    """
    off = ~np.eye(len(w), dtype=bool)
    negative = w[off & (w < 0)]
    noise = np.sqrt(np.mean(negative**2)) if negative.size else 0.0
    return max(5.0 * noise, np.finfo(float).tiny)


def _mds_start(w, sigma):
    """Classical MDS of the distances encoded in the weights.

    Pairs with unusable weights (underflowed, or within the noise) get
    the shortest-path distance through usable pairs, as in Isomap.
    """
    from scipy.linalg import eigh
    from scipy.sparse.csgraph import shortest_path

    n = len(w)
    known = w > _noise_floor(w)
    np.fill_diagonal(known, False)
    dist = np.zeros_like(w)
    # W >= 1 (possible with noise) means overlapping atoms; keep the edge.
    dist[known] = np.maximum(
        sigma * np.sqrt(-2.0 * np.log(np.minimum(w[known], 1.0))), 1e-9
    )
    if known.sum() < n * (n - 1):
        dist = shortest_path(dist, method="D", directed=False)
        finite = np.isfinite(dist)
        if not finite.all():
            logger.warning(
                "Laplacian graph is disconnected: %d atom pairs have no "
                "usable path; they are placed at the largest distance",
                (~finite).sum() // 2,
            )
            dist[~finite] = dist[finite].max()
    sq = dist**2
    gram = -0.5 * (sq - sq.mean(axis=0) - sq.mean(axis=1)[:, None] + sq.mean())
    k = min(3, n)
    vals, vecs = eigh(gram, subset_by_index=[n - k, n - 1])
    start = np.zeros((n, 3))
    start[:, :k] = vecs * np.sqrt(np.maximum(vals, 0.0))
    return start


def _spectral_start(L, w, sigma):
    """Laplacian eigenmap (L y = lambda D y), scaled by the strongest bonds.

    The three generalised eigenvectors after the constant one give a
    shape of arbitrary size; each atom's strongest weight fixes a bond
    length ``d* = sigma sqrt(-2 ln W_max)``, and the embedding is scaled
    so that the median strongest bond has that length.
    """
    from scipy.linalg import eigh

    n = len(L)
    _, y = eigh(L, np.diag(np.diag(L)), subset_by_index=[1, 3])
    partner = np.argmax(w, axis=1)
    w_max = np.clip(w[np.arange(n), partner], np.finfo(float).tiny, 1.0)
    bond = sigma * np.sqrt(-2.0 * np.log(w_max))
    embedded = np.linalg.norm(y - y[partner], axis=1)
    return y * (np.median(bond) / np.median(embedded))


def _atom_block(L, atom_tol, symmetry_tol, n_atoms=None):
    """The atoms' n x n block of a validated, symmetric Laplacian."""
    L = _matrix(L)
    if n_atoms is not None and not (
        isinstance(n_atoms, (int, np.integer))
        and not isinstance(n_atoms, bool)
        and 1 <= n_atoms <= len(L)
    ):
        raise ValueError(
            f"n_atoms must be an integer from 1 to {len(L)}, got {n_atoms!r}"
        )
    asym = np.abs(L - L.T)
    scale = np.abs(L).max()
    if asym.max() > symmetry_tol * scale:
        i, j = np.unravel_index(np.argmax(asym), asym.shape)
        raise ValueError(
            f"Laplacian is not symmetric: max |L - L.T| = {asym.max():.3g} "
            f"at ({i}, {j}), above {symmetry_tol:g} x max|L| = "
            f"{symmetry_tol * scale:.3g}; symmetrise it first if that is "
            "noise"
        )
    if n_atoms is not None:
        return L[:n_atoms, :n_atoms]
    rows = _atom_rows(L, atom_tol)
    n = len(rows)
    if rows[-1] != n - 1:
        gap = int(np.setdiff1d(np.arange(n), rows)[0])
        raise ValueError(
            f"atom rows must come first, but row {gap} is padding and rows "
            f"{rows[rows > gap].tolist()} are atoms"
        )
    return L[:n, :n]


def _start(block, sigma, init):
    """Starting positions (n, 3) and the name of the start used."""
    n = len(block)
    if not isinstance(init, str):
        start = np.array(init, dtype=float)
        if start.shape != (n, 3) or not np.all(np.isfinite(start)):
            raise ValueError(
                f"init positions must be a finite ({n}, 3) array for the "
                f"{n} atoms, got shape {start.shape}"
            )
        return start, "given"
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    if n == 1:
        return np.zeros((1, 3)), init
    w = -block.copy()
    np.fill_diagonal(w, 0.0)
    if init == "spectral" and n < 4:
        logger.info("spectral start needs 4 atoms; using MDS for %d", n)
        init = "mds"
    if init == "mds":
        return _mds_start(w, sigma), init
    return _spectral_start(block, w, sigma), init


def initial_positions(
    L, sigma, *, init="mds", atom_tol=ATOM_TOL, symmetry_tol=SYMMETRY_TOL
):
    """The starting structure of :func:`positions_from_laplacian`.

    Parameters
    ----------
    L, sigma, init, atom_tol, symmetry_tol
        As for :func:`positions_from_laplacian`.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        Positions in Å before any fitting: classical MDS of the distances
        in the weights, or the scaled spectral embedding.
    """
    sigma = _check_sigma(sigma)
    block = _atom_block(L, atom_tol, symmetry_tol)
    return _start(block, sigma, init)[0]


def positions_from_laplacian(
    L,
    sigma,
    *,
    method="lbfgs",
    init="mds",
    max_iter=None,
    tol=1e-12,
    max_time=None,
    atom_tol=ATOM_TOL,
    symmetry_tol=SYMMETRY_TOL,
    n_atoms=None,
):
    """Recover atom positions from a (padded, possibly noisy) Laplacian.

    Steps: count the atoms from the diagonal
    (:func:`atom_count_from_laplacian`); build a start from the n x n
    block (:func:`initial_positions`); minimise the mean-square misfit
    of the whole block (:func:`laplacian_misfit`, analytic gradient)
    divided by the mean square of the block.

    Parameters
    ----------
    L : array_like or torch.Tensor, shape (size, size)
        Laplacian with the atoms first. It must be symmetric: symmetrise
        a generated matrix first (``(L + L.T) / 2``, as the CbLDM paper
        does) if its asymmetry is noise. Rows past the atoms are ignored.
    sigma : float
        Gaussian width in Å the Laplacian was built with.
    method : {"lbfgs", "trust-constr"}
        ``scipy.optimize.minimize`` with L-BFGS-B, or with trust-constr
        (BFGS Hessian updates; the paper's optimiser).
    init : {"mds", "spectral"} or array_like (n, 3)
        Start from given positions (Å), or from classical MDS of the
        distances ``sqrt(-2 sigma^2 ln W)`` (pairs within the noise
        completed by shortest paths), or from the generalised
        eigenvectors of ``L y = lambda D y`` scaled by the strongest bonds
        (needs at least 4 atoms; fails on rods and plates, see
        docs/theory_laplacian.rst).
    max_iter : int, optional
        Iteration limit; 5000 for lbfgs, 1000 for trust-constr.
    tol : float, default 1e-12
        ``tol`` of ``scipy.optimize.minimize`` (relative misfit scale).
    max_time : float, optional
        Stop the optimiser after this many seconds (checked once per
        iteration); the result is then marked not converged.
    atom_tol : float, default ATOM_TOL
        Atom threshold, see :func:`atom_count_from_laplacian`.
    symmetry_tol : float, default SYMMETRY_TOL
        Largest accepted ``max|L - L.T|`` relative to ``max|L|``.
    n_atoms : int, optional
        The number of atoms when it is known (e.g. from the structure
        VAE's count head); the first `n_atoms` rows are then the atoms
        and the diagonal rule is not used.

    Returns
    -------
    positions : numpy.ndarray, shape (n, 3)
        Positions in Å, centred at their centroid; orientation and
        handedness are arbitrary (a Laplacian fixes neither).
    info : dict
        ``n_atoms``; ``residual`` and ``initial_residual``, the rms of
        ``L(X) - L`` over the n x n block at the end and at the start;
        ``n_iter``; ``n_eval`` (misfit evaluations); ``time`` (wall
        seconds for the whole call); ``converged`` (the optimiser's
        success flag); ``message``; ``method``; ``init``; ``sigma``.

    Raises
    ------
    ValueError
        When sigma <= 0, L is not square, holds NaN, is not symmetric,
        has no atoms, has atom rows after a padding row, or `method` or
        `init` is unknown.
    """
    started = time.perf_counter()
    sigma = _check_sigma(sigma)
    if method not in _METHODS:
        raise ValueError(
            f"method must be one of {sorted(_METHODS)}, got {method!r}"
        )
    block = _atom_block(L, atom_tol, symmetry_tol, n_atoms)
    n = len(block)
    start, init = _start(block, sigma, init)
    info = {"n_atoms": n, "method": method, "init": init, "sigma": sigma}
    if n == 1:
        info.update(
            residual=0.0,
            initial_residual=0.0,
            n_iter=0,
            n_eval=0,
            converged=True,
            message="a single atom",
            time=time.perf_counter() - started,
        )
        return start, info

    # A block without edges (atoms all many sigma apart) has nothing to
    # fit; the start is then returned as it is, centred. (Dividing by the
    # mean square of an almost-zero block made L-BFGS step to infinity.)
    if np.abs(block).max() < NO_EDGE:
        positions, n_iter, n_eval, converged = start, 0, 0, False
        message = "no edges: every atom is many sigma from every other"
    else:
        positions, n_iter, n_eval, converged, message = _fit_positions(
            start, block, sigma, method, tol, max_iter, max_time, started
        )
    positions = positions - positions.mean(axis=0)
    info.update(
        residual=math.sqrt(laplacian_misfit(positions, block, sigma)[0]),
        initial_residual=math.sqrt(laplacian_misfit(start, block, sigma)[0]),
        n_iter=n_iter,
        n_eval=n_eval,
        converged=converged,
        message=message,
        time=time.perf_counter() - started,
    )
    return positions, info


def _fit_positions(start, block, sigma, method, tol, max_iter, max_time, t0):
    """Least-squares fit of positions to a Laplacian block from `start`.

    Returns positions (n, 3), iterations, evaluations, success, message.
    """
    from scipy.optimize import minimize

    n = len(block)
    norm = np.mean(block**2)

    def objective(flat):
        f, grad = laplacian_misfit(flat.reshape(n, 3), block, sigma)
        return f / norm, grad.ravel() / norm

    def stop_when_late(intermediate_result):
        if max_time is not None and time.perf_counter() - t0 > max_time:
            raise StopIteration

    if max_iter is None:
        max_iter = _DEFAULT_MAX_ITER[method]
    result = minimize(
        objective,
        start.ravel(),
        jac=True,
        method=_METHODS[method],
        tol=tol,
        options={"maxiter": int(max_iter)},
        callback=stop_when_late,
    )
    return (
        result.x.reshape(n, 3),
        int(result.nit),
        int(result.nfev),
        bool(result.success),
        str(result.message),
    )


def perturb_laplacian(L, level, *, kind="multiplicative", rng=None):
    """The Laplacian of noisy weights: the noise model of the benchmarks.

    Only the atoms' n x n block is perturbed; padding stays zero. The
    off-diagonal weights get symmetric Gaussian noise and the diagonal is
    recomputed from them, so the result is still a Laplacian (symmetric,
    zero row sums):

    - ``"multiplicative"``: ``W_ij (1 + level xi_ij)``, a relative error
      of `level` on every weight;
    - ``"additive"``: ``W_ij + level max(W) xi_ij``, an error of `level`
      times the strongest bond on every weight, so distant pairs
      (``W`` near 0) are lost in the noise;

    with ``xi_ij = xi_ji`` standard normal.

    Parameters
    ----------
    L : array_like, shape (size, size)
        Laplacian, atoms first.
    level : float
        Relative noise level, e.g. 0.02 for "2 % noise".
    kind : {"multiplicative", "additive"}
    rng : numpy.random.Generator, optional
        Source of the noise; a fresh default generator when omitted.

    Returns
    -------
    numpy.ndarray, shape (size, size), float64
    """
    if kind not in ("multiplicative", "additive"):
        raise ValueError(
            f"kind must be 'multiplicative' or 'additive', got {kind!r}"
        )
    if not level >= 0:
        raise ValueError(f"noise level must be >= 0, got {level!r}")
    rng = np.random.default_rng() if rng is None else rng
    L = _matrix(L)
    n = atom_count_from_laplacian(L)
    w = -L[:n, :n]
    np.fill_diagonal(w, 0.0)
    xi = np.triu(rng.standard_normal((n, n)), 1)
    xi = xi + xi.T
    if kind == "multiplicative":
        w = w * (1.0 + level * xi)
    else:
        w = w + level * w.max() * xi
    out = np.zeros_like(L)
    out[:n, :n] = np.diag(w.sum(axis=1)) - w
    return out
