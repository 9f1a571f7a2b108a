"""The one exception type for user-facing problems.

Anything raised as `SepfixError` is the user's to fix (a bad path, a corrupt model, a bad flag):
the CLI prints its message on one line and exits with code 2. Any other exception is a bug in
sepfix and is allowed to show its traceback.
"""


class SepfixError(Exception):
    """A problem with the input or the request, reported as one line and exit code 2."""
