"""``deepnotes runs [FOLDER]``: the run folders under FOLDER, one row each, as a table or JSON."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    from deepnotes.runs.table import COLUMNS, DESCENDING

    p = sub.add_parser(
        "runs", help="list the runs in a folder: model, data, epochs, scores, time, status",
        description="One row per run folder directly under FOLDER: model, data, epochs run and "
        "asked for, the kept (best) epoch, dev and test accuracy and macro F1, wall time in "
        "seconds, and status: finished, diverged (NaN loss), interrupted (SIGTERM, Ctrl-C or "
        "killed; continue it with deepnotes train --resume) or damaged (a file cannot be read). "
        "Folders that are not deepnotes runs are left out; - marks a missing value.")
    p.add_argument("folder", metavar="FOLDER", nargs="?", default="runs",
                   help="the folder holding run folders: deepnotes train's --out (runs)")
    p.add_argument("--sort", default="name", metavar="KEY",
                   help=f"the column to sort by: {', '.join(COLUMNS)} (name); "
                   f"{', '.join(DESCENDING)} highest first, the others from the lowest; "
                   "missing values last")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of the rows (one object each, keyed by column)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.runs.table import check_key, format_table, list_runs, records, sort_rows

    key = check_key(args.sort)  # a bad key is refused before any folder is read
    rows = sort_rows(list_runs(args.folder), key)
    if args.json:
        print(json.dumps(records(rows), indent=1))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no runs found under {args.folder}")
    return 0
