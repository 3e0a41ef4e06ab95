"""The benchmark suite's plumbing on fabricated rows: ratios, goals, the table, RESULTS.md's
generated section, error rows and ``deepnotes bench``. No benchmark is run."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from deepnotes.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def suite(monkeypatch):
    """The ``benchmarks`` package and its ``__main__`` module, imported from the checkout."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks"), importlib.import_module("benchmarks.__main__")


def fake_row(ours, peer, compare="ours/peer", goal=">= 1.5") -> dict:
    return {"task": "a task", "peer": "a peer", "unit": "img/s", "ours": ours,
            "peer_figure": peer, "compare": compare, "goal": goal}


@pytest.mark.parametrize("ours, peer, compare, goal, ratio, met", [
    (300.0, 100.0, "ours/peer", ">= 1.5", 3.0, True),
    (100.0, 100.0, "ours/peer", ">= 1.5", 1.0, False),
    (10.0, 20.0, "ours/peer", "<= 1.0", 0.5, True),
    (10.0, 25.0, "peer/ours", ">= 2", 2.5, True),
    (15.2, 16.0, "ours-peer", ">= -1", -0.8, True),
    (14.0, 16.0, "ours-peer", ">= -1", -2.0, False),
    (1.0, 2.0, "ours/peer", None, 0.5, None),
    (None, 2.0, "peer/ours", ">= 2", None, False),  # the target was not reached: not met
])
def test_ratio_and_goal(suite, ours, peer, compare, goal, ratio, met):
    bench, _ = suite
    row = bench.finish(fake_row(ours, peer, compare, goal), "fake")
    assert row["ratio"] == pytest.approx(ratio) if ratio is not None else row["ratio"] is None
    assert row["met"] is met
    assert row["goal_text"] == ("-" if goal is None else f"{compare} {goal}")


def test_bad_goal_is_named(suite):
    bench, _ = suite
    with pytest.raises(ValueError, match="'about 2'"):
        bench.goal_predicate("about 2")


def test_table_formatting(suite):
    bench, _ = suite
    rows = [bench.finish(fake_row(1_306_556.0, 402_210.0), "word2vec"),
            bench.finish(fake_row(15.87, 15.98, "ours-peer", ">= -1") | {"unit": "%"},
                         "word2vec"),
            bench.finish(fake_row(20.67, 15.83, goal="<= 1.0"), "optimizer_step"),
            bench.finish(fake_row(1.0, 2.0, goal=None), "multitask")]
    lines = bench.table(rows).splitlines()
    assert lines[0] == ("| benchmark | task | peer | deepnotes | peer figure | ratio | goal | "
                        "met |")
    assert lines[2] == ("| word2vec | a task | a peer | 1,306,556 img/s | 402,210 img/s | 3.25 | "
                        "ours/peer >= 1.5 | yes |")
    assert "| 15.9 % | 16 % | -0.11 | ours-peer >= -1 | yes |" in lines[3]
    assert lines[4].endswith("| 1.31 | ours/peer <= 1.0 | **no** |")
    assert lines[5].endswith("| 0.50 | - | - |")
    assert bench.tally(rows) == "goals met: 2, not met: 1, rows without a goal: 1, errors: 0"


def test_failing_benchmark_becomes_an_error_row(suite):
    bench, _ = suite

    def rows(quick, device):
        raise FileNotFoundError("/usr/share/datasets/fashion-mnist: no such folder")

    found, seconds = bench.run("fashion_mnist", True, "cpu", module=types.SimpleNamespace(
        rows=rows))
    assert len(found) == 1 and found[0]["met"] is None and seconds >= 0
    assert found[0]["error"] == ("FileNotFoundError: /usr/share/datasets/fashion-mnist: "
                                 "no such folder")
    assert "| fashion_mnist | error: FileNotFoundError" in bench.table(found)
    assert bench.tally(found).endswith("errors: 1")


def test_suite_keeps_going_after_a_failure(suite, monkeypatch, tmp_path, capsys):
    bench, main = suite
    good = types.SimpleNamespace(rows=lambda quick, device: [fake_row(3.0, 1.0)])
    bad = types.SimpleNamespace(rows=lambda quick, device: 1 / 0)
    monkeypatch.setitem(sys.modules, "benchmarks.a", bad)
    monkeypatch.setitem(sys.modules, "benchmarks.b", good)
    monkeypatch.setattr(bench, "NAMES", ("a", "b"))
    monkeypatch.setattr(main, "machine", lambda: "a test machine")
    out = tmp_path / "RESULTS.md"
    assert main.main(["--quick", "--out", str(out)]) == 1
    text = out.read_text()
    assert "| a | error: ZeroDivisionError: division by zero |" in text
    assert "| b | a task | a peer | 3 img/s | 1 img/s | 3.00 | ours/peer >= 1.5 | yes |" in text
    assert "`python -m benchmarks --quick --out" in text and "a test machine" in text
    assert "goals met: 1" in capsys.readouterr().out


HISTORY = ("# Benchmark results\n\nHand-written history, kept  as it is.\n\n"
           "## Issue 2\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")


def test_section_is_added_under_the_title(suite):
    _, main = suite
    new = main.replace_section(HISTORY, f"{main.BEGIN}\ntable one\n{main.END}\n")
    assert new.startswith(f"# Benchmark results\n\n{main.BEGIN}\ntable one\n{main.END}\n")
    assert new.endswith(HISTORY.partition("\n")[2])
    assert main.replace_section("no title\n", "S\n") == "S\n\nno title\n"


