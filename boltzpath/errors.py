"""Errors that mean "the user's input is wrong": the CLI turns them into exit status 2."""


class BadInput(ValueError):
    """Malformed input: wrong shapes, unknown names, non-finite values, bad configs."""
