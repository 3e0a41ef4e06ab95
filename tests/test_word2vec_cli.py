"""``deepnotes word2vec``: train on a file, query the vectors, evaluate analogies, bad input."""

from __future__ import annotations

import random

import pytest

from deepnotes.embeddings import hogwild

# the hogwild path needs Numba: the [test] extra installs it; elsewhere these skip with the reason
needs_numba = pytest.mark.skipif(not hogwild.available(),
                                 reason="numba not installed (pip install -e '.[fast]')")
# 16 words, each 1/16 of the corpus: subsampling at 1e-3 would keep one in seven, so it is off
SMALL = ["--vector-size", "16", "--min-count", "1", "--epochs", "5", "--sample", "0",
         "--workers", "1", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two topics whose words only meet their own kind: the vectors must keep them apart."""
    path = tmp_path_factory.mktemp("w2v") / "corpus.txt"
    rng = random.Random(0)
    animals = "cat dog horse cow sheep goat pig duck".split()
    tools = "hammer saw drill wrench chisel plane file vise".split()
    lines = [" ".join(rng.choice(group) for _ in range(12))
             for _ in range(600) for group in (animals, tools)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def vectors(corpus, tmp_path_factory):
    from deepnotes.cli import main

    out = tmp_path_factory.mktemp("vec") / "vectors.bin"
    rc = main(["word2vec", "train", str(corpus), "--out", str(out), *SMALL])
    assert rc == 0
    return out


def test_train_writes_the_c_binary_format_and_similar_finds_the_topic(cli, vectors):
    assert vectors.read_bytes().split(b"\n", 1)[0] == b"16 16"  # 16 words, 16 dimensions
    rc, out, err = cli("word2vec", "similar", vectors, "cat", "--topn", 3)
    assert rc == 0, err
    words = [line.split("\t")[0] for line in out.strip().splitlines()]
    assert len(words) == 3 and set(words) <= set("dog horse cow sheep goat pig duck".split())


@pytest.mark.parametrize("suffix", [".txt", ".safetensors"])
def test_every_format_answers_the_same(cli, tmp_path, corpus, vectors, suffix):
    out = tmp_path / f"v{suffix}"
    rc, _, err = cli("word2vec", "train", corpus, "--out", out, *SMALL)
    assert rc == 0, err
    answers = [cli("word2vec", "similar", path, "hammer", "--topn", 4)[1] for path in
               (vectors, out)]
    words = [[line.split("\t")[0] for line in a.strip().splitlines()] for a in answers]
    assert words[0] == words[1]  # one seed, one worker: the same vectors in every format


@pytest.mark.parametrize("options", [
    ["--per-pair-negatives"], ["--implementation", "minibatch"],
    *(pytest.param(o, marks=needs_numba) for o in [["--cbow", "--implementation", "hogwild"],
                                                   ["--hs", "--negative", "0"]])])
def test_each_implementation_separates_the_topics(cli, tmp_path, corpus, options):
    out = tmp_path / "v.txt"
    rc, _, err = cli("word2vec", "train", corpus, "--out", out, *SMALL, *options)
    assert rc == 0, err
    rc, answer, err = cli("word2vec", "similar", out, "drill", "--topn", 5)
    assert rc == 0, err
    words = {line.split("\t")[0] for line in answer.strip().splitlines()}
    assert words <= set("hammer saw wrench chisel plane file vise".split()), words


def test_analogy_and_evaluate(cli, tmp_path, vectors):
    rc, out, err = cli("word2vec", "analogy", vectors, "cat", "dog", "hammer", "--topn", 2)
    assert rc == 0 and len(out.strip().splitlines()) == 2, err
    questions = tmp_path / "questions.txt"
    questions.write_text(": animals\ncat dog horse cow\n: tools\nhammer saw drill wrench\n"
                         "hammer saw unknownword wrench\n")
    rc, out, err = cli("word2vec", "evaluate", vectors, questions)
    assert rc == 0, err
    assert "animals" in out and "tools" in out


@pytest.mark.parametrize("args, needle", [
    (["similar", "VECTORS", "kat"], "'kat'"),
    (["train", "EMPTY", "--out", "OUT.bin"], "empty"),
    (["train", "CORPUS", "--out", "OUT.bin", "--vector-size", "0"], "--vector-size 0"),
    (["train", "CORPUS", "--out", "OUT.bin", "--vector-size", "10001"],
     "--vector-size 10001: expected an integer from 1 to 10000"),
    (["train", "CORPUS", "--out", "OUT.bin", "--window", "99999999"], "--window 99999999"),
    (["train", "CORPUS", "--out", "OUT.bin", "--negative", "5000"], "--negative 5000"),
    (["train", "CORPUS", "--out", "OUT.bin", "--min-count", "100000"], "min_count"),
    (["similar", "MISSING.bin", "cat"], "no such"),
    (["train", "FOLDER", "--out", "OUT.bin"], "is a folder; expected a text file (CORPUS)"),
    (["similar", "TRUNCATED", "cat"], "line"),
    (["train", "CORPUS", "--out", "OUT.bin", "--negative", "0"], "--negative 0: expected an "
                                                                 "integer from 1 to 1000 (0 "
                                                                 "needs --hs)"),
])
def test_bad_input_is_one_line(cli, tmp_path, corpus, vectors, args, needle):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    truncated = tmp_path / "truncated.txt"
    truncated.write_text("3 4\ncat 0.1 0.2 0.3 0.4\ndog 0.1 0.2\n")
    names = {"VECTORS": vectors, "EMPTY": empty, "CORPUS": corpus, "OUT.bin": tmp_path / "o.bin",
             "MISSING.bin": tmp_path / "missing.bin", "TRUNCATED": truncated, "FOLDER": tmp_path}
    rc, out, err = cli("word2vec", *[names.get(a, a) for a in args])
    assert rc == 2, (out, err)
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o.bin").exists()


@pytest.mark.parametrize("command", [["similar", "VEC", "cat"],
                                     ["analogy", "VEC", "cat", "dog", "cat"],
                                     ["evaluate", "VEC", "QUESTIONS"]])
def test_a_word_that_is_not_utf8_is_refused_with_its_line_or_read_with_errors(cli, tmp_path,
                                                                              command):
    vec = tmp_path / "latin1.txt"
    vec.write_bytes(b"3 2\ncat 1.0 0.0\ndog 0.9 0.1\nna\xefve 0.0 1.0\n")
    questions = tmp_path / "q.txt"
    questions.write_text(": animals\ncat dog cat dog\n")
    args = [{"VEC": vec, "QUESTIONS": questions}.get(a, a) for a in command]
    rc, out, err = cli("word2vec", *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{vec} line 4" in err and "--errors replace" in err
    rc, out, err = cli("word2vec", *args, "--errors", "replace")
    assert rc == 0, err
    if command[0] == "similar":
        assert out.splitlines()[0].startswith("dog\t")
