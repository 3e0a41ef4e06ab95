"""The notes' five RNN shapes, each trained end to end from the CLI on small data.

one-to-one is the MLP on tables (tests/test_main_job.py); here: many-to-one on image rows and on
text, one-to-many (a character language model and ``generate``), many-to-many with Tx = Ty (a
tagger) and with Tx != Ty (an encoder-decoder on dates and ``translate``).
"""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

from deepnotes.models import create_model
from deepnotes.models.sequence import exact_match, strip_output

COMMON = ["--quiet", "--seed", "0"]


def history(run) -> list[dict]:
    lines = (run / "history.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


def trained(cli, tmp_path, name, *args):
    rc, out, err = cli("train", *args, *COMMON, "--out", tmp_path, "--name", name)
    assert rc == 0, err
    run = tmp_path / name
    return run, json.loads((run / "metrics.json").read_text()), history(run)


def falling(rows) -> bool:
    return rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rnn", "gru", "lstm"])
def test_many_to_one_reads_images_row_by_row(cli, tmp_path, model):
    run, metrics, rows = trained(cli, tmp_path, model, "--data", "digits", "--model", model,
                                 "--epochs", 4, "--lr", "1e-2")
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "image" and config["input_shape"] == [1, 28, 28]
    assert falling(rows)
    assert metrics["test"]["accuracy"] > 0.6  # 10 classes; chance is 0.1


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """Short texts whose label is decided by a word: 'good ...' or 'bad ...'."""
    path = tmp_path_factory.mktemp("text") / "reviews.csv"
    rng = random.Random(0)
    filler = "the film was a story with actors and music in it".split()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(240):
            label = "pos" if i % 2 else "neg"
            words = rng.sample(filler, 5)
            words.insert(rng.randrange(6), "good" if label == "pos" else "bad")
            writer.writerow([" ".join(words), label])
    return path


def test_many_to_one_classifies_text_from_a_csv(cli, tmp_path, reviews):
    run, metrics, rows = trained(cli, tmp_path, "text", "--data", reviews, "--model", "gru",
                                 "--epochs", 8, "--lr", "1e-2", "--batch-size", 16)
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["input"][:2] == ["<pad>", "<unk>"] and "good" in vocab["input"]
    assert vocab["output"] == ["neg", "pos"]
    assert falling(rows)
    assert metrics["test"]["accuracy"] >= 0.9


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "abc.txt"
    path.write_text("the cat sat on the mat. " * 150)
    return path


@pytest.mark.slow
def test_one_to_many_learns_characters_and_generates(cli, tmp_path, text_file):
    run, metrics, rows = trained(cli, tmp_path, "lm", "--data", text_file, "--model", "charlm",
                                 "--epochs", 6, "--lr", "1e-2", "--seq-len", 32,
                                 "--batch-size", 16)
    assert falling(rows)
    assert metrics["test"]["perplexity"] < 3  # the text is almost deterministic
    rc, out, err = cli("generate", run, "--length", 60, "--temperature", 0.2, "--prefix", "the ")
    assert rc == 0, err
    text = out.rstrip("\n")
    assert text.startswith("the ") and len(text) == 64
    assert "cat" in text or "mat" in text  # it has learnt the words
    rc2, out2, _ = cli("generate", run, "--length", 60, "--temperature", 0.2, "--prefix", "the ")
    assert out2 == out  # seeded


@pytest.fixture(scope="module")
def conll(tmp_path_factory):
    """Sentences whose tags follow from the tokens: numbers NUM, capitalised words NAME, else O."""
    path = tmp_path_factory.mktemp("tags") / "train.conll"
    rng = random.Random(1)
    words = "the cat saw a dog near some trees and ran".split()
    names = ["Anna", "Bo", "Carl", "Dora"]
    lines = []
    for _ in range(150):
        for _ in range(rng.randint(3, 8)):
            kind = rng.random()
            if kind < 0.2:
                lines.append(f"{rng.randint(1, 99)} NUM")
            elif kind < 0.4:
                lines.append(f"{rng.choice(names)} NAME")
            else:
                lines.append(f"{rng.choice(words)} O")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_many_to_many_tags_each_token(cli, tmp_path, conll):
    run, metrics, rows = trained(cli, tmp_path, "tags", "--data", conll, "--model", "tagger",
                                 "--epochs", 5, "--lr", "1e-2", "--batch-size", 16)
    assert falling(rows)
    test = metrics["test"]
    assert test["accuracy"] > 0.9
    per_tag = {row["class"]: row for row in test["per_class"]}
    assert set(per_tag) == {"NAME", "NUM", "O"}
    assert all({"precision", "recall", "f1"} <= set(row) for row in per_tag.values())


@pytest.mark.slow
def test_encoder_decoder_learns_dates_and_translates(cli, tmp_path):
    run, metrics, rows = trained(cli, tmp_path, "dates", "--data", "dates:2000", "--epochs", 6,
                                 "--lr", "5e-3", "--batch-size", 32)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "seq2seq" and config["kind"] == "pairs"
    assert falling(rows)
    assert metrics["test"]["accuracy"] > 0.7  # per character of the ISO date
    assert 0.0 <= metrics["test"]["exact_match"] <= 1.0
    rc, out, err = cli("translate", run, "3 May 1999", "Monday, 03/05/99", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert [g["source"] for g in got] == ["3 May 1999", "Monday, 03/05/99"]
    assert all(len(g["output"]) > 0 for g in got)
    rc, out_beam, err = cli("translate", run, "3 May 1999", "--beam", 3)
    assert rc == 0 and out_beam.startswith("3 May 1999\t"), err
    rc, out, err = cli("evaluate", run)
    assert rc == 0 and "exact match (whole outputs, greedy decoding): test " in out, err


def test_generate_and_translate_refuse_a_run_of_another_kind(cli, tmp_path):
    run, _, _ = trained(cli, tmp_path, "digits", "--data", "digits", "--epochs", 1)
    rc, _, err = cli("generate", run)
    assert rc == 2 and "generate needs a character language model" in err
    rc, _, err = cli("translate", run, "3 May 1999")
    assert rc == 2 and "translate needs an encoder-decoder" in err
    assert len(err.strip().splitlines()) == 1


def test_exact_match_counts_whole_sequences():
    """Given the decoder's greedy outputs (fixed here, so no seed decides whether an untrained
    model happens to emit <eos>), a hit is an output equal to the target up to <eos>."""
    model = create_model("seq2seq", num_classes=8, in_channels=6, task="pairs")
    x = torch.tensor([[4, 5, 0], [5, 4, 4], [4, 4, 4]])
    outputs = torch.tensor([[5, 6, 3, 0, 0, 0], [7, 7, 4, 3, 4, 4], [6, 6, 6, 6, 6, 6]])
    model.greedy = lambda xb, max_len: outputs[[x.tolist().index(r) for r in xb.tolist()],
                                               :max_len]
    target = torch.tensor([[2, 5, 6, 3, -100, -100], [2, 7, 7, 4, 3, -100],
                           [2, 6, 6, 6, 6, 3]])  # the third never says <eos>: a miss
    assert exact_match(model, x, target) == pytest.approx(2 / 3)
    assert exact_match(model, x, target, batch_size=1) == pytest.approx(2 / 3)
    target[1, 2] = 6
    assert exact_match(model, x, target) == pytest.approx(1 / 3)
    assert strip_output([5, 6, 3, 7]) == [5, 6]


# ---------------------------------------------------------------- bad input, from the CLI


def one_line_error(cli, tmp_path, *args) -> str:
    rc, out, err = cli("train", *args, "--epochs", 1, *COMMON, "--out", tmp_path, "--name", "r")
    assert rc == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()
    return err


def test_bad_text_inputs_are_one_line_and_leave_nothing(cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert "empty file" in one_line_error(cli, tmp_path, "--data", empty)
    no_label = tmp_path / "no_label.csv"
    no_label.write_text("text,stars\nnice film,5\nbad film,1\n")
    err = one_line_error(cli, tmp_path, "--data", no_label)
    assert "label" in err and "stars" in err
    conll = tmp_path / "bad.conll"
    conll.write_text("The DET\ncat NOUN\nsat\n\n")
    assert "line 3" in one_line_error(cli, tmp_path, "--data", conll)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9 au lait, " * 40)
    err = one_line_error(cli, tmp_path, "--data", latin)
    assert "byte offset 3" in err and "--errors replace" in err


def test_replaced_bytes_and_cut_sequences_are_counted_in_one_warning(cli, tmp_path, reviews):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9 au lait, " * 40)
    rc, _, err = cli("train", "--data", latin, "--model", "charlm", "--errors", "replace",
                     "--epochs", 1, "--seq-len", 16, *COMMON, "--out", tmp_path)
    assert rc == 0, err
    assert [line for line in err.splitlines() if "replaced" in line] == [
        f"warning: {latin}: 40 undecodable bytes replaced with U+FFFD"]
    rc, _, err = cli("train", "--data", reviews, "--model", "lstm", "--max-len", 3, "--epochs", 1,
                     *COMMON, "--out", tmp_path)
    assert rc == 0, err
    cut = [line for line in err.splitlines() if "--max-len" in line]
    assert len(cut) == 1 and "240 of 240 texts" in cut[0]


def test_generate_and_translate_refuse_bad_numbers(cli, tmp_path, text_file):
    run, _, _ = trained(cli, tmp_path, "lm", "--data", text_file, "--model", "charlm",
                        "--epochs", 1, "--seq-len", 16)
    for args, needle in ((["--temperature", 0], "--temperature"), (["--length", 0], "--length"),
                         (["--seed", -1], "--seed -1"), (["--seed", 2**64], "--seed")):
        rc, _, err = cli("generate", run, *args)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    # a temperature near 0 is greedy decoding: the same text whatever the seed
    outs = [cli("generate", run, "--temperature", "1e-300", "--seed", seed, "--length", 20)
            for seed in (0, 1)]
    assert all(rc == 0 for rc, _, _ in outs) and outs[0][1] == outs[1][1], outs
    vocab = run / "vocab.json"
    good = json.loads(vocab.read_text())
    for damaged in ({**good, "input": good["input"][:3]}, [1, 2], {**good, "output": [1, 2]}):
        vocab.write_text(json.dumps(damaged))
        rc, _, err = cli("generate", run)
        assert rc == 2 and f"{vocab}: expected" in err and "Traceback" not in err, err


def test_a_beam_wider_than_the_vocabulary_decodes():
    from deepnotes.models import create_model

    torch.manual_seed(0)
    model = create_model("seq2seq", num_classes=8, in_channels=12)
    x = torch.tensor([[3, 4, 5]])
    ids = model.beam(x, 6, 50)  # each beam grows by all 8 tokens (topk of 50 would fail)
    assert 1 <= len(ids) <= 6 and all(0 <= i < 8 for i in ids)
    assert model.beam(x, 6, 50) == ids


def test_min_count_sends_rare_words_to_unk(cli, tmp_path, reviews):
    from collections import Counter

    with reviews.open() as f:
        counts = Counter(word for row in csv.DictReader(f) for word in row["text"].split())
    run, _, _ = trained(cli, tmp_path, "rare", "--data", reviews, "--model", "lstm",
                        "--min-count", 105, "--epochs", 1)
    vocab = json.loads((run / "vocab.json").read_text())["input"]
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert set(vocab[2:]) == {w for w, n in counts.items() if n >= 105}
    assert 0 < len(vocab[2:]) < len(counts)


@pytest.mark.slow
def test_compare_optimizers_runs_an_encoder_decoder(cli, tmp_path):
    rc, out, err = cli("compare-optimizers", "--data", "dates:200", "--epochs", 1,
                       "--optimizers", "adam,rmsprop", *COMMON, "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    rows = json.loads((tmp_path / "c" / "comparison.json").read_text())["rows"]
    assert [r["optimizer"] for r in rows] == ["adam", "rmsprop"]
    assert all(0 <= r["dev_accuracy"] <= 1 for r in rows)


def test_evaluate_data_of_another_vocabulary_is_refused(cli, tmp_path, reviews):
    """A text run's ids are its vocabulary's: other data, read into ids of its own vocabulary,
    would be scored as other tokens; the same file scores as the run's own data does."""
    run, _, _ = trained(cli, tmp_path, "rev", "--data", reviews, "--model", "lstm", "--epochs", 1)
    rc, same, err = cli("evaluate", run, "--data", reviews, "--json")
    assert rc == 0, err
    rc, own, err = cli("evaluate", run, "--json")
    assert rc == 0 and json.loads(same) == json.loads(own), err
    other = tmp_path / "other.csv"  # as many word types, other words: same size, other tokens
    words = reviews.read_text().replace("film", "movie")
    other.write_text(words)
    rc, _, err = cli("evaluate", run, "--data", other)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--data {other}: its vocabulary" in err and "vocab.json" in err
