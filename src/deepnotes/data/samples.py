"""Small sample inputs for the README's tour, made offline from data already on the machine.

===================  ==========================  ==============================================
sample               writes                      from
===================  ==========================  ==============================================
``digits``           ``my_images/0..9/*.png``,   scikit-learn's handwritten digits, 8x8 grey,
                     ``my_digit.png``,           white on black as the data are (30 a class);
                     ``drawn_on_paper.png``      two more for ``predict``, one black on white
``iris``             ``measurements.csv``,       scikit-learn's iris, the label in ``species``;
                     ``new_rows.csv``            2 rows a species held out, without it
``scenes``           ``scenes.csv``              random features x1..x8 and four yes/no tasks
                                                 (pedestrian, car, stop_sign, traffic_light)
                                                 set by fixed rules, 20 % of labels missing
``reviews``          ``reviews.csv``,            gensim's 200 movie-review sentences (Pang and
                     ``new_reviews.txt``         Lee's polarity data), ``text,label``; 10 held
                                                 out, one a line
``text``             ``my_book.txt``             English: GCIDE's dictionary (Debian's
                                                 ``dict-gcide``), else gensim's Lee news corpus,
                                                 else Python's language reference (pydoc_data)
``corpus``           ``corpus.txt``              the same text, lower-cased, a sentence of
                                                 words a line (for ``word2vec train``)
``questions-words``  ``questions-words.txt``     gensim's copy of word2vec's analogy questions
===================  ==========================  ==============================================

A sample is named by its name or by a file it writes (``measurements.csv``). Its bytes are made
in memory first, so a failure there writes nothing; then each file is written atomically
(:mod:`deepnotes.atomic`), and the image folder is filled under a temporary name and renamed
into place. Existing files are replaced only with ``overwrite``.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from deepnotes import atomic
from deepnotes.errors import DeepnotesError, unknown_name

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
BOOK_BYTES = 200_000  # my_book.txt: a few hundred KB, enough for a character model
ENGLISH_BYTES = 400_000  # the GCIDE entries taken, evenly from A to Z (corpus.txt is all of it)
PER_CLASS = 30  # digits in my_images/ a class
TASKS = ("pedestrian", "car", "stop_sign", "traffic_light")

Files = dict[str, bytes]  # path under --out ("my_images/3/0042.png") -> bytes


def _png(pixels: np.ndarray) -> bytes:
    """A grey PNG of uint8 (n_H, n_W) pixels."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_digits() -> tuple[Files, str]:
    """The first PER_CLASS digits of each class; the data set's last two, not among them, as
    ``my_digit.png`` and (black on white, as drawn on paper) ``drawn_on_paper.png``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), ink bright
    labels = bunch.target
    files = {f"my_images/{c}/{i:04d}.png": _png(images[i])
             for c in range(10) for i in np.flatnonzero(labels == c)[:PER_CLASS]}
    files["my_digit.png"] = _png(images[-1])
    files["drawn_on_paper.png"] = _png(255 - images[-2])
    return files, (f"my_images/ ({10 * PER_CLASS} PNGs, 10 classes), my_digit.png (the digit "
                   f"{labels[-1]}) and drawn_on_paper.png (the digit {labels[-2]}, black on "
                   "white): scikit-learn's digits, 8x8 grey")


def _csv(columns: list[str], rows: list[dict]) -> bytes:
    return atomic.csv_text(columns, rows).encode("utf-8")


def make_iris() -> tuple[Files, str]:
    from sklearn.datasets import load_iris

    bunch = load_iris()
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    rows = [dict(zip(columns, [*(f"{v:g}" for v in x), bunch.target_names[y]]))
            for x, y in zip(bunch.data, bunch.target)]
    new = {i for y in range(3) for i in np.flatnonzero(bunch.target == y)[-2:]}
    files = {"measurements.csv": _csv(columns, [r for i, r in enumerate(rows) if i not in new]),
             "new_rows.csv": _csv(columns[:-1], [r for i, r in enumerate(rows) if i in new])}
    return files, (f"measurements.csv ({len(rows) - len(new)} rows, the label in 'species') and "
                   f"new_rows.csv ({len(new)} rows held out, no label): scikit-learn's iris")


def scene_rows(m: int = 600, missing: float = 0.2, seed: int = 0) -> list[dict]:
    """Features x1..x8 ~ N(0, 1); pedestrian = x1 - x2 > 0, car = x2 + x3 > 0,
    stop_sign = x4 > 0.5, traffic_light = x3 - x5 > 0; each label missing with p = ``missing``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, 8)).round(3)  # (m, 8)
    y = np.stack([x[:, 0] - x[:, 1] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] > 0.5,
                  x[:, 2] - x[:, 4] > 0], axis=1).astype(int)  # (m, 4)
    hidden = rng.random(y.shape) < missing
    return [{**{f"x{j + 1}": f"{v:g}" for j, v in enumerate(row)},
             **{task: "" if gone else str(label)
                for task, label, gone in zip(TASKS, labels, holes)}}
            for row, labels, holes in zip(x, y, hidden)]


