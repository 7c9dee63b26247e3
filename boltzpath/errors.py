"""Errors that mean "the user's input is wrong": the CLI turns them into exit status 2."""

import sys


class BadInput(ValueError):
    """Malformed input: wrong shapes, unknown names, non-finite values, bad configs."""


def run_cli(main) -> int:
    """Run a script's ``main()``; bad input ends with one ``error:`` line on stderr and status 2.

    For the scripts under ``benchmarks/`` (the package's CLI has its own handler): a malformed
    ``--set`` or a missing file named on the command line must not end in a traceback.
    """
    try:
        return int(main() or 0)
    except BadInput as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {text}", file=sys.stderr)
        return 2
