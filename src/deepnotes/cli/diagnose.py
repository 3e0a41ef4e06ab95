"""``deepnotes diagnose RUN`` (bias, variance, data mismatch from a run's errors) and
``deepnotes errors RUN`` (the misclassified dev examples, for manual error analysis)."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "diagnose", help="avoidable bias, variance, data mismatch: which gap to work on",
        description="From a run's errors (1 - accuracy): avoidable bias = train - human error, "
        "variance = train-dev - train, data mismatch = dev - train-dev, overfitting to dev = "
        "test - dev, each with an approximate 95% interval from the splits' sizes. Names the "
        "largest gap, says when the ranking is within noise (and how many examples would "
        "settle it), and lists the course's actions for it that deepnotes offers.")
    p.add_argument("run", metavar="RUN", help="run folder written by deepnotes train")
    p.add_argument("--human-error", default="0", metavar="E",
                   help="human-level error, a proxy for Bayes error: a fraction (0.01) or a "
                   "percent (1%%) (0)")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.set_defaults(handler=run_diagnose)

    e = sub.add_parser(
        "errors", help="the misclassified dev examples, most confident first",
        description="Write the misclassified examples of a run's dev split for manual error "
        "analysis: errors.csv (rank, data-set index, true and predicted label, confidence) and, "
        "for image runs, a contact sheet errors.png. Most confident mistakes first.")
    e.add_argument("run", metavar="RUN", help="run folder written by deepnotes train")
    e.add_argument("--n", type=int, default=100, help="at most this many mistakes (100)")
    e.add_argument("--split", default="dev", choices=("train", "train_dev", "dev", "test"),
                   help="which split to analyse (dev)")
    e.add_argument("--out", help="folder for the files (default: the run folder)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    e.set_defaults(handler=run_errors)


def run_diagnose(args) -> int:
    from deepnotes.strategy import GAPS, SPLIT_NAMES, diagnose_run, parse_human_error

    human = parse_human_error(args.human_error)
    d = diagnose_run(args.run, human)
    if args.json:
        print(json.dumps(d.to_dict(), indent=1))
        return 0
    print(f"errors (1 - accuracy) of {args.run}:")
    print(f"  {'human (Bayes proxy)':<20} {d.human_error:>8.4f}")
    for name, error in d.errors.items():
        print(f"  {SPLIT_NAMES[name]:<20} {error:>8.4f}")
    print(f"{'gaps:':<36}95% interval" if d.intervals else "gaps:")
    for name, value in d.gaps.items():
        mark = "  <- largest" if name == d.largest else ""
        low, high = d.intervals.get(name, (None, None))
        span = f"  [{low:>7.4f}, {high:>7.4f}]" if low is not None else ""
        print(f"  {GAPS[name][0]:<20} {value:>8.4f}{span}   = {d.formula(name)}{mark}")
    for note in d.notes:
        print(f"note: {note}")
    doubt = ", uncertain (see the note)" if d.uncertain else ""
    print(f"largest gap{doubt}: {GAPS[d.largest][0]} ({d.gaps[d.largest]:.4f}); the course's "
          "actions:")
    for action in d.actions:
        print(f"  - {action}")
    return 0


def run_errors(args) -> int:
    from deepnotes.runs.error_analysis import write_error_analysis

    result = write_error_analysis(args.run, args.out, args.split, args.n, args.device)
    rows = result["rows"]
    if not rows:
        print(f"no misclassified {args.split} examples; wrote an empty {result['csv']}")
        return 0
    print(f"{len(rows)} misclassified {args.split} examples, most confident first "
          f"(confidence {rows[0]['confidence']:.3f} to {rows[-1]['confidence']:.3f})")
    print(f"wrote {result['csv']}")
    if result["png"] is not None:
        print(f"wrote {result['png']}")
    else:
        print(f"no contact sheet: a {result['kind']} run has no images; the CSV lists the "
              "examples by their index in the data set")
    return 0
