"""The one exception type a user is meant to see, and the checks that raise it.

Library code raises :class:`DeepnotesError` for bad input and for faults a person can act on
(a corrupt file, a NaN loss). Its message is one line that names the file, argument or value and
what was expected. The CLI prints it after ``error:`` and exits with status 2; anything else that
escapes is a bug.
"""

from __future__ import annotations

import difflib
import math
import numbers


class DeepnotesError(ValueError):
    """Bad input or an actionable fault, described in one line."""


class LossDiverged(DeepnotesError):
    """Training stopped because the loss (or the weights) became NaN or infinite: for a tuner or
    a comparison of update rules a result (that alpha is too large), not a fault."""


def unknown_name(what: str, name: str, valid: list[str]) -> str:
    """``unknown model 'lenet'; did you mean 'lenet5'? valid: ...`` (one line)."""
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {what} {name!r}{hint} valid: {', '.join(valid)}"


def check_range(name: str, value, low: float, high: float = math.inf, *, integer: bool = False,
                low_open: bool = False, high_open: bool = False, hint: str = "") -> None:
    """Raise unless ``value`` is a finite number (an integer with ``integer``) in [low, high]
    (``low_open`` / ``high_open`` exclude an end). Booleans are not numbers here.

    The line names the value the way the user wrote it: a CLI option (``name`` starting with
    ``-``) as ``--epochs 0``, a keyword as ``lr=0.0``; then what was expected, and ``hint`` in
    parentheses. For example::

        check_range("lr", 0.0, 0, low_open=True)
            lr=0.0: expected a finite number in (0, inf)
        check_range("--beta", 1.0, 0, 1, high_open=True)
            --beta 1.0: expected a finite number in [0, 1)
        check_range("--epochs", 0, 1, integer=True)
            --epochs 0: expected at least 1
        check_range("--seed", -1, 0, 10**8, integer=True)
            --seed -1: expected an integer from 0 to 100000000
        check_range("--negative", 0, 1, integer=True, hint="0 needs --hs")
            --negative 0: expected at least 1 (0 needs --hs)
    """
    if _is_integer(value):
        ok = True  # a Python int of any size (math.isfinite would overflow on 10**400)
    else:
        ok = not integer and isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if ok:
        return
    given = f"{name} {value}" if name.startswith("-") else f"{name}={value!r}"
    expected = _expected(value, low, high, integer, low_open, high_open)
    raise DeepnotesError(f"{given}: expected {expected}" + (f" ({hint})" if hint else ""))


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _expected(value, low, high, integer: bool, low_open: bool, high_open: bool) -> str:
    """``a finite number in [0, 1)``, ``at least 1``, ``an integer from 0 to 255``."""
    if not integer:
        left = "(" if low_open or low == -math.inf else "["  # an infinite end is never in
        right = ")" if high_open or high == math.inf else "]"
        return f"a finite number in {left}{low:g}, {high:g}{right}"
    low, high = low + low_open, high - high_open  # integer ends, both included
    if high == math.inf:
        return f"at least {_bound(low)}" if _is_integer(value) else f"an integer >= {_bound(low)}"
    return f"an integer from {_bound(low)} to {_bound(high)}"


def _bound(x) -> str:
    """An integer end as digits (2**64 - 1, not 1.84467e+19)."""
    return str(int(x)) if math.isfinite(x) else f"{x:g}"


def describe(error: BaseException) -> str:
    """An exception in one line: its type, and its message with the whitespace collapsed."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
