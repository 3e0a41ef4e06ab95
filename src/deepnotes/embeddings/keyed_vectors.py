"""Word vectors and what they are used for: similarity, nearest words, analogies, evaluation.

A :class:`KeyedVectors` is a vocabulary (``index_to_key``, ``key_to_index``) and a float32 matrix
``vectors`` of shape ``(V, d)``, row ``i`` being the vector of word ``index_to_key[i]``.

*Cosine similarity* of ``u`` and ``v`` is ``u.v / (|u| |v|)``: the dot product of the two vectors
scaled to unit length. The unit-length matrix is computed once and cached (it is recomputed when
``vectors`` is replaced or modified in place), and every query is one matrix-vector product in
torch.

*Analogies* (3CosAdd, Mikolov et al. 2013): "a is to b as c is to ?" is answered by the word
whose vector is closest in cosine to ``b/|b| - a/|a| + c/|c|``, excluding ``a``, ``b`` and ``c``.

Files: :meth:`KeyedVectors.save_word2vec_format` / :meth:`KeyedVectors.load_word2vec_format` read
and write the C word2vec tool's text and binary formats (which gensim reads and writes too);
:meth:`KeyedVectors.save` / :meth:`KeyedVectors.load` use ``NAME.safetensors`` plus
``NAME.vocab.json`` (words and counts). See :mod:`deepnotes.embeddings.formats`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np
import torch

from deepnotes.embeddings import formats
from deepnotes.errors import DeepnotesError

_SUGGEST_SCAN_LIMIT = 50_000  # difflib is slow: above this, only words of a similar length


class KeyedVectors:
    """Words and their vectors.

    ``KeyedVectors(index_to_key, vectors, counts=None)``: ``vectors`` is a ``(V, d)`` float
    tensor or array (a float32 tensor is used as it is, not copied), ``counts`` optional word
    frequencies, in the same order as the words.
    """

    def __init__(self, index_to_key: list[str], vectors: torch.Tensor | np.ndarray,
                 counts: list[int] | None = None) -> None:
        self.index_to_key = list(index_to_key)
        self.key_to_index = _index(self.index_to_key)
        self.vectors = vectors
        self.counts = None if counts is None else [int(c) for c in counts]
        if self.counts is not None and len(self.counts) != len(self.index_to_key):
            raise DeepnotesError(f"{len(self.counts)} counts for {len(self.index_to_key)} words")

    # ------------------------------------------------------------------ the matrix and its cache
    @property
    def vectors(self) -> torch.Tensor:
        """The ``(V, d)`` float32 matrix; assigning a new one drops the cached unit vectors."""
        return self._vectors

    @vectors.setter
    def vectors(self, value: torch.Tensor | np.ndarray) -> None:
        tensor = torch.as_tensor(value).detach()
        if tensor.dtype != torch.float32:
            tensor = tensor.to(torch.float32)
        if tensor.ndim != 2 or tensor.shape[0] != len(self.index_to_key):
            raise DeepnotesError(f"vectors of shape {tuple(tensor.shape)} for "
                                 f"{len(self.index_to_key)} words: expected "
                                 f"({len(self.index_to_key)}, dimension)")
        self._vectors = tensor
        self._unit_cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def vector_size(self) -> int:
        return int(self._vectors.shape[1])

    def unit_vectors(self) -> torch.Tensor:
        """Every row scaled to length 1 (a zero row stays zero), cached until vectors change."""
        key = (id(self._vectors), self._vectors._version)
        if self._unit_cache is None or self._unit_cache[0] != key:
            norms = self._vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self._unit_cache = (key, self._vectors / norms)
        return self._unit_cache[1]

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, word: object) -> bool:
        return word in self.key_to_index

    def __iter__(self):
        return iter(self.index_to_key)

    def __repr__(self) -> str:
        return f"KeyedVectors({len(self)} words, dimension {self.vector_size})"

    def get_index(self, word: str) -> int:
        """Row of ``word``; an unknown word is a DeepnotesError that suggests close words."""
        try:
            return self.key_to_index[word]
        except (KeyError, TypeError):
            raise DeepnotesError(self._unknown_message(word)) from None

    def __getitem__(self, word: str | list[str]) -> np.ndarray:
        """The vector of ``word`` as a float32 NumPy array (a copy); a list gives ``(n, d)``."""
        if isinstance(word, str):
            return self._vectors[self.get_index(word)].cpu().numpy().copy()
        rows = [self.get_index(w) for w in word]
        return self._vectors[rows].cpu().numpy().copy()

    def _unknown_message(self, word: object) -> str:
        close = _close_words(str(word), self.index_to_key)
        hint = f"; did you mean {', '.join(repr(w) for w in close)}?" if close else ""
        return f"word {word!r} is not in the vocabulary ({len(self)} words){hint}"

    # ------------------------------------------------------------------ similarity
    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity ``u.v / (|u| |v|)`` of the two words' vectors."""
        unit = self.unit_vectors()
        return float(unit[self.get_index(w1)] @ unit[self.get_index(w2)])

    def cosine_similarities(self, vector: torch.Tensor | np.ndarray,
                            restrict_vocab: int | None = None) -> torch.Tensor:
        """Cosine of ``vector`` with each of the first ``restrict_vocab`` (default all) words."""
        unit = self.unit_vectors()[:restrict_vocab]
        return unit @ self._as_unit(vector)

    def most_similar(self, positive=None, negative=None, topn: int | None = 10,
                     restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The ``topn`` words closest in cosine to ``sum(positive) - sum(negative)`` (3CosAdd).

        Each word's vector is scaled to unit length before the sum; ``positive`` and ``negative``
        are a word, a vector, or a list of them (like gensim). The query words are left out of
        the answer. ``restrict_vocab`` searches only the first that many words; ``topn=None``
        ranks every word. Returns ``[(word, cosine), ...]``, most similar first.
        """
        query, exclude = self._query(positive, negative)
        sims = self.cosine_similarities(query, restrict_vocab)
        return self._top(sims, topn, exclude)

    def most_similar_to_vector(self, vector, topn: int | None = 10,
                               restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The ``topn`` words closest in cosine to ``vector`` (no word is left out)."""
        return self._top(self.cosine_similarities(vector, restrict_vocab), topn, set())

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """``a`` is to ``b`` as ``c`` is to ?: ``most_similar(positive=[b, c], negative=[a])``."""
        return self.most_similar(positive=[b, c], negative=[a], topn=topn)

    def _query(self, positive, negative) -> tuple[torch.Tensor, set[int]]:
        """Sum of the positive unit vectors minus the negative ones, and the query words' rows."""
        positive, negative = _as_list(positive), _as_list(negative)
        if not positive and not negative:
            raise DeepnotesError("most_similar: give at least one positive or negative word")
        query = torch.zeros(self.vector_size, device=self._vectors.device)
        exclude: set[int] = set()
        for sign, items in ((1.0, positive), (-1.0, negative)):
            for item in items:
                unit, row = self._unit_of(item)
                query += sign * unit
                if row is not None:
                    exclude.add(row)
        return query, exclude

    def _unit_of(self, item) -> tuple[torch.Tensor, int | None]:
        if isinstance(item, str):
            row = self.get_index(item)
            return self.unit_vectors()[row], row
        return self._as_unit(item), None

    def _as_unit(self, vector) -> torch.Tensor:
        """A query vector as a unit-length float32 tensor on the vectors' device."""
        v = torch.as_tensor(vector, dtype=torch.float32).reshape(-1).to(self._vectors.device)
        if v.shape[0] != self.vector_size:
            raise DeepnotesError(f"a vector of length {v.shape[0]}: these word vectors have "
                                 f"dimension {self.vector_size}")
        return v / v.norm().clamp_min(1e-12)

    def _top(self, sims: torch.Tensor, topn: int | None, exclude: set[int]):
        if topn is not None and topn < 1:
            return []
        n = len(sims) if topn is None else min(len(sims), topn + len(exclude))
        values, rows = torch.topk(sims, n)
        out = [(self.index_to_key[r], float(s))
               for s, r in zip(values.tolist(), rows.tolist()) if r not in exclude]
        return out if topn is None else out[:topn]

    # ------------------------------------------------------------------ evaluation
    def _eval_vocab(self, restrict_vocab: int | None, case_insensitive: bool) -> dict[str, int]:
        """Word (upper-cased if case-insensitive) -> row, over the first ``restrict_vocab``
        words; of several case variants the first (most frequent) one wins, as in gensim."""
        vocab: dict[str, int] = {}
        for i, w in enumerate(self.index_to_key[:restrict_vocab]):
            vocab.setdefault(w.upper() if case_insensitive else w, i)
        return vocab

    def evaluate_word_analogies(self, path: str | os.PathLike, restrict_vocab: int = 300000,
                                case_insensitive: bool = True) -> dict:
        """Accuracy on an analogy file in the ``questions-words.txt`` format.

        The file has ``: section name`` lines, each followed by questions ``a b c d`` ("a is to
        b as c is to d"). A question counts as correct when the 3CosAdd answer over the first
        ``restrict_vocab`` words, leaving out ``a``, ``b``, ``c``, is ``d``. As in gensim, a
        question with a word outside those words is skipped; ``coverage`` is the share of
        questions that were not. Returns ``{"accuracy", "correct", "incorrect", "questions",
        "coverage", "sections": [{"section", "correct", "incorrect", "accuracy"}, ...]}``
        (accuracy is 0.0 where nothing was evaluated).
        """
        path = Path(path)
        vocab = self._eval_vocab(restrict_vocab, case_insensitive)
        sections = _read_analogies(path, case_insensitive)
        n_questions = sum(len(qs) for _, qs in sections)
        if n_questions == 0:
            raise DeepnotesError(f"{path}: no analogy questions (lines 'a b c d' after a "
                                 "': section' line)")
        unit = self.unit_vectors()[:restrict_vocab]
        keys = [k.upper() if case_insensitive else k for k in self.index_to_key[:len(unit)]]
        results, answered = [], 0
        for name, questions in sections:
            known = [q for q in questions if all(w in vocab for w in q)]
            answered += len(known)
            correct = _count_correct(unit, keys, vocab, known)
            results.append(_section_result(name, correct, len(known) - correct))
        total_correct = sum(s["correct"] for s in results)
        return {"accuracy": total_correct / answered if answered else 0.0,
                "correct": total_correct, "incorrect": answered - total_correct,
                "questions": n_questions, "coverage": answered / n_questions,
                "sections": results}

    def evaluate_word_pairs(self, path: str | os.PathLike, delimiter: str = "\t",
                            case_insensitive: bool = True,
                            restrict_vocab: int = 300000) -> dict:
        """Correlation of cosine similarities with human judgements (e.g. ``wordsim353.tsv``).

        Lines are ``word1<delimiter>word2<delimiter>score``; lines starting with ``#`` and blank
        lines are skipped. Pairs with a word outside the first ``restrict_vocab`` words are left
        out. Returns ``{"pearson", "spearman", "pairs", "oov", "oov_ratio"}`` (``oov_ratio`` is a
        fraction; gensim reports a percentage).
        """
        from scipy import stats

        path = Path(path)
        vocab = self._eval_vocab(restrict_vocab, case_insensitive)
        unit = self.unit_vectors()
        gold, model, oov = [], [], 0
        for a, b, score in _read_pairs(path, delimiter, case_insensitive):
            if a not in vocab or b not in vocab:
                oov += 1
                continue
            gold.append(score)
            model.append(float(unit[vocab[a]] @ unit[vocab[b]]))
        if len(gold) < 2:
            raise DeepnotesError(f"{path}: {len(gold)} word pairs in the vocabulary "
                                 f"({oov} out of it): need at least 2 to correlate")
        return {"pearson": float(stats.pearsonr(gold, model)[0]),
                "spearman": float(stats.spearmanr(gold, model)[0]),
                "pairs": len(gold), "oov": oov, "oov_ratio": oov / (len(gold) + oov)}

    # ------------------------------------------------------------------ files
    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write the C word2vec tool's text (default) or binary format, atomically."""
        formats.save_word2vec(path, self.index_to_key, self._vectors.cpu().numpy(), binary)

    @classmethod
    def load_word2vec_format(cls, path: str | os.PathLike, binary: bool | None = None,
                             errors: str = "strict") -> KeyedVectors:
        """Read a word2vec text or binary file (``binary=None``: binary if the suffix is
        ``.bin``). ``errors`` handles bytes of a word that are not UTF-8 (``"replace"``...)."""
        words, vectors = formats.load_word2vec(path, binary=binary, errors=errors)
        return cls(words, vectors)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path`` (safetensors, e.g. ``vectors.safetensors``) and the vocabulary
        ``vectors.vocab.json`` (words and counts) next to it."""
        formats.save_native(path, self.index_to_key, self._vectors, self.counts)

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeyedVectors:
        """Read what :meth:`save` wrote."""
        words, vectors, counts = formats.load_native(path)
        return cls(words, vectors, counts)


# ---------------------------------------------------------------------- helpers
def _index(words: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise DeepnotesError(f"word {i} is {w!r}: words must be strings")
        if w in index:
            raise DeepnotesError(f"word {w!r} appears twice (at {index[w]} and {i})")
        index[w] = i
    return index


def _as_list(items) -> list:
    """``None`` -> [], a word or a single vector -> [it], a list -> itself."""
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    if isinstance(items, (np.ndarray, torch.Tensor)) and items.ndim == 1:
        return [items]
    return list(items)


def _close_words(word: str, vocab: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` vocabulary words that look like ``word`` (difflib)."""
    candidates = vocab
    if len(vocab) > _SUGGEST_SCAN_LIMIT:
        candidates = [w for w in vocab if abs(len(w) - len(word)) <= 2]
    close = difflib.get_close_matches(word, candidates, n=n)
    if not close and word.lower() != word:
        close = difflib.get_close_matches(word.lower(), candidates, n=n)
    return close


def _section_result(name: str, correct: int, incorrect: int) -> dict:
    total = correct + incorrect
    return {"section": name, "correct": correct, "incorrect": incorrect,
            "accuracy": correct / total if total else 0.0}


def _count_correct(unit: torch.Tensor, keys: list[str], vocab: dict[str, int],
                   questions: list[tuple[str, str, str, str]]) -> int:
    """How many questions ``a b c d`` have 3CosAdd answer ``d`` (one matmul per batch).

    ``keys`` are the (case-folded) words of the rows of ``unit``; every row whose key is ``a``,
    ``b`` or ``c`` is left out of the answers, and an answer counts when its key is ``d``.
    """
    variants = _case_variants(keys)
    batch = max(1, min(1024, 2**24 // max(1, len(keys))))  # at most 64 MiB of similarities
    correct = 0
    for start in range(0, len(questions), batch):
        chunk = questions[start:start + batch]
        idx = torch.tensor([[vocab[w] for w in q] for q in chunk], device=unit.device)
        query = unit[idx[:, 1]] - unit[idx[:, 0]] + unit[idx[:, 2]]
        sims = query @ unit.T  # the query's length does not change the ranking
        sims[torch.arange(len(chunk), device=unit.device)[:, None], idx[:, :3]] = -torch.inf
        for row, q in enumerate(chunk):
            for w in q[:3]:
                for r in variants.get(w, ()):
                    sims[row, r] = -torch.inf
        answers = sims.argmax(dim=1).tolist()
        correct += sum(keys[r] == q[3] for r, q in zip(answers, chunk))
    return correct


def _case_variants(keys: list[str]) -> dict[str, list[int]]:
    """Key -> all its rows, for the keys that several rows share (case variants)."""
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        rows.setdefault(k, []).append(i)
    return {k: r for k, r in rows.items() if len(r) > 1}


def _read_analogies(path: Path, case_insensitive: bool):
    """``[(section name, [(a, b, c, d), ...]), ...]`` from a questions-words file."""
    sections: list[tuple[str, list]] = []
    for line_no, line in _lines(path):
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        words = line.split()
        if not words:
            continue
        if not sections:
            raise DeepnotesError(f"{path} line {line_no}: a question before the first "
                                 "': section' line")
        if len(words) != 4:
            raise DeepnotesError(f"{path} line {line_no}: {len(words)} words, expected 4 "
                                 "('a b c d': a is to b as c is to d)")
        sections[-1][1].append(tuple(w.upper() if case_insensitive else w for w in words))
    return sections


def _read_pairs(path: Path, delimiter: str, case_insensitive: bool):
    """``(word1, word2, score)`` for each line that is not blank or a ``#`` comment."""
    for line_no, line in _lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split(delimiter)
        if len(fields) != 3:
            raise DeepnotesError(f"{path} line {line_no}: {len(fields)} fields, expected 3 "
                                 f"(word1, word2, score separated by {delimiter!r})")
        try:
            score = float(fields[2])
        except ValueError:
            raise DeepnotesError(f"{path} line {line_no}: score {fields[2]!r} is not a "
                                 "number") from None
        a, b = fields[0].strip(), fields[1].strip()
        yield (a.upper(), b.upper(), score) if case_insensitive else (a, b, score)


def _lines(path: Path):
    """``(line number, line)`` of a UTF-8 text file; a missing file is a DeepnotesError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeepnotesError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DeepnotesError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return enumerate(text.splitlines(), start=1)
