"""The README's tour stays true: its Python snippets run, its commands parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from deepnotes.cli import build_parser, main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)
COMMANDS = [part.strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
            for line in block.splitlines() for part in line.split("&&")
            if part.strip().startswith("deepnotes")]


def test_the_readme_has_a_tour():
    assert len(SNIPPETS) >= 5 and len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_parse(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert callable(args.handler)


def test_snippets_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet", "--epochs", "2"]) == 0  # the run folder the tour reads
    capsys.readouterr()
    namespace: dict = {}
    for snippet in SNIPPETS:
        exec(compile(snippet, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "F1" in out and "dev accuracy after 5 epochs" in out and "lenet5" in out
    assert "cat's neighbours are animals: True" in out  # section 9's claim holds
    assert "torch.Size([16, 26])" in out  # section 8: the notes' W_u over [c<t-1>, x<t>]
