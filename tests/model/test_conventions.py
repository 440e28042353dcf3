"""The conventions dataclass and the PDF normalisation."""

import json

import numpy as np
import pytest
import torch

from diffpy_cbldm.clusters.laplacian import DEFAULT_SIGMA
from diffpy_cbldm.clusters.order import ORDERING_RULE
from diffpy_cbldm.conventions import Conventions, normalise_pdf
from diffpy_cbldm.pdf.settings import PDFSettings


def test_defaults_follow_the_paper_and_the_cluster_modules():
    c = Conventions()
    # Table 1 of the paper: r 0-30 Å step 0.01, Q 0.7-25, Biso 0.3.
    assert c.n_points == 3000
    assert c.rgrid[0] == 0.0 and c.rgrid[-1] == pytest.approx(29.99)
    assert (c.pdf.qmin, c.pdf.qmax, c.pdf.biso) == (0.7, 25.0, 0.3)
    assert c.sigma == DEFAULT_SIGMA
    assert c.ordering_rule == ORDERING_RULE
    assert c.max_atoms == 256
    assert c.pdf_normalisation == "max-abs"


def test_round_trip_through_json():
    c = Conventions(sigma=2.5, ordering_rule="radial-v1", max_atoms=128)
    back = Conventions.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c


def test_from_dict_rejects_unknown_field():
    d = Conventions().to_dict()
    d["colour"] = "red"
    with pytest.raises(ValueError, match="colour"):
        Conventions.from_dict(d)


def test_from_dict_rejects_missing_field():
    d = Conventions().to_dict()
    del d["sigma"]
    with pytest.raises(ValueError, match="sigma"):
        Conventions.from_dict(d)


def test_from_dict_rejects_unknown_pdf_setting():
    d = Conventions().to_dict()
    d["pdf"]["qmaxx"] = 20.0
    with pytest.raises(ValueError, match="qmaxx"):
        Conventions.from_dict(d)


def test_rejects_unknown_normalisation():
    with pytest.raises(ValueError, match="pdf_normalisation='area'"):
        Conventions(pdf_normalisation="area")


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        Conventions(sigma=sigma)


def test_rejects_bad_max_atoms():
    with pytest.raises(ValueError, match="max_atoms"):
        Conventions(max_atoms=0)


def test_rejects_empty_ordering_rule():
    with pytest.raises(ValueError, match="ordering_rule"):
        Conventions(ordering_rule="")


def test_rejects_pdf_that_is_not_settings():
    with pytest.raises(ValueError, match="PDFSettings"):
        Conventions(pdf={"rmax": 30.0})


def _curves():
    r = Conventions().rgrid
    return np.stack([np.sin(2 * r) * np.exp(-r / 10), -3.0 * np.cos(r)])


def test_normalise_max_abs_numpy():
    g = _curves()
    out = normalise_pdf(g, Conventions())
    assert np.abs(out).max(axis=1) == pytest.approx([1.0, 1.0])
    # a pure rescaling of each curve
    assert out[0] == pytest.approx(g[0] / np.abs(g[0]).max())
    assert out[1] == pytest.approx(g[1] / 3.0)


def test_normalise_torch_matches_numpy_and_keeps_type():
    g = _curves()
    t = torch.tensor(g, dtype=torch.float32)
    out = normalise_pdf(t, Conventions())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(
        out.numpy(), normalise_pdf(g, Conventions()), rtol=1e-6
    )


def test_normalise_single_curve():
    g = _curves()[1]
    assert normalise_pdf(g, Conventions()).shape == (3000,)


def test_normalise_rejects_wrong_grid():
    with pytest.raises(ValueError, match=r"\(B, 3000\).*\(2, 2999\)"):
        normalise_pdf(np.ones((2, 2999)), Conventions())


def test_normalise_rejects_zero_curve_naming_row():
    g = _curves()
    g[1] = 0.0
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] are zero"):
        normalise_pdf(g, Conventions())


def test_normalise_rejects_nan_naming_row():
    g = torch.tensor(_curves())
    g[0, 17] = float("nan")
    with pytest.raises(ValueError, match=r"row\(s\) \[0\] contain NaN"):
        normalise_pdf(g, Conventions())


def test_settings_are_pdf_settings():
    assert isinstance(Conventions().pdf, PDFSettings)


def test_nn_peak_is_optional_and_round_trips():
    d = Conventions().to_dict()
    # Left out when None, so that older run settings compare equal.
    assert "nn_peak" not in d
    assert Conventions.from_dict(d).nn_peak is None
    c = Conventions(nn_peak=2.7349)
    assert c.to_dict()["nn_peak"] == 2.7349
    assert Conventions.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize("peak", [True, "2.7", 1.5, 4.0, float("nan")])
def test_rejects_bad_nn_peak(peak):
    with pytest.raises(ValueError, match="nn_peak"):
        Conventions(nn_peak=peak)


@pytest.mark.parametrize(
    "r, k",
    [
        (np.linspace(20.0, 1.0, 200), 1),  # descending
        (np.r_[np.linspace(1.0, 10.0, 100), np.linspace(5.0, 20.0, 100)], 100),
    ],
)
def test_model_input_refuses_an_r_that_does_not_increase(r, k):
    from diffpy_cbldm.conventions import model_input

    with pytest.raises(ValueError, match=f"r must increase, but point {k} "):
        model_input(r, np.sin(3 * r), Conventions(), source="x.gr")
