"""Comparing two copies of the same cluster: RMSD after optimal alignment.

A Laplacian (or any function of interatomic distances) fixes a cluster
only up to translation, rotation and reflection, so a structure recovered
from it must be superposed on the truth before positions are compared.
"""

import numpy as np

__all__ = ["rmsd_aligned"]


def _as_positions(name, positions):
    x = np.asarray(positions, dtype=float)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must be an (N, 3) array of positions, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return x


def rmsd_aligned(P, Q, allow_reflection=True):
    """Root-mean-square deviation of two clusters after superposition.

    Both clusters are centred at their centroids and `P` is transformed
    by the orthogonal matrix that minimises the RMSD (Kabsch). Atom ``i``
    of `P` is compared with atom ``i`` of `Q`: no reordering is done.

    Parameters
    ----------
    P, Q : array_like, shape (N, 3)
        Cartesian positions in Å, same atom order.
    allow_reflection : bool, default True
        When True, the best orthogonal matrix (rotation or
        rotation-reflection) is used: a Laplacian or a distance matrix
        cannot tell a cluster from its mirror image, so structures
        recovered from one are compared up to reflection. When False,
        only proper rotations are allowed.

    Returns
    -------
    float
        RMSD in Å, ``sqrt(mean_i |R p_i - q_i|^2)``.

    Raises
    ------
    ValueError
        When the shapes differ or are not (N, 3), or on NaN.
    """
    P = _as_positions("P", P)
    Q = _as_positions("Q", Q)
    if P.shape != Q.shape:
        raise ValueError(
            f"P and Q must have the same shape, got {P.shape} and {Q.shape}"
        )
    if len(P) == 0:
        raise ValueError("P and Q hold no atoms")
    P = P - P.mean(axis=0)
    Q = Q - Q.mean(axis=0)
    # Minimise |P R - Q|: R = U V^T from the SVD of the covariance P^T Q.
    U, _, Vt = np.linalg.svd(P.T @ Q)
    if not allow_reflection and np.linalg.det(U @ Vt) < 0:
        U[:, -1] = -U[:, -1]
    R = U @ Vt
    return float(np.sqrt(np.mean(np.sum((P @ R - Q) ** 2, axis=1))))
