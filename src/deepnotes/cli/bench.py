"""``deepnotes bench``: the benchmark suite of a source checkout (``python -m benchmarks``).

The benchmarks live beside ``src/`` in the repository, not in the package: an installed wheel has
none, and the command says so in one line (exit status 2).
"""

from __future__ import annotations

from pathlib import Path

from deepnotes.errors import DeepnotesError


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmark suite against its peers (source checkout)",
                       description="Run every benchmark against its peer, print one table and "
                       "write the generated section of benchmarks/RESULTS.md.")
    p.add_argument("--quick", action="store_true", help="small sizes: under 10 minutes, 2 cores")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these benchmarks (e.g. word2vec rnn_layers)")
    p.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--out", help="Markdown file for the table (default benchmarks/RESULTS.md; "
                   "'-' writes nothing)")
    p.set_defaults(handler=run)


def checkout_root() -> Path:
    """The repository root of a source checkout: src/deepnotes/cli/bench.py -> parents[3]."""
    return Path(__file__).resolve().parents[3]


def suite_command(args) -> list[str]:
    """``python -m benchmarks`` with the options given."""
    import sys

    command = [sys.executable, "-m", "benchmarks"]
    if args.quick:
        command.append("--quick")
    if args.only:
        command += ["--only", *args.only]
    for option in ("device", "out"):
        if getattr(args, option):
            command += [f"--{option}", getattr(args, option)]
    return command


def suite_names(root: Path) -> list[str]:
    """``benchmarks.NAMES``, read from the source (importing the suite would import torch and
    the peers before a bad name is refused)."""
    import ast

    tree = ast.parse((root / "benchmarks" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NAMES"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise DeepnotesError(f"{root / 'benchmarks' / '__init__.py'}: no NAMES tuple")


def run(args) -> int:
    import subprocess

    from deepnotes.device import resolve_device
    from deepnotes.errors import unknown_name

    root = checkout_root()
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise DeepnotesError(f"no benchmarks folder at {root / 'benchmarks'}: `deepnotes bench` "
                             "needs a source checkout (an installed wheel has no benchmarks)")
    names = suite_names(root)
    for name in args.only or ():
        if name not in names:
            raise DeepnotesError("--only: " + unknown_name("benchmark", name, names))
    if args.device:
        resolve_device(args.device)  # a device that exists, before minutes of peers
    return subprocess.run(suite_command(args), cwd=root).returncode
