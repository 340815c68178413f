"""Exception types shared by every package.

A `UserError` is a mistake the user can fix (a bad config, a missing file, an unknown device); the
CLI prints it as one line and exits with code 2, never with a stack trace. Anything else is a bug or
an infrastructure failure and exits with code 1.
"""


class UserError(Exception):
    """A mistake in what the user gave us; printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A config, inventory or data file that does not validate.

    Args:
        file: the file the problem is in.
        key: dotted key path inside the file ("" for the file as a whole).
        message: what is wrong and, where it helps, what is allowed.
    """

    def __init__(self, file: str, key: str, message: str):
        message = " ".join(str(message).split())  # one line, whatever a parser put in it
        self.file, self.key, self.message = str(file), key, message
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + message)


def report(e: UserError, prog: str) -> int:
    """Print a UserError as the one line the user sees (`prog: error: ...`); its exit code."""
    import sys

    print(f"{prog}: error: " + " ".join(str(e).split()), file=sys.stderr)
    return e.exit_code


def run_script(main, prog: str) -> None:
    """A script's `main()`, a UserError ending it as one line and exit code 2 (never a stack trace)."""
    try:
        main()
    except UserError as e:
        raise SystemExit(report(e, prog)) from None
