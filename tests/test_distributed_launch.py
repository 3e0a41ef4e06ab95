"""``train --nproc``'s launcher (train.distributed.launch) when a rank fails, with torchrun's
launcher replaced: what it returns, and that the library logs its line rather than printing it."""

from __future__ import annotations

import logging

import pytest
import torch.distributed.launcher.api as launcher_api
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from deepnotes.train import distributed


def failing_launch(rank: int, exitcode: int):
    """An elastic_launch whose run fails: ``rank`` exited with ``exitcode``."""
    def launch(config, entrypoint):
        def run(*args):
            failure = ProcessFailure(local_rank=rank, pid=4000 + rank, exitcode=exitcode,
                                     error_file="")
            raise ChildFailedError("deepnotes", {rank: failure})
        return run
    return launch


@pytest.fixture
def records(monkeypatch):
    """The launcher's log records, kept from the handlers above it (an in-process CLI run of an
    earlier test leaves one on "deepnotes" that writes to that test's captured stderr)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # launch sets it when unset; restored after
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = logging.getLogger(distributed.__name__)
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def test_a_rank_that_fails_is_named_in_a_logged_error(monkeypatch, records, capsys):
    monkeypatch.setattr(launcher_api, "elastic_launch", failing_launch(rank=1, exitcode=3))
    assert distributed.launch(["train", "--data", "digits"], 2, []) == 3
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.ERROR, "training on 2 processes stopped: rank 1 exited with status 3")]
    assert capsys.readouterr() == ("", "")  # the library prints nothing; the CLI shows the log


@pytest.mark.parametrize("exitcode", [2, 130])
def test_refused_input_or_an_interrupt_returns_the_ranks_status_and_adds_nothing(
        monkeypatch, records, capsys, exitcode):
    monkeypatch.setattr(launcher_api, "elastic_launch", failing_launch(rank=0, exitcode=exitcode))
    assert distributed.launch(["train", "--data", "digits"], 2, []) == exitcode
    assert records == [] and capsys.readouterr() == ("", "")  # rank 0 said why, once
