"""Hostile inputs (the README's "When something is wrong" lists them): seeds out of range,
devices that are not there, vectors holding NaN, dirty image folders, pickles that would run code,
outputs that cannot be written, and the warnings that go with them. Bad input is one ``error:``
line on stderr, exit status 2, no traceback, nothing written; a warning is one ``warning:`` line,
printed once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import spawn, warnings_of
from deepnotes.embeddings import corpus as corpus_module
from deepnotes.embeddings import formats

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here")
HUGE_SEED = "99999999999999999999"  # above 2**64 - 1, torch's largest seed


def refused(result, *needles) -> str:
    """Exit status 2 and one ``error:`` line on stderr naming every needle; the line."""
    rc, out, err = result
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    words = "cat dog cow pig hammer saw drill vise".split()
    path.write_text("\n".join(" ".join(words[(i + j) % 8] for j in range(10))
                              for i in range(200)) + "\n")
    return path


@pytest.fixture
def unread(monkeypatch):
    """Fail the test if the corpus is read: a refusal must come before any reading."""
    def never(path, *args):
        raise AssertionError(f"the corpus {path} was read")
        yield  # pragma: no cover
    monkeypatch.setattr(corpus_module, "iter_file", never)


W2V_SMALL = ["--vector-size", "4", "--min-count", "1", "--epochs", "1", "--workers", "1",
             "--quiet"]


# ---------------------------------------------------------------- 1. seeds


@pytest.mark.parametrize("seed", [HUGE_SEED, "-1", "1000000000"], ids=["huge", "negative", "1e9"])
@pytest.mark.parametrize("command", ["train", "compare-optimizers", "tune"])
def test_seed_out_of_range_is_refused_before_any_work(cli, tmp_path, command, seed):
    runs = tmp_path / "runs"
    refused(cli(command, "--data", "breast-cancer", "--epochs", 1, "--out", runs, "--seed", seed),
            f"--seed {seed}", "expected an integer from 0 to")
    assert not runs.exists() or not any(runs.iterdir())


def test_finetune_seed_out_of_range_is_refused(cli, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")  # never opened: the seed is refused first
    runs = tmp_path / "runs"
    refused(cli("finetune", weights, "--model", "mlp", "--data", "breast-cancer", "--out", runs,
                "--seed", HUGE_SEED), f"--seed {HUGE_SEED}")
    assert not runs.exists()


def test_augmenting_with_the_largest_seed_works():
    """The bound of --seed (10**8) keeps the loader's derived seeds inside torch's 64 bits."""
    from deepnotes.data.loader import Batches

    x, y = torch.zeros(6, 1, 4, 4), torch.arange(6)
    batches = Batches(x, y, torch.arange(6), 2, lambda t: t, shuffle=True, seed=10**8,
                      augment=lambda t, g, *_: t + torch.rand(t.shape, generator=g))
    assert len(list(batches.epoch(epoch=10**6))) == 3


@pytest.mark.parametrize("seed", [HUGE_SEED, "-1"])
def test_word2vec_seed_out_of_range_is_refused(cli, tmp_path, corpus, unread, seed):
    out = tmp_path / "v.txt"
    refused(cli("word2vec", "train", corpus, "--out", out, "--seed", seed, *W2V_SMALL),
            f"--seed {seed}")
    assert not out.exists()


def test_word2vec_library_refuses_a_seed_torch_cannot_take():
    from deepnotes.embeddings import Word2Vec
    from deepnotes.errors import DeepnotesError

    with pytest.raises(DeepnotesError, match="seed"):
        Word2Vec([["a", "b"]], min_count=1, seed=2**64)


# ---------------------------------------------------------------- 2. word2vec --device


@pytest.mark.parametrize("device", [
    pytest.param("cuda", marks=NO_CUDA), pytest.param("cuda:0", marks=NO_CUDA), "tpu"])
def test_word2vec_device_not_there_is_one_line_before_reading(cli, tmp_path, corpus, unread,
                                                              device):
    out = tmp_path / "v.txt"
    refused(cli("word2vec", "train", corpus, "--out", out, "--device", device, *W2V_SMALL),
            "--device", device)
    assert not out.exists()


# ---------------------------------------------------------------- 3. --gpus without CUDA


@NO_CUDA
def test_gpus_without_cuda_is_an_error(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test
    runs = tmp_path / "runs"
    refused(cli("train", "--data", "breast-cancer", "--epochs", 1, "--out", runs, "--gpus", "1"),
            "--gpus 1", "no CUDA GPU")
    assert not runs.exists()


@pytest.mark.slow
@pytest.mark.cuda
def test_gpus_that_do_not_exist_are_an_error(tmp_path):
    """In a child process: a wrong CUDA_VISIBLE_DEVICES would hide the GPUs from this one."""
    child = spawn("train", "--data", "breast-cancer", "--epochs", 1, "--out", tmp_path / "runs",
                  "--gpus", "99")
    out, err = child.communicate(timeout=120)
    refused((child.returncode, out, err), "--gpus 99")


# ---------------------------------------------------------------- 4. NaN and inf in vectors


def write_vectors(path: Path, words, vectors) -> None:
    if path.suffix == ".safetensors":
        formats.save_native(path, words, torch.tensor(vectors), None)
    else:
        path.write_bytes(formats.word2vec_bytes(words, vectors, binary=path.suffix == ".bin"))


@pytest.mark.parametrize("suffix", [".txt", ".bin", ".safetensors"])
def test_vectors_holding_nan_or_inf_are_refused(cli, tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    vectors = np.array([[1, 2], [np.nan, 1], [3, 3], [np.inf, 2]], dtype=np.float32)
    write_vectors(path, ["cat", "dog", "cow", "mat"], vectors)
    line = refused(cli("word2vec", "similar", path, "cat"), path, "'dog'", "2 of 4")
    assert "NaN or inf" in line


def test_text_vectors_written_with_nan_by_hand_are_refused(cli, tmp_path):
    path = tmp_path / "hand.txt"
    path.write_text("3 2\ncat 1 2\ndog nan 1\nmat 2 -inf\n")
    refused(cli("word2vec", "analogy", path, "cat", "dog", "mat"), path, "'dog'")


# ---------------------------------------------------------------- 5. non-image files in a folder


def image_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 40 * i).save(root / cls / f"{i}.png")
    return root


def test_non_image_files_in_class_folders_are_counted_in_one_warning(tmp_path):
    from deepnotes.data import images

    root = image_folder(tmp_path / "imgs")
    (root / "a" / "notes.txt").write_text("my notes")
    (root / "b" / "labels.csv").write_text("x,y\n")
    (root / "b" / "README").write_text("?")
    (root / "b" / ".DS_Store").write_bytes(b"\0")  # junk: silent, as before
    (root / "a" / ".ipynb_checkpoints").mkdir()
    (root / "a" / ".ipynb_checkpoints" / "x-checkpoint.txt").write_text("")
    (root / "__MACOSX" / "a").mkdir(parents=True)
    (root / "__MACOSX" / "a" / "._0.png").write_bytes(b"\0")
    with warnings_of("deepnotes.data.images") as said:
        data = images.load_image_folder(root, size=8)
    assert len(data.y) == 4
    assert len(said) == 1, said
    assert "skipped 3 files that are not images" in said[0] and str(root) in said[0]
    assert f"a{os.sep}notes.txt" in said[0], said[0]


def test_junk_alone_gives_no_warning(tmp_path):
    from deepnotes.data import images

    root = image_folder(tmp_path / "imgs")
    (root / "b" / ".DS_Store").write_bytes(b"\0")
    (root / "a" / "Thumbs.db").write_bytes(b"\0")
    with warnings_of("deepnotes.data.images") as said:
        images.load_image_folder(root, size=8)
    assert said == []


# ---------------------------------------------------------------- 6. a pickle given as weights


class RunsCode:
    """Unpickling this calls os.system: what a malicious .pth file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(cli, tmp_path):
    marker, weights = tmp_path / "it-ran", tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": RunsCode(marker)}, weights)
    runs = tmp_path / "runs"
    line = refused(cli("finetune", weights, "--model", "mlp", "--data", "breast-cancer",
                       "--epochs", 1, "--out", runs, "--quiet"),
                   weights, f"a pickled {os.system.__module__}.system,", "could run code")
    assert "weights_only" not in line and "=False" not in line and "corrupt" not in line
    assert not marker.exists()
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("message", [
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will "
    "likely succeed, but it can result in arbitrary code execution.\n\nTrying to load "
    "unsupported GLOBAL posix.system whose module posix is blocked.\n\nCheck the documentation",
    "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will "
    "likely succeed, but it can result in arbitrary code execution.\n Please file an issue.\n\n"
    "Unsupported global: GLOBAL posix.system was not an allowed global by default. Please use "
    "`torch.serialization.add_safe_globals([system])` to allowlist this global.",
], ids=["torch-2.13", "torch-2.4"])
def test_refusal_names_the_global_in_both_wordings(message):
    from deepnotes.models.weights import _refusal

    line = _refusal(Path("w.pth"), message)
    assert "a pickled posix.system," in line and "could run code" in line, line
    assert "corrupt" not in line, line
    assert "weights_only" not in line and "add_safe_globals" not in line and "\n" not in line


