"""The user-facing error type: the CLI prints its message as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (arguments, files, data) rather than a bug in lumbar.

    The message must name the problem and must not contain patient identifiers.
    """

    exit_code = 2
