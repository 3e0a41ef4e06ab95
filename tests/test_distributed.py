"""Data-parallel training (DDP on Gloo, two CPU processes) against one process, same batch."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from safetensors.torch import load_file

from conftest import close, spawn, write_photos, write_table
from deepnotes.data.loader import Batches, Normalizer

COMMON = ["train", "--data", "breast-cancer", "--batch-size", "32", "--optimizer", "momentum",
          "--schedule", "constant", "--quiet"]


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def test_shards_of_a_batch_are_its_equal_slices_in_order():
    x = torch.arange(40, dtype=torch.float32).view(20, 2)
    y = torch.arange(20)
    kw = dict(shuffle=True, drop_last=True, seed=3)
    whole = list(Batches(x, y, torch.arange(20), 8, Normalizer([], [], 1.0), **kw).epoch(1))
    parts = [list(Batches(x, y, torch.arange(20), 8, Normalizer([], [], 1.0), shard=(r, 2),
                          **kw).epoch(1)) for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 2
    for b, (xb, yb) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), yb)
        assert torch.equal(torch.cat([parts[0][b][0], parts[1][b][0]]), xb)


@pytest.mark.slow  # starts processes
def test_two_processes_train_what_one_process_trains(cli, tmp_path):
    rc, out, err = cli(*COMMON, "--epochs", 2, "--out", tmp_path, "--name", "one")
    assert rc == 0, err
    rc, _, err = cli(*COMMON, "--epochs", 2, "--out", tmp_path, "--name", "two", "--nproc", 2)
    assert rc == 0, err
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for k in one:
        close(two[k], one[k], rtol=1e-4, atol=1e-5)
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for split in ("train", "dev", "test"):
        assert m2[split]["loss"] == pytest.approx(m1[split]["loss"], rel=1e-4)
        assert m2[split]["accuracy"] == m1[split]["accuracy"]
    h1 = (tmp_path / "one" / "history.csv").read_text().splitlines()
    h2 = (tmp_path / "two" / "history.csv").read_text().splitlines()
    assert len(h1) == len(h2) == 3
    for a, b in zip(h1[1:], h2[1:]):  # training loss and accuracy are summed over the ranks
        assert [round(float(v), 4) for v in a.split(",")[:5]] == \
            [round(float(v), 4) for v in b.split(",")[:5]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # one folder, rank 0's


@pytest.mark.slow  # starts processes
def test_torchrun_itself_runs_deepnotes_train(cli, tmp_path):
    import subprocess
    import sys

    rc, _, err = cli(*COMMON, "--epochs", 1, "--out", tmp_path, "--name", "one")
    assert rc == 0, err
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", "-m", "deepnotes", *COMMON, "--epochs", "1",
                           "--out", str(tmp_path), "--name", "torchrun"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run folder:") == 1  # rank 0 alone reports
    one, two = weights(tmp_path / "one"), weights(tmp_path / "torchrun")
    for k in one:
        close(two[k], one[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # starts processes
@pytest.mark.parametrize("data", ["dates:200", "TEXT"])
def test_sequence_models_train_on_two_processes(cli, tmp_path, data):
    """Teacher forcing reaches the encoder-decoder inside DDP; a language model's windows too."""
    if data == "TEXT":
        data = tmp_path / "text.txt"
        data.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    rc, _, err = cli("train", "--data", data, "--epochs", 1, "--batch-size", 16, "--quiet",
                     "--out", tmp_path, "--name", "seq", "--nproc", 2)
    assert rc == 0, err
    assert json.loads((tmp_path / "seq" / "metrics.json").read_text())["test"]["loss"] > 0


