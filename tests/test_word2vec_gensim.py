"""Word2Vec skip-gram with negative sampling against gensim's, on a corpus with a planted structure.

The corpus has four groups of ten words, each made of two subgroups of five. A sentence belongs
to one subgroup: its words come from that subgroup (50 %), the other subgroup of its group (15 %),
any word of any group (10 %) and six shared filler words with Zipf frequencies (25 %). Trained
vectors should put each word's nine nearest neighbours in its group (easy) and its four nearest
in its subgroup (harder: this corpus is small enough that neither library gets it all).

gensim is the oracle, with settings made comparable: one worker, a fixed seed, skip-gram with 5
negatives, no subsampling; ``batch_words=100`` so that its learning rate, which gensim holds fixed
over each job of ``batch_words`` words, decays almost linearly over the run as word2vec.c's and
deepnotes' does (with its default 10,000 each epoch of this 6,000-word corpus is one job); and
its input vectors start at word2vec.c's U(-0.5/d, 0.5/d), which deepnotes uses, instead of gensim
4's U(-1/d, 1/d). With gensim's own start its subgroups come out measurably sharper on this small
corpus (about 0.05 of the subgroup score over 30 seeds), which says nothing about either.

The thresholds come from 60 other seeds (20 triples, as the tests average three runs) for each
training path; the observed ranges are in the comment above them.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepnotes.embeddings import Word2Vec, hogwild

gensim_models = pytest.importorskip("gensim.models")

GROUPS, SUBGROUPS, WORDS = 4, 2, 5
GROUP = np.repeat(np.arange(GROUPS), SUBGROUPS * WORDS)  # the group of each content word
SUBGROUP = np.repeat(np.arange(GROUPS * SUBGROUPS), WORDS)
SETTINGS = dict(sg=1, negative=5, vector_size=24, window=3, min_count=1, sample=0, epochs=5,
                alpha=0.025, min_alpha=0.0001)
SEEDS = (0, 1, 2)
# deepnotes' two training paths; the mini-batch one with its automatic step (about 100 centres a
# step on this corpus, each step's updates computed from the weights before it) and with small
# steps (16 centres), where it is close to word2vec.c's word-by-word loop
VARIANTS = {
    "hogwild": dict(implementation="hogwild"),
    "minibatch": dict(implementation="minibatch"),
    "minibatch-16": dict(implementation="minibatch", batch_centres=16),
}

needs_numba = pytest.mark.skipif(not hogwild.available(),
                                 reason="numba not installed (pip install -e '.[fast]')")


def planted_corpus(seed: int, sentences: int = 600, length: int = 10):
    """Sentences with the two-level structure above, and the 40 content words in group order."""
    rng = random.Random(seed)
    words = [[[f"g{g}s{s}w{i}" for i in range(WORDS)] for s in range(SUBGROUPS)]
             for g in range(GROUPS)]
    content = [w for group in words for sub in group for w in sub]
    filler = [f"f{i}" for i in range(6)]
    zipf = [1 / (i + 1) for i in range(6)]
    corpus = []
    for k in range(sentences):
        g, s = k % GROUPS, rng.randrange(SUBGROUPS)
        sentence = []
        for _ in range(length):
            r = rng.random()
            if r < 0.5:
                sentence.append(rng.choice(words[g][s]))
            elif r < 0.65:
                sentence.append(rng.choice(words[g][1 - s]))
            elif r < 0.75:
                sentence.append(rng.choice(content))
            else:
                sentence.append(rng.choices(filler, zipf)[0])
        corpus.append(sentence)
    return corpus, content


def gensim_word2vec(corpus, seed: int):
    model = gensim_models.Word2Vec(hs=0, workers=1, seed=seed, batch_words=100, **SETTINGS)
    model.build_vocab(corpus)
    model.wv.vectors *= 0.5  # U(-1/d, 1/d) -> word2vec.c's U(-0.5/d, 0.5/d)
    model.train(corpus, total_examples=len(corpus), epochs=SETTINGS["epochs"])
    return model


def cosines(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows; -inf on the diagonal (a word is not its own
    neighbour)."""
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    c = x @ x.T
    np.fill_diagonal(c, -np.inf)
    return c


def nearest(c: np.ndarray, k: int) -> list[set[int]]:
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in c]


def same_label_share(neighbours: list[set[int]], label: np.ndarray) -> np.ndarray:
    """For each word, the share of its neighbours with its own label."""
    return np.array([np.mean(label[sorted(s)] == label[i]) for i, s in enumerate(neighbours)])


