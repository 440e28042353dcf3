"""Acquisition settings and noise drawn per training sample."""

import numpy as np
import pytest

from diffpy_cbldm.dataset.acquisition import (
    PAPER_SETTINGS,
    Acquisition,
    AcquisitionRanges,
    draw_settings,
    output_rgrid,
    pdf_noise,
)
from diffpy_cbldm.pdf.settings import PDFSettings


def test_output_grid_is_diffpy_grid_of_the_paper():
    r = output_rgrid()
    assert r.size == 3000
    assert r[0] == 0.0
    assert r[-1] == pytest.approx(29.99)
    np.testing.assert_allclose(np.diff(r), 0.01)


@pytest.mark.parametrize("qdamp", [0.0, 0.04, 0.1])
def test_paper_settings_lie_inside_default_ranges(qdamp):
    # Table 1 of the paper: Qmin 0.7, Qmax 25, Qdamp 0-0.1, Biso 0.3,
    # delta2 0, noiseless.
    settings = PAPER_SETTINGS.replace(qdamp=qdamp)
    assert AcquisitionRanges().contains(settings, noise_level=0.0)


def test_settings_outside_ranges_are_recognised():
    ranges = AcquisitionRanges()
    assert not ranges.contains(PAPER_SETTINGS.replace(qmax=30.0))
    assert not ranges.contains(PAPER_SETTINGS, noise_level=0.2)
    assert not ranges.contains(PAPER_SETTINGS.replace(rmax=20.0))


def test_draws_fill_the_ranges_and_stay_inside():
    ranges = AcquisitionRanges()
    rng = np.random.default_rng(0)
    draws = [draw_settings(rng, ranges) for _ in range(2000)]
    assert all(ranges.contains(a.settings, a.noise_level) for a in draws)
    for name in ("qmin", "qmax", "qdamp", "qbroad", "biso", "delta2"):
        values = np.array([getattr(a.settings, name) for a in draws])
        low, high = getattr(ranges, name)
        # Uniform draws: the extremes come within 1 % of the range ends.
        assert values.min() < low + 0.01 * (high - low)
        assert values.max() > high - 0.01 * (high - low)
    levels = np.array([a.noise_level for a in draws])
    assert levels.max() > 0.0297


def test_draws_are_reproducible_and_fixed_ranges_are_fixed():
    ranges = AcquisitionRanges(biso=(0.3, 0.3), noise=(0.0, 0.0))
    first = draw_settings(np.random.default_rng(7), ranges)
    again = draw_settings(np.random.default_rng(7), ranges)
    assert first == again
    assert first.settings.biso == 0.3
    assert first.noise_level == 0.0
    assert first.settings.rgrid.size == 3000


def test_noise_has_unit_rms_vanishes_at_zero_and_is_band_limited():
    r = output_rgrid()
    qmin, qmax = 0.8, 20.0
    noise = pdf_noise(r, qmin, qmax, seed=3)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0)
    assert noise[0] == 0.0
    # Project on sines with a Hann taper (no truncation ripple): no power
    # above qmax or below qmin. The test's quadrature is independent of
    # the DST in pdf_noise.
    dr = r[1] - r[0]
    taper = np.sin(np.pi * r / (r[-1] + dr)) ** 2
    q = np.linspace(0.05, 40.0, 800)
    spectrum = np.abs(np.sin(np.outer(q, r)) @ (noise * taper) * dr)
    inside = spectrum[(q > qmin + 0.3) & (q < qmax - 0.3)].mean()
    assert spectrum[q > qmax + 0.5].max() < 0.05 * inside
    assert spectrum[q < qmin - 0.5].max() < 0.05 * inside


def test_noise_is_correlated_over_about_pi_over_qmax():
    r = output_rgrid()
    for qmax in (18.0, 28.0):
        near, far = [], []
        lag = max(1, int(round(np.pi / qmax / 4 / 0.01)))
        for seed in range(20):
            noise = pdf_noise(r, 1.0, qmax, seed=seed)[500:]
            near.append(np.corrcoef(noise[:-lag], noise[lag:])[0, 1])
            # 3 Å apart: the kernel ~ 3 sin(qmax L) / (qmax L) is < 0.06.
            far.append(np.corrcoef(noise[:-300], noise[300:])[0, 1])
        assert np.mean(near) > 0.7
        assert abs(np.mean(far)) < 0.1


def test_add_noise_gives_the_requested_level():
    r = output_rgrid()
    g = np.exp(-((r - 2.5) ** 2) / 0.01) - 0.3 * np.exp(-((r - 4) ** 2))
    acquisition = Acquisition(
        PDFSettings(qmin=1.0, qmax=22.0), noise_level=0.02, noise_seed=11
    )
    noisy, sigma = acquisition.add_noise(g)
    assert sigma == pytest.approx(0.02 * np.abs(g).max())
    assert np.sqrt(np.mean((noisy - g) ** 2)) == pytest.approx(sigma)
    clean = Acquisition(PDFSettings(), noise_level=0.0, noise_seed=11)
    np.testing.assert_array_equal(clean.add_noise(g)[0], g)


def test_ranges_round_trip_through_dict():
    ranges = AcquisitionRanges(qdamp=(0.01, 0.05))
    assert AcquisitionRanges.from_dict(ranges.to_dict()) == ranges


def test_range_not_a_pair_is_rejected():
    with pytest.raises(ValueError, match="qmax=.*not a pair"):
        AcquisitionRanges(qmax=25.0)


def test_negative_range_is_rejected():
    with pytest.raises(ValueError, match="biso"):
        AcquisitionRanges(biso=(-0.1, 1.0))


def test_reversed_range_is_rejected():
    with pytest.raises(ValueError, match="delta2"):
        AcquisitionRanges(delta2=(4.0, 1.0))


def test_overlapping_q_ranges_are_rejected():
    with pytest.raises(ValueError, match="qmin up to 20"):
        AcquisitionRanges(qmin=(0.5, 20.0))


def test_zero_scale_is_rejected():
    with pytest.raises(ValueError, match="scale"):
        AcquisitionRanges(scale=(0.0, 1.0))


def test_noise_needs_a_q_range():
    with pytest.raises(ValueError, match="qmin=25"):
        pdf_noise(output_rgrid(), 25.0, 20.0, seed=0)


def test_noise_needs_a_uniform_grid():
    with pytest.raises(ValueError, match="uniform"):
        pdf_noise(np.array([0.0, 0.1, 0.3]), 1.0, 20.0, seed=0)
