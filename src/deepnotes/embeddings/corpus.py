"""The corpus side of word2vec: vocabulary, streaming, frequent-word subsampling, noise.

* Vocabulary (:class:`CorpusVocabulary`): every word seen at least ``min_count`` times, sorted
  by count, descending (ties keep first-appearance order), so index 0 is the most frequent word.
* Subsampling (the word2vec C tool): an occurrence of word w with count f(w) out of T words is
  kept with probability

      P_keep(w) = (sqrt(f(w) / (s T)) + 1) * (s T) / f(w),   clipped to 1,

  where s is ``sample``; ``sample <= 0`` keeps everything.
* Noise for negative sampling: P_n(w) = f(w)^0.75 / sum_u f(u)^0.75.

A corpus is either an iterable of sentences (lists of string tokens) or a text file, read in
blocks and split on whitespace, one sentence per line; a line longer than ``MAX_SENTENCE`` words
(text8 is one line) is cut into chunks of that many words. The file is never held whole as Python
strings: after the vocabulary pass it is encoded into one int32 id tensor.
"""

from __future__ import annotations

import codecs
import logging
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import torch

from deepnotes.errors import DeepnotesError

log = logging.getLogger(__name__)

MAX_SENTENCE = 10_000
BLOCK_BYTES = 1 << 20
_ERRORS = "deepnotes-count-replace"
_replaced = [0]


