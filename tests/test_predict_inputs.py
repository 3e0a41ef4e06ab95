"""``deepnotes predict`` on tables and texts, ``--out``, ``--channels`` and ``--invert``.

Predictions are checked against the trained model's own softmax, computed here from the run's
weights (``load_trained``) and its normalisation written out by hand, on inputs read by the
training readers; refusals follow the CLI's contract (one line, exit status 2, no file left).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import close, run_cli, run_cli_quietly, write_photos, write_table
from deepnotes.data import cache as image_cache
from deepnotes.data import tables, text
from deepnotes.data.bundled import load_digits
from deepnotes.data.images import load_image_folder, to_channels
from deepnotes.data.vocabulary import Vocabulary
from deepnotes.errors import DeepnotesError
from deepnotes.runs.config import read_config
from deepnotes.runs.folder import load_trained
from deepnotes.runs.predict import check_out

WORDS = {"pos": ["great", "lovely", "fine", "superb"], "neg": ["awful", "bad", "poor", "dull"]}


# ---------------------------------------------------------------- helpers


def call(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    return run_cli(capsys, *argv)


def refused(result, *needles: str) -> str:
    """One error line (warnings aside) holding ``needles``, exit status 2, no traceback."""
    rc, out, err = result
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, err)
    lines = [line for line in err.splitlines() if line.strip() and
             not line.startswith("warning:")]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def softmax_of(run: Path, x: torch.Tensor) -> torch.Tensor:
    """The run's model on raw inputs x, normalised by hand: (x * scale - mu) / sigma."""
    config = read_config(run)
    model = load_trained(run, config)
    norm = config.normalize
    if norm["mean"]:
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        mean, std = (torch.tensor(norm[k]).view(shape) for k in ("mean", "std"))
        x = ((x.double() * norm["scale"] - mean) / std).float()
    with torch.no_grad():  # token ids (no mean) go in as they are
        return torch.softmax(model(x).double(), dim=1)


def json_probabilities(predictions: list[dict], classes: list[str]) -> torch.Tensor:
    """(m, K) probabilities of a --top-k K --json answer, in the order of ``classes``."""
    out = torch.zeros(len(predictions), len(classes), dtype=torch.float64)
    for n, item in enumerate(predictions):
        for t in item["top"]:
            out[n, classes.index(t["class"])] = t["probability"]
    return out


def write_texts(path: Path, rows: int = 80, seed: int = 0) -> Path:
    """A CSV of short reviews whose sentiment word decides the label."""
    rng = np.random.default_rng(seed)
    lines = ["text,label"]
    for i in range(rows):
        label = "pos" if i % 2 else "neg"
        word = WORDS[label][int(rng.integers(4))]
        filler = " ".join(rng.choice(["the", "film", "was", "a", "plot", "long"], 1 + i % 4))
        lines.append(f'"{filler} {word}, really {word}!",{label}')
    path.write_text("\n".join(lines) + "\n")
    return path


def rgb_saved_grey(root: Path) -> Path:
    """A folder of grey PNGs, every one saved as RGB (R = G = B)."""
    write_photos(root, per_class=8, grey=True)
    for path in sorted(root.rglob("*.png")):
        Image.open(path).convert("RGB").save(path)
    return root


# ---------------------------------------------------------------- readers, no training


def test_load_features_puts_columns_in_the_training_order(tmp_path):
    train = write_table(tmp_path / "train.csv", rows=20)
    want = tables.load_csv(train).x
    header, *rows = [line.split(",") for line in train.read_text().splitlines()]
    order = [3, 2, 0, 1]  # label, c, a, b
    (tmp_path / "new.csv").write_text("\n".join(",".join(r[i] for i in order)
                                                 for r in [header, *rows]) + "\n")
    x, lines = tables.load_features(tmp_path / "new.csv", ["a", "b", "c"], 3, "label")
    assert torch.equal(x, want) and lines == list(range(2, 22))
    by_position = tables.load_features(train, None, 3)[0]  # names unknown: label dropped
    assert torch.equal(by_position, want)


