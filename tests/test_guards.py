"""Guards on the whole package: nothing in src/ can run code while loading a file (no pickle,
torch.save, torch.load without weights_only=True, or yaml.load: weights are safetensors, the rest
JSON), and the atomic writer is really atomic (a direct write in place of its rename fails a test).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deepnotes import atomic

SRC = Path(__file__).resolve().parents[1] / "src" / "deepnotes"


def source_lines():
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield path.relative_to(SRC), number, line


@pytest.mark.parametrize("pattern", [r"\bimport pickle\b", r"\bpickle\.", r"torch\.save\(",
                                     r"\byaml\.load\(", r"\bdill\b", r"cloudpickle"])
def test_no_pickle_in_src(pattern):
    hits = [f"{p}:{n}" for p, n, line in source_lines() if re.search(pattern, line)]
    assert not hits, f"{pattern} in {hits}"


def test_torch_load_only_with_weights_only():
    for path, number, line in source_lines():
        if "torch.load(" in line:
            assert "weights_only=True" in line, f"{path}:{number}"


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic.write_bytes(target, b"old")
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """A crash between writing and renaming: the old contents survive, no temporary file stays.

    A writer that wrote straight into the target (no temporary file and rename) fails this test.
    """
    target = tmp_path / "f.bin"
    target.write_bytes(b"old contents")

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        atomic.write_bytes(target, b"new contents, half written")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
