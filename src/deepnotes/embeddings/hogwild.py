"""The CPU fast path of Word2Vec: word2vec.c's loop compiled with Numba, on Hogwild threads.

Each thread takes a chunk of the encoded corpus, subsamples it, and walks it word by word as
word2vec.c does, with a reduced window b in [1, W] per centre (b = W - r mod W for a random r).
All threads update the shared V_in, U_out without locks (Hogwild, Recht et al. 2011). For an
input x, the targets t_0 = the centre (label 1) and t_k ~ P_n (label 0; a negative equal to the
centre is skipped), and the learning rate eta, one update is

    e_k = eta (label_k - sigma(u_{t_k} . x)),   u_{t_k} += e_k x,   x += sum_k e_k u_{t_k}

where the sum uses each u_t before its own update. Skip-gram: x = v_o for each context o of the
centre, one update per (context, centre) pair. CBOW: x = h = mean of the context vectors and the
last update goes to every context vector unscaled (word2vec.c, gensim). sigma is computed exactly,
not from word2vec.c's table.

Hierarchical softmax (``hs``, optional as in word2vec.c, with or without negatives) replaces the
K + 1 targets by the inner nodes on the centre's path in a Huffman tree (``corpus.huffman_tree``):
e_j = eta (1 - code_j - sigma(u_{p_j} . x)), the same two updates.

``shared_negatives`` (skip-gram): the K negatives are drawn once per centre and used by all its
pairs, as in HogBatch (Ji et al. 2016) and BlazingText; the targets' rows then stay in cache
across the window, about 3x faster on a 2-core machine for the same analogy accuracy (see
benchmarks/RESULTS.md). ``False`` draws K new negatives per pair, exactly like word2vec.c.

Random numbers come from word2vec.c's linear congruential generator, seeded per chunk from
(seed, epoch, chunk), so one thread is deterministic; negatives are drawn in O(1) by the alias
method from P_n (``corpus.alias_table``). The learning rate decays linearly with the position of
the word in the whole run, as in ``word2vec.learning_rate``.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
    from numba import prange
except ImportError:  # numba is optional (the [fast] extra): Word2Vec then trains with torch
    numba = None  # type: ignore[assignment]  # optional module: None stands for "missing"
    prange = range  # type: ignore[misc, assignment]  # numba's prange is a class; range plays it

LCG_A, LCG_C = 25214903917, 11
CHUNK = 10_000  # corpus words per task; a round gives each thread one task


def available() -> bool:
    """Whether Numba is installed (``pip install "deepnotes[fast]"``); else Word2Vec trains with
    the torch mini-batch path."""
    return numba is not None


def _jit(parallel: bool = False):
    def wrap(fn):
        if numba is None:
            return fn
        return numba.njit(cache=True, nogil=True, fastmath=True, parallel=parallel)(fn)
    return wrap


@_jit()
def uniform(state):
    """Next LCG state (word2vec.c's state * 25214903917 + 11) and a uniform float in [0, 1)
    from its bits 16..47."""
    state = state * LCG_A + LCG_C
    return state, ((state >> 16) & 0xFFFFFFFF) / 4294967296.0


@_jit()
def negative_sample(state, prob, alias):
    """One draw from P_n by the alias method: a uniform column i, kept with probability
    prob[i], else alias[i]."""
    state, u = uniform(state)
    v = u * prob.shape[0]
    i = min(int(v), prob.shape[0] - 1)
    return state, (i if v - i < prob[i] else alias[i])


@_jit()
def draw_targets(targets, centre, state, prob, alias):
    """targets[0] = centre, targets[1..K] ~ P_n; a negative equal to the centre becomes -1."""
    targets[0] = centre
    for k in range(1, targets.shape[0]):
        state, t = negative_sample(state, prob, alias)
        targets[k] = -1 if t == centre else t
    return state


@_jit()
def _sigmoid(f):
    if f > 30.0:
        return 1.0
    if f < -30.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(-f))


@_jit()
def update_targets(xs, row, targets, w_out, neu1e, lr):
    """x = xs[row]. For each target t_k (skipping -1): e = eta (label - sigma(u_t . x)),
    neu1e += e u_t, u_t += e x. ``neu1e`` accumulates the input's update; x is not changed.
    (Row indices are read into locals before the loops over j: Numba gives LLVM no aliasing
    information, and an index re-read from memory inside the loop stops vectorisation.)"""
    d = w_out.shape[1]
    for k in range(targets.shape[0]):
        t = targets[k]
        if t < 0:
            continue
        f = np.float32(0.0)
        for j in range(d):
            f += xs[row, j] * w_out[t, j]
        e = np.float32(lr * ((1.0 if k == 0 else 0.0) - _sigmoid(f)))
        for j in range(d):
            neu1e[j] += e * w_out[t, j]
            w_out[t, j] += e * xs[row, j]


@_jit()
def update_path(xs, row, word, tree, neu1e, lr):
    """Hierarchical softmax, x = xs[row]: for each inner node p_j on ``word``'s path, turning
    c_j, e = eta (1 - c_j - sigma(u_{p_j} . x)), neu1e += e u_{p_j}, u_{p_j} += e x (gradient
    ascent on log P(word | x) = sum_j log sigma((1 - 2 c_j) u_{p_j} . x)). The loops are those
    of ``update_targets`` written out again: a shared per-row helper measured 1/3 slower."""
    codes, points, lengths, syn1 = tree
    d = syn1.shape[1]
    for k in range(lengths[word]):
        p = points[word, k]
        f = np.float32(0.0)
        for j in range(d):
            f += xs[row, j] * syn1[p, j]
        e = np.float32(lr * (1.0 - codes[word, k] - _sigmoid(f)))
        for j in range(d):
            neu1e[j] += e * syn1[p, j]
            syn1[p, j] += e * xs[row, j]


@_jit()
def update_outputs(xs, row, targets, w_out, hs, tree, neu1e, lr):
    """Negative sampling over ``targets`` (when K > 0) and/or hierarchical softmax for the
    centre targets[0] (when ``hs``)."""
    if targets.shape[0] > 1:
        update_targets(xs, row, targets, w_out, neu1e, lr)
    if hs:
        update_path(xs, row, targets[0], tree, neu1e, lr)


@_jit()
def sg_pair(w_in, w_out, context, targets, lr, neu1e, hs, tree):
    """Skip-gram, one (context, centre) pair: x = v_context, then v_context += neu1e."""
    d = w_in.shape[1]
    for j in range(d):
        neu1e[j] = 0.0
    update_outputs(w_in, context, targets, w_out, hs, tree, neu1e, lr)
    for j in range(d):
        w_in[context, j] += neu1e[j]


@_jit()
def cbow_centre(w_in, w_out, contexts, n, targets, lr, neu1, neu1e, hs, tree):
    """CBOW, one centre: x = h = mean of v over contexts[:n]; each of them += neu1e.
    ``neu1`` is a (1, d) work row that receives h."""
    d = w_in.shape[1]
    for j in range(d):
        neu1[0, j] = 0.0
        neu1e[j] = 0.0
    for c in range(n):
        row = contexts[c]
        for j in range(d):
            neu1[0, j] += w_in[row, j]
    for j in range(d):
        neu1[0, j] /= n
    update_outputs(neu1, 0, targets, w_out, hs, tree, neu1e, lr)
    for c in range(n):
        row = contexts[c]
        for j in range(d):
            w_in[row, j] += neu1e[j]


@_jit()
def subsample(ids, sent, lo, hi, keep, state, kept, ksent, kpos):
    """Keep corpus position p in lo..hi-1 with probability keep[ids[p]]; the kept word ids,
    sentence numbers and positions fill kept, ksent, kpos; returns (state, number kept)."""
    m = 0
    for p in range(lo, hi):
        state, u = uniform(state)
        if u < keep[ids[p]]:
            kept[m], ksent[m], kpos[m] = ids[p], sent[p], p
            m += 1
    return state, m


@_jit()
def gather_window(kept, ksent, i, b, contexts):
    """contexts[:n] = the kept words at distance 1..b from i in i's sentence; returns n."""
    n = 0
    for c in range(max(i - b, 0), min(i + b, kept.shape[0] - 1) + 1):
        if c != i and ksent[c] == ksent[i]:
            contexts[n] = kept[c]
            n += 1
    return n


@_jit()
def touch(table, rows, n):
    """Read one float per 64-byte line of table[rows[:n]] (rows < 0 skipped) and return their
    sum. Done for the next centre's rows before the current centre's arithmetic, the loads of
    those (mostly uncached) rows overlap with it: a software prefetch, ~10-20 % faster."""
    s = np.float32(0.0)
    for k in range(n):
        row = rows[k]
        if row >= 0:
            for j in range(0, table.shape[1], 16):
                s += table[row, j]
    return s


@_jit()
def train_chunk(ids, sent, lo, hi, keep, prob, alias, w_in, w_out, sg, window, negative,
                shared, alpha, min_alpha, done, per_id, total, state, hs, tree):
    """Train on corpus positions lo..hi-1. ``done``: raw words before this epoch; ``per_id``: raw
    words per corpus id; the learning rate at position p is alpha - (alpha - min_alpha)
    (done + p per_id) / total. The targets of centre i + 1 are drawn while centre i trains."""
    d = w_in.shape[1]
    kept = np.empty(hi - lo, np.int64)
    ksent = np.empty(hi - lo, np.int64)
    kpos = np.empty(hi - lo, np.int64)
    state, m = subsample(ids, sent, lo, hi, keep, state, kept, ksent, kpos)
    kept, ksent = kept[:m], ksent[:m]
    targets = np.empty(negative + 1, np.int64)
    ahead = np.empty(negative + 1, np.int64)
    contexts = np.empty(2 * window, np.int64)
    neu1, neu1e = np.empty((1, d), np.float32), np.empty(d, np.float32)
    sink = np.float32(0.0)
    if m > 0:
        state = draw_targets(ahead, kept[0], state, prob, alias)
    for i in range(m):
        lr = alpha - (alpha - min_alpha) * min((done + kpos[i] * per_id) / total, 1.0)
        state = state * LCG_A + LCG_C
        n = gather_window(kept, ksent, i, window - ((state >> 16) & 0xFFFF) % window, contexts)
        for k in range(negative + 1):
            targets[k] = ahead[k]
        if i + 1 < m:
            state = draw_targets(ahead, kept[i + 1], state, prob, alias)
            sink += touch(w_out, ahead, negative + 1)
            sink += touch(w_in, kept[min(i + window + 1, m - 1):], 1)
        if n == 0:
            continue
        if not sg:
            cbow_centre(w_in, w_out, contexts, n, targets, lr, neu1, neu1e, hs, tree)
            continue
        for c in range(n):
            if not shared:
                state = draw_targets(targets, kept[i], state, prob, alias)
            sg_pair(w_in, w_out, contexts[c], targets, lr, neu1e, hs, tree)
    if sink == np.float32(1.2345e-30):  # keeps the compiler from dropping the touches
        state += 1
    return state


@_jit(parallel=True)
def _round(starts, seeds, ids, sent, keep, prob, alias, w_in, w_out, sg, window, negative,
           shared, alpha, min_alpha, done, per_id, total, hs, tree):
    """One task per thread: chunk t covers starts[t]..starts[t+1]-1, its LCG starts at seeds[t]."""
    for t in prange(starts.shape[0] - 1):
        train_chunk(ids, sent, starts[t], starts[t + 1], keep, prob, alias, w_in, w_out, sg,
                    window, negative, shared, alpha, min_alpha, done, per_id, total, seeds[t],
                    hs, tree)


def train_epoch(corpus, tables, w_in, w_out, settings, epoch: int, workers: int,
                on_round=None, tree=None) -> None:
    """One pass over ``corpus`` = (ids, sentence) int32 arrays in rounds of ``workers`` chunks of
    ``CHUNK`` ids, in corpus order. ``tables`` = (keep, prob, alias); ``settings`` = (sg, window,
    negative, shared, alpha, min_alpha, raw words per id, total raw words of the run, seed);
    ``tree`` = (codes, points, lengths, inner-node vectors) for hierarchical softmax, or None;
    ``on_round(hi)`` is called after each round with the corpus position reached."""
    ids, sent = corpus
    sg, window, negative, shared, alpha, min_alpha, per_id, total, seed = settings
    hs = tree is not None
    tree = no_tree(w_in.shape[1]) if tree is None else tree
    done = epoch * ids.shape[0] * per_id
    step = CHUNK * workers
    for lo in range(0, ids.shape[0], step):
        hi = min(lo + step, ids.shape[0])
        starts = np.linspace(lo, hi, workers + 1).astype(np.int64)
        seeds = np.array([chunk_seed(seed, epoch, lo // CHUNK + t) for t in range(workers)],
                         np.int64)
        _round(starts, seeds, ids, sent, *tables, w_in, w_out, sg, window, negative, shared,
               alpha, min_alpha, done, per_id, total, hs, tree)
        if on_round is not None:
            on_round(hi)


def no_tree(d: int) -> tuple:
    """A typed placeholder for ``tree`` without hierarchical softmax (one compiled signature)."""
    return (np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int64), np.zeros(1, np.int64),
            np.zeros((1, d), np.float32))


def chunk_seed(seed: int, epoch: int, chunk: int) -> int:
    """A distinct LCG start per (seed, epoch, chunk), as a signed 64-bit integer."""
    x = ((seed * 1_000_003 + epoch) * 1_000_033 + chunk) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
    x %= 1 << 64
    return x - (1 << 64) if x >= 1 << 63 else x
