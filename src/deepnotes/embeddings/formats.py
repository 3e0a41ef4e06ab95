"""Word-vector files: the C word2vec tool's text and binary formats, and our own.

**word2vec text** (``.txt``, ``.vec``): a header line ``<count> <dimension>``, then one line per
word, ``word v1 v2 ... vd``, numbers separated by single spaces. Floats are written with the
shortest decimal that reads back as the same float32, so a round trip is exact.

**word2vec binary** (``.bin``): the same header line, then per word the word's UTF-8 bytes, one
space, and ``d`` little-endian float32 numbers (``4 d`` bytes). The C tool writes a newline after
each vector and gensim does not; the reader accepts both (a newline before a word is skipped).

**deepnotes** (``save`` / ``load``): ``NAME.safetensors`` holds the matrix as the tensor
``vectors`` (float32, ``(V, d)``) and ``NAME.vocab.json`` holds ``{"format", "version", "words",
"counts"}``. The safetensors metadata records the vocabulary's size and SHA-256 so that a pair of
files that do not belong together is refused.

Every problem with a file is a :class:`~deepnotes.errors.DeepnotesError` whose one-line message
names the file and the line (text) or entry and byte offset (binary). Vectors holding NaN or inf
are refused on load, with their count and the first such word; a word that appears twice keeps
its first vector, with one logged warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from deepnotes import atomic
from deepnotes.errors import DeepnotesError

FORMAT_NAME = "deepnotes.keyed_vectors"
FORMAT_VERSION = 1
META_KEY = "deepnotes_keyed_vectors"

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- word2vec: writing
def _check_words_writable(words: list[str]) -> None:
    """A word2vec file cannot hold an empty word or one with whitespace in it."""
    for i, w in enumerate(words):
        if not w or any(ch.isspace() for ch in w):
            raise DeepnotesError(f"word {i} ({w!r}) cannot be written in word2vec format: "
                                 "words must be non-empty and contain no whitespace")


def _float_text(row: np.ndarray) -> str:
    """Shortest decimal strings that read back as the same float32 values."""
    return " ".join(str(x) for x in row)


def word2vec_bytes(words: list[str], vectors: np.ndarray, binary: bool) -> bytes:
    """The whole file as bytes, header included."""
    _check_words_writable(words)
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    parts = [f"{len(words)} {vectors.shape[1]}\n".encode()]
    for w, row in zip(words, vectors):
        if binary:
            parts.append(w.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            parts.append(f"{w} {_float_text(row)}\n".encode())
    return b"".join(parts)


def save_word2vec(path: str | os.PathLike, words: list[str], vectors: np.ndarray,
                  binary: bool) -> None:
    """Write ``path`` atomically in the word2vec text or binary format."""
    atomic.write_bytes(path, word2vec_bytes(words, vectors, binary))


# ----------------------------------------------------------------------------- word2vec: reading
def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DeepnotesError(f"{path}: no such vectors file") from None
    except OSError as exc:
        raise DeepnotesError(f"{path}: cannot read ({exc.strerror})") from None


def _parse_header(path: Path, data: bytes) -> tuple[int, int, int]:
    """``(count, dimension, offset of the first entry)`` from the first line."""
    end = data.find(b"\n")
    if end == -1:
        end = len(data)
    line = data[:end].decode("utf-8", errors="replace").strip()
    fields = line.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        shown = line if len(line) <= 40 else line[:40] + "..."
        raise DeepnotesError(f"{path} line 1: bad header {shown!r}: expected "
                             "'<number of words> <dimension>'")
    count, dim = int(fields[0]), int(fields[1])
    if dim < 1:
        raise DeepnotesError(f"{path} line 1: bad header {line!r}: the dimension must be >= 1")
    return count, dim, end + 1


def _decode(path: Path, raw: bytes, where: str, errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise DeepnotesError(f"{path} {where}: the word is not valid UTF-8 ({exc.reason}); "
                             "read it anyway with errors='replace' or 'ignore' (deepnotes "
                             "word2vec: --errors replace)") from None


def _parse_text_line(path: Path, line: str, line_no: int, dim: int) -> tuple[str, np.ndarray]:
    word, _, rest = line.rstrip().partition(" ")
    numbers = rest.split()
    if not word or len(numbers) != dim:
        raise DeepnotesError(f"{path} line {line_no}: word {word!r} has {len(numbers)} "
                             f"numbers, the header says {dim}")
    try:
        return word, np.array(numbers, dtype=np.float32)
    except ValueError:
        bad = next(n for n in numbers if not _is_float(n))
        raise DeepnotesError(f"{path} line {line_no}: {bad!r} is not a number") from None


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _read_text(path: Path, data: bytes, count: int, dim: int, start: int,
               errors: str) -> tuple[list[str], list[np.ndarray]]:
    lines = data[start:].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    words, rows = [], []
    for i in range(count):
        line_no = i + 2
        if i >= len(lines):
            raise DeepnotesError(f"{path}: truncated: the header says {count} words but the "
                                 f"file ends after {i} (line {line_no} is missing)")
        text = _decode(path, lines[i], f"line {line_no}", errors)
        word, row = _parse_text_line(path, text, line_no, dim)
        words.append(word)
        rows.append(row)
    extra = [j for j in range(count, len(lines)) if lines[j].strip()]
    if extra:
        raise DeepnotesError(f"{path} line {extra[0] + 2}: more words than the header's "
                             f"{count}")
    return words, rows


def _read_binary(path: Path, data: bytes, count: int, dim: int, start: int,
                 errors: str) -> tuple[list[str], list[np.ndarray]]:
    nbytes = 4 * dim
    pos = start
    words, rows = [], []
    for i in range(count):
        while pos < len(data) and data[pos:pos + 1] == b"\n":
            pos += 1
        where = f"entry {i + 1} (byte {pos})"
        space = data.find(b" ", pos)
        if pos >= len(data) or space == -1 or len(data) - (space + 1) < nbytes:
            raise DeepnotesError(f"{path} {where}: truncated: the header says {count} words "
                                 f"of {dim} float32 numbers but the file ends first")
        word = _decode(path, data[pos:space], where, errors)
        words.append(word)
        rows.append(np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1))
        pos = space + 1 + nbytes
    if data[pos:].strip():
        raise DeepnotesError(f"{path} byte {pos}: more data after the header's {count} words")
    return words, rows


def _dedupe(path: Path, words: list[str], rows: list[np.ndarray]):
    """Keep the first vector of a word that appears twice (as gensim does), with one warning."""
    seen: dict[str, int] = {}
    keep, dropped = [], []
    for i, w in enumerate(words):
        if w in seen:
            dropped.append(i)
            continue
        seen[w] = i
        keep.append(i)
    if dropped:
        first = dropped[0]
        log.warning("%s: %d duplicate %s, the first %r (entry %d); keeping the first vector "
                    "of each", path, len(dropped), "word" if len(dropped) == 1 else "words",
                    words[first], first + 1)
    return [words[i] for i in keep], [rows[i] for i in keep]


def _check_finite(path: Path, words: list[str], vectors: np.ndarray) -> None:
    """Refuse vectors holding NaN or inf: every cosine with them is NaN."""
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DeepnotesError(f"{path}: {len(bad)} of {len(words)} word vectors hold NaN or inf, "
                             f"the first {words[bad[0]]!r}; expected finite numbers (retrain, "
                             "or remove those words)")


def guess_binary(path: str | os.PathLike) -> bool:
    """The binary format is assumed for a ``.bin`` suffix, the text format otherwise."""
    return Path(path).suffix.lower() == ".bin"


def load_word2vec(path: str | os.PathLike, binary: bool | None = None,
                  errors: str = "strict") -> tuple[list[str], np.ndarray]:
    """``(words, vectors (V, d) float32)`` from a word2vec text or binary file.

    ``binary=None`` guesses from the suffix (:func:`guess_binary`); ``errors`` is how undecodable
    bytes in a word are handled (``"strict"``, ``"replace"``, ``"ignore"``).
    """
    path = Path(path)
    if binary is None:
        binary = guess_binary(path)
    data = _read_file(path)
    count, dim, start = _parse_header(path, data)
    reader = _read_binary if binary else _read_text
    words, rows = reader(path, data, count, dim, start, errors)
    words, rows = _dedupe(path, words, rows)
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    _check_finite(path, words, vectors)
    return words, vectors


# ----------------------------------------------------------------------------- our own format
def vocab_path(path: str | os.PathLike) -> Path:
    """``vectors.safetensors`` -> ``vectors.vocab.json`` (the suffix is replaced)."""
    path = Path(path)
    return path.with_name(path.stem + ".vocab.json") if path.suffix else \
        path.with_name(path.name + ".vocab.json")


def _words_digest(words: list[str]) -> str:
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


def save_native(path: str | os.PathLike, words: list[str], vectors: torch.Tensor,
                counts: list[int] | None) -> None:
    """Write ``path`` (safetensors) and its ``.vocab.json`` companion, each atomically."""
    from safetensors.torch import save as st_save

    meta = {META_KEY: json.dumps({"vocab_size": len(words), "sha256": _words_digest(words)})}
    tensor = vectors.detach().to("cpu", torch.float32).contiguous()
    atomic.write_bytes(path, st_save({"vectors": tensor}, metadata=meta))
    vocab = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "words": words,
             "counts": None if counts is None else [int(c) for c in counts]}
    atomic.write_text(vocab_path(path), json.dumps(vocab, ensure_ascii=False) + "\n")


def _load_vocab(path: Path) -> dict:
    if not path.is_file():
        raise DeepnotesError(f"{path}: no such vocabulary file (written by save next to the "
                             "vectors)")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepnotesError(f"{path}: not a vocabulary file ({exc})") from None
    if not isinstance(vocab, dict) or vocab.get("format") != FORMAT_NAME:
        raise DeepnotesError(f"{path}: not a deepnotes vocabulary file (no format "
                             f"{FORMAT_NAME!r})")
    if vocab.get("version") != FORMAT_VERSION:
        raise DeepnotesError(f"{path}: vocabulary format version {vocab.get('version')!r}, "
                             f"this deepnotes reads {FORMAT_VERSION}")
    words, counts = vocab.get("words"), vocab.get("counts")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise DeepnotesError(f"{path}: field 'words': expected a list of strings")
    if counts is not None and (not isinstance(counts, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in counts)):
        raise DeepnotesError(f"{path}: field 'counts': expected a list of integers")
    return vocab


def _load_tensor(path: Path) -> tuple[torch.Tensor, dict]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise DeepnotesError(f"{path}: no such vectors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "vectors" not in f.keys():  # noqa: SIM118 (safe_open has keys(), no __contains__)
                raise DeepnotesError(f"{path}: no tensor 'vectors' in the file")
            return f.get_tensor("vectors"), meta
    except SafetensorError as exc:
        raise DeepnotesError(f"{path}: not a safetensors file ({exc})") from None


def load_native(path: str | os.PathLike) -> tuple[list[str], torch.Tensor, list[int] | None]:
    """``(words, vectors, counts)`` from files written by :func:`save_native`."""
    path = Path(path)
    vectors, meta = _load_tensor(path)
    vocab = _load_vocab(vocab_path(path))
    words: list[str] = vocab["words"]  # checked by _load_vocab
    counts: list[int] | None = vocab.get("counts")
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise DeepnotesError(f"{path}: {tuple(vectors.shape)} vectors but "
                             f"{vocab_path(path).name} has {len(words)} words")
    if counts is not None and len(counts) != len(words):
        raise DeepnotesError(f"{vocab_path(path)}: {len(counts)} counts for {len(words)} words")
    if META_KEY in meta and json.loads(meta[META_KEY]).get("sha256") != _words_digest(words):
        raise DeepnotesError(f"{path}: the vectors were saved with another vocabulary than "
                             f"{vocab_path(path).name}")
    vectors = vectors.to(torch.float32)
    _check_finite(path, words, vectors.numpy())
    return words, vectors, counts
