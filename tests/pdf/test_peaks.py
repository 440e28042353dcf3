"""The nearest-neighbour peak read off a PDF."""

import numpy as np
import pytest
from ase.cluster import FaceCenteredCubic

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
