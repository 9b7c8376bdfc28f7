"""Checks of a config's options sections (``mil:``, ``regression:``, ``towers:``, ...).

Small pure helpers shared by the method packages that run their own loop: each raises a
:class:`~contrastkit.errors.ContrastkitError` whose one sentence names the full dotted key
(``"mil.epochs"``), what it must be and what it got.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from contrastkit.errors import ContrastkitError, did_you_mean

__all__ = ["check_integer", "check_number", "check_option_keys", "is_integer"]


def check_option_keys(
    section: str,
    raw: Any,
    valid: Iterable[str],
    *,
    method: str | None = None,
    by_method: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Reject an options section that is not a mapping, or has a key outside ``valid``.

    A key that ``by_method`` lists for other methods is refused as not applying to ``method``
    (naming the methods that use it); any other unknown key gets the closest valid key and the
    list of valid keys (``valid for METHOD`` when ``method`` is given).
    """
    if by_method is not None and method is None:
        raise TypeError("check_option_keys needs method when by_method is given")
    if not isinstance(raw, Mapping):
        raise ContrastkitError(f"The {section} section must be a mapping of options, got {raw!r}.")
    valid = tuple(valid)
    for key in raw:
        if key in valid:
            continue
        users = [name for name, keys in (by_method or {}).items() if key in tuple(keys)]
        if users:
            raise ContrastkitError(
                f"{section}.{key} does not apply to method {method!r} (it is an option of "
                f"{', '.join(users)}); remove it."
            )
        scope = f" for {method}" if method is not None else ""
        raise ContrastkitError(
            f"Unknown {section} option {key!r}{did_you_mean(str(key), valid)}; valid{scope}: "
            f"{', '.join(valid)}."
        )


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python ``int`` and not a ``bool`` (YAML's ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_integer(key: str, value: Any, low: int) -> None:
    """Reject ``value`` unless it is an integer ≥ ``low`` (``key``: the dotted config key)."""
    if not is_integer(value) or value < low:
        raise ContrastkitError(f"{key} must be an integer ≥ {low}, got {value!r}.")


def check_number(
    key: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    interval: str | None = None,
) -> None:
    """Reject ``value`` unless it is a finite real number between ``low`` and ``high``.

    A bound is excluded when its ``*_open`` flag is set; an infinite bound is no bound.
    ``interval`` replaces the range's wording after "must be a number" in the message (default
    from the bounds: ``"in (0, 1]"``, ``"> 0"``, ``"≥ 0"``; no bounds: "a finite number").
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        what = _what(low, high, low_open, high_open) if interval is None else f"number {interval}"
        raise ContrastkitError(f"{key} must be a {what}, got {value!r}.")


def _what(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """``"number in [0, 1)"``, ``"number > 0"``, ``"number ≤ 1"`` or ``"finite number"``."""
    if math.isinf(low) and math.isinf(high):
        return "finite number"
    if math.isinf(high):
        return f"number {'>' if low_open else '≥'} {low:g}"
    if math.isinf(low):
        return f"number {'<' if high_open else '≤'} {high:g}"
    return f"number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
