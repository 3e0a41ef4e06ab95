"""The ``deepnotes`` command: one module per subcommand, each thin (parse, call the library, print).

Errors a user can act on (:class:`DeepnotesError`, bad arguments, OS errors such as a full disk,
running out of memory) are printed as one line on stderr with exit status 2; an interrupt exits
with 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from deepnotes.errors import DeepnotesError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line instead of usage plus a line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from deepnotes.cli import (
        bench,
        compare,
        devices,
        diagnose,
        evaluate,
        export,
        finetune,
        learning_curve,
        predict,
        runs,
        sample,
        sequences,
        summary,
        train,
        tune,
        word2vec,
    )

    parser = _Parser(prog="deepnotes",
                     description="Deep learning from the course notes: train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (train, evaluate, predict, export, runs, sequences, compare, tune, word2vec,
                   devices, summary, diagnose, learning_curve, finetune, bench, sample):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc reruns it
    # progress bars on a terminal only: a log file gets the log's one line an epoch instead
    args.progress = not getattr(args, "quiet", False) and sys.stderr.isatty()
    _log_to_stderr(quiet=getattr(args, "quiet", False))
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args) or 0
    except DeepnotesError as exc:
        from deepnotes.train import TrainingInterrupted

        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike
            print(f"error: {exc}", file=sys.stderr)
        return 130 if isinstance(exc, TrainingInterrupted) else 2
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or ["no details"])[0][:200]
        print(f"error: out of memory ({first}); try a smaller --batch-size, --image-size or "
              "model", file=sys.stderr)
        return 2


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed: Python's MemoryError, torch's CPU allocator
    or a CUDA out-of-memory error."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or \
        "out of memory" in text.lower()


class _Formatter(logging.Formatter):
    def format(self, record):
        prefix = ("error: " if record.levelno >= logging.ERROR else
                  "warning: " if record.levelno >= logging.WARNING else "")
        return prefix + record.getMessage()


def _log_to_stderr(quiet: bool) -> None:
    """The library logs; the CLI shows INFO (epoch lines) plainly, warnings as ``warning:`` and
    errors as ``error:``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("deepnotes")
    root.handlers[:] = [handler]
    quiet = quiet or os.environ.get("RANK", "0") != "0"  # under torchrun, rank 0 speaks
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def _version() -> str:
    import deepnotes

    return f"deepnotes {deepnotes.__version__}"
