"""``deepnotes compare``: (being written)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("compare-optimizers", help="(being written)")
    p.set_defaults(handler=lambda args: 0)
