"""The habits the suite enforces on the source: ruff's rule set (pyproject.toml: pycodestyle,
pyflakes, isort, bugbear, simplify, pyupgrade) over src, tests and benchmarks, and mypy over
src/deepnotes. Both come with the test extra; each finding is printed with its file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_ruff_finds_nothing():
    pytest.importorskip("ruff")
    result = run("ruff", "check", "src", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_finds_nothing():
    pytest.importorskip("mypy")
    result = run("mypy")  # files and settings: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
