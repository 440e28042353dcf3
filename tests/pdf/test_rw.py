"""DiffPy's Rw and the free scale, against hand-computed cases."""

import numpy as np
import pytest

from diffpy_cbldm.pdf.rw import (
    best_scale,
    rw,
    rw_free_scale,
    rw_free_scale_from_sums,
    weights,
)


def test_rw_by_hand():
    gobs = np.array([1.0, -2.0, 2.0])
    gcalc = np.array([1.0, -1.0, 2.0])
    assert rw(gobs, gcalc) == pytest.approx(np.sqrt(1.0 / 9.0))
    # dG weights: w = 1 / dG^2 = (1, 4, 1)
    dg = np.array([1.0, 0.5, 1.0])
    assert rw(gobs, gcalc, dg) == pytest.approx(np.sqrt(4.0 / 21.0))


def test_free_scale_recovers_a_known_scale():
    x = np.linspace(1, 20, 400)
    g = np.sin(2 * x) * np.exp(-0.1 * x)
    value, scale = rw_free_scale(0.37 * g, g)
    assert scale == pytest.approx(0.37)
    assert value == pytest.approx(0.0, abs=1e-12)


def test_scale_is_never_negative():
    """A PDF scale factor is positive: an anti-correlated calculation
    gets scale 0 and Rw 1 (the unconstrained optimum would be -2)."""
    x = np.linspace(1, 20, 400)
    g = np.sin(2 * x)
    assert best_scale(g, -0.5 * g) == 0.0
    value, scale = rw_free_scale(g, -0.5 * g)
    assert scale == 0.0 and value == pytest.approx(1.0)
    # batched: one row correlated, one anti-correlated
    scales = best_scale(g, np.stack([2 * g, -2 * g]))
    np.testing.assert_allclose(scales, [0.5, 0.0])


def test_bad_weights_and_zero_data():
    g = np.ones(5)
    with pytest.raises(ValueError, match="dG must be positive"):
        rw(g, g, np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        rw(g, g, np.ones(4))
    with pytest.raises(ValueError, match="all zeros"):
        rw(np.zeros(5), g)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -0.01])
def test_dg_not_positive_and_finite_is_refused(bad):
    # NaN <= 0 is False: a NaN dG used to give Rw = nan.
    gobs = np.sin(np.linspace(1, 10, 50)) + 1
    dg = np.full_like(gobs, 0.01)
    dg[7] = bad
    with pytest.raises(ValueError, match=rf"dG\[7\]={bad!r}"):
        rw(gobs, 0.9 * gobs, dg)
    with pytest.raises(ValueError, match="positive and finite"):
        best_scale(gobs, gobs, dg)


def test_rw_from_sums_is_rw_after_the_best_scale():
    """The closed form from three weighted sums agrees with fitting the
    scale on the curves: correlated, anti-correlated (Rw 1), zero (Rw 1)
    and exact (Rw 0) curves, with dG weights."""
    rng = np.random.default_rng(3)
    x = np.linspace(1, 20, 400)
    gobs = np.sin(2 * x) * np.exp(-0.1 * x)
    dg = rng.uniform(0.01, 0.05, x.size)
    calcs = np.stack(
        [
            gobs + 0.1 * rng.standard_normal(x.size),
            np.sin(2.1 * x),
            -gobs,
            np.zeros_like(x),
            3 * gobs,
        ]
    )
    w = weights(gobs, dg)
    got = rw_free_scale_from_sums(
        calcs @ (w * gobs), calcs**2 @ w, np.sum(w * gobs**2)
    )
    want, _ = rw_free_scale(gobs, calcs, dg)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-7)
    assert got[2] == 1.0 and got[3] == 1.0 and got[4] < 1e-6
    with pytest.raises(ValueError, match="all zeros"):
        rw_free_scale_from_sums(1.0, 1.0, 0.0)