def _count_replace(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: like ``errors="replace"`` but counts the replaced bytes."""
    err = cast(UnicodeDecodeError, exc)  # registered for decoding (``_split_words``) only
    _replaced[0] += err.end - err.start
    return "\ufffd", err.end


codecs.register_error(_ERRORS, _count_replace)


def _split_words(text: bytes, sentence: list[str], out: list[list[str]]) -> None:
    """Split decoded lines of ``text`` into ``sentence``; finished sentences go to ``out``."""
    lines = text.decode("utf-8", _ERRORS).split("\n")
    for i, line in enumerate(lines):
        sentence.extend(line.split())
        while len(sentence) >= MAX_SENTENCE:
            out.append(sentence[:MAX_SENTENCE])
            del sentence[:MAX_SENTENCE]
        if i < len(lines) - 1 and sentence:
            out.append(sentence[:])
            sentence.clear()


def iter_file(path, warn: bool = True) -> Iterator[list[str]]:
    """Sentences of a text file, streamed in ``BLOCK_BYTES`` blocks (one per line, long lines cut
    into ``MAX_SENTENCE``-word chunks). Invalid UTF-8 is replaced by U+FFFD; the number of replaced
    bytes, with the line and byte offset of the first, is logged once as a warning at the end
    (``warn=False``: not, for a second pass)."""
    _replaced[0] = 0
    first, done, lines = None, 0, 0  # the first bad byte's (line, offset); bytes, lines before
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below; only open() is caught)
    except OSError as e:
        raise DeepnotesError(f"corpus_file {str(path)!r}: cannot read ({e.strerror})") from None
    carry = b""
    sentence: list[str] = []
    with f:
        while True:
            block = f.read(BLOCK_BYTES)
            buf = carry + block
            if not block:
                carry = b""
            else:  # cut at the last whitespace byte: never inside a word or a UTF-8 sequence
                cut = max(buf.rfind(b" "), buf.rfind(b"\n"), buf.rfind(b"\t"), buf.rfind(b"\r"))
                buf, carry = (buf[: cut + 1], buf[cut + 1 :]) if cut >= 0 else (b"", buf)
            out: list[list[str]] = []
            before = _replaced[0]
            _split_words(buf, sentence, out)
            if first is None and _replaced[0] > before:
                first = _first_bad_byte(buf, done, lines)
            done, lines = done + len(buf), lines + buf.count(b"\n")
            yield from out
            if not block:
                break
    if sentence:
        yield sentence
    if _replaced[0] and warn and first is not None:
        log.warning("corpus_file %r: %d invalid UTF-8 byte(s) replaced by U+FFFD (the first at "
                    "line %d, byte offset %d)", str(path), _replaced[0], *first)


def _first_bad_byte(buf: bytes, done: int, lines: int) -> tuple[int, int]:
    """(line, byte offset in the file) of the first invalid UTF-8 byte of ``buf``, a block that
    starts at byte ``done`` after ``lines`` newlines."""
    try:
        buf.decode("utf-8")
    except UnicodeDecodeError as exc:
        return lines + buf.count(b"\n", 0, exc.start) + 1, done + exc.start
    return lines + 1, done  # not reached: the caller saw a replacement in ``buf``


def iter_sentences(sentences: Iterable[list[str]] | None, corpus_file,
                   warn: bool = True) -> Iterator[list[str]]:
    """One pass over the corpus, from a list (or re-iterable) of token lists or from a file;
    list sentences longer than ``MAX_SENTENCE`` are cut like file lines. ``warn``: see
    :func:`iter_file`."""
    if corpus_file is not None:
        yield from iter_file(corpus_file, warn)
        return
    assert sentences is not None  # the callers give sentences or corpus_file
    for s in sentences:
        if isinstance(s, str):
            raise DeepnotesError("sentences: expected lists of tokens, got a string; split it")
        s = list(s)
        for i in range(0, len(s), MAX_SENTENCE):
            yield s[i : i + MAX_SENTENCE]


@dataclass
class CorpusVocabulary:
    """Words (most frequent first), their counts, and the total number of words in the corpus
    (all words, including those under ``min_count``).

    Not :class:`deepnotes.data.vocabulary.Vocabulary`, which maps a training set's tokens to
    model input ids: that one has ``<pad>``/``<unk>`` (and ``<bos>``/``<eos>``) first, breaks
    count ties by the token and reads an unknown token as ``<unk>``. Word2vec's has no specials,
    breaks ties by first appearance (as gensim and word2vec.c), drops unknown words, and keeps
    the counts that subsampling, the noise distribution and the Huffman tree are computed from.
    """

    index_to_key: list[str]
    counts: list[int]
    total_words: int
    key_to_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}

    def __len__(self) -> int:
        return len(self.index_to_key)


def build_vocabulary(sentences: Iterable[list[str]], min_count: int,
                     source: str = "the corpus") -> CorpusVocabulary:
    """Count words; keep those with count >= ``min_count``, sorted by count descending.
    ``source`` names the corpus in errors (its file)."""
    counter: Counter = Counter()
    for s in sentences:
        counter.update(s)
    total = sum(counter.values())
    if total == 0:
        raise DeepnotesError(f"{source}: the corpus is empty, no words to train on")
    kept = sorted((kv for kv in counter.items() if kv[1] >= min_count), key=lambda kv: -kv[1])
    if not kept:
        top = max(counter.values())
        raise DeepnotesError(f"{source}: vocabulary empty after min_count={min_count} (0 of "
                             f"{len(counter)} word types kept; the most frequent occurs {top} "
                             "time(s)); lower min_count")
    return CorpusVocabulary([w for w, _ in kept], [c for _, c in kept], total)


@dataclass
class EncodedCorpus:
    """The corpus as word ids (int32, out-of-vocabulary words dropped) and the sentence number of
    each id, so that context windows never cross a sentence boundary; ``raw_words`` counts all
    words, dropped ones included (the unit of learning-rate decay and of words/s)."""

    ids: torch.Tensor
    sentence: torch.Tensor
    raw_words: int


def encode(sentences: Iterable[list[str]], vocab: CorpusVocabulary) -> EncodedCorpus:
    """Map every in-vocabulary word to its id; one pass, ids accumulated in C arrays."""
    k2i = vocab.key_to_index
    ids, sent = array("i"), array("i")
    raw = 0
    for n, s in enumerate(sentences):
        raw += len(s)
        row = [i for i in map(k2i.get, s) if i is not None]
        ids.extend(row)
        sent.extend([n] * len(row))
    return EncodedCorpus(torch.frombuffer(ids, dtype=torch.int32).clone() if ids
                         else torch.zeros(0, dtype=torch.int32),
                         torch.frombuffer(sent, dtype=torch.int32).clone() if sent
                         else torch.zeros(0, dtype=torch.int32), raw)


def keep_probability(counts: list[int] | torch.Tensor, sample: float,
                     total_words: int) -> torch.Tensor:
    """P_keep(w) = (sqrt(f/(s T)) + 1) (s T) / f, clipped to 1 (all ones when ``sample <= 0``)."""
    f = torch.as_tensor(counts, dtype=torch.float64)
    if sample <= 0:
        return torch.ones_like(f, dtype=torch.float32)
    st = sample * total_words
    return ((torch.sqrt(f / st) + 1) * st / f).clamp(max=1.0).float()


def subsample_mask(ids: torch.Tensor, keep: torch.Tensor, generator: torch.Generator):
    """Keep each occurrence of word w independently with probability ``keep[w]``."""
    return torch.rand(ids.shape[0], generator=generator) < keep[ids.long()]


def noise_distribution(counts: list[int] | torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """P_n(w) = f(w)^power / sum_u f(u)^power (float64)."""
    p = torch.as_tensor(counts, dtype=torch.float64).pow(power)
    return p / p.sum()


def alias_table(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Walker's alias method (Vose's construction) for the distribution p over n outcomes:
    column i (chosen uniformly) keeps i with probability prob[i], else gives alias[i], so that
    P(w) = (prob[w] + sum_{i: alias[i] = w} (1 - prob[i])) / n = p[w]. Returns (prob float64,
    alias int64)."""
    n = p.numel()
    q = (p.double() * n).tolist()
    prob, alias = [1.0] * n, list(range(n))
    small = [i for i, x in enumerate(q) if x < 1.0]
    large = [i for i, x in enumerate(q) if x >= 1.0]
    while small and large:
        s, g = small.pop(), large[-1]
        prob[s], alias[s] = q[s], g
        q[g] -= 1.0 - q[s]
        if q[g] < 1.0:
            small.append(large.pop())
    return torch.tensor(prob, dtype=torch.float64), torch.tensor(alias, dtype=torch.int64)


class NoiseSampler:
    """Draws negative samples from P_n in O(1) per draw by the alias method (``alias_table``)."""

    def __init__(self, counts, power: float = 0.75, device="cpu"):
        """``device``: where the tables are kept and the draws made."""
        prob, alias = alias_table(noise_distribution(counts, power))
        self.prob, self.alias = prob.to(device), alias.to(device)

    def sample(self, shape, generator: torch.Generator) -> torch.Tensor:
        """Word ids of the given shape, i.i.d. from P_n (int64), on the tables' device (where
        ``generator`` must be)."""
        n, dev = self.prob.numel(), self.prob.device
        column = torch.randint(0, n, shape, generator=generator, device=dev)
        take = torch.rand(shape, generator=generator, dtype=torch.float64,
                          device=dev) < self.prob[column]
        return torch.where(take, column, self.alias[column])


@dataclass
class HuffmanTree:
    """Hierarchical softmax's binary tree over the vocabulary (word2vec.c's CreateBinaryTree):
    frequent words get short paths. Word w's path from the root has ``lengths[w]`` inner nodes
    ``points[w, :L]`` (rows 0..V-2 of the inner-node vectors) and turns ``codes[w, :L]`` (0 or 1);
    P(w | x) = prod_j sigma((1 - 2 code_j) u_{point_j} . x)."""

    codes: torch.Tensor  # (V, max length) int8
    points: torch.Tensor  # (V, max length) int64
    lengths: torch.Tensor  # (V,) int64


def huffman_tree(counts: list[int]) -> HuffmanTree:
    """Merge the two least frequent nodes until one is left; ``counts`` sorted descending, as in
    the CorpusVocabulary (two pointers walk the leaves and the new nodes, both in sorted order)."""
    v = len(counts)
    if v < 2:
        raise DeepnotesError("hierarchical softmax needs at least 2 words in the vocabulary")
    count = list(counts) + [float("inf")] * (v - 1)
    parent, binary = [0] * (2 * v - 1), [0] * (2 * v - 1)
    leaf, node = v - 1, v
    for a in range(v - 1):
        picked = []
        for _ in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                picked.append(leaf)
                leaf -= 1
            else:
                picked.append(node)
                node += 1
        count[v + a] = count[picked[0]] + count[picked[1]]
        parent[picked[0]] = parent[picked[1]] = v + a
        binary[picked[1]] = 1
    root, paths = 2 * v - 2, []
    for w in range(v):
        code, point, b = [], [], w
        while b != root:
            code.append(binary[b])
            b = parent[b]
            point.append(b - v)
        paths.append((code[::-1], point[::-1]))
    longest = max(len(c) for c, _ in paths)
    codes = torch.zeros(v, longest, dtype=torch.int8)
    points = torch.zeros(v, longest, dtype=torch.int64)
    for w, (c, p) in enumerate(paths):
        codes[w, : len(c)] = torch.tensor(c, dtype=torch.int8)
        points[w, : len(p)] = torch.tensor(p)
    return HuffmanTree(codes, points, torch.tensor([len(c) for c, _ in paths]))
