"""The one exception type for problems a user can fix (bad data, config, arguments)."""


class ContrastkitError(ValueError):
    """A user-facing error: its message is one sentence saying what is wrong and how to fix it.

    The CLI prints it without a traceback and exits non-zero; programmatic callers can catch it
    (it is a ``ValueError``).
    """
