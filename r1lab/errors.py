"""User-facing errors: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, line or key and what was expected.

    The CLI catches it, prints ``r1lab: <message>`` on one line and exits with 2.
    """

    exit_code = 2

    def __init__(self, message: str):
        # every line break (\r, \u2028, … as well as \n: what str.splitlines splits on)
        super().__init__(" ".join(message.splitlines()))
