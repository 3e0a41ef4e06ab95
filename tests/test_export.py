"""deepnotes export: an ONNX graph of the kept model, uint8 images in and probabilities out, that
ONNX Runtime runs as PyTorch does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deepnotes.data import Normalizer
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model
from deepnotes.runs.config import RunConfig
from deepnotes.runs.export import export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# (model, kind, input shape, classes): every image model family of the zoo and the sequence
# classifier (VGG and the deeper ResNets export the same way; left out for their size)
MODELS = [("lenet5", "image", [1, 32, 32], 10), ("lenet5_relu", "image", [3, 32, 32], 4),
          ("fastnet", "image", [3, 32, 32], 10), ("resnet18", "image", [3, 32, 32], 5),
          ("googlenet", "image", [3, 64, 64], 3), ("alexnet", "image", [3, 67, 67], 3),
          ("mlp", "table", [7], 2), ("lstm", "image", [1, 28, 28], 3)]


def config_of(name: str, kind: str, shape: list[int], k: int) -> RunConfig:
    channels = shape[0] if kind == "image" else (30 if kind == "tokens" else shape[0])
    normalize = (Normalizer([0.4] * shape[0], [0.2] * shape[0], 1 / 255) if kind == "image"
                 else Normalizer([0.1] * shape[0], [2.0] * shape[0]) if kind == "table"
                 else Normalizer([], [], 1.0))
    return RunConfig(model=name, kind=kind, input_shape=shape, in_channels=channels,
                     classes=[f"c{i}" for i in range(k)], normalize=normalize.to_dict())


@pytest.mark.slow  # each export takes seconds
@pytest.mark.parametrize("name, kind, shape, k", MODELS, ids=[m[0] for m in MODELS])
def test_onnx_runtime_gives_the_models_probabilities(tmp_path, name, kind, shape, k):
    torch.manual_seed(0)
    config = config_of(name, kind, shape, k)
    extra = {"task": kind} if name == "lstm" else {}  # the sequence classifier, 28 steps
    model = create_model(name, num_classes=k, in_channels=config.in_channels, **extra).eval()
    out = export_onnx(model, config, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    g = torch.Generator().manual_seed(7)
    if kind == "image":
        x = torch.randint(0, 256, (3, *shape), dtype=torch.uint8, generator=g)
        expected_type = "tensor(uint8)"
    else:
        x = torch.randn(3, *shape, generator=g)
        expected_type = "tensor(float)"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == expected_type
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():  # the oracle: the network on normalised input, then softmax
        want = torch.softmax(model(Normalizer.from_dict(config.normalize)(x)), 1).numpy()
    assert got.shape == (3, k)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow  # exports take seconds
def test_a_multitask_run_exports_a_sigmoid_for_each_task(tmp_path):
    torch.manual_seed(0)
    tasks = ["cat", "dog", "car", "sky"]
    config = config_of("mlp", "table", [7], 4)
    config.classes = config.targets = tasks
    model = create_model("mlp", num_classes=4, in_channels=7).eval()
    out = export_onnx(model, config, tmp_path / "m.onnx")
    x = torch.randn(6, 7, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():  # the oracle: each task's yes probability on its own
        logits = model(Normalizer.from_dict(config.normalize)(x))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits.numpy())), atol=1e-5)
    assert np.abs(got.sum(1) - 1).max() > 0.05  # not a softmax across the tasks


@pytest.mark.slow  # trains and exports through the CLI
def test_an_exported_run_predicts_what_deepnotes_predict_says(cli, tmp_path):
    rc, _, err = cli("train", "--data", "digits", "--epochs", 2, "--quiet", "--out", tmp_path,
                     "--name", "d")
    assert rc == 0, err
    rc, out, err = cli("export", tmp_path / "d", "--out", tmp_path / "digits.onnx")
    assert rc == 0, err
    assert "wrote" in out and (tmp_path / "digits.onnx").is_file()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(paths[-1])
    rc, out, err = cli("predict", tmp_path / "d", *paths, "--top-k", 10, "--json")
    assert rc == 0, err
    predicted = json.loads(out)
    from deepnotes.data.images import load_image

    x = torch.stack([load_image(p, 32, 1) for p in paths]).numpy()
    session = ort.InferenceSession(str(tmp_path / "digits.onnx"),
                                   providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": x})[0]
    classes = json.loads((tmp_path / "d" / "config.json").read_text())["classes"]
    for row, item in zip(probs, predicted):
        top = item["top"]
        assert classes[int(row.argmax())] == top[0]["class"]
        for entry in top:
            assert row[classes.index(entry["class"])] == pytest.approx(entry["probability"],
                                                                       abs=1e-4)


# the text classifiers: each recurrent layer and its notes' variants, deep and bidirectional
TEXT = [("rnn", {}), ("gru", {"rnn_cell": "full"}), ("gru", {"rnn_cell": "simplified"}),
        ("gru", {"rnn_cell": "reset-after"}), ("lstm", {"rnn_cell": "slide"}),
        ("lstm", {"num_layers": 2, "bidirectional": True})]


@pytest.mark.slow  # each export takes seconds
@pytest.mark.parametrize("name, options", TEXT, ids=[f"{n}-{o}" for n, o in TEXT])
def test_a_text_classifier_exports_with_padding_masked(tmp_path, name, options):
    torch.manual_seed(0)
    config = RunConfig(model=name, kind="tokens", input_shape=[9], in_channels=30,
                       classes=["a", "b", "c"], normalize=Normalizer([], [], 1.0).to_dict())
    model = create_model(name, num_classes=3, in_channels=30, task="tokens", **options).eval()
    out = export_onnx(model, config, tmp_path / "m.onnx")
    g = torch.Generator().manual_seed(3)
    lengths = [9, 1, 4, 7]
    x = torch.randint(1, 30, (4, 9), generator=g)
    for row, n in zip(x, lengths):
        row[n:] = 0  # padded with 0 to the run's T_x
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(int64)"
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():  # the oracle: each sequence alone, unpadded, on the layer's
        # default path (fused or the compiled cell loop), then softmax
        want = torch.cat([torch.softmax(model(row[None, :n]), 1) for row, n in zip(x, lengths)])
    assert (got.argmax(1) == want.argmax(1).numpy()).all()
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    assert all(m.implementation == "auto" for m in model.modules() if hasattr(m, "cells"))


@pytest.mark.slow  # trains and exports through the CLI
def test_an_exported_text_run_classifies_as_the_run_does(cli, tmp_path):
    path = tmp_path / "reviews.csv"
    rows = [("good film with music", "pos"), ("bad film", "neg"), ("a good story", "pos"),
            ("bad actors and bad music in it", "neg")] * 20
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    rc, _, err = cli("train", "--data", path, "--model", "gru", "--rnn-cell", "simplified",
                     "--epochs", 2, "--quiet", "--out", tmp_path, "--name", "t")
    assert rc == 0, err
    rc, out, err = cli("export", tmp_path / "t")
    assert rc == 0, err
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    vocab = json.loads((tmp_path / "t" / "vocab.json").read_text())["input"]
    assert "(N, 7)" in out and config["input_shape"] == [7]  # the longest text's T_x
    x = np.zeros((len(rows), 7), dtype=np.int64)
    for i, (text, _) in enumerate(rows):
        ids = [vocab.index(w) for w in text.split()]
        x[i, :len(ids)] = ids
    session = ort.InferenceSession(str(tmp_path / "t" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": x})[0]
    from deepnotes.runs.config import read_config
    from deepnotes.runs.folder import load_trained

    model = load_trained(tmp_path / "t", read_config(tmp_path / "t")).eval()
    with torch.inference_mode():
        want = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-4)


def test_what_cannot_be_exported_is_one_line(cli, tmp_path, monkeypatch):
    config = RunConfig(model="charlm", kind="lm", classes=["a", "b"], input_shape=[8],
                       in_channels=4)
    with pytest.raises(DeepnotesError, match="a lm run cannot be exported yet"):
        export_onnx(torch.nn.Linear(2, 2), config, tmp_path / "x.onnx")
    import builtins

    real_import = builtins.__import__

    def without_onnx(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnx)
    image = config_of("lenet5", "image", [1, 32, 32], 10)
    with pytest.raises(DeepnotesError, match=r"needs onnx, onnxscript and onnxruntime .*"
                                             r"pip install 'deepnotes\[onnx\]'"):
        export_onnx(create_model("lenet5", num_classes=10, in_channels=1), image,
                    tmp_path / "y.onnx")
    assert not any(tmp_path.iterdir())
    rc, _, err = cli("export", tmp_path / "nothing")
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
