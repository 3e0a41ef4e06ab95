"""--precision, --channels-last, --compile and --cuda-graphs: same results as float32 within
tolerance, clear refusals where a mode cannot run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import close
from deepnotes.errors import DeepnotesError
from deepnotes.train.precision import (
    autocast_dtype,
    check_compiler,
    check_cuda_graphs,
    inference_dtype,
)

DIGITS = ["train", "--data", "digits", "--quiet", "--seed", "1"]
HAS_COMPILER = any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_autocast_dtypes():
    cpu = torch.device("cpu")
    assert autocast_dtype("32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("16", torch.device("cuda")) is torch.float16
    with pytest.raises(DeepnotesError, match="needs a CUDA GPU"):
        autocast_dtype("16", cpu)
    with pytest.raises(DeepnotesError, match="expected one of 32, bf16, 16"):
        autocast_dtype("8", cpu)


def test_bf16_trains_to_the_float32_result_within_tolerance(cli, tmp_path):
    for name, extra in (("f32", []), ("bf16", ["--precision", "bf16"])):
        rc, _, err = cli("train", "--data", "breast-cancer", "--quiet", "--epochs", 5, "--out",
                         tmp_path, "--name", name, *extra)
        assert rc == 0, err
    a, b = metrics(tmp_path / "f32"), metrics(tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["precision"] == "bf16"
    for split in ("dev", "test"):
        assert abs(a[split]["accuracy"] - b[split]["accuracy"]) < 0.04
        assert b[split]["loss"] == pytest.approx(a[split]["loss"], abs=0.05)
    assert b["test"]["accuracy"] > 0.9


def test_old_bf16_flag_means_bf16_precision(cli, tmp_path):
    rc, _, err = cli(*DIGITS, "--epochs", 1, "--out", tmp_path, "--name", "old", "--bf16")
    assert rc == 0, err
    from deepnotes.runs.config import RunConfig, read_config

    assert read_config(tmp_path / "old").amp_precision == "bf16"
    assert RunConfig(bf16=False, precision=None).amp_precision == "32"


def test_float16_on_a_cpu_is_refused_before_any_folder(cli, tmp_path):
    rc, _, err = cli(*DIGITS, "--precision", "16", "--out", tmp_path)
    assert rc == 2 and err.count("\n") == 1
    assert "--precision 16 needs a CUDA GPU" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_float16_run_evaluates_on_a_cpu_in_float32(cli, tmp_path):
    """A run trained with --precision 16 on a GPU (its config says so) is evaluated on a CPU in
    float32, as a float32 run is: the same numbers."""
    rc, _, err = cli(*DIGITS, "--epochs", 1, "--out", tmp_path, "--name", "gpu")
    assert rc == 0, err
    rc, before, err = cli("evaluate", tmp_path / "gpu", "--device", "cpu", "--json")
    assert rc == 0, err
    path = tmp_path / "gpu" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "precision": "16"}))
    rc, after, err = cli("evaluate", tmp_path / "gpu", "--device", "cpu", "--json")
    assert rc == 0, err
    assert json.loads(after) == json.loads(before)
    assert inference_dtype("16", torch.device("cpu")) is None
    assert inference_dtype("16", torch.device("cuda")) is torch.float16
    assert inference_dtype("bf16", torch.device("cpu")) is torch.bfloat16


@pytest.mark.slow
def test_channels_last_gives_the_same_weights(cli, tmp_path):
    for name, extra in (("nchw", []), ("nhwc", ["--channels-last"])):
        rc, _, err = cli(*DIGITS, "--epochs", 1, "--out", tmp_path, "--name", name, *extra)
        assert rc == 0, err
    a = load_file(str(tmp_path / "nchw" / "model.safetensors"))
    b = load_file(str(tmp_path / "nhwc" / "model.safetensors"))
    for k in a:
        close(b[k], a[k], rtol=1e-3, atol=1e-4)


def test_compile_without_a_compiler_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DeepnotesError, match="needs a C"):
        check_compiler(torch.device("cpu"))
    rc, _, err = cli(*DIGITS, "--compile", "--out", tmp_path)
    assert rc == 2 and "--compile on the CPU needs a C++ compiler" in err
    assert err.count("\n") == 1


def test_cuda_graphs_are_refused_where_they_cannot_run_in_one_line(cli, tmp_path):
    cuda = torch.device("cuda")
    check_cuda_graphs(False, True, torch.device("cpu"), 4)  # not asked for: nothing to check
    check_cuda_graphs(True, False, cuda)
    with pytest.raises(DeepnotesError, match="choose one"):
        check_cuda_graphs(True, True, cuda)
    with pytest.raises(DeepnotesError, match="one process, and this run has 2"):
        check_cuda_graphs(True, False, cuda, 2)
    rc, _, err = cli(*DIGITS, "--cuda-graphs", "--device", "cpu", "--out", tmp_path)
    assert rc == 2 and err == "error: --cuda-graphs needs a CUDA GPU (this run is " \
        "on cpu); train without it\n"
    assert not any(tmp_path.iterdir())  # refused before the run folder


@pytest.mark.slow
def test_a_run_made_with_cuda_graphs_resumes_on_the_cpu_without_them(cli, tmp_path):
    """Its config.json says cuda_graphs (as a GPU run's does): --resume here trains on."""
    rc, _, err = cli(*DIGITS, "--epochs", "1", "--out", tmp_path, "--name", "g")
    assert rc == 0, err
    path = tmp_path / "g" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "cuda_graphs": True}))
    rc, _, err = cli("train", "--resume", tmp_path / "g", "--more-epochs", "1", "--quiet")
    assert rc == 0, err
    assert len((tmp_path / "g" / "history.csv").read_text().splitlines()) == 1 + 2


@pytest.mark.slow
@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_matches_eager(cli, tmp_path):
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        rc, _, err = cli(*DIGITS, "--epochs", 1, "--model", "lenet5", "--out", tmp_path,
                         "--name", name, *extra)
        assert rc == 0, err
    a, b = metrics(tmp_path / "eager"), metrics(tmp_path / "compiled")
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], rel=1e-3)
