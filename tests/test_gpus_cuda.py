"""``--gpus``: the notes' ``CUDA_VISIBLE_DEVICES=1 python xxx.py`` from inside the program.

The variable only works if it is set before CUDA starts: ``torch.cuda.is_available()`` (by default
``cudaGetDeviceCount``, which runs ``cuInit``), ``device_count()`` without NVML, and anything that
initialises CUDA fix the set of visible GPUs for the rest of the process. So nothing between the
start of the program and ``set_visible_gpus`` may ask CUDA anything. On a CPU-only machine CUDA
never starts, so ``torch.cuda.is_initialized()`` cannot catch a mistake there; instead the tests
below replace torch.cuda's entry points with recorders and check that every call comes after the
variable is set. On a machine with two GPUs a child process checks that ``--gpus 1`` makes the
second GPU cuda:0 and the only one visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from deepnotes.cli import build_parser, main

# torch.cuda functions that start CUDA, or ask the driver (and so fix the visible devices)
WATCHED = {
    "is_available": False, "device_count": 0, "init": None, "_lazy_init": None,
    "current_device": 0, "set_device": None, "get_device_properties": None,
    "get_device_name": "", "get_device_capability": (0, 0), "is_bf16_supported": False,
    "mem_get_info": (0, 0), "synchronize": None, "get_rng_state_all": [],
    "set_rng_state_all": None,
}


@pytest.fixture
def cuda_calls(monkeypatch):
    """Replace torch.cuda's entry points by recorders that answer "no GPU" and start nothing;
    returns the list of (function, CUDA_VISIBLE_DEVICES at the time of the call)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unset")  # remembered, restored after the test
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    calls: list[tuple[str, str | None]] = []

    def recorder(name, answer):
        def call(*args, **kwargs):
            calls.append((name, os.environ.get("CUDA_VISIBLE_DEVICES")))
            return answer
        return call

    for name, answer in WATCHED.items():
        monkeypatch.setattr(torch.cuda, name, recorder(name, answer), raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    return calls


@pytest.mark.parametrize("argv", [
    ["devices", "--gpus", "1"],
    ["train", "--data", "digits", "--gpus", "1", "--device", "cuda:0", "--epochs", "1"],
], ids=["devices", "train"])
def test_building_the_parser_and_parsing_ask_cuda_nothing(cuda_calls, argv):
    args = build_parser().parse_args(argv)
    assert cuda_calls == []
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # parsing alone sets nothing
    assert args.gpus == "1"


def test_devices_sets_the_variable_before_asking_cuda(cuda_calls, capsys):
    assert main(["devices", "--gpus", "1"]) == 0
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert cuda_calls, "deepnotes devices asked CUDA nothing: the check would prove nothing"
    early = [name for name, env in cuda_calls if env != "1"]
    assert early == [], f"torch.cuda.{early} called before CUDA_VISIBLE_DEVICES was set"
    assert "cpu" in capsys.readouterr().out


def test_train_sets_the_variable_before_asking_cuda(cuda_calls, capsys, tmp_path):
    rc = main(["train", "--data", "digits", "--gpus", "1", "--epochs", "1",
               "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and "--gpus 1" in err  # the recorders say there is no GPU
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert cuda_calls, "deepnotes train --gpus asked CUDA nothing: the check would prove nothing"
    early = [name for name, env in cuda_calls if env != "1"]
    assert early == [], f"torch.cuda.{early} called before CUDA_VISIBLE_DEVICES was set"
    assert not (tmp_path / "runs").exists()


# A fresh interpreter: the recorders are in place before deepnotes is imported, so importing the
# CLI and every subcommand module (and the handler's own imports) is covered too.
FRESH = textwrap.dedent("""
    import json, os, sys
    import torch
    WATCHED = {watched!r}
    calls = []
    def recorder(name, answer):
        def call(*args, **kwargs):
            calls.append((name, os.environ.get("CUDA_VISIBLE_DEVICES")))
            return answer
        return call
    for name, answer in WATCHED.items():
        setattr(torch.cuda, name, recorder(name, answer))
    from deepnotes.cli import main
    imported = list(calls)
    rc = main(sys.argv[1:])
    print(json.dumps({{"imported": imported, "calls": calls, "rc": rc,
                      "initialized": torch.cuda.is_initialized(),
                      "env": os.environ.get("CUDA_VISIBLE_DEVICES")}}))
""")


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {**env, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["devices", "--gpus", "1"],
                                  ["train", "--data", "digits", "--gpus", "1", "--epochs", "1"]],
                         ids=["devices", "train"])
def test_a_fresh_process_asks_cuda_nothing_before_the_variable_is_set(argv, tmp_path):
    script = FRESH.format(watched=WATCHED)
    child = subprocess.run([sys.executable, "-c", script, *argv, *(
        ["--out", str(tmp_path / "runs")] if argv[0] == "train" else [])],
        capture_output=True, text=True, env=clean_env(), timeout=300, cwd=tmp_path)
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["imported"] == []  # importing deepnotes.cli asks CUDA nothing
    assert report["env"] == "1"
    assert report["calls"], "the command asked CUDA nothing: the check would prove nothing"
    early = [name for name, env in report["calls"] if env != "1"]
    assert early == [], f"torch.cuda.{early} called before CUDA_VISIBLE_DEVICES was set"
    assert report["initialized"] is False


# ---------------------------------------------------------------- on two GPUs
def child_report(gpus: str, cwd) -> dict:
    """In a fresh process: run ``deepnotes devices --gpus GPUS`` through the CLI, then report
    what that process sees."""
    code = textwrap.dedent(f"""
        import json, os, torch
        from deepnotes.cli import main
        from deepnotes.device import resolve_device
        rc = main(["devices", "--gpus", {gpus!r}])
        print(json.dumps({{"rc": rc, "env": os.environ.get("CUDA_VISIBLE_DEVICES"),
                          "count": torch.cuda.device_count(),
                          "auto": str(resolve_device("auto")),
                          "uuid": str(torch.cuda.get_device_properties(0).uuid)}}))
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=clean_env(), timeout=300, cwd=cwd)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def physical_uuids(cwd) -> list[str]:
    """The UUID of every GPU, in CUDA's order, seen by a process without the variable."""
    code = ("import json, torch; print(json.dumps([str(torch.cuda.get_device_properties(i).uuid)"
            " for i in range(torch.cuda.device_count())]))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=clean_env(), timeout=300, cwd=cwd)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def check_gpus_option(index: int, tmp_path) -> None:
    """``--gpus INDEX``: that GPU, and only it, is visible, as cuda:0, the device auto picks."""
    gpus = str(index)
    uuids = physical_uuids(tmp_path)
    assert len(uuids) > index

    listing = subprocess.run([sys.executable, "-m", "deepnotes", "devices", "--gpus", gpus],
                             capture_output=True, text=True, env=clean_env(), timeout=300,
                             cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    cuda_lines = [line for line in listing.stdout.splitlines() if line.startswith("cuda")]
    assert len(cuda_lines) == 1 and cuda_lines[0].startswith("cuda:0 "), listing.stdout

    report = child_report(gpus, tmp_path)
    assert report == {"rc": 0, "env": gpus, "count": 1, "auto": "cuda:0",
                      "uuid": uuids[index]}

    runs = tmp_path / "runs"
    train = [sys.executable, "-m", "deepnotes", "train", "--data", "digits", "--epochs", "1",
             "--gpus", gpus, "--out", str(runs)]
    child = subprocess.run([*train, "--name", "auto"], capture_output=True, text=True,
                           env=clean_env(), timeout=300, cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    assert " on cuda:0; run folder" in child.stderr, child.stderr  # the log line names the device
    # only one GPU is visible: cuda:1 does not exist in that process
    child = subprocess.run([*train, "--device", "cuda:1", "--name", "second"],
                           capture_output=True, text=True, env=clean_env(), timeout=300,
                           cwd=tmp_path)
    assert child.returncode == 2 and "only 1 CUDA GPU(s) visible" in child.stderr, child.stderr
    assert not (runs / "second").exists()


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_gpus_1_makes_the_second_gpu_cuda_0_and_the_only_one(tmp_path):
    check_gpus_option(1, tmp_path)
