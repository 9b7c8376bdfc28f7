"""The shared checks of config options sections (contrastkit.options): key checks with the
method that owns a key, integers (a bool is not one) and numbers (finite, open/closed bounds)."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from contrastkit import ContrastkitError
from contrastkit.options import check_integer, check_number, check_option_keys, is_integer

BY_METHOD = {"a": ("epochs", "lr", "views"), "b": ("epochs", "lr", "queue"), "c": ("queue",)}


def test_valid_keys_pass_and_any_mapping_is_accepted():
    check_option_keys(
        "mil", {"epochs": 1, "views": 2}, BY_METHOD["a"], method="a", by_method=BY_METHOD
    )
    check_option_keys("towers", {}, ())
    check_option_keys("towers", MappingProxyType({"dim": 3}), ("dim",))  # a read-only mapping


@pytest.mark.parametrize("raw", [None, [("epochs", 1)], "epochs=1", 3])
def test_a_section_that_is_not_a_mapping_is_refused(raw):
    with pytest.raises(ContrastkitError) as error:
        check_option_keys("mil", raw, ("epochs",))
    assert str(error.value) == f"The mil section must be a mapping of options, got {raw!r}."


def test_a_key_of_other_methods_names_them_in_order():
    with pytest.raises(ContrastkitError) as error:
        check_option_keys("mil", {"queue": 64}, BY_METHOD["a"], method="a", by_method=BY_METHOD)
    assert str(error.value) == (
        "mil.queue does not apply to method 'a' (it is an option of b, c); remove it."
    )


def test_an_unknown_key_gets_the_closest_and_every_valid_key():
    with pytest.raises(ContrastkitError) as error:
        check_option_keys("mil", {"epoch": 1}, BY_METHOD["a"], method="a", by_method=BY_METHOD)
    assert str(error.value) == (
        "Unknown mil option 'epoch' (did you mean 'epochs'?); valid for a: epochs, lr, views."
    )
    with pytest.raises(ContrastkitError) as error:  # no method: "valid:", nothing close
        check_option_keys("towers", {"zzz": 1}, iter(("steps", "dim")))
    assert str(error.value) == "Unknown towers option 'zzz'; valid: steps, dim."
    with pytest.raises(ContrastkitError, match="Unknown towers option 1; valid: steps"):
        check_option_keys("towers", {1: 1}, ("steps",))  # a YAML key that is not a string


def test_by_method_needs_the_method():
    with pytest.raises(TypeError):
        check_option_keys("mil", {}, ("epochs",), by_method=BY_METHOD)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, True),
        (-3, True),
        (2**70, True),
        (True, False),
        (False, False),
        (1.0, False),
        ("1", False),
    ],
)
def test_is_integer_excludes_bools_and_floats(value, expected):
    assert is_integer(value) is expected


def test_check_integer_bounds_and_message():
    check_integer("mil.epochs", 1, 1)
    check_integer("mil.bag_seed", 0, 0)
    for value in (0, -1, 1.0, 2.5, True, None, "3"):
        with pytest.raises(ContrastkitError) as error:
            check_integer("mil.epochs", value, 1)
        assert str(error.value) == f"mil.epochs must be an integer ≥ 1, got {value!r}."
    check_integer("towers.steps", 0, 0)
    with pytest.raises(ContrastkitError) as error:
        check_integer("towers.steps", -1, 0)
    assert str(error.value) == "towers.steps must be an integer ≥ 0, got -1."


@pytest.mark.parametrize(
    ("low_open", "high_open", "interval"),
    [
        (False, False, "[0, 1]"),
        (True, False, "(0, 1]"),
        (False, True, "[0, 1)"),
        (True, True, "(0, 1)"),
    ],
)
def test_check_number_open_and_closed_bounds(low_open, high_open, interval):
    bounds = {"low_open": low_open, "high_open": high_open}
    for value in (0.5, 1e-12, 1 - 1e-12):
        check_number("mil.keep", value, 0, 1, **bounds)
    for value, excluded in ((0, low_open), (0.0, low_open), (1, high_open), (1.0, high_open)):
        if not excluded:
            check_number("mil.keep", value, 0, 1, **bounds)
            continue
        with pytest.raises(ContrastkitError) as error:
            check_number("mil.keep", value, 0, 1, **bounds)
        assert str(error.value) == f"mil.keep must be a number in {interval}, got {value!r}."
    for value in (-1e-12, 1 + 1e-9):
        with pytest.raises(ContrastkitError, match=r"mil\.keep must be a number in"):
            check_number("mil.keep", value, 0, 1, **bounds)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, False, None, "0.1", [0.1]])
def test_check_number_rejects_non_finite_and_non_numbers(value):
    # inf lies inside [0, inf]: only the finiteness test rejects it; bools are not numbers
    with pytest.raises(ContrastkitError, match=r"mil\.lr must be a number ≥ 0, got"):
        check_number("mil.lr", value, 0, math.inf)
    with pytest.raises(ContrastkitError, match=r"x must be a finite number, got"):
        check_number("x", value, -math.inf, math.inf)


def test_check_number_wording_of_half_lines_and_override():
    check_number("lr", 1e9, 0, math.inf, low_open=True)
    check_number("x", -1e9, -math.inf, 2)
    check_number("x", 7, -math.inf, math.inf)
    cases = [
        ((0, 0, math.inf, True, False), "lr must be a number > 0, got 0."),
        ((-0.5, 0, math.inf, False, False), "lr must be a number ≥ 0, got -0.5."),
        ((2, -math.inf, 2, False, True), "lr must be a number < 2, got 2."),
        ((3, -math.inf, 2.5, False, False), "lr must be a number ≤ 2.5, got 3."),
    ]
    for (value, low, high, low_open, high_open), message in cases:
        with pytest.raises(ContrastkitError) as error:
            check_number("lr", value, low, high, low_open=low_open, high_open=high_open)
        assert str(error.value) == message
    with pytest.raises(ContrastkitError) as error:
        check_number("mil.schedule", 1.5, 0, 1, interval="in [0, 1] (a constant α)")
    assert str(error.value) == "mil.schedule must be a number in [0, 1] (a constant α), got 1.5."


def test_the_method_sections_use_these_messages():
    from contrastkit.mil.run import MILOptions
    from contrastkit.multimodal.run import TowerOptions
    from contrastkit.regression.run import RegressionOptions

    with pytest.raises(
        ContrastkitError, match=r"^mil\.positive_bag_rate must be a number in \(0, 1\), got 1\.$"
    ):
        MILOptions.from_dict({"positive_bag_rate": 1}, "scmil")
    with pytest.raises(
        ContrastkitError, match=r"^regression\.rate must be a number \[0, 1\], got nan\.$"
    ):
        RegressionOptions.from_dict({"rate": math.nan}, "regression")
    with pytest.raises(ContrastkitError, match=r"^The regression section must be a mapping"):
        RegressionOptions.from_dict([("rate", 0.1)], "regression")
    with pytest.raises(ContrastkitError, match=r"^towers\.dim must be an integer ≥ 1, got True\.$"):
        TowerOptions.from_dict({"dim": True})
    with pytest.raises(
        ContrastkitError,
        match=r"^Unknown towers option 'stesp' \(did you mean 'steps'\?\); valid: a, b,",
    ):
        TowerOptions.from_dict({"stesp": 3})