@pytest.mark.parametrize("header, needle", [("a,b,label", "no column 'c'"),
                                            ("a,b,c,d", "column 'd' is not one")])
def test_load_features_refuses_other_columns(tmp_path, header, needle):
    path = tmp_path / "rows.csv"
    path.write_text(header + "\n" + ",".join("1" * len(header.split(","))) + "\n")
    with pytest.raises(DeepnotesError, match=needle):
        tables.load_features(path, ["a", "b", "c"], 3, "label")


def test_encode_texts_gives_the_training_ids(tmp_path):
    data = text.load_text_csv(write_texts(tmp_path / "reviews.csv"))
    unit, numbers, texts = text.read_texts(tmp_path / "reviews.csv")
    assert unit == "row" and numbers == list(range(1, 81))
    x = text.encode_texts("reviews", texts, Vocabulary(data.vocab), data.x.shape[1])
    assert torch.equal(x, data.x)
    unknown = text.encode_texts("new", ["Zebra quagga!", ""], Vocabulary(data.vocab), 4)
    assert unknown.tolist() == [[1, 1, data.vocab.index("!"), 0], [1, 0, 0, 0]]


def test_rgb_to_grey_is_pillows():
    x = torch.randint(0, 256, (3, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator())
    grey = to_channels(x, 1)
    for image, want in zip(x, grey):
        pil = Image.fromarray(image.permute(1, 2, 0).numpy()).convert("L")
        assert np.array_equal(np.asarray(pil), want[0].numpy())
    assert torch.equal(to_channels(grey, 3), grey.expand(-1, 3, -1, -1))


def test_the_cache_key_holds_the_channels(tmp_path):
    root = rgb_saved_grey(tmp_path / "photos")
    files = sorted(root.rglob("*.png"))
    keys = {c: image_cache.cache_key(root, files, 8, c) for c in (None, 1, 3)}
    assert len(set(keys.values())) == 3
    h = hashlib.sha256(f"{image_cache.FORMAT}|8".encode())  # the key before --channels
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    assert keys[None] == h.hexdigest()[:32]  # caches made before stay valid


def test_channels_convert_a_folder_in_memory_and_in_the_cache(tmp_path):
    grey = write_photos(tmp_path / "grey", per_class=8, grey=True)
    root = rgb_saved_grey(tmp_path / "photos")
    want = load_image_folder(grey, 8, cache="off").x  # (24, 1, 8, 8)
    assert load_image_folder(root, 8, cache="off").x.shape[1] == 3  # the folder's own: RGB
    for cache in ("off", "on"):
        one = load_image_folder(root, 8, cache=cache, cache_dir=tmp_path / "c", channels=1)
        three = load_image_folder(root, 8, cache=cache, cache_dir=tmp_path / "c", channels=3)
        assert torch.equal(one.x, want)  # R = G = B: grey exactly
        assert torch.equal(three.x, want.expand(-1, 3, -1, -1))
    assert len(list((tmp_path / "c" / "images").iterdir())) == 2  # one cache a channel count


def test_out_must_be_a_new_csv_beside_the_inputs(tmp_path):
    rows = write_table(tmp_path / "rows.csv", rows=5)
    for out, needle in [(tmp_path / "p.txt", "ending in .csv"), (rows, "an input file"),
                        (tmp_path / "no" / "p.csv", "does not exist")]:
        with pytest.raises(DeepnotesError, match=needle):
            check_out(out, [str(rows)])


# ---------------------------------------------------------------- runs trained through the CLI


def train(out: Path, name: str, *args) -> Path:
    rc, _, err = run_cli_quietly("train", *args, "--out", out, "--name", name, "--quiet")
    assert rc == 0, err
    return out / name


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("table")
    data = write_table(work / "train.csv", rows=120)
    return train(work / "runs", "tab", "--data", data, "--epochs", 2)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("text")
    data = write_texts(work / "reviews.csv")
    return train(work / "runs", "txt", "--data", data, "--epochs", 3)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("digits"), "dg", "--data", "digits", "--epochs", 6)