@pytest.mark.slow  # starts processes
def test_a_distributed_run_resumes(cli, tmp_path):
    rc, _, err = cli(*COMMON, "--epochs", 2, "--out", tmp_path, "--name", "full", "--nproc", 2)
    assert rc == 0, err
    rc, _, err = cli(*COMMON, "--epochs", 1, "--out", tmp_path, "--name", "part", "--nproc", 2)
    assert rc == 0, err
    rc, _, err = cli(*COMMON, "--epochs", 2, "--resume", tmp_path / "part", "--allow-changes",
                     "--nproc", 2)
    assert rc == 0, err
    full, part = weights(tmp_path / "full"), weights(tmp_path / "part")
    for k in full:
        close(part[k], full[k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # starts processes
@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "33"], "--batch-size 33: with 2 processes the global batch must be a "
                             "multiple of 2"),
    (["--model", "nosuchnet"], "nosuchnet"),
])
def test_bad_input_under_two_processes_is_one_line_per_launch(capfd, tmp_path, args, needle):
    from deepnotes.cli import main

    rc = main(["train", "--data", "breast-cancer", "--epochs", "1", "--quiet", "--out",
               str(tmp_path), "--nproc", "2", *args])
    assert rc == 2
    err = capfd.readouterr().err  # the ranks write to the file descriptors themselves
    lines = err.strip().splitlines()
    assert any(needle in line for line in lines), err
    assert "Traceback" not in err and len(lines) <= 2
    assert not any(tmp_path.iterdir())


def test_nproc_must_be_positive(cli, tmp_path):
    rc, _, err = cli("train", "--data", "breast-cancer", "--nproc", 0, "--out", tmp_path)
    assert rc == 2 and "--nproc 0: expected at least 1" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts processes
def test_two_torchrun_nodes_train_what_one_process_trains(cli, tmp_path):
    """Two "nodes" on this machine (torchrun --nnodes=2, static rendezvous on 127.0.0.1), one
    rank each, reading streamed batches from one decoded cache on a shared filesystem: built
    once (the second node's first rank waits for it), and the run equals one process's."""
    photos = write_photos(tmp_path / "photos", per_class=16)
    common = ["train", "--data", photos, "--model", "lenet5", "--epochs", 2, "--batch-size", 8,
              "--augment", "crop,flip", "--optimizer", "momentum", "--schedule", "constant",
              "--data-cache", "on", "--cache-dir", tmp_path / "cache", "--quiet",
              "--out", tmp_path / "runs"]
    port = free_port()
    nodes = [spawn(*common, "--name", "nodes", "--nproc", 1, "--torchrun",
                   f"--nnodes=2 --node-rank={r} --master-addr=127.0.0.1 --master-port={port}")
             for r in range(2)]
    said = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], said
    assert said[0][0].count("run folder:") == 1 and "run folder:" not in said[1][0]
    built = list((tmp_path / "cache" / "images").iterdir())
    assert len(built) == 1 and "." not in built[0].name  # one cache, no lock or build left
    rc, _, err = cli(*common, "--name", "one")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["nodes", "one"]
    one, two = weights(tmp_path / "runs" / "one"), weights(tmp_path / "runs" / "nodes")
    for k in one:
        close(two[k], one[k], rtol=1e-4, atol=1e-5)
    m1 = json.loads((tmp_path / "runs" / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "runs" / "nodes" / "metrics.json").read_text())
    assert m2["test"]["accuracy"] == m1["test"]["accuracy"]
    assert m2["test"]["loss"] == pytest.approx(m1["test"]["loss"], rel=1e-4)


def run_on_a_terminal(*args) -> tuple[int, str]:
    """``python -m deepnotes ARGS`` with stderr on a pseudo-terminal 400 columns wide (so the
    ranks draw their progress bars): (exit status, all that stderr got)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "deepnotes", *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # starts processes
def test_the_bar_and_the_epoch_line_agree_on_the_rate_of_two_processes(tmp_path):
    """Both are all ranks' rows over the wall time: the bar's last figure of an epoch is within
    10% of the epoch line's (per-rank bars once said half)."""
    import re

    table = write_table(tmp_path / "t.csv", rows=4000)  # 400 steps an epoch: the bar redraws
    rc, said = run_on_a_terminal("train", "--data", table, "--epochs", 2, "--batch-size", 8,
                                 "--out", tmp_path, "--name", "r", "--nproc", 2)
    assert rc == 0, said[-2000:]
    bar, pairs = None, []
    for piece in re.split(r"[\r\n]", said):
        if m := re.search(r"rows/s=(\d+)", piece):
            bar = float(m.group(1))
        elif m := re.match(r"epoch \d+/2: .* \| (\d+) rows/s$", piece.strip()):
            pairs.append((bar, float(m.group(1))))
            bar = None
    assert len(pairs) == 2 and "img" not in said, said[-2000:]
    for bar, line in pairs:
        assert bar == pytest.approx(line, rel=0.1)
