"""``deepnotes sample``: every sample is written, reads back through the toolkit's own loaders,
is all or nothing, and a bad name is one line."""

from __future__ import annotations

import gzip
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepnotes import atomic
from deepnotes.data import load_dataset, samples
from deepnotes.data.bundled import load_digits
from deepnotes.data.dataset import IGNORE

needs_gensim = pytest.mark.skipif(importlib.util.find_spec("gensim") is None,
                                  reason="gensim supplies these samples (pip install gensim)")


@pytest.fixture(autouse=True)
def fresh_text_source():
    samples.english_text.cache_clear()  # each test picks its own source
    yield
    samples.english_text.cache_clear()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every sample, written once into one folder."""
    out = tmp_path_factory.mktemp("samples")
    lines = samples.write_samples("all", out)
    return out, lines


def leftovers(folder: Path) -> list[str]:
    """Hidden entries: the temporary files and folders of a write that failed."""
    return sorted(p.name for p in folder.rglob(".*"))


@needs_gensim
def test_all_writes_every_file_and_nothing_else(written):
    out, lines = written
    expected = {f for _, files in samples.SAMPLES.values() for f in files}
    assert {p.name for p in out.iterdir()} == expected
    assert len(lines) == len(samples.SAMPLES) and not any(line.startswith("left out")
                                                         for line in lines)
    assert leftovers(out) == []


def test_the_digits_are_an_image_folder_of_ten_classes_white_on_black(written):
    out, _ = written
    data = load_dataset(str(out / "my_images"), image_size=8)
    assert data.kind == "image" and data.classes == [str(c) for c in range(10)]
    assert tuple(data.x.shape) == (10 * samples.PER_CLASS, 1, 8, 8)
    assert torch.bincount(data.y).tolist() == [samples.PER_CLASS] * 10
    digits = load_digits()  # the toolkit's own digits: the same pixels, ink bright
    first_zero = int(np.flatnonzero(digits.y.numpy() == 0)[0])
    assert torch.equal(data.x[0, 0], digits.x[first_zero, 0])
    mine = np.asarray(Image.open(out / "my_digit.png"))
    paper = np.asarray(Image.open(out / "drawn_on_paper.png"))
    assert mine.shape == paper.shape == (8, 8)
    assert np.array_equal(mine, digits.x[-1, 0].numpy())
    assert np.array_equal(paper, 255 - digits.x[-2, 0].numpy())  # black on white
    assert mine.mean() < 128 < paper.mean()


def test_the_measurements_are_iris_with_a_species_column(written):
    out, _ = written
    data = load_dataset(str(out / "measurements.csv"), label_column="species")
    assert data.kind == "table" and data.classes == ["setosa", "versicolor", "virginica"]
    assert tuple(data.x.shape) == (144, 4)
    new = (out / "new_rows.csv").read_text().splitlines()
    assert new[0] == "sepal_length,sepal_width,petal_length,petal_width" and len(new) == 7


def test_the_scenes_follow_their_rules_with_labels_missing(written):
    out, _ = written
    data = load_dataset(str(out / "scenes.csv"), targets=list(samples.TASKS))
    x, y = data.x.numpy(), data.y.numpy()  # (600, 8), (600, 4)
    assert x.shape == (600, 8) and y.shape == (600, 4)
    missing = (y == IGNORE).mean()
    assert 0.15 < missing < 0.25
    rules = np.stack([x[:, 0] - x[:, 1] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] > 0.5,
                      x[:, 2] - x[:, 4] > 0], axis=1)
    present = y != IGNORE
    assert np.array_equal(y[present], rules[present].astype(int))
    assert all(0 < y[present[:, t], t].mean() < 1 for t in range(4))  # both answers occur


@needs_gensim
def test_the_reviews_are_a_text_classification_csv(written):
    out, _ = written
    data = load_dataset(str(out / "reviews.csv"))
    assert data.classes == ["negative", "positive"] and len(data.y) == 190
    new = (out / "new_reviews.txt").read_text(encoding="utf-8").splitlines()
    assert len(new) == 10 and all(line.strip() for line in new)


@needs_gensim
def test_the_book_and_the_corpus_are_english_in_utf8(written):
    out, _ = written
    book = (out / "my_book.txt").read_bytes()
    assert 100_000 < len(book) <= samples.BOOK_BYTES
    assert load_dataset(str(out / "my_book.txt")).task == "lm"
    corpus = (out / "corpus.txt").read_bytes().decode("utf-8").splitlines()
    words = [w for line in corpus for w in line.split()]
    assert len(words) > 50_000 and all(w == w.lower() for w in words)
    for word in ("king", "man", "woman"):  # the tour's similar and analogy commands
        assert words.count(word) >= 5, word  # word2vec train's --min-count


@needs_gensim
def test_the_questions_are_gensims_file(written):
    out, _ = written
    from gensim.test.utils import datapath

    expected = Path(datapath("questions-words.txt")).read_bytes()
    assert (out / "questions-words.txt").read_bytes() == expected


@pytest.mark.parametrize("name, files", [
    ("iris", {"measurements.csv", "new_rows.csv"}),
    ("measurements.csv", {"measurements.csv", "new_rows.csv"}),
    ("my_images/", {"my_images", "my_digit.png", "drawn_on_paper.png"}),
    ("scenes.csv", {"scenes.csv"}),
])
def test_a_sample_is_named_by_itself_or_by_a_file_it_writes(tmp_path, name, files):
    samples.write_samples(name, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == files


def test_the_text_comes_from_gcide_first(tmp_path, monkeypatch):
    fake = tmp_path / "gcide.dict.dz"
    entries = [f"Word{i}\n   A definition of word {i}, as a king would give it."
               for i in range(5000)]
    with gzip.open(fake, "wt", encoding="utf-8") as f:
        f.write("\n\n".join(entries))
    monkeypatch.setattr(samples, "GCIDE", fake)
    monkeypatch.setattr(samples, "BOOK_BYTES", 50_000)
    monkeypatch.setattr(samples, "ENGLISH_BYTES", 100_000)
    text, source = samples.english_text()
    assert "GCIDE" in source and "Word0\n" in text and "Word4999" not in text  # spread A to Z
    samples.write_samples("text", tmp_path / "out")
    book = (tmp_path / "out" / "my_book.txt").read_text(encoding="utf-8")
    assert book.startswith("Word0") and len(book.encode()) <= 50_000


def test_without_gensim_the_text_is_pythons_reference_and_all_says_what_it_left_out(
        tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim.test.utils", None)  # import fails
    monkeypatch.setattr(samples, "GCIDE", tmp_path / "no-gcide")
    lines = samples.write_samples("all", tmp_path)
    left = [line for line in lines if line.startswith("left out")]
    assert len(left) == 2 and all("pip install gensim" in line for line in left)
    assert not (tmp_path / "questions-words.txt").exists()
    assert not (tmp_path / "reviews.csv").exists()
    assert "pydoc_data" in next(line for line in lines if line.startswith("my_book.txt"))
    assert "The \"assert\" statement" in (tmp_path / "my_book.txt").read_text(encoding="utf-8")


def test_without_gensim_naming_its_sample_is_one_line(tmp_path, monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "gensim.test.utils", None)
    rc, out, err = cli("sample", "questions-words", "--out", tmp_path)
    assert rc == 2 and out == ""
    assert err == ("error: questions-words.txt comes from gensim's test data: pip install "
                   "gensim\n")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_name_is_one_line_listing_the_valid_ones(tmp_path, cli):
    rc, out, err = cli("sample", "digit", "--out", tmp_path)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: unknown sample 'digit'; did you mean 'digits'? valid: digits,")
    assert "questions-words.txt, all" in err
    assert list(tmp_path.iterdir()) == []


def test_the_command_prints_a_line_a_sample(tmp_path, cli):
    rc, out, err = cli("sample", "iris", "--out", tmp_path / "new")  # --out is made
    assert rc == 0 and err == ""
    assert out.startswith("measurements.csv (144 rows") and out.count("\n") == 1


def test_existing_files_are_refused_before_anything_is_written(tmp_path, cli):
    (tmp_path / "scenes.csv").write_text("mine\n")
    rc, _, err = cli("sample", "all", "--out", tmp_path)
    assert rc == 2 and err == (f"error: {tmp_path / 'scenes.csv'} exists; use --overwrite to "
                               "replace it\n")
    assert [p.name for p in tmp_path.iterdir()] == ["scenes.csv"]
    assert cli("sample", "scenes", "--out", tmp_path, "--overwrite")[0] == 0
    assert (tmp_path / "scenes.csv").read_text().startswith("x1,")


def test_a_failure_while_making_a_sample_writes_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(samples, "scene_rows", broken)
    with pytest.raises(RuntimeError, match="injected"):
        samples.write_samples("all", tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "scenes.csv" not in names and {"measurements.csv", "my_images"} <= names  # before it
    assert leftovers(tmp_path) == []


def test_a_failed_rename_leaves_neither_the_file_nor_its_temporary(tmp_path, monkeypatch):
    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        samples.write_samples("iris", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_filling_the_image_folder_leaves_the_earlier_one(tmp_path, monkeypatch):
    samples.write_samples("digits", tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "my_images").rglob("*"))
    write_bytes, calls = Path.write_bytes, []

    def fails_later(self, data):
        calls.append(self)
        if len(calls) == 100:
            raise OSError(28, "No space left on device")
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", fails_later)
    with pytest.raises(OSError, match="No space"):
        samples.write_samples("digits", tmp_path, overwrite=True)
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "my_images").rglob("*"))
    assert after == before and leftovers(tmp_path) == []
    monkeypatch.undo()
    (tmp_path / "my_images" / "0" / "extra.png").write_bytes(b"")  # replaced as a whole
    samples.write_samples("digits", tmp_path, overwrite=True)
    assert not (tmp_path / "my_images" / "0" / "extra.png").exists()
    assert leftovers(tmp_path) == []
    assert oct((tmp_path / "my_images").stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
