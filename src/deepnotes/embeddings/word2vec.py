"""Word2Vec (skip-gram and CBOW with negative sampling), trained in mini-batches with torch.

The objective, for a centre word c and a context word o inside its window, with K
negative words n_k drawn from the noise distribution P_n(w) ~ f(w)^0.75:

    skip-gram:  log sigma(u_c . v_o) + sum_k log sigma(-u_{n_k} . v_o)
    CBOW:       log sigma(u_c . h) + sum_k log sigma(-u_{n_k} . h),   h = mean_o v_o

v are the input vectors (``wv.vectors``, initialised uniform(-0.5/d, 0.5/d)) and u the output
vectors (initialised to zero). As in word2vec.c the context word's input vector predicts the
centre word's output vector in skip-gram (the pair set is symmetric, so this is the same objective
as predicting the contexts from the centre). With the error e_k = label_k - sigma(s_k) (label 1
for the centre, 0 for a negative) and learning rate eta, one step is the gradient ascent

    u_k += eta e_k x,      x += eta sum_k e_k u_k        (x = v_o, or each context of h)

For CBOW the update of h is added to every context vector unscaled, like word2vec.c and gensim
(the exact gradient of the mean would divide it by the number of contexts).

Three implementations train it. On the CPU, when Numba is installed (the ``fast`` extra:
``pip install "deepnotes[fast]"``; ``implementation="hogwild"``, the default there), ``hogwild.py``
runs word2vec.c's word-by-word loop compiled, on lock-free threads. On a GPU with Triton (torch's
CUDA wheels bring it; ``implementation="triton"``, the default there), ``kernels.py`` runs a chunk
of the corpus as one kernel, one program per centre word. Elsewhere (no Numba, no Triton, or
asked for) the mini-batch path below runs in torch.

Mini-batches (HogBatch, Ji et al. 2016): all (centre, context) pairs of a chunk of the corpus are
built with tensor ops (subsampling mask, a random window b in [1, window] per centre, shifted index
tensors); B centres are processed at once, and in skip-gram the K negatives of a centre are shared
by all its contexts, so a step is two small batched matrix products and two sparse row additions,
in float32 under ``torch.no_grad`` with hand-written gradients. Updates within a step use the
weights from before it (the rows of a word occurring n times get the sum of n stale updates), so
the step size is capped by how often the most frequent word can repeat in it (``centres_per_step``).
The learning rate decays linearly from ``alpha`` to ``min_alpha`` over all words of all epochs
(updated every mini-batch).
"""

from __future__ import annotations

import logging
import time

import torch

from deepnotes.device import MAX_SEED, resolve_device
from deepnotes.embeddings import hogwild, kernels
from deepnotes.embeddings.corpus import (
    MAX_SENTENCE,
    CorpusVocabulary,
    EncodedCorpus,
    NoiseSampler,
    build_vocabulary,
    encode,
    huffman_tree,
    iter_sentences,
    keep_probability,
    noise_distribution,
    subsample_mask,
)
from deepnotes.embeddings.keyed_vectors import KeyedVectors
from deepnotes.errors import DeepnotesError, check_range
from deepnotes.graphs import Replayed

log = logging.getLogger(__name__)

CHUNK_WORDS = 200_000
# the largest sizes taken: far above any real use, below what overflows the kernels' int32 indices
LIMITS = {"vector_size": 10_000, "window": MAX_SENTENCE, "negative": 1_000,
          "epochs": 2**31 - 1, "min_count": 2**31 - 1}
# Centres per step. The row of a frequent word receives the summed (stale) updates of all its
# occurrences in a step, so a step may hold at most about DUPLICATES[sg] occurrences of the most
# frequent word (after subsampling, or in the noise): skip-gram, with 2b pairs per centre, diverges
# beyond ~12 (2048 centres on a 5 M-word text), CBOW tolerates more. Upper bound BATCH_CENTRES.
BATCH_CENTRES = {1: 1024, 0: 2048}
DUPLICATES = {1: 10.0, 0: 20.0}
# see _add_rows; for skip-gram 4 measured best of 2, 4, 32 on GCIDE (5.4 M words, 3 epochs);
# CBOW matches gensim without it, and a cap slows learning on small vocabularies
ROW_CAP = {1: 4.0, 0: None}


