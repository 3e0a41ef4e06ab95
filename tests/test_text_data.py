"""The sequence readers (text, CSV texts, CoNLL tags, TSV pairs), vocabularies and the dates.

Every input is a tiny file written under tmp_path, with the exact tensors it must give.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime

import pytest
import torch

from conftest import warnings_of
from deepnotes.data import NAMED, load_dataset
from deepnotes.data.dataset import IGNORE
from deepnotes.data.dates import FORMATS, human_dates, load_dates
from deepnotes.data.text import (
    load_conll,
    load_pairs,
    load_text_csv,
    load_text_lm,
    read_text,
    tokenize,
)
from deepnotes.data.vocabulary import BOS_ID, EOS_ID, Vocabulary, teacher_forcing
from deepnotes.errors import DeepnotesError


@pytest.fixture
def warnings_logged():
    """The messages of the warnings logged on ``deepnotes.data`` during the test."""
    with warnings_of("deepnotes.data") as messages:
        yield messages


def ids(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_orders_by_count_then_token_after_the_specials():
    vocab = Vocabulary.build(list("banana") + ["c"], min_count=1)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "n", "b", "c"]
    assert len(vocab) == 6
    assert vocab.encode("cab?") == [5, 2, 4, 1]


def test_vocabulary_min_count_sends_rare_tokens_to_unk():
    vocab = Vocabulary.build(list("banana") + ["c"], min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "n"]
    assert vocab.encode("cab") == [1, 2, 1]
    with pytest.raises(DeepnotesError, match="min_count=0: expected at least 1"):
        Vocabulary.build("ab", min_count=0)


def test_target_vocabulary_has_bos_eos_and_decode_stops_at_eos():
    vocab = Vocabulary.build("xyx", target=True)
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "x", "y"]
    assert vocab.decode([BOS_ID, 4, 5, 1, EOS_ID, 4, IGNORE]) == ["x", "y", "<unk>"]
    assert vocab.decode(torch.tensor([BOS_ID, 5, 0, 0])) == ["y"]
    assert Vocabulary.build("ab").decode([2, 0, 3]) == ["a", "b"]


def test_vocabulary_round_trips_through_json():
    vocab = Vocabulary.build(["the", "cat", "the", "é", "<eos>"], target=True)
    text = json.dumps(vocab.to_json())
    again = Vocabulary.from_json(json.loads(text))
    assert again == vocab and again.tokens == vocab.tokens
    assert Vocabulary.from_json(text) == vocab
    assert again.encode(["cat", "dog"]) == vocab.encode(["cat", "dog"])
    with pytest.raises(DeepnotesError, match="expected JSON"):
        Vocabulary.from_json({"words": []})
    with pytest.raises(DeepnotesError, match="must start with"):
        Vocabulary.from_json({"tokens": ["a", "b"]})


# ---------------------------------------------------------------- reading text


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DeepnotesError, match=r"empty\.txt: empty file"):
        read_text(path)
    with pytest.raises(DeepnotesError, match="empty file"):
        load_pairs(path.rename(tmp_path / "empty.tsv"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DeepnotesError, match=r"nope\.txt does not exist"):
        read_text(tmp_path / "nope.txt")


def test_undecodable_bytes_strict_names_the_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("ok é\n".encode() + b"x\xff\xfey")
    with pytest.raises(DeepnotesError) as info:
        read_text(path)
    message = str(info.value)
    assert str(path) in message and "byte offset 7" in message and "0xff" in message
    assert "line 2" in message and "--errors replace" in message
    with pytest.raises(DeepnotesError, match="byte offset 7"):
        load_text_lm(path)


def test_undecodable_bytes_replace_warns_once_with_the_count(tmp_path, warnings_logged):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a\xffb\xfe\xfdc\n")
    assert read_text(path, errors="replace") == "a\ufffdb\ufffd\ufffdc\n"
    assert len(warnings_logged) == 1
    assert "3 undecodable bytes" in warnings_logged[0] and str(path) in warnings_logged[0]


def test_bom_and_windows_line_ends(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"\xef\xbb\xbfab\r\ncd\re")
    assert read_text(path) == "ab\ncd\ne"


def test_bad_errors_value(tmp_path):
    with pytest.raises(DeepnotesError, match="--errors ignore: expected one of strict, replace"):
        read_text(tmp_path / "x.txt", errors="ignore")


# ---------------------------------------------------------------- language model


def test_lm_windows_exact(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_text("hello world")
    ds = load_text_lm(path, seq_len=4)
    assert ds.task == "lm" and ds.kind == "lm" and ds.name == str(path)
    assert ds.vocab == ["<pad>", "<unk>", "l", "o", " ", "d", "e", "h", "r", "w"]
    assert ds.classes == ds.vocab
    assert torch.equal(ds.x, ids([[7, 6, 2, 2], [3, 4, 9, 3]]))  # "hell", "o wo"
    assert torch.equal(ds.y, ids([[6, 2, 2, 3], [4, 9, 3, 8]]))  # "ello", " wor"


def test_lm_y_is_x_shifted_by_one_and_windows_are_consecutive(tmp_path):
    path = tmp_path / "abc.txt"
    text = "the quick brown fox jumps over the lazy dog\n" * 7
    path.write_text(text)
    ds = load_text_lm(path, seq_len=10)
    assert ds.x.shape == ds.y.shape == ((len(text) - 1) // 10, 10)
    assert ds.x.dtype == ds.y.dtype == torch.int64
    assert torch.equal(ds.x[:, 1:], ds.y[:, :-1])
    assert torch.equal(ds.x[1:, 0], ds.y[:-1, -1])
    decoded = "".join(ds.vocab[i] for i in ds.x.flatten().tolist())
    assert decoded == text[: ds.x.numel()]


def test_lm_short_text_is_one_padded_window(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abca")
    ds = load_text_lm(path, seq_len=6)
    assert ds.vocab == ["<pad>", "<unk>", "a", "b", "c"]
    assert torch.equal(ds.x, ids([[2, 3, 4, 0, 0, 0]]))
    assert torch.equal(ds.y, ids([[3, 4, 2, IGNORE, IGNORE, IGNORE]]))


def test_lm_min_count_and_bad_seq_len(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("aaab")
    assert load_text_lm(path, seq_len=3, min_count=2).x.tolist() == [[2, 2, 2]]
    assert load_text_lm(path, seq_len=3, min_count=2).y.tolist() == [[2, 2, 1]]
    with pytest.raises(DeepnotesError, match="seq_len=0: expected at least 1"):
        load_text_lm(path, seq_len=0)


# ---------------------------------------------------------------- text classification


def test_tokenizer_words_and_punctuation():
    assert tokenize("Don't STOP, café-bar!! 42") == ["don't", "stop", ",", "café", "-", "bar",
                                                      "!", "!", "42"]


def test_text_csv_exact(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,text,label\n1,"Good, good film.",pos\n2,Bad film,neg\n\n3,good,pos\n')
    ds = load_text_csv(path)
    assert ds.task == "tokens" and ds.classes == ["neg", "pos"]
    assert ds.vocab == ["<pad>", "<unk>", "good", "film", ",", ".", "bad"]
    assert torch.equal(ds.x, ids([[2, 4, 2, 3, 5], [6, 3, 0, 0, 0], [2, 0, 0, 0, 0]]))
    assert torch.equal(ds.y, ids([1, 0, 1]))


def test_text_csv_max_len_cuts_with_one_counted_warning(tmp_path, warnings_logged):
    path = tmp_path / "t.csv"
    path.write_text("text,label\na b c d,x\na b,y\na b c,x\n")
    ds = load_text_csv(path, max_len=2)
    assert ds.x.shape == (3, 2)
    assert warnings_logged == [f"{path}: 2 of 3 texts were longer than --max-len 2 and were cut"]


def test_text_csv_empty_text_is_unk_unless_all_are_empty(tmp_path, warnings_logged):
    path = tmp_path / "t.csv"
    path.write_text('text,label\nhi,x\n"",y\n')
    ds = load_text_csv(path)
    assert torch.equal(ds.x, ids([[2], [1]]))
    assert len(warnings_logged) == 1 and "1 of 2 texts are empty" in warnings_logged[0]
    path.write_text('text,label\n"",x\n" ",y\n')
    with pytest.raises(DeepnotesError, match="every text is empty"):
        load_text_csv(path)


def test_text_csv_missing_columns_lists_the_columns_found(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("sentence,label\nhi,x\n")
    with pytest.raises(DeepnotesError, match=r"no column 'text'.*columns found: sentence, label"):
        load_text_csv(path)
    path.write_text("text,class\nhi,x\nho,y\n")
    with pytest.raises(DeepnotesError, match=r"no column 'label'.*columns found: text, class"):
        load_text_csv(path)
    assert load_text_csv(path, label_column="class").classes == ["x", "y"]


def test_text_csv_bad_rows_name_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nhi,x\nho,y,z\n")
    with pytest.raises(DeepnotesError, match="line 3: expected 2 cells, found 3"):
        load_text_csv(path)
    path.write_text("text,label\nhi,x\nho, \n")
    with pytest.raises(DeepnotesError, match="line 3: empty label"):
        load_text_csv(path)


# ---------------------------------------------------------------- tags


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter B-PER
Peter B-PER
"""


