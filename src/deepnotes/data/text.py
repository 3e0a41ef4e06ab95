"""Text files read into sequence Datasets: characters, words, tags and translation pairs.

Every reader returns token ids as int64 tensors, padded on the right. The contracts, with
``m`` examples:

``load_text_lm`` (``*.txt``), task ``"lm"``: a character model of one text.
    x ``(m, seq_len)`` character ids; y ``(m, seq_len)`` with ``y[i, t] == x[i, t + 1]``: the
    text is cut into consecutive windows of ``seq_len + 1`` characters with stride ``seq_len``
    (x = window[:-1], y = window[1:]), the ragged end dropped. A text shorter than one window
    gives one example, x padded with 0 and y with IGNORE. classes == vocab (the characters).

``load_text_csv`` (``*.csv`` with a ``text`` column), task ``"tokens"``: one label a text.
    x ``(m, T)`` word ids padded with 0, T the longest text (at most ``max_len``); y ``(m,)``
    label indices into classes (the sorted distinct label strings). Every row has at least one
    token: an empty text is read as the single token ``<unk>``. Tokens (:func:`tokenize`, the
    regex ``TOKEN_RE``) are the lower-cased words (runs of letters, digits and ``_``, inner
    apostrophes kept: ``don't``) and every other non-space character on its own.

``load_conll`` (``*.conll``), task ``"tags"``: a tag a token.
    x ``(m, T)`` token ids padded with 0; y ``(m, T)`` tag indices into classes (the sorted
    tags), IGNORE where x is padding.

``load_pairs`` (``*.tsv``) and ``dates.load_dates``, task ``"pairs"``: sequence to sequence.
    x ``(m, T_x)`` source character ids (input vocabulary ``vocab``) padded with 0;
    y ``(m, T_y)`` target ids from the output vocabulary ``classes``:
    ``<bos> c_1 ... c_n <eos>`` then IGNORE, so ``y[:, 0] == BOS_ID`` in every row and
    ``T_y`` is the longest target plus 2. A decoder trained with teacher forcing is fed
    ``y[:, :-1]`` (IGNORE replaced by ``<pad>``: see :func:`teacher_forcing`) and predicts
    ``y[:, 1:]`` (the loss ignores IGNORE). At inference it starts from ``<bos>`` and stops
    at ``<eos>``; :meth:`Vocabulary.decode` turns ids back into text.

Vocabularies (deepnotes.data.vocabulary) are built over the whole file: before ``max_len`` cuts
(so ids do not depend on it) and before any train/test split.

Files are UTF-8 (a byte-order mark is ignored; ``\\r\\n`` and ``\\r`` line ends read as ``\\n``).
With ``errors="strict"`` an undecodable byte is an error naming the file and its byte offset;
with ``errors="replace"`` each such byte becomes U+FFFD and one warning counts them.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from deepnotes.data.dataset import IGNORE, Dataset
from deepnotes.data.vocabulary import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, pad
from deepnotes.errors import DeepnotesError, check_range

log = logging.getLogger("deepnotes.data")

ERRORS = ("strict", "replace")

# A word (letters, digits, _; inner apostrophes kept: "don't") or one punctuation character.
TOKEN_RE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


# ---------------------------------------------------------------- reading text


def read_text(path: str | os.PathLike, errors: str = "strict") -> str:
    """The file's UTF-8 text; raise on an empty file or (``strict``) an undecodable byte."""
    check_errors(errors)
    path = _check_file(path)
    raw = path.read_bytes()
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "strict":
            _raise_undecodable(path, raw, start + e.start)
        text = _decode_replacing(path, raw[start:])
    if not text.strip():
        raise DeepnotesError(f"{path}: empty file (nothing but whitespace); expected text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_errors(errors: str) -> None:
    """Raise unless ``errors`` is ``"strict"`` or ``"replace"``."""
    if errors not in ERRORS:
        raise DeepnotesError(f"--errors {errors}: expected one of {', '.join(ERRORS)}")


def check_positive(what: str, value: int | None) -> None:
    """Raise unless ``value`` is None or an integer >= 1."""
    if value is not None:
        check_range(what, value, 1, integer=True)


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DeepnotesError(f"{path} {what}; expected a text file")
    return path


def _raise_undecodable(path: Path, raw: bytes, offset: int) -> None:
    line = raw.count(b"\n", 0, offset) + 1
    raise DeepnotesError(
        f"{path}: not UTF-8 text: byte 0x{raw[offset]:02x} at byte offset {offset} (line {line}) "
        "cannot be decoded; save the file as UTF-8, or train with --errors replace (the run "
        "keeps it for evaluate and predict)"
    )


def _decode_replacing(path: Path, raw: bytes) -> str:
    """Decode with one U+FFFD per undecodable byte; log one warning with the count."""
    text = raw.decode("utf-8", errors="surrogateescape")  # a bad byte -> one U+DC80..U+DCFF
    text, count = re.subn("[\udc80-\udcff]", "\ufffd", text)
    log.warning("%s: %d undecodable bytes replaced with U+FFFD", path, count)
    return text


# ---------------------------------------------------------------- character language model


def load_text_lm(path: str | os.PathLike, seq_len: int = 64, errors: str = "strict",
                 min_count: int = 1) -> Dataset:
    """A text cut into windows of ``seq_len + 1`` characters: x the first ``seq_len``, y the
    last ``seq_len`` (the next character at each step)."""
    check_positive("seq_len", seq_len)
    text = read_text(path, errors)
    if len(text) < 2:
        raise DeepnotesError(f"{path}: one character; expected at least 2 for a language model")
    vocab = Vocabulary.build(Counter(text), min_count)
    ids = torch.tensor(vocab.encode(text), dtype=torch.int64)
    x, y = _windows(ids, seq_len)
    return Dataset(str(path), x, y, vocab.tokens, task="lm", vocab=vocab.tokens)


def _windows(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive (x, y) windows with stride ``seq_len``; one padded window if too short."""
    m = (len(ids) - 1) // seq_len
    if m >= 1:
        n = m * seq_len
        return ids[:n].reshape(m, seq_len), ids[1 : n + 1].reshape(m, seq_len)
    x = torch.full((1, seq_len), PAD_ID, dtype=torch.int64)
    y = torch.full((1, seq_len), IGNORE, dtype=torch.int64)
    x[0, : len(ids) - 1] = ids[:-1]
    y[0, : len(ids) - 1] = ids[1:]
    return x, y


# ---------------------------------------------------------------- text classification (CSV)


def tokenize(text: str) -> list[str]:
    """Lower-cased words (inner apostrophes kept) and single punctuation characters."""
    return TOKEN_RE.findall(text.lower())


def has_text_column(path: str | os.PathLike) -> bool:
    """Whether the CSV file's header (only the first row is read) has a ``text`` column."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f), [])
    except (OSError, csv.Error):
        return False
    return "text" in (cell.strip() for cell in header)


def load_text_csv(path: str | os.PathLike, max_len: int | None = None, errors: str = "strict",
                  min_count: int = 1, label_column: str | None = None) -> Dataset:
    """Texts (column ``text``) and their labels (column ``label``): word ids (m, T), labels (m,).

    An empty text is allowed (read as one ``<unk>``, with one warning) as long as some text
    has a token.
    """
    check_positive("max_len", max_len)
    texts, labels = _read_text_rows(path, errors, label_column or "label")
    sequences = [tokenize(text) for text in texts]
    empty = sum(not tokens for tokens in sequences)
    if empty == len(sequences):
        raise DeepnotesError(f"{path}: every text is empty; expected words in column 'text'")
    if empty:
        log.warning("%s: %d of %d texts are empty and were read as <unk>", path, empty,
                    len(sequences))
    vocab = Vocabulary.build(Counter(t for tokens in sequences for t in tokens), min_count)
    sequences = _truncate(str(path), sequences, max_len, "texts")
    x = pad([vocab.encode(tokens) or [UNK_ID] for tokens in sequences], PAD_ID)
    classes = sorted(set(labels))
    index = {label: i for i, label in enumerate(classes)}
    y = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    return Dataset(str(path), x, y, classes, task="tokens", vocab=vocab.tokens)


def _read_text_rows(path, errors: str, label_column: str) -> tuple[list[str], list[str]]:
    """The text and label cells of the data rows; blank rows skipped."""
    reader = csv.reader(io.StringIO(read_text(path, errors), newline=""))
    texts, labels = [], []
    try:
        header = [cell.strip() for cell in next(reader)]
        text_at, label_at = _text_columns(path, header, label_column)
        for row in _data_rows(reader, len(header), path):
            if not row[label_at].strip():
                raise DeepnotesError(f"{path} line {reader.line_num}: empty label")
            texts.append(row[text_at])
            labels.append(row[label_at].strip())
    except csv.Error as e:
        raise DeepnotesError(f"{path} line {reader.line_num}: bad CSV ({e})") from None
    if not texts:
        raise DeepnotesError(f"{path}: header only, no data rows")
    return texts, labels


def _data_rows(reader, width: int, path):
    """The rows of a CSV ``reader`` after its header, blank ones skipped, each of ``width``
    cells (else a one-line error naming the line)."""
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise DeepnotesError(f"{path} line {reader.line_num}: expected {width} cells, found "
                                 f"{len(row)}")
        yield row


def _text_columns(path, header: list[str], label_column: str) -> tuple[int, int]:
    """The positions of the ``text`` and label columns, or an error listing the columns."""
    missing = [name for name in ("text", label_column) if name not in header]
    if missing:
        raise DeepnotesError(
            f"{path}: no column {' or '.join(map(repr, missing))} in the header; columns found: "
            f"{', '.join(header) or '(none)'}; expected 'text' and {label_column!r}"
        )
    return header.index("text"), header.index(label_column)


def read_texts(path: str | os.PathLike,
               errors: str = "strict") -> tuple[str, list[int], list[str]]:
    """Texts to classify and where each one is, ``(unit, numbers, texts)``: a ``.csv`` file's
    ``text`` column (its other columns, a label among them, ignored), ``"row"`` and the data
    rows' numbers from 1; else the non-blank lines of a text file, ``"line"`` and their line
    numbers."""
    text = read_text(path, errors)
    if Path(path).suffix.lower() != ".csv":
        numbered = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
        return "line", [n for n, _ in numbered], [line for _, line in numbered]
    reader = csv.reader(io.StringIO(text, newline=""))
    texts: list[str] = []
    try:
        header = [cell.strip() for cell in next(reader)]
        if "text" not in header:
            raise DeepnotesError(f"{path}: no column 'text' in the header; columns found: "
                                 f"{', '.join(header) or '(none)'}; expected 'text' (a label "
                                 "column may be there too, and is ignored)")
        at = header.index("text")
        texts.extend(row[at] for row in _data_rows(reader, len(header), path))
    except csv.Error as e:
        raise DeepnotesError(f"{path} line {reader.line_num}: bad CSV ({e})") from None
    if not texts:
        raise DeepnotesError(f"{path}: header only, no data rows")
    return "row", list(range(1, len(texts) + 1)), texts


def encode_texts(where: str, texts: Sequence[str], vocab: Vocabulary, length: int) -> torch.Tensor:
    """Texts read as :func:`load_text_csv` reads a run's training texts: tokens
    (:func:`tokenize`), ids from the run's ``vocab`` (``<unk>`` for a token not in it, one
    ``<unk>`` for an empty text), cut to the run's ``length`` T_x and padded with 0 to it:
    int64 (m, T_x). One warning counts the empty texts, one the texts cut."""
    sequences = [tokenize(text) for text in texts]
    empty = sum(not tokens for tokens in sequences)
    if empty:
        log.warning("%s: %d of %d texts are empty and were read as <unk>", where, empty,
                    len(sequences))
    cut = sum(len(tokens) > length for tokens in sequences)
    if cut:
        log.warning("%s: %d of %d texts are longer than the run's %d tokens and were cut", where,
                    cut, len(sequences), length)
    x = torch.full((len(sequences), length), PAD_ID, dtype=torch.int64)
    for i, tokens in enumerate(sequences):
        ids = vocab.encode(tokens[:length]) or [UNK_ID]
        x[i, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return x


# ---------------------------------------------------------------- tagging (CoNLL)


def load_conll(path: str | os.PathLike, max_len: int | None = None, errors: str = "strict",
               min_count: int = 1) -> Dataset:
    """``token ... tag`` lines, sentences separated by blank lines: token ids and tag ids (m, T).

    The first field is the token (case kept), the last the tag; ``-DOCSTART-`` lines skipped.
    """
    check_positive("max_len", max_len)
    sentences = _read_conll(path, read_text(path, errors))
    if not sentences:
        raise DeepnotesError(f"{path}: no sentences; expected 'token tag' lines")
    vocab = Vocabulary.build(Counter(t for s in sentences for t, _ in s), min_count)
    classes = sorted({tag for s in sentences for _, tag in s})
    tokens = _truncate(str(path), [[t for t, _ in s] for s in sentences], max_len, "sentences")
    tags = [[tag for _, tag in s][:max_len] for s in sentences]
    index = {tag: i for i, tag in enumerate(classes)}
    x = pad([vocab.encode(sentence) for sentence in tokens], PAD_ID)
    y = pad([[index[tag] for tag in sentence] for sentence in tags], IGNORE)
    return Dataset(str(path), x, y, classes, task="tags", vocab=vocab.tokens)


def _read_conll(path, text: str) -> list[list[tuple[str, str]]]:
    """Sentences as lists of (token, tag)."""
    sentences: list[list[tuple[str, str]]] = []
    sentence: list[tuple[str, str]] = []
    for number, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if sentence:
                sentences.append(sentence)
            sentence = []
            continue
        if len(fields) == 1:
            raise DeepnotesError(
                f"{path} line {number}: one field ({fields[0]!r}); expected a token and a tag "
                "separated by whitespace"
            )
        sentence.append((fields[0], fields[-1]))
    if sentence:
        sentences.append(sentence)
    return sentences


# ---------------------------------------------------------------- pairs (sequence to sequence)


def load_pairs(path: str | os.PathLike, max_len: int | None = None,
               errors: str = "strict") -> Dataset:
    """``source<TAB>target`` lines, characters on both sides (see the module's contract)."""
    check_positive("max_len", max_len)
    pairs = _read_pairs(path, read_text(path, errors))
    if not pairs:
        raise DeepnotesError(f"{path}: no pairs; expected 'source<TAB>target' lines")
    return pairs_dataset(str(path), pairs, max_len)


def _read_pairs(path, text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.count("\t") != 1:
            raise DeepnotesError(
                f"{path} line {number}: {line.count(chr(9))} tabs; expected exactly one between "
                "source and target"
            )
        source, target = line.split("\t")
        if not source or not target:
            side = "source" if not source else "target"
            raise DeepnotesError(f"{path} line {number}: empty {side}")
        pairs.append((source, target))
    return pairs


def pairs_dataset(name: str, pairs: Sequence[tuple[str, str]],
                  max_len: int | None = None) -> Dataset:
    """A ``"pairs"`` Dataset of (source, target) strings: x source characters padded with 0;
    y ``<bos>`` target ``<eos>`` padded with IGNORE. ``max_len`` cuts each side's characters
    (``<eos>`` still ends a cut target)."""
    check_positive("max_len", max_len)
    source_vocab = Vocabulary.build(Counter(c for s, _ in pairs for c in s))
    target_vocab = Vocabulary.build(Counter(c for _, t in pairs for c in t), target=True)
    if max_len is not None:
        n_cut = sum(max(len(s), len(t)) > max_len for s, t in pairs)
        _warn_cut(name, n_cut, len(pairs), "pairs", max_len)
    sources = [s[:max_len] for s, _ in pairs]
    targets = [t[:max_len] for _, t in pairs]
    x = pad([source_vocab.encode(s) for s in sources], PAD_ID)
    y = pad([[BOS_ID, *target_vocab.encode(t), EOS_ID] for t in targets], IGNORE)
    return Dataset(name, x, y, target_vocab.tokens, task="pairs", vocab=source_vocab.tokens)


# ---------------------------------------------------------------- shared


def _truncate(where: str, sequences: list[list[str]], max_len: int | None,
              what: str) -> list[list[str]]:
    """Cut each sequence to ``max_len``; one warning counts the sequences cut."""
    if max_len is None:
        return sequences
    _warn_cut(where, sum(len(s) > max_len for s in sequences), len(sequences), what, max_len)
    return [s[:max_len] for s in sequences]


def _warn_cut(where: str, n_cut: int, m: int, what: str, max_len: int | None) -> None:
    if n_cut:
        log.warning("%s: %d of %d %s were longer than --max-len %d and were cut", where, n_cut,
                    m, what, max_len)
