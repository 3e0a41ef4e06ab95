"""Run ``deepnotes ARGS`` in a child process forked from a warm server (``fault_zygote``), so that
the fault-injection tests can start hundreds of short runs, and SIGKILL them, cheaply. The
children compute on one CPU thread."""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing import forkserver
from pathlib import Path

PRELOAD = ["faults", "fault_zygote"]
KILLED = -signal.SIGKILL
HERE = Path(__file__).resolve().parent


def context() -> multiprocessing.context.BaseContext:
    """The fork server, started now with this folder on its path (Python 3.11's fork server does
    not take the parent's sys.path, only its environment)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), before]))
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    return ctx


def run(ctx, args, env: dict | None = None, timeout: float = 120) -> int:
    """Exit status of ``deepnotes ARGS`` in a child with ``env`` added (-9 when it was killed)."""
    proc = ctx.Process(target=_child, args=([str(a) for a in args], env or {}))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"deepnotes {' '.join(map(str, args))} ran past {timeout} s")
    return proc.exitcode


def _child(args: list[str], env: dict) -> None:
    from deepnotes.cli import main

    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        rc = main(args)
    except SystemExit as exc:
        rc = exc.code
    os._exit(rc if isinstance(rc, int) else 1)