def make_scenes() -> tuple[Files, str]:
    rows = scene_rows()
    files = {"scenes.csv": _csv([*(f"x{j}" for j in range(1, 9)), *TASKS], rows)}
    return files, (f"scenes.csv ({len(rows)} rows): features x1..x8 and {','.join(TASKS)} "
                   "(0, 1, or empty: 20 % missing), set by fixed rules")


def _gensim_file(name: str, what: str) -> Path:
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise DeepnotesError(f"{what} comes from gensim's test data: pip install gensim") from None
    return Path(datapath(name))


def make_reviews() -> tuple[Files, str]:
    """Pang and Lee's sentence polarity lines (``__label__pos text``) that gensim ships."""
    path = _gensim_file("pang_lee_polarity.cor", "reviews.csv")
    lines = path.read_text(encoding="cp1252").splitlines()  # its dashes are Windows-1252's
    labels = [line.split(" ", 1)[0].removeprefix("__label__") for line in lines]  # pos, neg
    texts = [line.split(" ", 1)[1].strip() for line in lines]
    held = {i for label in ("pos", "neg") for i in
            [j for j, y in enumerate(labels) if y == label][-5:]}
    rows = [{"text": text, "label": {"pos": "positive", "neg": "negative"}[label]}
            for i, (label, text) in enumerate(zip(labels, texts)) if i not in held]
    new = "".join(texts[i] + "\n" for i in sorted(held))
    files = {"reviews.csv": _csv(["text", "label"], rows), "new_reviews.txt": new.encode()}
    return files, (f"reviews.csv ({len(rows)} sentences, positive or negative) and "
                   f"new_reviews.txt ({len(held)} held out, one a line): movie reviews from "
                   "Pang and Lee's polarity data, gensim's copy")


