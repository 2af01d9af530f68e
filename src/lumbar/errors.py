"""The user-facing error type: the CLI prints its message as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (arguments, files, data) rather than a bug in lumbar.

    The message must name the problem in the library's own words (a setting's name, not a
    command-line flag) and must not contain patient identifiers. `option` names the setting
    that would fix it, when there is one; the CLI shows it as its flag.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option
