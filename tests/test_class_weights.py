"""--class-weights: each class's weight in the cross-entropy, J = 1/m sum_i w_{y_i} L_i, against
NumPy and scikit-learn's "balanced" weights; kept by the run, refused where it cannot apply."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from deepnotes.runs.config import read_config
from deepnotes.train.tasks import Classification, balanced_weights, task_for


def test_weighted_loss_is_the_weighted_mean_of_each_examples_loss():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(7, 3, generator=g), torch.tensor([0, 2, 2, 1, 0, 2, -100])
    w = [0.5, 2.0, 3.0]
    zn, yn = z.numpy().astype(np.float64), y.numpy()
    counted = yn != -100
    log_p = zn - np.log(np.exp(zn).sum(1, keepdims=True))
    each = -log_p[np.arange(7)[counted], yn[counted]] * np.array(w)[yn[counted]]
    task = Classification(w)
    assert float(task.loss(z, y)) == pytest.approx(each.mean(), rel=1e-6)  # 1/m, m counted
    assert float(task.loss(z, y, reduction="sum")) == pytest.approx(each.sum(), rel=1e-6)
    plain = Classification()
    assert float(plain.loss(z, y)) == pytest.approx(float(Classification([1.0] * 3).loss(z, y)))
    assert task_for("table", class_weights=w).class_weights == w
    assert task_for("table").class_weights is None


def test_balanced_weights_are_scikit_learns():
    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 20)
    want = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert balanced_weights(y, 3) == pytest.approx(want.tolist())
    assert balanced_weights(torch.tensor([0, 0, 1]), 3)[2] == 1.0  # no example: weight 1


@pytest.fixture
def imbalanced(tmp_path):
    rng = random.Random(0)
    rows = ["a,b,label"]
    for i in range(300):
        label = "rare" if i % 10 == 0 else "common"
        rows.append(f"{rng.gauss(label == 'rare', 1):.3f},{rng.random():.3f},{label}")
    path = tmp_path / "imbalanced.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow  # trains through the CLI, then resumes
def test_balanced_weights_are_counted_on_the_training_split_and_kept(cli, tmp_path, imbalanced):
    out = tmp_path / "runs"
    rc, _, err = cli("train", "--data", imbalanced, "--class-weights", "balanced", "--epochs", 2,
                     "--out", out, "--name", "w", "--quiet")
    assert rc == 0, err
    config = read_config(out / "w")
    splits = json.loads((out / "w" / "config.json").read_text())["splits"]
    m, common = splits["train"], None
    common = round(m * 0.9)  # the split is stratified: 9 in 10 training rows are "common"
    want = compute_class_weight("balanced", classes=np.array([0, 1]),
                                y=np.array([0] * common + [1] * (m - common)))
    assert config.classes == ["common", "rare"]
    assert config.class_weights == pytest.approx(want.tolist())
    assert config.task.class_weights == config.class_weights
    rc, _, err = cli("train", "--resume", out / "w", "--class-weights", "balanced",
                     "--more-epochs", 1, "--quiet")  # the same option again: the same run
    assert rc == 0, err
    assert read_config(out / "w").class_weights == config.class_weights


@pytest.mark.parametrize("args, needle", [
    (["--class-weights", "1,2,3"], "--class-weights 1,2,3: 3 weights for 2 classes (common, rare)"),
    (["--class-weights", "0,1"], "'0,1': expected balanced, or a positive weight"),
    (["--class-weights", "balanced", "--targets", "a,b"], "--class-weights and --targets"),
    (["--class-weights", "balanced", "--data", "dates:100"], "--class-weights: weighs the "
                                                             "classes of a run that gives each"),
])
def test_weights_that_cannot_apply_are_one_line(cli, tmp_path, imbalanced, args, needle):
    rc, _, err = cli("train", "--data", imbalanced, "--epochs", 1, "--out", tmp_path / "runs",
                     "--quiet", *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
