"""One exception type for every error a user can fix: the CLI prints it as one line and exits 2."""


class SoftscopeError(Exception):
    """A user-fixable problem (bad flag, missing file, missing package); the message says what to do."""
