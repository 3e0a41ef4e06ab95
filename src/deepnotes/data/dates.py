"""Human-readable dates and their ISO 8601 form: the course's translation toy, made offline.

``human_dates(n, seed)`` draws dates uniformly from 1950-01-01 to 2049-12-31 and writes each in
one of :data:`FORMATS` ("3 May 1999", "May 3, 1999", "Monday, 03/05/99", "03.05.1999",
"3rd of May 1999", "1999-05-03", "MAY 3 1999", ...); the target is ``date.isoformat()``.

All-numeric formats are day first, then month, then year (``03/05/99`` is 3 May 1999), except
the ISO-like year-first ones. A two-digit year ``yy`` means 19yy for 50-99 and 20yy for 00-49,
which is unambiguous over 1950-2049. Names are English and do not depend on the locale.

``load_dates(n, seed)`` turns the pairs into a ``"pairs"`` Dataset exactly as
:func:`deepnotes.data.text.load_pairs` does a TSV file (see its module for the contract).
"""

from __future__ import annotations

import random
from datetime import date

from deepnotes.data.dataset import Dataset
from deepnotes.data.text import check_positive, pairs_dataset

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SUFFIXES = {1: "st", 2: "nd", 3: "rd"}
FIRST, LAST = date(1950, 1, 1).toordinal(), date(2049, 12, 31).toordinal()


def ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else SUFFIXES.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d: date) -> str:
    return MONTHS[d.month - 1]


def _mon(d: date) -> str:
    return _month(d)[:3]


def _weekday(d: date) -> str:
    return DAYS[d.weekday()]


def _yy(d: date) -> str:
    return f"{d.year % 100:02d}"


# Each format writes a date; the name says the shape. Day before month in numeric formats.
FORMATS = {
    "d Month yyyy": lambda d: f"{d.day} {_month(d)} {d.year}",
    "Month d, yyyy": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "Weekday, dd/mm/yy": lambda d: f"{_weekday(d)}, {d.day:02d}/{d.month:02d}/{_yy(d)}",
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "dth of Month yyyy": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
    "Wkd d Mon yyyy": lambda d: f"{_weekday(d)[:3]} {d.day} {_mon(d)} {d.year}",
    "yyyy-mm-dd": lambda d: d.isoformat(),
    "MONTH d yyyy": lambda d: f"{_month(d).upper()} {d.day} {d.year}",
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "d/m/yy": lambda d: f"{d.day}/{d.month}/{_yy(d)}",
    "d.m.yy": lambda d: f"{d.day}.{d.month}.{_yy(d)}",
    "dd-mm-yyyy": lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",
    "dd Mon yy": lambda d: f"{d.day:02d} {_mon(d)} {_yy(d)}",
    "d-Mon-yyyy": lambda d: f"{d.day}-{_mon(d)}-{d.year}",
    "Mon d, yyyy": lambda d: f"{_mon(d)} {d.day}, {d.year}",
    "Month dth, yyyy": lambda d: f"{_month(d)} {ordinal(d.day)}, {d.year}",
    "the dth of Month, yyyy": lambda d: f"the {ordinal(d.day)} of {_month(d)}, {d.year}",
    "Weekday, Month d, yyyy": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "Weekday d Month yyyy": lambda d: f"{_weekday(d)} {d.day} {_month(d)} {d.year}",
    "d month yyyy": lambda d: f"{d.day} {_month(d).lower()} {d.year}",
    "D MON YYYY": lambda d: f"{d.day} {_mon(d).upper()} {d.year}",
    "yyyy/mm/dd": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    "yyyymmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    "d Mon yyyy": lambda d: f"{d.day} {_mon(d)} {d.year}",
}


def human_dates(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (human-readable date, ISO 8601 date) pairs; the same ``seed`` gives the same pairs."""
    check_positive("n", n)
    rng = random.Random(seed)
    writers = list(FORMATS.values())
    pairs = []
    for _ in range(n):
        d = date.fromordinal(rng.randint(FIRST, LAST))
        pairs.append((rng.choice(writers)(d), d.isoformat()))
    return pairs


def load_dates(n: int = 20000, seed: int = 0) -> Dataset:
    """``human_dates(n, seed)`` as a ``"pairs"`` Dataset named ``dates``."""
    return pairs_dataset("dates", human_dates(n, seed))
