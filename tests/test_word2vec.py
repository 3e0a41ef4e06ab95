"""Word2Vec: vocabulary, subsampling, noise, the hand-written gradients, streaming, training."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy
import pytest
import torch

from conftest import warnings_of
from deepnotes.embeddings import corpus as C
from deepnotes.embeddings import hogwild
from deepnotes.embeddings.word2vec import (
    Word2Vec,
    _fold,
    _implementation,
    _windows,
    cbow_step,
    learning_rate,
    sg_step,
    window_mask,
)
from deepnotes.errors import DeepnotesError

# The hogwild path needs Numba (the [fast] extra). The [test] extra installs it, so CI runs these;
# elsewhere they skip with this reason (pytest -rs shows it) and the torch path is still tested.
needs_numba = pytest.mark.skipif(not hogwild.available(),
                                 reason="numba not installed (pip install -e '.[fast]')")


def sentences_two_groups(n=1500, length=8, seed=0):
    """Sentences drawn from one of two disjoint 10-word groups, so words co-occur only inside
    their group."""
    rng = random.Random(seed)
    groups = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    return [[rng.choice(groups[k % 2]) for _ in range(length)] for k in range(n)], groups


# ---------------------------------------------------------------- vocabulary and corpus
def test_vocabulary_counts_min_count_and_order():
    sents = [["b", "a", "c", "a"], ["c", "a", "d"], ["b", "c", "e"]]
    v = C.build_vocabulary(sents, min_count=2)
    assert v.index_to_key == ["a", "c", "b"]  # 3, 3 (a seen first), 2; d and e dropped
    assert v.counts == [3, 3, 2]
    assert v.total_words == 10
    assert v.key_to_index == {"a": 0, "c": 1, "b": 2}


def test_keep_probability_matches_the_formula_and_the_empirical_rate():
    counts, total, s = [5000, 1000, 100, 10], 6110, 1e-2
    keep = C.keep_probability(counts, s, total)
    for f, p in zip(counts, keep.tolist()):
        assert p == pytest.approx(min(1.0, (math.sqrt(f / (s * total)) + 1) * s * total / f),
                                  rel=1e-6)
    assert keep[-1] == 1.0 and keep[0] < 0.2
    assert torch.all(C.keep_probability(counts, 0, total) == 1)
    ids = torch.repeat_interleave(torch.arange(4), torch.tensor(counts)).int()
    mask = C.subsample_mask(ids, keep, torch.Generator().manual_seed(0))
    for w in range(2):
        assert mask[ids == w].float().mean().item() == pytest.approx(keep[w].item(), abs=0.03)


def test_noise_distribution_is_unigram_to_the_three_quarters():
    counts = [1000, 300, 50, 7, 1]
    p = C.noise_distribution(counts)
    expected = torch.tensor(counts, dtype=torch.float64) ** 0.75
    assert torch.allclose(p, expected / expected.sum())
    draws = C.NoiseSampler(counts).sample((400_000,), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    assert torch.allclose(freq, p, atol=3e-3)


def test_alias_table_reproduces_the_distribution_exactly():
    p = C.noise_distribution([1000, 300, 50, 7, 1, 1, 2])
    prob, alias = C.alias_table(p)
    n = p.numel()
    exact = prob / n + torch.zeros(n, dtype=torch.float64).index_add_(0, alias, (1 - prob) / n)
    assert torch.allclose(exact, p, atol=1e-12)
    assert torch.all((prob >= 0) & (prob <= 1))


def test_compiled_negative_sampling_and_subsampling_follow_their_distributions():
    counts = [1000, 300, 50, 7, 1]
    prob, alias = (t.numpy() for t in C.alias_table(C.noise_distribution(counts)))
    state, draws = 7, []
    for _ in range(100_000):
        state, w = hogwild.negative_sample(state, prob, alias)
        draws.append(w)
    freq = torch.bincount(torch.tensor(draws), minlength=5).double() / len(draws)
    assert torch.allclose(freq, C.noise_distribution(counts), atol=5e-3)
    keep = numpy.array([0.2, 1.0, 0.5])
    ids = numpy.repeat(numpy.arange(3, dtype=numpy.int32), 20_000)
    buffers = [numpy.empty(ids.size, numpy.int64) for _ in range(3)]
    _, m = hogwild.subsample(ids, ids * 0, 0, ids.size, keep, 11, *buffers)
    kept = torch.from_numpy(buffers[0][:m])
    rate = torch.bincount(kept, minlength=3).double() / 20_000
    assert torch.allclose(rate, torch.from_numpy(keep), atol=0.02)
    assert numpy.all(numpy.diff(buffers[2][:m]) > 0)  # positions in corpus order


def test_window_mask_respects_sentences_and_the_reduced_window():
    sent = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    valid = window_mask(sent, 2, torch.Generator().manual_seed(0))
    assert valid.shape == (7, 5)
    assert not valid[:, 2].any()  # the centre is not its own context
    assert not valid[3, 3:].any() and not valid[4, :2].any()  # no window crosses sentences
    assert not valid[0, :2].any() and not valid[6, 3:].any()  # nor the chunk's ends
    assert valid[:3, 3].all() and valid[1:4, 1].all()  # offsets +-1 are always in the window
    assert valid[4:6, 3].all() and valid[5:, 1].all()


# ---------------------------------------------------------------- gradients
def tiny_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    w_in = torch.randn(7, 4, generator=g, dtype=torch.float64)
    w_out = torch.randn(7, 4, generator=g, dtype=torch.float64)
    span = torch.tensor([1, 2, 3, 4, 2])  # window 1: centres 2, 3, 4 at positions 1, 2, 3
    valid = torch.tensor([[1, 0, 1], [1, 0, 0], [1, 0, 1]], dtype=torch.bool)
    negs = torch.tensor([[5, 6], [3, 1], [0, 0]])  # the 3 for centre 3 must be skipped
    return w_in, w_out, span, valid, negs


def log_sigmoid_loss(x, u_pos, u_negs, keep_negs):
    """log sigma(u_pos . x) + sum_k log sigma(-u_k . x) over the kept negatives."""
    neg = torch.nn.functional.logsigmoid(-(u_negs @ x)) * keep_negs
    return torch.nn.functional.logsigmoid(u_pos @ x) + neg.sum()


def test_skip_gram_step_is_gradient_ascent_on_the_notes_loss():
    w_in, w_out, span, valid, negs = tiny_case()
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    loss = 0
    for i in range(3):
        c = span[i + 1]
        for o in range(3):
            if valid[i, o]:
                loss = loss + log_sigmoid_loss(a[span[i + o]], b[c], b[negs[i]],
                                               (negs[i] != c).double())
    loss.backward()
    lr = 0.1
    new_in, new_out = w_in.clone(), w_out.clone()
    sg_step(new_in, new_out, span, valid, negs, lr)
    assert torch.allclose(new_in - w_in, lr * a.grad, atol=1e-12)
    assert torch.allclose(new_out - w_out, lr * b.grad, atol=1e-12)


def test_cbow_step_is_gradient_ascent_with_the_mean_of_the_contexts():
    w_in, w_out, span, valid, negs = tiny_case(1)
    hs = []
    for i in range(3):
        rows = [span[i + o] for o in range(3) if valid[i, o]]
        hs.append(w_in[torch.stack(rows)].mean(0))
    h = torch.stack(hs).requires_grad_()
    b = w_out.clone().requires_grad_()
    loss = sum(log_sigmoid_loss(h[i], b[span[i + 1]], b[negs[i]], (negs[i] != span[i + 1])
                                .double()) for i in range(3))
    loss.backward()
    lr = 0.05
    expected_in = torch.zeros_like(w_in)
    for i in range(3):  # word2vec.c: the update of h goes to every context, unscaled
        for o in range(3):
            if valid[i, o]:
                expected_in[span[i + o]] += lr * h.grad[i]
    new_in, new_out = w_in.clone(), w_out.clone()
    cbow_step(new_in, new_out, span, valid, negs, lr)
    assert torch.allclose(new_in - w_in, expected_in, atol=1e-12)
    assert torch.allclose(new_out - w_out, lr * b.grad, atol=1e-12)


def test_compiled_skip_gram_pair_is_gradient_ascent_on_the_notes_loss():
    g = torch.Generator().manual_seed(2)
    w_in, w_out = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 0.5
    targets = numpy.array([2, 4, -1, 0])  # centre 2, negatives 4 and 0 (-1: a skipped draw)
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    log_sigmoid_loss(a[3], b[2], b[[4, 0]], torch.ones(2)).backward()
    new_in, new_out = w_in.clone(), w_out.clone()
    hogwild.sg_pair(new_in.numpy(), new_out.numpy(), 3, targets, 0.1,
                    numpy.empty(5, numpy.float32), False, hogwild.no_tree(5))
    assert torch.allclose(new_in - w_in, 0.1 * a.grad, atol=1e-6)
    assert torch.allclose(new_out - w_out, 0.1 * b.grad, atol=1e-6)


def test_compiled_cbow_centre_updates_every_context_with_the_gradient_of_the_mean():
    g = torch.Generator().manual_seed(3)
    w_in, w_out = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 0.5
    contexts, targets = numpy.array([1, 3, 5, 0]), numpy.array([2, 4, 0])
    h = w_in[[1, 3, 5]].mean(0).requires_grad_()
    b = w_out.clone().requires_grad_()
    log_sigmoid_loss(h, b[2], b[[4, 0]], torch.ones(2)).backward()
    new_in, new_out = w_in.clone(), w_out.clone()
    work = numpy.empty((1, 5), numpy.float32), numpy.empty(5, numpy.float32)
    hogwild.cbow_centre(new_in.numpy(), new_out.numpy(), contexts, 3, targets, 0.05, *work,
                        False, hogwild.no_tree(5))
    expected = torch.zeros_like(w_in)
    expected[[1, 3, 5]] = 0.05 * h.grad  # unscaled, like word2vec.c; row 0 is past n = 3
    assert torch.allclose(new_in - w_in, expected, atol=1e-6)
    assert torch.allclose(new_out - w_out, 0.05 * b.grad, atol=1e-6)


def test_huffman_tree_is_an_optimal_prefix_code():
    import heapq

    counts = [900, 300, 300, 120, 80, 40, 40, 12, 5, 3, 1]
    tree = C.huffman_tree(counts)
    v = len(counts)
    words = [tree.codes[w, : tree.lengths[w]].tolist() for w in range(v)]
    for a in range(v):
        for b in range(v):  # no code is the beginning of another
            assert a == b or words[b][: len(words[a])] != words[a]
    heap = [(c, 0) for c in counts]  # (weight, weighted depth below) of each subtree
    heapq.heapify(heap)
    while len(heap) > 1:
        (c1, d1), (c2, d2) = heapq.heappop(heap), heapq.heappop(heap)
        heapq.heappush(heap, (c1 + c2, d1 + d2 + c1 + c2))
    assert sum(c * len(w) for c, w in zip(counts, words)) == heap[0][1]  # optimal
    assert torch.all(tree.points[:, 0] == v - 2)  # every path starts at the root
    for w in range(v):
        assert 0 <= tree.points[w, : tree.lengths[w]].min() and \
            tree.points[w, : tree.lengths[w]].max() <= v - 2
    assert tree.lengths[0] <= tree.lengths[-1]


def test_compiled_hierarchical_softmax_is_gradient_ascent_on_the_path_probability():
    g = torch.Generator().manual_seed(4)
    tree = C.huffman_tree([40, 20, 10, 6, 3, 1])
    w_in = torch.randn(6, 5, generator=g)
    syn1 = torch.randn(5, 5, generator=g) * 0.5
    word, row = 4, 2
    length = int(tree.lengths[word])
    points, codes = tree.points[word, :length], tree.codes[word, :length].double()
    x, u = w_in[row].clone().requires_grad_(), syn1.clone().requires_grad_()
    signs = (1 - 2 * codes).float()
    torch.nn.functional.logsigmoid(signs * (u[points] @ x)).sum().backward()
    new_syn1, neu1e = syn1.clone(), numpy.zeros(5, numpy.float32)
    t = (tree.codes.numpy(), tree.points.numpy(), tree.lengths.numpy(), new_syn1.numpy())
    hogwild.update_path(w_in.numpy(), row, word, t, neu1e, 0.1)
    assert torch.allclose(torch.from_numpy(neu1e), 0.1 * x.grad, atol=1e-6)
    assert torch.allclose(new_syn1 - syn1, 0.1 * u.grad, atol=1e-6)


def test_learning_rate_decays_linearly_between_the_endpoints():
    assert learning_rate(0.025, 0.0001, 0, 1000) == 0.025
    assert learning_rate(0.025, 0.0001, 1000, 1000) == pytest.approx(0.0001)
    assert learning_rate(0.025, 0.0001, 500, 1000) == pytest.approx((0.025 + 0.0001) / 2)
    assert learning_rate(0.025, 0.0001, 2000, 1000) == pytest.approx(0.0001)


# ---------------------------------------------------------------- streaming
def test_file_streaming_matches_the_list(tmp_path, monkeypatch):
    sents, _ = sentences_two_groups(200)
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(" ".join(s) for s in sents) + "\n")
    one = tmp_path / "one.txt"
    one.write_text(" ".join(w for s in sents for w in s))
    monkeypatch.setattr(C, "BLOCK_BYTES", 100)  # words cut across blocks must survive
    monkeypatch.setattr(C, "MAX_SENTENCE", 64)
    from_list = C.build_vocabulary(sents, 1)
    for path in (lines, one):
        v = C.build_vocabulary(C.iter_file(path), 1)
        assert (v.index_to_key, v.counts, v.total_words) == (
            from_list.index_to_key, from_list.counts, from_list.total_words)
    assert [len(s) for s in C.iter_file(lines)] == [len(s) for s in sents]
    chunks = [len(s) for s in C.iter_file(one)]
    assert max(chunks) == 64 and sum(chunks) == 1600
    m1 = Word2Vec(corpus_file=str(lines), min_count=1, vector_size=8, epochs=1)
    m2 = Word2Vec(sents, min_count=1, vector_size=8, epochs=1)
    assert m1.wv.index_to_key == m2.wv.index_to_key
    assert torch.equal(m1.corpus.ids, m2.corpus.ids)


def test_invalid_utf8_is_replaced_and_counted_once(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good words \xff\xfe here\nmore good \xc3 words\n")
    with warnings_of("deepnotes.embeddings.corpus") as warnings:
        sents = list(C.iter_file(path))
    assert sents[0] == ["good", "words", "\ufffd\ufffd", "here"]
    assert len(warnings) == 1 and "3 invalid UTF-8 byte" in warnings[0]
    assert "(the first at line 1, byte offset 11)" in warnings[0]


@pytest.mark.parametrize("block", [16, 7, 1 << 20])
def test_the_first_invalid_byte_is_located_across_blocks(tmp_path, monkeypatch, block):
    monkeypatch.setattr(C, "BLOCK_BYTES", block)
    path = tmp_path / "bad.txt"
    text = b"aa bb\n" * 10 + b"cc \xff dd\n" + b"ee \xfe\n"
    path.write_bytes(text)
    with warnings_of("deepnotes.embeddings.corpus") as warnings:
        list(C.iter_file(path))
    assert len(warnings) == 1 and "2 invalid UTF-8 byte" in warnings[0]
    offset = text.index(b"\xff")
    assert f"(the first at line 11, byte offset {offset})" in warnings[0]


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("implementation", [pytest.param("hogwild", marks=needs_numba),
                                            "minibatch"])
def test_determinism_with_a_seed(implementation):
    sents, _ = sentences_two_groups(300)
    kw = dict(min_count=1, vector_size=16, epochs=2, workers=1, implementation=implementation)
    a, b = Word2Vec(sents, seed=3, **kw), Word2Vec(sents, seed=3, **kw)
    c = Word2Vec(sents, seed=4, **kw)
    assert torch.equal(a.wv.vectors, b.wv.vectors)
    assert not torch.equal(a.wv.vectors, c.wv.vectors)


@pytest.mark.parametrize("sg, kw", [
    (1, {}), (0, {}), (1, dict(shared_negatives=False)), (1, dict(workers=2)),
    (1, dict(implementation="minibatch")), (0, dict(implementation="minibatch")),
    *(pytest.param(sg, kw, marks=needs_numba) for sg, kw in [  # hs runs on the hogwild path
        (1, dict(hs=1, negative=0)), (0, dict(hs=1, negative=0)), (1, dict(hs=1))])])
def test_vectors_recover_planted_groups(sg, kw):
    sents, groups = sentences_two_groups(1500)
    threads = hogwild.numba.get_num_threads() if hogwild.available() else None
    m = Word2Vec(sents, sg=sg, min_count=1, vector_size=20, window=3, epochs=5, sample=0, **kw)
    if threads is not None:  # workers only for the training call
        assert hogwild.numba.get_num_threads() == threads
    wv = m.wv
    assert wv.vectors.shape == (20, 20) and wv.vectors.dtype == torch.float32
    assert len(wv.index_to_key) == 20 and wv.key_to_index[wv.index_to_key[5]] == 5
    x = torch.nn.functional.normalize(wv.vectors, dim=1)
    ia = torch.tensor([wv.key_to_index[w] for w in groups[0]])
    ib = torch.tensor([wv.key_to_index[w] for w in groups[1]])
    cos = x @ x.T
    off_diag = ~torch.eye(10, dtype=torch.bool)
    within = (cos[ia][:, ia][off_diag].mean() + cos[ib][:, ib][off_diag].mean()) / 2
    across = cos[ia][:, ib].mean()
    assert within > across + 0.3, (within, across)


def test_untrained_weights_follow_word2vec_initialisation():
    sents, _ = sentences_two_groups(50)
    m = Word2Vec(min_count=1, vector_size=10)
    m.build_vocab(sents)
    assert m.w_in.abs().max() <= 0.05 and m.w_in.abs().max() > 0.02
    assert torch.all(m.w_out == 0)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(sentences=[]), "the sentences: the corpus is empty"),
    (dict(sentences=[[], []]), "the sentences: the corpus is empty"),
    (dict(sentences=[["a", "b"], ["c"]], min_count=2),
     r"the sentences: vocabulary empty after min_count=2 \(0 of 3 word types kept; the most "
     r"frequent occurs 1 time\(s\)\)"),
    (dict(sentences=[["a"]], vector_size=0), "vector_size=0: expected an integer from 1 to 10000"),
    (dict(sentences=[["a"]], window=10**6), "window=1000000: expected an integer from 1 to 10000"),
    (dict(sentences=[["a"]], vector_size=-3), "vector_size"),
    (dict(sentences=[["a"]], sg=2), "sg must be"),
    (dict(sentences=(s for s in [["a"]])), "re-iterable"),
    (dict(sentences=["a sentence as a string"], min_count=1), "expected lists of tokens"),
    (dict(corpus_file="/nonexistent/corpus.txt"), "cannot read"),
    (dict(sentences=[["a"]], implementation="fast"), "implementation must be one of"),
    (dict(sentences=[["a"]], negative=0), "negative=0 needs hs=1"),
    (dict(sentences=[["a"]], hs=1, implementation="minibatch"), "hogwild path only"),
    (dict(sentences=[["a"]], hs=2), "hs must be"),
    (dict(sentences=[["a"]], implementation="hogwild", device="cuda"), "needs the CPU"),
])
def test_bad_input_raises_one_line_errors(kwargs, match):
    with pytest.raises(DeepnotesError, match=match) as e:
        Word2Vec(**kwargs)
    assert "\n" not in str(e.value)


def test_without_numba_auto_is_the_torch_path_and_hogwild_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(hogwild, "numba", None)  # as where numba is not installed
    assert _implementation("auto", "cpu") == "minibatch"
    with pytest.raises(DeepnotesError, match=r"needs the CPU and Numba \(pip install "
                                             r"'deepnotes\[fast\]'\)"):
        _implementation("hogwild", "cpu")


def test_pyproject_says_numba_is_optional_and_the_test_extra_installs_it():
    """The code falls back to torch without Numba, so it is an extra ([fast]), not a dependency;
    the [test] extra (what .ci/run installs) has it, so CI runs the hogwild tests above."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]

    def names(requirements):
        return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}

    extras = project["optional-dependencies"]
    assert "numba" not in names(project["dependencies"])
    assert "numba" in names(extras["fast"]) and "numba" in names(extras["test"])
    assert "scipy" in names(project["dependencies"])  # keyed_vectors' Spearman's rho


def test_empty_file_is_an_empty_corpus(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n")
    with pytest.raises(DeepnotesError, match="corpus is empty") as e:
        Word2Vec(corpus_file=str(path))
    assert str(e.value).startswith(f"corpus_file {str(path)!r}: ")


def test_fold_is_the_adjoint_of_the_sliding_windows():
    """<windows(x), y> = <x, fold(y)> for every x and y: fold sums each row's window copies."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9 + 4, 3, generator=g, dtype=torch.float64)
    y = torch.randn(9, 5, 3, generator=g, dtype=torch.float64)
    assert torch.allclose((_windows(x, 5) * y).sum(), (x * _fold(y)).sum())
    by_hand = torch.zeros_like(x)
    for i in range(9):
        for o in range(5):
            by_hand[i + o] += y[i, o]
    assert torch.allclose(_fold(y), by_hand)