@pytest.mark.slow
def test_table_predictions_are_the_models_softmax(capsys, tmp_path, table_run):
    config = read_config(table_run)
    data = Path(config.data)
    header, *rows = data.read_text().splitlines()
    (tmp_path / "new.csv").write_text("c,a,b\n" + "\n".join(  # reordered, no label column
        ",".join(r.split(",")[i] for i in (2, 0, 1)) for r in rows[:7]) + "\n")
    out = tmp_path / "predictions.csv"
    rc, stdout, err = call(capsys, "predict", table_run, tmp_path / "new.csv", "--top-k", 2,
                           "--json", "--out", out)
    assert rc == 0, err
    predictions = json.loads(stdout)
    assert [(p["file"], p["row"]) for p in predictions] == \
        [(str(tmp_path / "new.csv"), n) for n in range(1, 8)]
    x = torch.tensor(np.loadtxt(data, delimiter=",", skiprows=1, usecols=(0, 1, 2),
                                max_rows=7), dtype=torch.float32)  # a, b, c as trained
    want = softmax_of(table_run, x)
    close(json_probabilities(predictions, config.classes), want, rtol=1e-5, atol=1e-6)
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["input"] for r in written] == [f"row {n}" for n in range(1, 8)]
    assert [r["class"] for r in written] == [config.classes[i] for i in want.argmax(1)]
    close(np.array([float(r["probability"]) for r in written]), want.max(1).values,
          rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_table_run_keeps_its_column_names_for_predict(capsys, tmp_path, table_run):
    """config.json has the training CSV's feature and label columns, so new rows are matched by
    name even when the training file is gone."""
    run = Path(shutil.copytree(table_run, tmp_path / "tab"))
    config = json.loads((run / "config.json").read_text())
    data = Path(config["data"])
    header, *rows = data.read_text().splitlines()
    assert config["features"] == ["a", "b", "c"] and config["label_name"] == header.split(",")[-1]
    config["data"] = str(tmp_path / "gone.csv")  # as if the training file had moved
    (run / "config.json").write_text(json.dumps(config))
    (tmp_path / "new.csv").write_text("label,c,a,b\n" + "\n".join(  # reordered, label first
        "," + ",".join(r.split(",")[i] for i in (2, 0, 1)) for r in rows[:5]) + "\n")
    rc, stdout, err = call(capsys, "predict", run, tmp_path / "new.csv", "--json", "--top-k", 2)
    assert rc == 0, err
    x = torch.tensor(np.loadtxt(data, delimiter=",", skiprows=1, usecols=(0, 1, 2),
                                max_rows=5), dtype=torch.float32)
    close(json_probabilities(json.loads(stdout), config["classes"]), softmax_of(run, x),
          rtol=1e-5, atol=1e-6)
    (tmp_path / "bad.csv").write_text("a,b,d\n1,2,3\n")
    refused(call(capsys, "predict", run, tmp_path / "bad.csv"), "no column 'c'")


@pytest.mark.slow
def test_table_rows_print_one_line_each(capsys, table_run):
    data = read_config(table_run).data
    rc, stdout, err = call(capsys, "predict", table_run, data, "--top-k", 1)
    assert rc == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 120 and lines[0].startswith("row 1: ") and lines[-1].startswith("row 120")


@pytest.mark.slow
def test_table_inputs_of_another_kind_are_refused(capsys, tmp_path, table_run):
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b,z\n1,2,3\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,c\n")
    out = tmp_path / "predictions.csv"
    for bad, needles in [(wrong, ("no column 'c'", "a, b, c")), (empty, ("empty file",)),
                         (header_only, ("no data rows",)), (image, (str(table_run), "table"))]:
        refused(call(capsys, "predict", table_run, bad, "--out", out), str(bad), *needles)
        assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    refused(call(capsys, "predict", table_run, wrong, "--invert"), "--invert", "table")


@pytest.mark.slow
def test_text_predictions_are_the_models_softmax(capsys, tmp_path, text_run):
    config = read_config(text_run)
    data = text.load_text_csv(config.data)  # the ids training read
    with open(config.data, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    lines = tmp_path / "reviews.txt"
    lines.write_text("\n\n".join(texts[:10]) + "\n")  # blank lines are skipped
    want = softmax_of(text_run, data.x)
    for path, unit, numbers, rows in [(config.data, "row", range(1, 81), slice(None)),
                                      (lines, "line", range(1, 20, 2), slice(0, 10))]:
        rc, stdout, err = call(capsys, "predict", text_run, path, "--top-k", 2, "--json")
        assert rc == 0, err
        predictions = json.loads(stdout)
        assert [p[unit] for p in predictions] == list(numbers)
        close(json_probabilities(predictions, config.classes), want[rows], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_text_inputs_of_another_kind_are_refused(capsys, tmp_path, text_run):
    table = write_table(tmp_path / "table.csv", rows=3)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    out = tmp_path / "predictions.csv"
    for bad, needle in [(table, "no column 'text'"), (empty, "empty file"), (image, "image")]:
        refused(call(capsys, "predict", text_run, bad, "--out", out), str(bad), needle)
        assert not out.exists()


@pytest.mark.slow
def test_an_inverted_digit_is_warned_about_and_invert_puts_it_right(capsys, tmp_path,
                                                                     digits_run):
    digits = load_digits()
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(digits.x[i, 0].numpy()).save(paths[-1])
    rc, stdout, err = call(capsys, "predict", digits_run, *paths, "--top-k", 1, "--json")
    assert rc == 0 and "inverted" not in err, err
    right = [i for i, p in enumerate(json.loads(stdout))
             if p["top"][0]["class"] == str(int(digits.y[i])) and p["top"][0]["probability"] > .9]
    i = right[0]  # a digit the run gets right, white on black as it was trained
    inverted = tmp_path / "drawn.png"
    Image.fromarray(255 - digits.x[i, 0].numpy()).save(inverted)  # black on white
    rc, stdout, err = call(capsys, "predict", digits_run, inverted)
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(inverted) in warnings[0], err
    assert "looks inverted against the run's training images" in warnings[0]
    assert "--invert to flip it" in warnings[0]
    rc, stdout, err = call(capsys, "predict", digits_run, inverted, "--invert", "--json")
    assert rc == 0 and "warning" not in err, err
    assert json.loads(stdout)[0]["top"][0]["class"] == str(int(digits.y[i]))


@pytest.mark.slow
def test_channels_one_trains_and_predicts_on_rgb_saved_grey_images(capsys, tmp_path,
                                                                   digits_run):
    photos = rgb_saved_grey(tmp_path / "photos")
    run = train(tmp_path / "runs", "grey", "--data", photos, "--epochs", 1, "--channels", 1,
                "--data-cache", "on", "--cache-dir", tmp_path / "cache")
    config = read_config(run)
    assert config.channels == 1 and config.input_shape[0] == 1
    image = photos / "class1" / "0.png"
    rc, stdout, err = call(capsys, "predict", run, image, "--top-k", 1)
    assert rc == 0 and stdout.startswith(f"{image}: class"), err
    rc, stdout, err = call(capsys, "evaluate", run)  # the run's --channels by default
    assert rc == 0, err
    refused(call(capsys, "evaluate", run, "--channels", 3), "--channels 3", "1-channel")
    refused(call(capsys, "predict", run, image, "--channels", 3), "--channels 3", "1-channel")
    out = tmp_path / "runs"
    refused(call(capsys, "finetune", digits_run, "--data", photos, "--epochs", 1, "--out", out,
                 "--name", "ft", "--quiet"), "3 channels")
    rc, _, err = call(capsys, "finetune", digits_run, "--data", photos, "--epochs", 1,
                      "--channels", 1, "--out", out, "--name", "ft", "--quiet")
    assert rc == 0, err
    assert read_config(out / "ft").channels == 1
