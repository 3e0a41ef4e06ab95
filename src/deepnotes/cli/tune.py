"""``deepnotes tune``: (being written)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="(being written)")
    p.set_defaults(handler=lambda args: 0)
