"""The benchmark suite: every benchmark against its peer in one run, one table of ratios and goals.

Each benchmark module has ``rows(quick: bool, device: str) -> list[dict]``; a row is a plain dict

    {"task": "skip-gram, raw words/s", "peer": "gensim 4.4.0", "unit": "words/s",
     "ours": 1.3e6, "peer_figure": 4.0e5, "compare": "ours/peer", "goal": ">= 1.5"}

where ``compare`` says how the two figures become the ratio column (``ours/peer``, ``peer/ours``
for a speed-up from times, ``ours-peer`` for a difference of accuracies) and ``goal`` is the
issue's goal on that ratio as text (``None`` where the issue states none). :func:`finish` adds
the ratio, the goal's predicate and whether it is met; :func:`run` turns a failing benchmark into
one error row. ``python -m benchmarks`` (``benchmarks/__main__.py``) runs them and prints the table.
"""

from __future__ import annotations

import importlib
import logging
import operator
import re
import time
import traceback

NAMES = ("cnn_throughput", "fashion_mnist", "optimizer_step", "rnn_layers", "word2vec",
         "multitask", "fast_recipe", "checkpoint_cost", "best_epoch", "data_cache")
COLUMNS = ("benchmark", "task", "peer", "deepnotes", "peer figure", "ratio", "goal", "met")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_COMPARE = {"ours/peer": lambda a, b: a / b, "peer/ours": lambda a, b: b / a,
            "ours-peer": lambda a, b: a - b}
log = logging.getLogger("benchmarks")


def goal_predicate(goal: str | None):
    """``">= 1.5"`` -> a function of the ratio that says whether the goal is met; ``None`` for no
    goal. A bad goal raises ValueError naming it."""
    if goal is None:
        return None
    match = re.fullmatch(r"\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d*)?)\s*", goal)
    if not match:
        raise ValueError(f"goal {goal!r}: expected an operator and a number, e.g. '>= 1.5'")
    op, bound = _OPS[match[1]], float(match[2])
    return lambda ratio: ratio is not None and op(ratio, bound)


def finish(row: dict, benchmark: str) -> dict:
    """A benchmark's row with ``benchmark``, ``ratio``, ``goal_text`` and ``met`` (True, False,
    or None where no goal is stated) filled in."""
    row = {"benchmark": benchmark, "error": None, "goal": None, "compare": "ours/peer", **row}
    ours, peer = row.get("ours"), row.get("peer_figure")
    ratio = None
    if ours is not None and peer is not None and not (peer == 0 and "/" in row["compare"]):
        ratio = _COMPARE[row["compare"]](ours, peer)
    predicate = goal_predicate(row["goal"])
    row["ratio"] = ratio
    row["goal_text"] = "-" if row["goal"] is None else f"{row['compare']} {row['goal'].strip()}"
    row["met"] = None if predicate is None or row["error"] else predicate(ratio)
    return row


def error_row(benchmark: str, exc: BaseException) -> dict:
    """The row of a benchmark that could not run: its error in place of figures."""
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return finish({"task": "(did not run)", "peer": "-", "unit": "", "ours": None,
                   "peer_figure": None, "error": message}, benchmark)


def run(name: str, quick: bool, device: str, module=None) -> tuple[list[dict], float]:
    """Run one benchmark's ``rows``; any exception becomes one error row. Returns the finished
    rows and the seconds taken."""
    start = time.perf_counter()
    try:
        module = module or importlib.import_module(f"benchmarks.{name}")
        rows = [finish(row, name) for row in module.rows(quick=quick, device=device)]
    except Exception as exc:  # noqa: BLE001 - the suite reports, it does not crash
        log.warning("benchmark %s failed:\n%s", name, traceback.format_exc())
        rows = [error_row(name, exc)]
    return rows, time.perf_counter() - start


def figure(value, unit: str = "") -> str:
    """A figure in the table: thousands separated when large, three significant digits else."""
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def cells(row: dict) -> list[str]:
    """The table cells of one finished row."""
    if row["error"]:
        return [row["benchmark"], f"error: {row['error']}", row["peer"], "-", "-", "-", "-", "-"]
    ratio = row["ratio"]
    if ratio is None:
        ratio_text = "-"
    elif row["compare"] == "ours-peer":
        ratio_text = f"{ratio:+.2f}"
    else:
        ratio_text = f"{ratio:.2f}"
    met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
    return [row["benchmark"], row["task"], row["peer"], figure(row["ours"], row["unit"]),
            figure(row["peer_figure"], row["unit"]), ratio_text, row["goal_text"], met]


def table(rows: list[dict]) -> str:
    """The rows as one Markdown table (readable as plain text too)."""
    lines = [f"| {' | '.join(COLUMNS)} |", f"| {' | '.join('---' for _ in COLUMNS)} |"]
    lines += [f"| {' | '.join(c.replace('|', '/') for c in cells(row))} |" for row in rows]
    return "\n".join(lines)


def tally(rows: list[dict]) -> str:
    """One line: how many goals were met, missed, not stated, and how many benchmarks failed."""
    met = sum(r["met"] is True for r in rows)
    missed = sum(r["met"] is False for r in rows)
    errors = sum(bool(r["error"]) for r in rows)
    return (f"goals met: {met}, not met: {missed}, rows without a goal: "
            f"{len(rows) - met - missed - errors}, errors: {errors}")