def test_conll_exact(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text(CONLL)
    ds = load_conll(path)
    assert ds.task == "tags"
    assert ds.classes == ["B-MISC", "B-ORG", "B-PER", "O"]
    assert ds.vocab == ["<pad>", "<unk>", "Peter", "EU", "German", "rejects"]
    assert torch.equal(ds.x, ids([[3, 5, 4], [2, 2, 0]]))
    assert torch.equal(ds.y, ids([[1, 3, 0], [2, 2, IGNORE]]))


def test_conll_one_field_names_the_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU B-ORG\n\nrejects O\nGerman\n")
    with pytest.raises(DeepnotesError, match=r"bad\.conll line 4: one field \('German'\)"):
        load_conll(path)


def test_conll_max_len_cuts_tokens_and_tags(tmp_path, warnings_logged):
    path = tmp_path / "ner.conll"
    path.write_text(CONLL)
    ds = load_conll(path, max_len=2)
    assert torch.equal(ds.y, ids([[1, 3], [2, 2]]))
    assert warnings_logged == [
        f"{path}: 1 of 2 sentences were longer than --max-len 2 and were cut"
    ]


# ---------------------------------------------------------------- pairs


def test_pairs_exact_and_the_decoder_contract(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("ab\tx\n\nb\tyx\n")
    ds = load_pairs(path)
    assert ds.task == "pairs"
    assert ds.vocab == ["<pad>", "<unk>", "b", "a"]
    assert ds.classes == ["<pad>", "<unk>", "<bos>", "<eos>", "x", "y"]
    assert torch.equal(ds.x, ids([[3, 2], [2, 0]]))
    assert torch.equal(ds.y, ids([[2, 4, 3, IGNORE], [2, 5, 4, 3]]))
    assert (ds.y[:, 0] == BOS_ID).all()
    inputs, targets = teacher_forcing(ds.y)
    assert torch.equal(inputs, ids([[2, 4, 3], [2, 5, 4]]))
    assert torch.equal(targets, ids([[4, 3, IGNORE], [5, 4, 3]]))
    target = Vocabulary(ds.classes)
    assert ["".join(target.decode(row)) for row in ds.y] == ["x", "yx"]


def test_pairs_line_without_one_tab_is_named(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("a\tb\nno tab here\n")
    with pytest.raises(DeepnotesError, match=r"p\.tsv line 2: 0 tabs; expected exactly one"):
        load_pairs(path)
    path.write_text("a\tb\tc\n")
    with pytest.raises(DeepnotesError, match="line 1: 2 tabs"):
        load_pairs(path)
    path.write_text("a\tb\n\tc\n")
    with pytest.raises(DeepnotesError, match="line 2: empty source"):
        load_pairs(path)


def test_pairs_max_len(tmp_path, warnings_logged):
    path = tmp_path / "p.tsv"
    path.write_text("abc\tx\nb\ty\n")
    ds = load_pairs(path, max_len=2)
    assert ds.x.shape == (2, 2) and ds.y.shape == (2, 3)
    assert warnings_logged == [f"{path}: 1 of 2 pairs were longer than --max-len 2 and were cut"]


# ---------------------------------------------------------------- dates


def parse_human(text: str) -> date:
    """An independent reading of the generator's formats: day before month when numeric."""
    s = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text.lower())
    s = re.sub(r"^the |\bof |,", "", s)
    s = re.sub(r"^(monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|wed|thu|"
               r"fri|sat|sun) ", "", s)
    patterns = ["%d %B %Y", "%B %d %Y", "%d/%m/%y", "%d.%m.%Y", "%d %b %Y", "%Y-%m-%d",
                "%d/%m/%Y", "%d.%m.%y", "%d-%m-%Y", "%d %b %y", "%d-%b-%Y", "%b %d %Y",
                "%Y/%m/%d", "%Y%m%d"]
    for pattern in patterns:
        try:
            parsed = datetime.strptime(s, pattern).date()
        except ValueError:
            continue
        if "%y" in pattern and parsed.year >= 2050:
            parsed = parsed.replace(year=parsed.year - 100)
        return parsed
    raise AssertionError(f"cannot parse {text!r}")


def test_dates_are_deterministic_per_seed():
    assert human_dates(50, seed=3) == human_dates(50, seed=3)
    assert human_dates(50, seed=3) != human_dates(50, seed=4)
    assert len(human_dates(7)) == 7


def test_every_date_target_is_iso_and_matches_its_source():
    pairs = human_dates(3000, seed=1)
    years = set()
    for source, target in pairs:
        day = date.fromisoformat(target)
        assert day.isoformat() == target and 1950 <= day.year <= 2049
        assert parse_human(source) == day, source
        years.add(day.year)
    assert min(years) < 1960 and max(years) > 2040


def test_date_formats_on_one_day():
    day = date(1999, 5, 3)  # a Monday
    written = {name: fmt(day) for name, fmt in FORMATS.items()}
    for expected in ["3 May 1999", "May 3, 1999", "Monday, 03/05/99", "03.05.1999",
                     "3rd of May 1999", "Mon 3 May 1999", "1999-05-03", "MAY 3 1999",
                     "the 3rd of May, 1999", "3/5/99"]:
        assert expected in written.values()
    assert FORMATS["dth of Month yyyy"](date(2011, 12, 22)) == "22nd of December 2011"
    assert FORMATS["dth of Month yyyy"](date(2011, 12, 11)) == "11th of December 2011"
    assert FORMATS["Weekday, dd/mm/yy"](date(2049, 12, 31)) == "Friday, 31/12/49"


def test_dates_use_many_formats():
    def shape(s):
        s = re.sub(r"\d", "9", s)
        return re.sub(r"[A-Za-z]+", lambda m: "A" if m[0].isupper() else
                      ("a" if m[0].islower() else "Aa"), s)

    shapes = {shape(source) for source, _ in human_dates(2000)}
    assert len(shapes) >= 15


def test_load_dates_is_pairs_built_like_a_tsv(tmp_path):
    pairs = human_dates(40, seed=2)
    ds = load_dates(40, seed=2)
    path = tmp_path / "dates.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    from_file = load_pairs(path)
    assert ds.name == "dates" and ds.task == "pairs"
    assert torch.equal(ds.x, from_file.x) and torch.equal(ds.y, from_file.y)
    assert ds.vocab == from_file.vocab and ds.classes == from_file.classes
    assert ds.y.shape == (40, 12)  # <bos> + 10 characters + <eos>
    source, target = Vocabulary(ds.vocab), Vocabulary(ds.classes)
    assert "".join(source.decode(ds.x[0])) == pairs[0][0]
    assert "".join(target.decode(ds.y[0])) == pairs[0][1]
    assert (ds.y[:, -1] == EOS_ID).all()


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_dispatches_text_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "b.csv").write_text("label,text\nx,hi there\ny,bye\n")
    (tmp_path / "c.csv").write_text("f1,f2,label\n1,2,x\n3,4,y\n")
    (tmp_path / "d.conll").write_text("EU B-ORG\nsays O\n")
    (tmp_path / "e.tsv").write_text("ab\tx\n")
    lm = load_dataset(str(tmp_path / "a.txt"), seq_len=5)
    assert lm.kind == "lm" and lm.x.shape == (2, 5)
    assert load_dataset(str(tmp_path / "a.txt")).x.shape == (1, 64)
    texts = load_dataset(str(tmp_path / "b.csv"), max_len=1)
    assert texts.kind == "tokens" and texts.x.shape == (2, 1)
    assert load_dataset(str(tmp_path / "c.csv")).kind == "table"
    assert load_dataset(str(tmp_path / "d.conll")).kind == "tags"
    assert load_dataset(str(tmp_path / "e.tsv")).kind == "pairs"


def test_load_dataset_dates_and_errors_option(tmp_path):
    assert "dates" in NAMED
    ds = load_dataset("dates")
    assert ds.kind == "pairs" and len(ds.x) == 20000 and ds.y.shape[1] == 12
    with pytest.raises(DeepnotesError, match="--errors loose: expected one of strict, replace"):
        load_dataset("dates", errors="loose")
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ab\xffcd")
    with pytest.raises(DeepnotesError, match="byte offset 2"):
        load_dataset(str(path))
    assert load_dataset(str(path), errors="replace", seq_len=2).x.shape == (2, 2)
