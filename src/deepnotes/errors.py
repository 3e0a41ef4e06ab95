"""The one exception type a user is meant to see.

Library code raises :class:`DeepnotesError` for bad input and for faults a person can act on
(a corrupt file, a NaN loss). Its message is one line that names the file, argument or value and
what was expected. The CLI prints it after ``error:`` and exits with status 2; anything else that
escapes is a bug.
"""


class DeepnotesError(ValueError):
    """Bad input or an actionable fault, described in one line."""


class LossDiverged(DeepnotesError):
    """Training stopped because the loss (or the weights) became NaN or infinite: for a tuner or
    a comparison of update rules a result (that alpha is too large), not a fault."""


def unknown_name(what: str, name: str, valid: list[str]) -> str:
    """``unknown model 'lenet'; did you mean 'lenet5'? valid: ...`` (one line)."""
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {what} {name!r}{hint} valid: {', '.join(valid)}"
