"""One exception type for every error a user can fix: the CLI prints it as one line and exits 2."""


import sys


class SoftscopeError(Exception):
    """A user-fixable problem (bad flag, missing file, missing package); the message says what to do."""


def warn(message: str) -> None:
    """One line on stderr ("warning: ...") for something softscope recovered from but the user should know."""
    print(f"warning: {message}", file=sys.stderr)