@functools.cache
def english_text() -> tuple[str, str]:
    """(English text, where it came from): the first source this machine has."""
    if GCIDE.is_file():
        with gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace") as f:
            entries = f.read().split("\n\n")
        step = max(1, sum(map(len, entries)) // ENGLISH_BYTES)  # entries from A to Z
        return "\n\n".join(entries[::step]), f"GCIDE's dictionary ({GCIDE})"
    try:
        from gensim.test.utils import datapath

        text = Path(datapath("lee_background.cor")).read_text(encoding="utf-8")
        return text, "gensim's Lee news corpus (lee_background.cor)"
    except (ImportError, OSError):
        pass
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text, "Python's language reference (pydoc_data)"


def _cut(text: str, size: int) -> str:
    """At most ``size`` bytes of UTF-8, ending at a line."""
    data = text.encode("utf-8")
    if len(data) <= size:
        return text
    head = data[:size].decode("utf-8", errors="ignore")
    return head[: head.rfind("\n") + 1] or head


def make_book() -> tuple[Files, str]:
    text, source = english_text()
    data = _cut(text, BOOK_BYTES).encode("utf-8")
    return {"my_book.txt": data}, f"my_book.txt ({len(data) // 1000} KB): {source}"


def sentences(text: str) -> list[list[str]]:
    """Lower-cased words (letters, inner apostrophes), cut into sentences at . ! ? and lines."""
    return [words for part in re.split(r"[.!?\n]+", text.lower())
            if (words := re.findall(r"[a-z]+(?:'[a-z]+)*", part))]


def make_corpus() -> tuple[Files, str]:
    text, source = english_text()
    lines = sentences(text)
    data = "".join(" ".join(words) + "\n" for words in lines).encode("utf-8")
    words = sum(map(len, lines))
    return {"corpus.txt": data}, f"corpus.txt ({words} words, a sentence a line): {source}"


def make_questions() -> tuple[Files, str]:
    data = _gensim_file("questions-words.txt", "questions-words.txt").read_bytes()
    lines = data.count(b"\n")
    return ({"questions-words.txt": data},
            f"questions-words.txt ({lines} lines): word2vec's analogy questions, gensim's copy")


# name -> (what it makes, the files and folders it writes)
SAMPLES: dict[str, tuple[Callable[[], tuple[Files, str]], tuple[str, ...]]] = {
    "digits": (make_digits, ("my_images", "my_digit.png", "drawn_on_paper.png")),
    "iris": (make_iris, ("measurements.csv", "new_rows.csv")),
    "scenes": (make_scenes, ("scenes.csv",)),
    "reviews": (make_reviews, ("reviews.csv", "new_reviews.txt")),
    "text": (make_book, ("my_book.txt",)),
    "corpus": (make_corpus, ("corpus.txt",)),
    "questions-words": (make_questions, ("questions-words.txt",)),
}


def names() -> list[str]:
    """Every name :func:`write_samples` takes: the samples, the files they write, ``all``."""
    return [*SAMPLES, *(f for _, files in SAMPLES.values() for f in files), "all"]


def resolve(name: str) -> list[str]:
    """The samples that ``name`` (a sample, one of its files, or ``all``) stands for."""
    if name == "all":
        return list(SAMPLES)
    for sample, (_, files) in SAMPLES.items():
        if name == sample or name.rstrip("/") in files:
            return [sample]
    raise DeepnotesError(unknown_name("sample", name, names()))


def write_samples(name: str, out: str | os.PathLike = ".", overwrite: bool = False) -> list[str]:
    """Write the samples ``name`` stands for into ``out``; return a line on each.

    Existing files are refused, before anything is written, unless ``overwrite``. With ``all``,
    a sample whose source is missing (gensim's data) is left out and its line says why; named
    alone, it raises :class:`DeepnotesError`."""
    chosen, out = resolve(name), Path(out)
    taken = [out / f for s in chosen for f in SAMPLES[s][1] if (out / f).exists()]
    if taken and not overwrite:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise DeepnotesError(f"{taken[0]} exists; use --overwrite to replace it{more}")
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for sample in chosen:
        try:
            files, line = SAMPLES[sample][0]()
        except DeepnotesError as exc:
            if name != "all":
                raise
            files, line = {}, f"left out {', '.join(SAMPLES[sample][1])}: {exc}"
        publish(out, files)
        lines.append(line)
    return lines


def publish(out: Path, files: Files) -> None:
    """Each file atomically; the files of a folder (``my_images/3/x.png``) into a temporary
    folder renamed to it at the end, an earlier folder removed only then."""
    folders: dict[str, Files] = {}
    for path, data in files.items():
        top, _, rest = path.partition("/")
        if rest:
            folders.setdefault(top, {})[rest] = data
        else:
            atomic.write_bytes(out / path, data)
    for top, inside in folders.items():
        _publish_folder(out / top, inside)


def _publish_folder(folder: Path, files: Files) -> None:
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.",
                                suffix=".tmp"))
    old = folder.parent / f".{folder.name}.{os.getpid()}.old"
    try:
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o777 & ~mask)  # mkdtemp makes it 0700; this is a folder of the user's own
        for path, data in files.items():
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp / path).write_bytes(data)
        for sub in {(tmp / path).parent for path in files}:
            atomic.sync_folder(sub)
        if folder.exists():
            os.rename(folder, old)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            os.rename(old, folder)  # the earlier folder comes back
        raise
    atomic.sync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
