"""Metals of the training set: bulk structure and nearest-neighbour distance.

The clusters of :mod:`diffpy_cbldm.clusters.build` are built with a unit
nearest-neighbour (NN) distance and scaled to a metal's. The metals here
are the transition metals whose room-temperature bulk structure is fcc,
bcc or hcp and whose NN distance lies between 2.2 and 3.0 Å (Au and Pt
included). Sc, Y, Zr and Hf (NN 3.13-3.56 Å) are larger; Mn (cubic
alpha-Mn, 58 atoms per cell) and Hg (rhombohedral, liquid at room
temperature) have none of the three structures.

Source: ``ase.data.reference_states`` (ASE 3.29), which tabulates the
lattice constants of Ashcroft & Mermin, *Solid State Physics* (1976),
inside front cover. The NN distance follows from the lattice constant:

- fcc: ``a / sqrt(2)``
- bcc: ``a * sqrt(3) / 2``
- hcp: ``min(a, sqrt(a**2 / 3 + c**2 / 4))``, the in-plane or the
  out-of-plane neighbour, whichever is closer: out-of-plane for c/a
  below the ideal sqrt(8/3) (Ti, Co, Tc, Ru, Re, Os), in-plane for Zn
  and Cd (c/a 1.86 and 1.89).

The NN distances span 2.49 Å (Fe) to 2.98 Å (Cd). Clusters of every
structure type are scaled to each metal: the shapes keep the ideal
geometry of their type (hcp with ideal c/a), only the scale changes.
"""

import math
from dataclasses import dataclass

__all__ = ["METALS", "Metal"]

_SYMBOLS = (
    "Ti V Cr Fe Co Ni Cu Zn Nb Mo Tc Ru Rh Pd Ag Cd Ta W Re Os Ir Pt Au"
).split()


@dataclass(frozen=True)
class Metal:
    """A metal's bulk structure and its nearest-neighbour distance.

    Attributes
    ----------
    symbol : str
        Chemical symbol, e.g. ``"Pt"``.
    structure : str
        Bulk structure at room temperature: ``"fcc"``, ``"bcc"`` or
        ``"hcp"``.
    a : float
        Lattice constant in Å (cubic edge; basal edge for hcp).
    covera : float or None
        c/a of hcp metals, None for cubic ones.
    nn : float
        Nearest-neighbour distance in Å.
    """

    symbol: str
    structure: str
    a: float
    covera: float | None
    nn: float


def _nn_distance(structure, a, covera):
    if structure == "fcc":
        return a / math.sqrt(2.0)
    if structure == "bcc":
        return a * math.sqrt(3.0) / 2.0
    c = a * covera
    return min(a, math.sqrt(a * a / 3.0 + c * c / 4.0))


def _metal(symbol):
    from ase.data import atomic_numbers, reference_states

    state = reference_states[atomic_numbers[symbol]]
    structure = state["symmetry"]
    covera = state.get("c/a") if structure == "hcp" else None
    nn = _nn_distance(structure, state["a"], covera)
    return Metal(symbol, structure, state["a"], covera, round(nn, 4))


METALS = {symbol: _metal(symbol) for symbol in _SYMBOLS}
"""dict of str to :class:`Metal`: the metals, keyed by chemical symbol."""
