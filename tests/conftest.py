"""Shared helpers: run the CLI in this process or in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deepnotes.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``deepnotes ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def spawn(*args, **kwargs) -> subprocess.Popen:
    """``python -m deepnotes ARGS`` as a child process with pipes for stdout and stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepnotes", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **kwargs)


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(capsys, *args)
