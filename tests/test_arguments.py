"""check_count and check_number: one test and one wording for every
count and number a user passes."""

import numpy as np
import pytest

from diffpy_cbldm.arguments import check_count, check_number


@pytest.mark.parametrize("value", [1, 7, np.int64(7), np.int32(1)])
def test_integers_at_or_above_the_bound_pass_as_int(value):
    out = check_count("n", value)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [True, 2.0, 2.5, "3", None])
def test_anything_but_an_integer_is_named(value):
    with pytest.raises(ValueError) as err:
        check_count("n", value)
    assert str(err.value) == f"n must be an integer, got {value!r}"


def test_the_bound_is_stated_as_a_number_or_in_words():
    with pytest.raises(ValueError, match="^n must be at least 1, got 0$"):
        check_count("n", 0)
    with pytest.raises(ValueError, match="^--draws must be at least 5, got"):
        check_count("--draws", -1, least=5)
    with pytest.raises(ValueError) as err:
        check_count("draws", 2, least=3, bound="n = 3 (best of the draws)")
    assert (
        str(err.value)
        == "draws must be at least n = 3 (best of the draws), got 2"
    )
    assert check_count("draws", 3, least=3) == 3
    with pytest.raises(ValueError, match="^seed must be at most 9, got 10$"):
        check_count("seed", 10, least=0, most=9)
    assert check_count("seed", 9, least=0, most=9) == 9


@pytest.mark.parametrize("value", [144, 0.05, np.float32(2.5), "114"])
def test_real_numbers_pass_as_float(value):
    number = check_number("count", value)
    assert isinstance(number, float) and number == float(value)


@pytest.mark.parametrize(
    "value, match",
    [
        ("many", "count must be a number, got 'many'"),
        (None, "count must be a number, got None"),
        (True, "count must be a finite number, got True"),
        (float("nan"), "count must be a finite number, got nan"),
        (float("inf"), "count must be a finite number, got inf"),
    ],
)
def test_anything_but_a_finite_number_is_named(value, match):
    with pytest.raises(ValueError, match=match):
        check_number("count", value)