def test_section_replacement_keeps_the_rest_byte_identical(suite):
    _, main = suite
    before = HISTORY.replace("## Issue 2", f"{main.BEGIN}\nold table\n{main.END}\n\n## Issue 2")
    after = main.replace_section(before, f"{main.BEGIN}\nnew\ntable\n{main.END}\n")
    head, rest = after.split(main.BEGIN)
    old_head, old_rest = before.split(main.BEGIN)
    assert head == old_head
    assert rest.split(main.END)[1] == old_rest.split(main.END)[1]
    assert "new\ntable" in after and "old table" not in after
    assert main.replace_section(after, f"{main.BEGIN}\nnew\ntable\n{main.END}\n") == after


def test_real_results_file_round_trip(suite):
    """The checked-in RESULTS.md: everything outside the generated section survives."""
    _, main = suite

    def outside(text: str) -> tuple[str, str]:
        head, rest = text.split(main.BEGIN, 1)
        return head, rest.split(main.END, 1)[1]

    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    once = main.replace_section(text, f"{main.BEGIN}\nX\n{main.END}\n")
    twice = main.replace_section(once, f"{main.BEGIN}\nY\n{main.END}\n")
    assert outside(twice) == outside(once) and "\nY\n" in twice and "\nX\n" not in twice
    if main.BEGIN in text:
        assert outside(once) == outside(text)
    else:
        title, _, body = text.partition("\n")
        assert outside(once) == (f"{title}\n\n", f"\n{body}")


def test_bench_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--only" in out and "--device" in out


def test_bench_options_become_the_suite_command():
    from deepnotes.cli import bench, build_parser

    args = build_parser().parse_args(["bench", "--quick", "--only", "word2vec", "rnn_layers",
                                      "--out", "-"])
    assert bench.suite_command(args)[1:] == ["-m", "benchmarks", "--quick", "--only", "word2vec",
                                             "rnn_layers", "--out", "-"]
    assert bench.suite_command(args)[0] == sys.executable


def test_bench_without_a_checkout_says_so(monkeypatch, tmp_path, capsys):
    from deepnotes.cli import bench

    monkeypatch.setattr(bench, "checkout_root", lambda: tmp_path)
    assert cli_main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "source checkout" in err


def test_bench_names_and_device_are_checked_before_the_suite_starts(suite, monkeypatch, capsys):
    from deepnotes.cli import bench

    assert bench.suite_names(bench.checkout_root()) == list(suite[0].NAMES)
    started = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: started.append(a))
    for argv, needle in ((["--only", "word2vec", "wordvec"], "--only: unknown benchmark "
                          "'wordvec'; did you mean 'word2vec'?"),
                         (["--device", "tpu"], "--device 'tpu'")):
        assert cli_main(["bench", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert started == []


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("[a-z]*.py")))
def test_each_benchmark_runs_as_the_script_its_docs_show(script):
    """``python benchmarks/NAME.py --help``, as README and RESULTS.md write it: no import error
    when the benchmarks folder is not a package on the path."""
    import subprocess

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


@pytest.mark.slow  # runs recurrent layers and word2vec for a few seconds
def test_the_cuda_graphs_benchmark_runs_dry_on_the_cpu(tmp_path):
    """benchmarks/cuda_graphs.py is for a GPU session; its dry run here catches a broken script
    before device time is spent on it."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "benchmarks.cuda_graphs", "--device", "cpu",
                           "--repeats", "1", "--words", "20000"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU (dry run)") and len(lines) == 6
    assert all("speed-up" in line for line in lines[2:])


@pytest.mark.slow  # trains word2vec in Triton's interpreter for a few seconds
def test_the_word2vec_benchmarks_triton_row_runs_dry_on_the_cpu(tmp_path):
    """The GPU row's code path (its compile warm-up, then the timed run and gensim's analogy
    test) on a tiny corpus, with the kernels in Triton's interpreter."""
    from deepnotes.embeddings import kernels

    if not (kernels.available() and kernels.interpreting()):
        pytest.skip("needs Triton's interpreter (TRITON_INTERPRET=1, set by conftest)")
    sys.path.insert(0, str(ROOT))
    try:
        w2v = importlib.import_module("benchmarks.word2vec")
    finally:
        sys.path.remove(str(ROOT))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"w{(7 * i) % 11}" for i in range(300)))
    settings = types.SimpleNamespace(epochs=1, workers=1)
    wps, acc, vocab = w2v.run_deepnotes(str(corpus), 0, settings, implementation="triton")
    assert wps > 0 and vocab == 11 and acc == 0.0  # no analogy question has these words


@pytest.mark.slow  # trains fastnet on 1,100 random 28x28 images for a few epochs
def test_the_fast_recipe_profile_runs_dry_on_the_cpu(tmp_path):
    """benchmarks/fast_recipe_profile.py is for a GPU session; its dry run here, on random IDX
    files of Fashion-MNIST's format, catches a broken script before device time is spent."""
    import subprocess

    from test_data_readers import write_idx_set

    write_idx_set(tmp_path / "idx", n_train=1500, n_test=100)
    done = subprocess.run([sys.executable, "benchmarks/fast_recipe_profile.py", "--device", "cpu",
                           "--data-dir", str(tmp_path / "idx"), "--steps", "2", "--epochs", "2",
                           "--train-size", "1100", "--variants", "recipe", "NCHW"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU (dry run)") and lines[1].startswith("first 2 steps")
    assert any(line.startswith("one steady epoch under the profiler") for line in lines)
    assert [line.split()[0] for line in lines[-2:]] == ["recipe", "NCHW"]
