"""KeyedVectors: cosine queries against NumPy, analogies, evaluation and files against gensim."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepnotes.embeddings.keyed_vectors import KeyedVectors
from deepnotes.errors import DeepnotesError

gensim_models = pytest.importorskip("gensim.models")
from gensim.test.utils import datapath  # noqa: E402

GensimKV = gensim_models.KeyedVectors


def random_kv(n: int = 50, dim: int = 8, seed: int = 0) -> KeyedVectors:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n)]
    return KeyedVectors(words, rng.standard_normal((n, dim)).astype(np.float32))


def to_gensim(kv: KeyedVectors) -> GensimKV:
    g = GensimKV(kv.vector_size)
    g.add_vectors(kv.index_to_key, kv.vectors.numpy())
    return g


def np_cosines(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    m64, q64 = m.astype(np.float64), q.astype(np.float64)
    return m64 @ q64 / (np.linalg.norm(m64, axis=1) * np.linalg.norm(q64))


# ------------------------------------------------------------------ similarity
def test_similarity_and_most_similar_match_numpy():
    kv = random_kv()
    m = kv.vectors.numpy()
    cos = np_cosines(m, m[3])
    assert kv.similarity("w3", "w7") == pytest.approx(cos[7], abs=1e-6)
    order = [i for i in np.argsort(-cos) if i != 3][:5]
    got = kv.most_similar("w3", topn=5)
    assert [w for w, _ in got] == [f"w{i}" for i in order]
    np.testing.assert_allclose([s for _, s in got], cos[order], atol=1e-6)


def test_most_similar_positive_negative_is_3cosadd():
    kv = random_kv()
    m = kv.vectors.numpy().astype(np.float64)
    unit = m / np.linalg.norm(m, axis=1, keepdims=True)
    q = unit[1] + unit[2] - unit[3]
    cos = np_cosines(m, q)
    order = [i for i in np.argsort(-cos) if i not in (1, 2, 3)][:4]
    got = kv.most_similar(positive=["w1", "w2"], negative=["w3"], topn=4)
    assert [w for w, _ in got] == [f"w{i}" for i in order]
    np.testing.assert_allclose([s for _, s in got], cos[order], atol=1e-6)
    g = to_gensim(kv).most_similar(positive=["w1", "w2"], negative=["w3"], topn=4)
    assert [w for w, _ in g] == [w for w, _ in got]


def test_lookup_and_cache_invalidation():
    kv = random_kv(n=5, dim=3)
    assert len(kv) == 5 and "w2" in kv and "nope" not in kv and kv.vector_size == 3
    assert kv.get_index("w4") == 4 and kv.key_to_index["w1"] == 1
    assert isinstance(kv["w1"], np.ndarray) and kv["w1"].dtype == np.float32
    assert kv[["w1", "w2"]].shape == (2, 3)
    before = kv.similarity("w0", "w1")
    kv.vectors[1] = kv.vectors[0] * 2  # in place: the cached unit vectors must follow
    assert kv.similarity("w0", "w1") == pytest.approx(1.0, abs=1e-6)
    kv.vectors = torch.eye(5, 3)
    assert kv.similarity("w0", "w1") == pytest.approx(0.0) and before != 0.0
    vec = kv.most_similar_to_vector(np.array([1.0, 0.1, 0.0]), topn=1)
    assert vec[0][0] == "w0"


def test_analogy_on_planted_vectors():
    # king - man + woman = queen exactly; a few distractors
    man, woman, royal = np.eye(6)[0], np.eye(6)[1], np.eye(6)[2]
    vecs = {"man": man, "woman": woman, "king": man + royal, "queen": woman + royal,
            "apple": np.eye(6)[3], "car": np.eye(6)[4] + 0.1 * royal, "prince": man + 0.9 * royal}
    words = list(vecs)
    kv = KeyedVectors(words, np.stack([vecs[w] for w in words]).astype(np.float32))
    assert kv.analogy("man", "king", "woman")[0][0] == "queen"
    best = kv.most_similar(positive=["king", "woman"], negative=["man"], topn=3)
    assert best[0][0] == "queen" and all(w not in ("king", "woman", "man") for w, _ in best)


# ------------------------------------------------------------------ word analogies
def planted_analogy_kv(words: list[str], sections: dict[str, list[tuple]], dim: int = 16,
                       seed: int = 0) -> KeyedVectors:
    """Random vectors with a per-section offset planted: second of a pair = first + offset."""
    rng = np.random.default_rng(seed)
    vec = {}
    for questions in sections.values():
        offset = rng.standard_normal(dim) * 1.5
        for q in questions:
            for x, y in ((q[0], q[1]), (q[2], q[3])):
                vec.setdefault(x, rng.standard_normal(dim))
                vec.setdefault(y, vec[x] + offset + 0.3 * rng.standard_normal(dim))
    for w in words:
        vec.setdefault(w, rng.standard_normal(dim))
    return KeyedVectors(words, np.stack([vec[w] for w in words]).astype(np.float32))


def test_evaluate_word_analogies_hand_counted(tmp_path):
    e = np.eye(8)
    vecs = {"man": e[0], "woman": e[1], "king": e[0] + e[2], "queen": e[1] + e[2],
            "boy": e[0] + e[3], "girl": e[1] + e[3], "paris": e[4], "france": e[4] + e[5],
            "rome": e[6], "italy": e[6] + e[5] + 3 * e[7], "spain": e[5] + 0.1 * e[4]}
    words = list(vecs)
    kv = KeyedVectors(words, np.stack([vecs[w] for w in words]).astype(np.float32))
    path = tmp_path / "q.txt"
    path.write_text(": family\n"
                    "man king woman queen\n"      # correct
                    "Man Boy Woman Girl\n"        # correct (case-insensitive)
                    "man king woman prince\n"     # prince unknown: skipped
                    ": capital\n"
                    "paris france rome italy\n"   # cos(q, spain) .674 > cos(q, italy) .515
                    "rome italy paris france\n"   # cos(q, france) .92 / |q|: correct
                    "\n")
    r = kv.evaluate_word_analogies(path)
    assert [(s["section"], s["correct"], s["incorrect"]) for s in r["sections"]] == [
        ("family", 2, 0), ("capital", 1, 1)]
    assert r["correct"] == 3 and r["incorrect"] == 1 and r["questions"] == 5
    assert r["accuracy"] == pytest.approx(0.75) and r["coverage"] == pytest.approx(4 / 5)
    assert r["sections"][0]["accuracy"] == 1.0
    strict = kv.evaluate_word_analogies(path, case_insensitive=False)
    assert strict["sections"][0]["correct"] == 1 and strict["sections"][0]["incorrect"] == 0
    assert strict["coverage"] == pytest.approx(3 / 5)
    small = kv.evaluate_word_analogies(path, restrict_vocab=4)  # man woman king queen
    assert small["correct"] == 1 and small["coverage"] == pytest.approx(1 / 5)


def read_questions(path) -> dict[str, list[tuple]]:
    sections: dict[str, list[tuple]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            name = line[1:].strip()
            sections[name] = []
        elif line.split():
            sections[name].append(tuple(w.lower() for w in line.split()))
    return sections


def test_evaluate_word_analogies_matches_gensim():
    path = datapath("questions-words.txt")
    sections = read_questions(path)
    planted = {k: v for k, v in sections.items() if k in ("capital-common-countries", "family")}
    vocab = sorted({w for qs in sections.values() for q in qs for w in q})
    rng = np.random.default_rng(1)
    words = [w for w in vocab if rng.random() < 0.9] + ["noise1", "Athens", "noise2"]
    kv = planted_analogy_kv(words, planted)
    for restrict in (300000, 600):
        ours = kv.evaluate_word_analogies(path, restrict_vocab=restrict)
        score, g_sections = to_gensim(kv).evaluate_word_analogies(path, restrict_vocab=restrict)
        assert ours["accuracy"] == pytest.approx(score, abs=1e-12)
        got = [(s["section"], s["correct"], s["incorrect"]) for s in ours["sections"]]
        want = [(s["section"], len(s["correct"]), len(s["incorrect"])) for s in g_sections[:-1]]
        assert got == want
    assert ours["sections"][0]["correct"] > 0 and 0 < ours["coverage"] < 1


# ------------------------------------------------------------------ word pairs
def test_evaluate_word_pairs_matches_gensim():
    path = datapath("wordsim353.tsv")
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            a, b, s = line.rstrip("\n").split("\t")
            pairs.append((a.lower(), b.lower(), float(s)))
    vocab = sorted({w for a, b, _ in pairs for w in (a, b)})
    rng = np.random.default_rng(2)
    words = [w for w in vocab if rng.random() < 0.85]
    kv = KeyedVectors(words, rng.standard_normal((len(words), 10)).astype(np.float32))
    ours = kv.evaluate_word_pairs(path)
    pearson, spearman, oov = to_gensim(kv).evaluate_word_pairs(path)
    assert ours["pearson"] == pytest.approx(pearson[0], abs=1e-5)
    assert ours["spearman"] == pytest.approx(spearman[0], abs=1e-5)
    assert ours["oov_ratio"] * 100 == pytest.approx(oov)
    assert 0 < ours["oov"] and ours["pairs"] + ours["oov"] == len(pairs)


def test_evaluate_word_pairs_planted(tmp_path):
    # vectors at angles 0, 30, 60, 90 degrees from "a": similarity falls with the score
    angles = np.radians([0, 30, 60, 90])
    m = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    kv = KeyedVectors(["a", "b", "c", "d"], m)
    path = tmp_path / "pairs.tsv"
    path.write_text("# comment\na\tb\t9\na\tc\t5\na\td\t1\nA\tzzz\t3\n")
    r = kv.evaluate_word_pairs(path)
    assert r["spearman"] == pytest.approx(1.0) and r["oov"] == 1
    assert r["oov_ratio"] == pytest.approx(0.25) and r["pairs"] == 3


# ------------------------------------------------------------------ files
WORDS = ["the", "café", "naïve", "日本", "Ωmega", "x"]


def unicode_kv() -> KeyedVectors:
    rng = np.random.default_rng(3)
    return KeyedVectors(WORDS, rng.standard_normal((len(WORDS), 7)).astype(np.float32))


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trips_with_gensim(tmp_path, binary):
    kv = unicode_kv()
    suffix = ".bin" if binary else ".txt"
    ours = tmp_path / f"ours{suffix}"
    kv.save_word2vec_format(ours, binary=binary)
    g = GensimKV.load_word2vec_format(str(ours), binary=binary)
    assert g.index_to_key == WORDS
    np.testing.assert_array_equal(g.vectors, kv.vectors.numpy())  # exact, text included

    theirs = tmp_path / f"theirs{suffix}"
    g.save_word2vec_format(str(theirs), binary=binary)
    back = KeyedVectors.load_word2vec_format(theirs)  # binary guessed from the suffix
    assert back.index_to_key == WORDS
    torch.testing.assert_close(back.vectors, kv.vectors, rtol=0, atol=0)

    again = KeyedVectors.load_word2vec_format(ours, binary=binary)
    torch.testing.assert_close(again.vectors, kv.vectors, rtol=0, atol=0)


def test_binary_reader_accepts_c_tool_newlines(tmp_path):
    kv = unicode_kv()
    path = tmp_path / "c.bin"
    rows = [w.encode() + b" " + kv[w].astype("<f4").tobytes() + b"\n" for w in WORDS]
    path.write_bytes(f"{len(WORDS)} 7\n".encode() + b"".join(rows))
    assert KeyedVectors.load_word2vec_format(path).index_to_key == WORDS


def test_own_format_round_trip(tmp_path):
    kv = unicode_kv()
    kv.counts = [10, 9, 8, 7, 6, 5]
    kv.save(tmp_path / "vectors.safetensors")
    assert (tmp_path / "vectors.vocab.json").is_file()
    back = KeyedVectors.load(tmp_path / "vectors.safetensors")
    assert back.index_to_key == WORDS and back.counts == kv.counts
    torch.testing.assert_close(back.vectors, kv.vectors, rtol=0, atol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_own_format_mismatched_vocabulary(tmp_path):
    unicode_kv().save(tmp_path / "a.safetensors")
    other = KeyedVectors(["a", "b", "c", "d", "e", "f"], np.zeros((6, 7), np.float32))
    other.save(tmp_path / "b.safetensors")
    (tmp_path / "a.vocab.json").write_bytes((tmp_path / "b.vocab.json").read_bytes())
    with pytest.raises(DeepnotesError, match="another vocabulary"):
        KeyedVectors.load(tmp_path / "a.safetensors")
    (tmp_path / "b.vocab.json").unlink()
    with pytest.raises(DeepnotesError, match="b.vocab.json: no such vocabulary file"):
        KeyedVectors.load(tmp_path / "b.safetensors")


@pytest.mark.parametrize("change", [{"words": None}, {"words": "abc"}, {"words": [1, 2]},
                                    {"counts": "many"}, {"counts": [1, True]}])
def test_own_format_vocabulary_with_a_bad_field_is_one_line(tmp_path, change):
    unicode_kv().save(tmp_path / "a.safetensors")
    path = tmp_path / "a.vocab.json"
    vocab = json.loads(path.read_text(encoding="utf-8"))
    vocab.update(change)
    path.write_text(json.dumps(vocab), encoding="utf-8")
    field = next(iter(change))
    with pytest.raises(DeepnotesError, match=f"a.vocab.json: field '{field}'"):
        KeyedVectors.load(tmp_path / "a.safetensors")


# ------------------------------------------------------------------ bad input
def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_truncated_text_file_names_the_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("3 2\na 1 2\nb 3 4\n")
    with pytest.raises(DeepnotesError) as exc:
        KeyedVectors.load_word2vec_format(path)
    assert "header says 3 words" in one_line(exc) and "line 4" in one_line(exc)

    path.write_text("3 2\na 1 2\nb 3\nc 5 6\n")
    with pytest.raises(DeepnotesError) as exc:
        KeyedVectors.load_word2vec_format(path)
    assert "line 3" in one_line(exc) and "'b' has 1 numbers" in one_line(exc)

    path.write_text("2 2\na 1 2\nb 3 oops\n")
    with pytest.raises(DeepnotesError, match=r"line 3: 'oops' is not a number"):
        KeyedVectors.load_word2vec_format(path)

    path.write_text("1 2\na 1 2\nb 3 4\n")
    with pytest.raises(DeepnotesError, match="line 3: more words than the header's 1"):
        KeyedVectors.load_word2vec_format(path)


def test_truncated_binary_file(tmp_path):
    path = tmp_path / "v.bin"
    unicode_kv().save_word2vec_format(path, binary=True)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(DeepnotesError) as exc:
        KeyedVectors.load_word2vec_format(path)
    assert "entry 6" in one_line(exc) and "truncated" in one_line(exc)


@pytest.mark.parametrize("header", ["", "hello world", "3", "3 2 1", "-3 2", "3 0"])
def test_bad_header(tmp_path, header):
    path = tmp_path / "v.txt"
    path.write_text(f"{header}\na 1 2\n")
    with pytest.raises(DeepnotesError) as exc:
        KeyedVectors.load_word2vec_format(path)
    assert "line 1: bad header" in one_line(exc)


def test_missing_file(tmp_path):
    with pytest.raises(DeepnotesError, match="no such vectors file"):
        KeyedVectors.load_word2vec_format(tmp_path / "nope.txt")


def test_unknown_word_suggests_close_words():
    kv = KeyedVectors(["king", "queen", "kingdom", "apple"], np.eye(4, dtype=np.float32))
    with pytest.raises(DeepnotesError) as exc:
        kv.most_similar("kinng")
    msg = one_line(exc)
    assert "'kinng' is not in the vocabulary" in msg and "did you mean 'king'" in msg
    with pytest.raises(DeepnotesError, match="'zzz' is not in the vocabulary"):
        kv["zzz"]
    with pytest.raises(DeepnotesError, match="'Queen'.*did you mean 'queen'"):
        kv.similarity("king", "Queen")


def test_words_that_cannot_be_written(tmp_path):
    kv = KeyedVectors(["ok", "two words"], np.zeros((2, 2), np.float32))
    with pytest.raises(DeepnotesError, match=r"\('two words'\) cannot be written"):
        kv.save_word2vec_format(tmp_path / "v.txt")
    assert not list(tmp_path.iterdir())


def test_bad_analogy_and_pairs_files(tmp_path):
    kv = random_kv(n=4)
    path = tmp_path / "q.txt"
    path.write_text("w0 w1 w2 w3\n")
    with pytest.raises(DeepnotesError, match="line 1: a question before the first"):
        kv.evaluate_word_analogies(path)
    path.write_text(": s\nw0 w1 w2\n")
    with pytest.raises(DeepnotesError, match="line 2: 3 words, expected 4"):
        kv.evaluate_word_analogies(path)
    path.write_text("w0\tw1\tmuch\n")
    with pytest.raises(DeepnotesError, match="line 1: score 'much' is not a number"):
        kv.evaluate_word_pairs(path)


def test_constructor_checks():
    with pytest.raises(DeepnotesError, match="appears twice"):
        KeyedVectors(["a", "a"], np.zeros((2, 2), np.float32))
    with pytest.raises(DeepnotesError, match="shape"):
        KeyedVectors(["a", "b"], np.zeros((3, 2), np.float32))
