"""The nearest-neighbour peak read off a PDF."""

import numpy as np
import pytest
from ase.cluster import FaceCenteredCubic, SimpleCubic

from diffpy_cbldm.pdf.debye import DebyePDFCalculator
from diffpy_cbldm.pdf.peaks import first_peak


def test_gaussian_peak_between_grid_points():
    r = np.arange(0.5, 10, 0.05)
    g = np.exp(-((r - 2.713) ** 2) / (2 * 0.08**2)) + 0.3 * np.exp(
        -((r - 4.1) ** 2) / 0.02
    )
    # The parabola through the top three points of a Gaussian of width
    # 0.08 on a 0.05 grid lands within a few thousandths of the centre.
    assert first_peak(r, g) == pytest.approx(2.713, abs=3e-3)


def test_fcc_cluster_peak_is_its_neighbour_distance():
    atoms = FaceCenteredCubic(
        "Cu", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], [4, 4, 3], 3.61
    )
    r, g = DebyePDFCalculator(rmax=10.0, qmax=25.0)(atoms)
    assert first_peak(r, g) == pytest.approx(3.61 / np.sqrt(2), abs=0.01)


def test_no_peak_in_the_window_is_an_error():
    r = np.linspace(0, 10, 1001)
    with pytest.raises(ValueError, match="no maximum between 1.8 and 3.6"):
        first_peak(r, r)
    with pytest.raises(ValueError, match="has 0 points between"):
        first_peak(r[r < 1], r[r < 1])


def test_simple_cubic_peak_is_the_first_shell_not_the_higher_second():
    # Below about 2.55 Å the sqrt(2) shell of a simple-cubic particle
    # (12 neighbours) lies in the window and is higher than the first
    # shell (6 neighbours); the nearest-neighbour peak is still the first.
    atoms = SimpleCubic("Fe", [(1, 0, 0), (1, 1, 0)], [3, 2], 2.3)
    r, g = DebyePDFCalculator(rmax=10.0, qmax=25.0)(atoms)
    window = (r > 1.8) & (r < 3.6)
    assert r[window][np.argmax(g[window])] > 3.0
    assert first_peak(r, g) == pytest.approx(2.3, abs=0.02)


def test_noise_wiggle_below_half_the_peak_is_not_the_peak():
    r = np.arange(0.5, 10, 0.01)
    g = np.exp(-((r - 2.8) ** 2) / (2 * 0.08**2)) + 0.2 * np.exp(
        -((r - 2.2) ** 2) / (2 * 0.03**2)
    )
    assert first_peak(r, g) == pytest.approx(2.8, abs=3e-3)
    assert first_peak(r, g, min_fraction=0.1) == pytest.approx(2.2, abs=3e-3)


def test_ripples_below_zero_are_not_a_peak():
    # G of a cluster without pairs in the window: termination ripples
    # whose maxima all lie below zero.
    r = np.arange(0.5, 5.0, 0.005)
    g = -0.2 + 0.05 * np.cos(2 * np.pi * r / 0.4)
    with pytest.raises(ValueError, match="no positive maximum"):
        first_peak(r, g)


def test_non_finite_neighbour_of_the_peak_is_an_error():
    # The parabola through a NaN neighbour gave a NaN position, which
    # generator.match_first_peak divides by.
    r = np.arange(0, 5, 0.01)
    g = np.exp(-((r - 2.8) ** 2) / 0.01)
    top = int(np.argmax(g))
    for side in (-1, 1):
        bad = g.copy()
        bad[top + side] = np.nan
        with pytest.raises(ValueError, match="not finite|must be finite"):
            first_peak(r, bad)
    # A NaN away from the peak is passed over.
    bad = g.copy()
    bad[top + 30] = np.nan
    assert first_peak(r, bad) == pytest.approx(first_peak(r, g))