def centres_per_step(sg: int, counts, keep, noise_top: float) -> int:
    """min(BATCH_CENTRES, DUPLICATES / max(top kept frequency, top noise probability)), >= 16."""
    kept = torch.as_tensor(counts, dtype=torch.float64) * keep.double()
    top = max((kept.max() / kept.sum()).item(), noise_top)
    return int(max(16, min(BATCH_CENTRES[sg], DUPLICATES[sg] / top)))


def learning_rate(alpha: float, min_alpha: float, done: float, total: float) -> float:
    """eta = alpha - (alpha - min_alpha) * done / total, never below min_alpha."""
    frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
    return alpha - (alpha - min_alpha) * frac


def window_mask(sentence: torch.Tensor, window: int, generator: torch.Generator) -> torch.Tensor:
    """valid (M, 2W+1): column W + o says whether the word at position i + o (o in -W..W) is a
    context of centre i: 0 < |o| <= b_i with b_i uniform in [1, W] (the reduced window), inside
    the chunk and in the same sentence (positions index the kept, i.e. subsampled, words)."""
    m = sentence.shape[0]
    off = torch.arange(-window, window + 1)
    b = torch.randint(1, window + 1, (m, 1), generator=generator)
    pos = torch.arange(m).unsqueeze(1) + off
    valid = (off.abs() <= b) & (off != 0) & (pos >= 0) & (pos < m)
    pos.clamp_(0, max(m - 1, 0))
    return valid & (sentence[pos] == sentence.unsqueeze(1))


def _errors(scores: torch.Tensor, lr: float | torch.Tensor) -> torch.Tensor:
    """eta (label - sigma(s)), label 1 in the last dimension's column 0 (the centre), else 0."""
    g = torch.sigmoid(scores).neg_()
    g[..., 0] += 1.0
    return g.mul_(lr)


