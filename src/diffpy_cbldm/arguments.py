"""Checks of the counts and numbers a user passes: candidates, draws,
sampler steps, an atom count.

One function per kind, so that every argument of a kind gets the same
test (an integer, not a bool, of at least some bound; a finite real
number, not a bool) and the same wording in its error.
"""

import numpy as np

__all__ = ["check_count", "check_number"]


def check_count(name, value, least=1, bound=None, most=None):
    """`value` as an int, or a ValueError that names it.

    Parameters
    ----------
    name : str
        The argument's name as the user typed it (``"n"``, ``"--draws"``).
    value : object
        What was passed: an int or a numpy integer; a bool is refused.
    least : int
        The smallest value allowed.
    bound : str, optional
        How the message states `least`, e.g. ``"n = 3 (the candidates
        are the best of the draws)"``; by default the number itself.
    most : int, optional
        The largest value allowed.

    Returns
    -------
    int
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < least:
        bound = least if bound is None else bound
        raise ValueError(f"{name} must be at least {bound}, got {value}")
    if most is not None and value > most:
        raise ValueError(f"{name} must be at most {most}, got {value}")
    return int(value)


def check_number(name, value):
    """`value` as a finite float, or a ValueError that names it.

    Parameters
    ----------
    name : str
        The argument's name as the user typed it (``"count"``).
    value : object
        What was passed: a real number or a numeric string; a bool is
        refused.

    Returns
    -------
    float
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number
