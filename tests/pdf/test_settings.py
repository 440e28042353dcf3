"""PDF settings: the r-grid they describe."""

import numpy as np
import pytest

from diffpy_cbldm.pdf.settings import PDFSettings


def test_settings_with_an_empty_r_grid_are_refused():
    # No multiple of 0.01 lies in [2.001, 2.005): the empty grid used to
    # fail later, in the calculator, with a numpy reduction error.
    with pytest.raises(ValueError) as excinfo:
        PDFSettings(rmin=2.001, rmax=2.005, rstep=0.01)
    message = str(excinfo.value)
    for text in ("rmin=2.001", "rmax=2.005", "rstep=0.01", "empty r-grid"):
        assert text in message


def test_narrow_range_with_one_grid_point():
    settings = PDFSettings(rmin=2.001, rmax=2.015, rstep=0.01)
    np.testing.assert_allclose(settings.rgrid, [2.01])
    assert PDFSettings(rmin=0, rmax=0.01, rstep=0.01).rgrid.tolist() == [0.0]