def _windows(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B + width - 1, d) rows -> (B, width, d) sliding windows (a view, no copy)."""
    return x.unfold(0, width, 1).transpose(1, 2)


def _fold(dxw: torch.Tensor) -> torch.Tensor:
    """Adjoint of ``_windows``: (B, width, d) -> (B + width - 1, d), overlapping rows summed."""
    bsz, width, d = dxw.shape
    rows = torch.arange(bsz, device=dxw.device).unsqueeze(1) + torch.arange(width,
                                                                            device=dxw.device)
    return dxw.new_zeros(bsz + width - 1, d).index_add_(0, rows.view(-1), dxw.reshape(-1, d))


def _add_rows(table, rows, update, cap: float | None) -> None:
    """table[rows[i]] += update[i]; with ``cap``, a row occurring n > cap times in this step gets
    its summed update scaled by cap / n (a guard against runs of one word: n stale updates of one
    row add up and diverge). The counts come from index_add_, which unlike bincount never waits
    for a GPU (bincount reads the largest id back to size its output)."""
    if cap is not None:
        ones = torch.ones(rows.shape, dtype=update.dtype, device=rows.device)
        n = update.new_zeros(table.shape[0]).index_add_(0, rows, ones)[rows]
        update = update * (cap / n).clamp_(max=1.0).unsqueeze(1)
    table.index_add_(0, rows, update)


def _split(span, valid, negs):
    width = valid.shape[1]
    centre = span[(width - 1) // 2 :][: valid.shape[0]]
    return width, centre, torch.cat([centre.unsqueeze(1), negs], 1)


def sg_step(w_in, w_out, span, valid, negs, lr, cap: float | None = None) -> None:
    """One skip-gram step for the B centres of ``span`` (B + 2W word ids: centre i sits at
    i + W and its window at i .. i + 2W), ``valid`` (B, 2W+1) the context mask, ``negs`` (B, K)
    negatives shared by a centre's contexts. Scores (B, 2W+1, K+1) = windows of V_in[span] @
    U_out[centre, negs]^T; a negative equal to the centre is skipped (word2vec.c). ``lr`` is a
    float or a 0-d tensor (what a replayed CUDA graph takes, see deepnotes.graphs)."""
    width, centre, out_ids = _split(span, valid, negs)
    xw = _windows(w_in[span], width)
    u = w_out[out_ids]
    g = _errors(torch.bmm(xw, u.transpose(1, 2)), lr)
    g.mul_(valid.unsqueeze(2))
    g[:, :, 1:].mul_((negs != centre.unsqueeze(1)).unsqueeze(1))
    du = torch.bmm(g.transpose(1, 2), xw)
    _add_rows(w_in, span, _fold(torch.bmm(g, u)), cap)
    _add_rows(w_out, out_ids.view(-1), du.view(-1, du.shape[2]), cap)


def cbow_step(w_in, w_out, span, valid, negs, lr, cap: float | None = None) -> None:
    """One CBOW step (same arguments as ``sg_step``): h_i = mean of the valid context vectors,
    scores (B, K+1) = U_out[centre, negs] @ h; the update of h goes to each context unscaled
    (word2vec.c); a centre without contexts is skipped."""
    width, centre, out_ids = _split(span, valid, negs)
    xw = _windows(w_in[span], width)
    vf = valid.to(xw.dtype)
    n = vf.sum(1, keepdim=True)
    h = torch.bmm(vf.unsqueeze(1), xw).squeeze(1).div_(n.clamp(min=1))
    u = w_out[out_ids]
    g = _errors(torch.bmm(u, h.unsqueeze(2)).squeeze(2), lr)
    g[:, 1:].mul_(negs != centre.unsqueeze(1))
    g.mul_(n > 0)
    dh = torch.bmm(g.unsqueeze(1), u).squeeze(1)
    dx = dh.new_zeros(span.shape[0], dh.shape[1])
    for o in range(width):
        dx[o : o + dh.shape[0]].addcmul_(vf[:, o : o + 1], dh)
    _add_rows(w_in, span, dx, cap)
    _add_rows(w_out, out_ids.view(-1), (g.unsqueeze(2) * h.unsqueeze(1)).view(-1, h.shape[1]), cap)


class Word2Vec:
    """Train word vectors; like gensim, training runs on construction when data is given.

    >>> model = Word2Vec(sentences, sg=1, vector_size=100, window=5, negative=5, min_count=5)
    >>> model.wv.most_similar("king")

    ``sentences``: an iterable (re-iterable) of token lists; ``corpus_file``: a text file, one
    sentence per line (long lines cut into 10,000-word chunks), streamed. ``workers``: training
    threads (None: all cores). ``implementation``: "hogwild" (CPU, Numba), "triton" (a CUDA
    GPU, Triton), "minibatch" (torch, any device) or "auto" (hogwild on the CPU when Numba is
    installed, triton on a GPU when Triton is). Deterministic for a
    ``seed`` with one worker (the mini-batch path in practice with more too); Hogwild threads
    race by design. ``shared_negatives`` (hogwild skip-gram): one draw of K negatives per centre,
    shared by its pairs (see ``hogwild``). ``hs=1``: hierarchical softmax over a Huffman tree
    (hogwild path; with ``negative=0`` alone, else besides negative sampling; its inner-node
    vectors are ``w_hs``). ``batch_centres`` (minibatch): centre words per step
    (None: ``centres_per_step``, at most 1024 for skip-gram, 2048 for CBOW).
    After training: ``wv`` (a KeyedVectors of the input vectors), ``w_out`` (output vectors),
    ``train_seconds``.
    """

    def __init__(self, sentences=None, corpus_file=None, sg: int = 1, vector_size: int = 100,
                 window: int = 5, negative: int = 5, min_count: int = 5, sample: float = 1e-3,
                 alpha: float = 0.025, min_alpha: float = 0.0001, epochs: int = 5,
                 workers: int | None = None, seed: int = 1, device="cpu", progress: bool = False,
                 implementation: str = "auto", shared_negatives: bool = True,
                 batch_centres: int | None = None, hs: int = 0):
        for name, value in (("vector_size", vector_size), ("window", window),
                            ("min_count", min_count), ("epochs", epochs)):
            check_range(name, value, 1, LIMITS[name], integer=True)
        check_range("negative", negative, 0, LIMITS["negative"], integer=True)
        if hs not in (0, 1):
            raise DeepnotesError(f"hs must be 1 (hierarchical softmax) or 0, got {hs!r}")
        if negative == 0 and not hs:
            raise DeepnotesError("negative=0 needs hs=1: without negative sampling, hierarchical "
                                 "softmax is the output layer")
        if batch_centres is not None:
            check_range("batch_centres", batch_centres, 1, integer=True)
        if sg not in (0, 1):
            raise DeepnotesError(f"sg must be 1 (skip-gram) or 0 (CBOW), got {sg!r}")
        check_range("alpha", alpha, 0.0, low_open=True)
        check_range("min_alpha", min_alpha, 0.0, alpha, hint="it decays from alpha to min_alpha")
        if workers is not None:
            check_range("workers", workers, 1, integer=True)
        check_range("seed", seed, 0, MAX_SEED, integer=True)
        self.sg, self.vector_size, self.window, self.negative = sg, vector_size, window, negative
        self.min_count, self.sample = min_count, sample
        self.alpha, self.min_alpha = alpha, min_alpha
        self.epochs, self.workers, self.seed, self.progress = epochs, workers, seed, progress
        self.implementation = _implementation(implementation, str(device).split(":")[0])
        self.device = resolve_device(str(device))  # one that exists, before any reading
        self.hs = hs
        if hs and self.implementation != "hogwild":
            raise DeepnotesError("hs=1 (hierarchical softmax) runs on the hogwild path only: the "
                                 "CPU with Numba")
        self.shared_negatives, self.batch_centres = bool(shared_negatives), batch_centres
        self.vocab: CorpusVocabulary | None = None
        self.corpus: EncodedCorpus | None = None
        self.wv: KeyedVectors | None = None
        self.train_seconds = 0.0
        if sentences is not None and corpus_file is not None:
            raise DeepnotesError("give sentences or corpus_file, not both")
        if sentences is not None or corpus_file is not None:
            self.build_vocab(sentences, corpus_file)
            self.train()

    def build_vocab(self, sentences=None, corpus_file=None) -> None:
        """Vocabulary pass, then encoding pass (the corpus becomes one int32 id tensor); the
        weights are initialised: V_in ~ U(-0.5/d, 0.5/d), U_out = 0."""
        if sentences is None and corpus_file is None:
            raise DeepnotesError("build_vocab needs sentences or corpus_file")
        if sentences is not None and iter(sentences) is sentences:
            raise DeepnotesError("sentences must be re-iterable (a list, not a generator)")
        self.vocab = build_vocabulary(iter_sentences(sentences, corpus_file), self.min_count,
                                      "the sentences" if corpus_file is None else
                                      f"corpus_file {str(corpus_file)!r}")
        self.corpus = encode(iter_sentences(sentences, corpus_file, warn=False), self.vocab)
        g = torch.Generator().manual_seed(self.seed)
        n, d = len(self.vocab), self.vector_size
        self.w_in = ((torch.rand(n, d, generator=g) - 0.5) / d).to(self.device)
        self.w_out = torch.zeros(n, d, device=self.device)
        if self.hs:  # the V - 1 inner nodes of the Huffman tree, initialised to zero
            self.tree = huffman_tree(self.vocab.counts)
            self.w_hs = torch.zeros(max(n - 1, 1), d, device=self.device)
        self._publish()

    def _publish(self) -> None:
        assert self.vocab is not None  # called after build_vocab
        self.wv = KeyedVectors(list(self.vocab.index_to_key), self.w_in, list(self.vocab.counts))

    @torch.no_grad()
    def train(self) -> None:
        """``epochs`` passes over the encoded corpus in chunks of ``CHUNK_WORDS`` words."""
        if self.corpus is None:
            raise DeepnotesError("call build_vocab (or pass sentences/corpus_file) before train")
        threads = torch.get_num_threads()
        if self.workers is not None:
            torch.set_num_threads(self.workers)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.epochs * self.corpus.raw_words, unit="word", unit_scale=True)
        try:
            start = time.perf_counter()
            self._train_epochs(bar)
            self.train_seconds = time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        self._publish()

    def _train_epochs(self, bar) -> None:
        if self.implementation == "hogwild":
            self._train_hogwild(bar)
        elif self.implementation == "triton":
            self._train_triton(bar)
        else:
            self._train_minibatch(bar)

    def _train_hogwild(self, bar) -> None:
        """Compiled word2vec.c loop on ``workers`` lock-free threads, in place on the weights."""
        c, vocab = self.corpus, self.vocab
        assert c is not None and vocab is not None  # train checked: build_vocab set both
        keep = keep_probability(vocab.counts, self.sample, vocab.total_words).double()
        noise = NoiseSampler(vocab.counts)
        tables = (keep.numpy(), noise.prob.numpy(), noise.alias.numpy())
        per_id = c.raw_words / max(c.ids.shape[0], 1)
        settings = (self.sg, self.window, self.negative, self.shared_negatives, self.alpha,
                    self.min_alpha, per_id, self.epochs * c.raw_words, self.seed)
        threads = hogwild.numba.get_num_threads()
        # numba.config sets its settings from the environment at import: no static attribute
        limit = hogwild.numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        workers = min(self.workers or threads, limit)
        hogwild.numba.set_num_threads(workers)
        tree = None
        if self.hs:
            t = self.tree
            tree = (t.codes.numpy(), t.points.numpy(), t.lengths.numpy(), self.w_hs.numpy())
        try:
            for epoch in range(self.epochs):
                start = time.perf_counter()
                tick = None if bar is None else (
                    lambda hi, e=epoch: bar.update(round(e * c.raw_words + hi * per_id) - bar.n))
                hogwild.train_epoch((c.ids.numpy(), c.sentence.numpy()), tables,
                                    self.w_in.numpy(), self.w_out.numpy(), settings, epoch,
                                    workers, tick, tree)
                self._epoch_done(epoch, start)
        finally:
            hogwild.numba.set_num_threads(threads)

    def _train_minibatch(self, bar) -> None:
        c, vocab = self.corpus, self.vocab
        assert c is not None and vocab is not None  # train checked: build_vocab set both
        g = torch.Generator().manual_seed(self.seed)
        keep = keep_probability(vocab.counts, self.sample, vocab.total_words)
        noise = NoiseSampler(vocab.counts)
        if self.batch_centres is None:
            top = noise_distribution(vocab.counts).max().item()
            self.batch_centres = centres_per_step(self.sg, vocab.counts, keep, top)
        total = self.epochs * c.raw_words
        step = Replayed(sg_step if self.sg else cbow_step, in_place=(0, 1))  # the tables
        self._over_chunks(bar, lambda lo, hi, done, words: self._train_chunk(
            step, c.ids[lo:hi], c.sentence[lo:hi], keep, noise, g, done, words, total))

    def _train_triton(self, bar) -> None:
        """One kernel a chunk (``kernels.train_chunk``); the corpus, the tables and the random
        numbers stay on the device."""
        c, vocab = self.corpus, self.vocab
        assert c is not None and vocab is not None  # train checked: build_vocab set both
        dev = self.w_in.device
        g = torch.Generator(device=dev).manual_seed(self.seed)
        keep = keep_probability(vocab.counts, self.sample, vocab.total_words).to(dev)
        noise = NoiseSampler(vocab.counts, device=dev)
        ids, sentence = c.ids.to(dev), c.sentence.to(dev)
        total = self.epochs * c.raw_words

        def eta(done: float) -> float:
            return learning_rate(self.alpha, self.min_alpha, done, total)

        self._over_chunks(bar, lambda lo, hi, done, words: kernels.train_chunk(
            self.sg, self.w_in, self.w_out, ids[lo:hi], sentence[lo:hi], keep, noise, g,
            self.window, self.negative, (eta(done), eta(done + words), self.min_alpha)))

    def _over_chunks(self, bar, train_chunk) -> None:
        """``epochs`` passes over the encoded corpus, ``CHUNK_WORDS`` ids at a time:
        ``train_chunk(lo, hi, done, words)`` for ids lo..hi-1, with the raw words (dropped ones
        included, the unit of the learning rate's decay) done before the chunk and in it; then
        the progress bar, and each epoch's log line once the device has finished it."""
        c = self.corpus
        assert c is not None  # train checked
        n = c.ids.shape[0]
        per_id = c.raw_words / max(n, 1)  # raw words per kept id
        for epoch in range(self.epochs):
            start = time.perf_counter()
            for lo in range(0, n, CHUNK_WORDS):
                hi = min(lo + CHUNK_WORDS, n)
                train_chunk(lo, hi, epoch * c.raw_words + lo * per_id, (hi - lo) * per_id)
                if bar is not None:
                    bar.update(round((epoch * c.raw_words + hi * per_id) - bar.n))
            if self.w_in.is_cuda:
                torch.cuda.synchronize(self.w_in.device)  # the epoch's words/s: kernels included
            self._epoch_done(epoch, start)

    def _epoch_done(self, epoch: int, start: float) -> None:
        """One log line an epoch (what a log file gets instead of a progress bar)."""
        assert self.corpus is not None
        log.info("word2vec epoch %d/%d: %.0f words/s", epoch + 1, self.epochs,
                 self.corpus.raw_words / max(time.perf_counter() - start, 1e-9))

    def _train_chunk(self, step, ids, sentence, keep, noise, g, done, words, total) -> None:
        """Subsample the chunk, build its windows, then step over B centres at a time (the
        chunk's ids, masks, negatives and learning rates move to the device once, so no step
        waits for it; on a GPU ``step`` replays a CUDA graph of sg_step or cbow_step for each
        full-size step, see deepnotes.graphs)."""
        kept = subsample_mask(ids, keep, g)
        wid, sent = ids[kept].long(), sentence[kept]
        m = wid.shape[0]
        if m == 0:
            return
        valid = window_mask(sent, self.window, g)
        pad = wid.new_zeros(self.window)
        span = torch.cat([pad, wid, pad]).to(self.device)
        valid, negs = valid.to(self.device), noise.sample((m, self.negative), g).to(self.device)
        w2, bsz = 2 * self.window, self.batch_centres
        assert bsz is not None  # _train_minibatch set it
        starts = range(0, m, bsz)
        lrs = torch.tensor([learning_rate(self.alpha, self.min_alpha, done + words * b / m, total)
                            for b in starts], dtype=self.w_in.dtype).to(self.device)
        for k, b in enumerate(starts):
            e = min(b + bsz, m)
            step(self.w_in, self.w_out, span[b : e + w2], valid[b:e], negs[b:e], lrs[k],
                 ROW_CAP[self.sg])


IMPLEMENTATIONS = ("auto", "hogwild", "triton", "minibatch")


def _implementation(name: str, device_type: str) -> str:
    """auto -> hogwild on the CPU with Numba installed, triton on a CUDA GPU with Triton, else
    minibatch; hogwild needs the CPU and Numba, triton a CUDA GPU (or, for tests, the CPU with
    TRITON_INTERPRET=1, which runs its kernels in Triton's interpreter) and Triton."""
    if name not in IMPLEMENTATIONS:
        raise DeepnotesError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
                             f"got {name!r}")
    cpu, cuda = device_type == "cpu", device_type == "cuda"
    if name == "hogwild" and not (cpu and hogwild.available()):
        raise DeepnotesError("implementation 'hogwild' needs the CPU and Numba "
                             "(pip install 'deepnotes[fast]'); use 'minibatch'")
    triton_here = kernels.available() and (cuda or cpu and kernels.interpreting())
    if name == "triton" and not triton_here:
        raise DeepnotesError("implementation 'triton' needs a CUDA GPU and Triton (torch's "
                             "CUDA wheels include it); use 'minibatch'")
    if name == "auto":
        if cpu and hogwild.available():
            return "hogwild"
        return "triton" if cuda and kernels.available() else "minibatch"
    return name

