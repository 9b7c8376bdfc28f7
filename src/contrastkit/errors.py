"""The one exception type for problems a user can fix (bad data, config, arguments)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ContrastkitError(ValueError):
    """A user-facing error: its message is one sentence saying what is wrong and how to fix it.

    The CLI prints it without a traceback and exits non-zero; programmatic callers can catch it
    (it is a ``ValueError``).
    """


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ContrastkitError:
    """The error for a name not in a registry: the closest match and every valid name."""
    choices = sorted(choices)
    return ContrastkitError(
        f"Unknown {kind} {name!r}{did_you_mean(name, choices)}; available: {', '.join(choices)}."
    )