def jaccard(a: list[set[int]], b: list[set[int]]) -> float:
    return float(np.mean([len(x & y) / len(x | y) for x, y in zip(a, b)]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (the similarities are floats: no ties)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def scores(variant: str, seed: int) -> dict:
    corpus, content = planted_corpus(seed)
    ours = Word2Vec(corpus, workers=1, seed=seed + 1, **VARIANTS[variant], **SETTINGS)
    theirs = gensim_word2vec(corpus, seed + 1)
    c_ours = cosines(np.stack([ours.wv[w] for w in content]))
    c_theirs = cosines(np.stack([theirs.wv[w] for w in content]))
    upper = np.triu_indices(len(content), 1)
    out = {"rho": spearman(c_ours[upper], c_theirs[upper])}
    for name, c in (("ours", c_ours), ("gensim", c_theirs)):
        group = same_label_share(nearest(c, SUBGROUPS * WORDS - 1), GROUP)
        out[f"group_{name}"], out[f"group_min_{name}"] = group.mean(), group.min()
        out[f"sub_{name}"] = same_label_share(nearest(c, WORDS - 1), SUBGROUP).mean()
    out["jaccard_group"] = jaccard(nearest(c_ours, 9), nearest(c_theirs, 9))
    out["jaccard_sub"] = jaccard(nearest(c_ours, 4), nearest(c_theirs, 4))
    return out


def averaged(variant: str) -> dict:
    runs = [scores(variant, seed) for seed in SEEDS]
    merged = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    merged.update({k: float(min(r[k] for r in runs)) for k in runs[0] if "min" in k})
    return merged


# Thresholds for the averages over SEEDS. Over 20 other triples of seeds (100..159) the averages
# were, as mean / sd / lowest (for the gap, highest):
#   hogwild       sub 0.78/0.042/0.69  jaccard_sub 0.78/0.039/0.69  rho 0.966/0.004/0.960
#                 gap -0.01/0.031/0.058
#   minibatch-16  sub 0.77/0.043/0.67  jaccard_sub 0.78/0.029/0.73  rho 0.964/0.004/0.956
#                 gap 0.00/0.038/0.075
#   minibatch     sub 0.65/0.036/0.58  jaccard_sub 0.58/0.037/0.53  rho 0.757/0.023/0.714
#                 gap 0.115/0.047/0.21
#   gensim        sub 0.77/0.042/0.69; the group scores and jaccard_group were 1.0 in every run
# Each threshold is about 4 sd or more from the mean and clear of the worst triple. The automatic
# mini-batch step (stale updates over ~100 centres) learns the subgroups less well than gensim on
# a corpus this small; with 16 centres a step it matches gensim as the word-by-word loop does.
WORD_BY_WORD = dict(sub=0.6, jaccard_sub=0.6, rho=0.92, sub_gap=0.15)
THRESHOLDS = {
    "hogwild": WORD_BY_WORD,
    "minibatch-16": WORD_BY_WORD,
    "minibatch": dict(sub=0.5, jaccard_sub=0.42, rho=0.65, sub_gap=0.3),
}


@pytest.fixture(scope="module", params=[pytest.param("hogwild", marks=needs_numba),
                                        "minibatch", "minibatch-16"])
def result(request):
    return request.param, averaged(request.param)


def test_both_recover_the_groups(result):
    """Each word's 9 nearest neighbours are its group's other 9 words (chance: 9/39 of them)."""
    _, r = result
    for name in ("ours", "gensim"):
        assert r[f"group_{name}"] >= 0.9, (name, r)  # observed 1.0 in every run, both paths
        assert r[f"group_min_{name}"] >= 2 / 3, (name, r)  # observed 1.0 for every word


def test_both_find_subgroups_better_than_the_groups_alone_would(result):
    """Of each word's 4 nearest, the share in its subgroup: 4/9 = 0.44 if the vectors knew the
    groups only, 1 for perfect subgroups."""
    variant, r = result
    assert r["sub_gensim"] >= 0.6, r
    assert r["sub_ours"] >= THRESHOLDS[variant]["sub"], r
    # and not much worse than gensim on the same corpora and seeds
    assert r["sub_gensim"] - r["sub_ours"] <= THRESHOLDS[variant]["sub_gap"], r


def test_neighbours_agree_with_gensim(result):
    variant, r = result
    assert r["jaccard_group"] >= 0.9, r  # the same 9 nearest: observed 1.0
    # the same 4 nearest (chance, with groups known and subgroups not: about 0.29)
    assert r["jaccard_sub"] >= THRESHOLDS[variant]["jaccard_sub"], r
    # the rank correlation of all 780 pairwise cosine similarities
    assert r["rho"] >= THRESHOLDS[variant]["rho"], r
