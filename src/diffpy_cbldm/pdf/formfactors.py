"""X-ray atomic form factors f0(Q) of neutral atoms, as DiffPy uses them.

DiffPy's DebyePDFCalculator weights every pair by the X-ray form factors
of its two atoms, taken from the Waasmaier-Kirfel parametrisation
(D. Waasmaier and A. Kirfel, Acta Cryst. A51, 416 (1995)), the table
``periodictable.cromermann`` ships and libdiffpy's "xray" table reads:

    f0(Q) = c + sum_i a_i exp(-b_i s^2),   s = Q / (4 pi).

The parametrisation is fitted for s <= 6 Å⁻¹ (Q <= 75 Å⁻¹). The
coefficients are read once per process and kept at module level, so
building a calculator or evaluating f0 on a new Q-grid costs microseconds.
"""

from functools import lru_cache

import numpy as np

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "check_atomic_numbers",
    "element_symbol",
    "xray_form_factor",
]

#: Heaviest element of the Waasmaier-Kirfel table (Cf).
MAX_ATOMIC_NUMBER = 98


@lru_cache(maxsize=1)
def _coefficients():
    """Waasmaier-Kirfel coefficients indexed by atomic number.

    Returns
    -------
    a, b : ndarray, shape (MAX_ATOMIC_NUMBER + 1, 5)
    c : ndarray, shape (MAX_ATOMIC_NUMBER + 1,)
        Row 0 (no element) is NaN.
    """
    import periodictable
    from periodictable.cromermann import getCMformula

    a = np.full((MAX_ATOMIC_NUMBER + 1, 5), np.nan)
    b = np.full((MAX_ATOMIC_NUMBER + 1, 5), np.nan)
    c = np.full(MAX_ATOMIC_NUMBER + 1, np.nan)
    for z in range(1, MAX_ATOMIC_NUMBER + 1):
        formula = getCMformula(periodictable.elements[z].symbol)
        a[z], b[z], c[z] = formula.a, formula.b, formula.c
    return a, b, c


def element_symbol(z):
    """Chemical symbol of atomic number `z`, or ``'X'`` when unknown."""
    import periodictable

    z = int(z)
    if 1 <= z <= MAX_ATOMIC_NUMBER:
        return periodictable.elements[z].symbol
    return "X"


def check_atomic_numbers(numbers):
    """Raise ValueError unless every atomic number has a form factor.

    Parameters
    ----------
    numbers : array_like of int
        Atomic numbers.

    Raises
    ------
    ValueError
        Naming the first unknown atomic number and where it occurs.
    """
    numbers = np.asarray(numbers)
    bad = (numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        z = int(numbers[where])
        raise ValueError(
            f"unknown element {element_symbol(z)!r} (atomic number {z}) "
            f"at atom index {where if len(where) > 1 else where[0]}: "
            f"X-ray form factors exist for atomic numbers 1-"
            f"{MAX_ATOMIC_NUMBER}"
        )


def xray_form_factor(numbers, q):
    """X-ray form factors f0(Q) in electrons.

    Parameters
    ----------
    numbers : array_like of int, shape (K,)
        Atomic numbers, 1 to ``MAX_ATOMIC_NUMBER``.
    q : array_like, shape (nq,)
        Scattering vector magnitudes Q = 4π sinθ/λ in Å⁻¹.

    Returns
    -------
    ndarray, shape (K, nq)
        f0 of each element at each Q, float64.

    Raises
    ------
    ValueError
        For an atomic number outside the table.
    """
    numbers = np.atleast_1d(np.asarray(numbers, dtype=int))
    check_atomic_numbers(numbers)
    a, b, c = _coefficients()
    s2 = (np.asarray(q, dtype=float) / (4 * np.pi)) ** 2
    gauss = np.exp(-b[numbers][:, :, None] * s2)
    return np.einsum("ki,kiq->kq", a[numbers], gauss) + c[numbers][:, None]