def test_refusal_of_other_pickles_gives_no_advice_to_unpickle():
    from deepnotes.models.weights import _refusal

    message = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to "
               "`False` will likely succeed.\n\nUnsupported operand 149\n\nCheck the docs")
    line = _refusal(Path("w.pth"), message)
    assert "Unsupported operand 149" in line and "weights_only" not in line, line


# ---------------------------------------------------------------- 7. word2vec --out


@pytest.mark.parametrize("out, needle", [
    ("missing/v.txt", "does not exist"),
    ("v.model", "'.model'"),
    ("folder", "is a folder"),
], ids=["no-folder", "unknown-extension", "a-folder"])
def test_word2vec_out_checked_before_reading(cli, tmp_path, corpus, unread, out, needle):
    (tmp_path / "folder").mkdir()
    refused(cli("word2vec", "train", corpus, "--out", tmp_path / out, *W2V_SMALL),
            f"--out {tmp_path / out}", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "folder"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_word2vec_out_in_a_read_only_folder(cli, tmp_path, corpus, unread):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(cli("word2vec", "train", corpus, "--out", locked / "v.txt", *W2V_SMALL),
                "--out", "not writable")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------- 8. undecodable bytes, once


def test_undecodable_bytes_warned_once(cli, tmp_path):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(b"the cat \xff sat on the mat\nthe dog sat\n" * 20)
    rc, _, err = cli("word2vec", "train", corpus, "--out", tmp_path / "v.txt", *W2V_SMALL)
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:"), err
    assert "20 invalid UTF-8 byte" in lines[0]


# ---------------------------------------------------------------- 9. duplicate words, one warning


@pytest.mark.parametrize("suffix", [".txt", ".bin"])
def test_duplicate_words_are_one_logged_warning(cli, tmp_path, suffix):
    path = tmp_path / f"dup{suffix}"
    vectors = np.array([[1, 2], [3, 1], [2, 2], [9, 9], [1, 1]], dtype=np.float32)
    write_vectors(path, ["cat", "dog", "cat", "dog", "cow"], vectors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings.warn
        rc, out, err = cli("word2vec", "similar", path, "cat", "--topn", 2)
    assert rc == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:"), err
    assert str(path) in lines[0] and "2 duplicate words" in lines[0] and "'cat'" in lines[0]
    assert out.splitlines()[0] == "cow\t0.9487"  # cat's first vector (1, 2), not (2, 2)


# ---------------------------------------------------------------- 10. --nproc, one line


def test_torchrun_options_that_are_not_are_one_line(cli, tmp_path):
    refused(cli("train", "--nproc", 2, "--torchrun=--bogus", "--out", tmp_path / "runs"),
            "--torchrun", "--bogus")


@pytest.mark.slow
def test_a_rank_that_refuses_its_input_gives_one_line(tmp_path):
    child = spawn("train", "--nproc", 2, "--epochs", 0, "--out", tmp_path / "runs")
    out, err = child.communicate(timeout=300)
    refused((child.returncode, out, err), "--epochs 0")
