"""Multi-task learning: the masked loss, per-task metrics, multi-label CSVs, ``train --targets``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from deepnotes import multitask
from deepnotes.data import Normalizer, load_dataset
from deepnotes.errors import DeepnotesError
from deepnotes.multitask import MISSING
from deepnotes.runs.config import read_config
from deepnotes.runs.folder import load_trained
from deepnotes.runs.session import prepare


def labels_with_gaps(n=12, t=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n, t), generator=g)
    return multitask.hide_labels(y, 0.3, seed), torch.randn(n, t, generator=g, dtype=torch.float64)


def test_masked_loss_is_the_mean_binary_cross_entropy_over_present_labels():
    y, z = labels_with_gaps()
    present = (y != MISSING).numpy()
    assert 0 < present.sum() < present.size
    p = 1 / (1 + np.exp(-z.numpy()))
    yn = y.numpy().astype(float)
    expected = -(yn * np.log(p) + (1 - yn) * np.log(1 - p))[present].mean()
    assert multitask.masked_bce(z, y).item() == pytest.approx(expected, rel=1e-12)
    oracle = torch.nn.BCEWithLogitsLoss()(z[y != MISSING], y[y != MISSING].double())
    assert multitask.masked_bce(z, y).item() == pytest.approx(oracle.item(), rel=1e-12)
    total = multitask.masked_bce(z, y, reduction="sum").item()
    assert total == pytest.approx(expected * present.sum(), rel=1e-12)


def test_the_courses_loss_divides_by_the_examples():
    """per="examples": J = 1/m sum_i sum_{j present} L, the course's form; |P| / m times the
    default, with the same gradient direction."""
    y, z = labels_with_gaps(seed=2)
    present = (y != MISSING).numpy()
    p = 1 / (1 + np.exp(-z.numpy()))
    yn = y.numpy().astype(float)
    per_label = -(yn * np.log(p) + (1 - yn) * np.log(1 - p))
    expected = np.where(present, per_label, 0.0).sum(axis=1).mean()  # 1/m sum_i sum_j
    task = multitask.MultiTask("examples")
    assert task.loss(z, y).item() == pytest.approx(expected, rel=1e-12)
    default = multitask.MultiTask().loss(z, y).item()
    assert default * present.sum() / len(y) == pytest.approx(expected, rel=1e-12)
    assert task.count(y) == len(y) and multitask.MultiTask().count(y) == present.sum()
    with pytest.raises(DeepnotesError, match="--multitask-loss labels: expected one of present, "
                                             "examples"):
        multitask.MultiTask("labels")


def test_a_missing_label_changes_neither_loss_nor_gradient():
    y, z = labels_with_gaps(seed=1)
    missing = y == MISSING
    i, j = missing.nonzero()[0].tolist()
    grads, losses = [], []
    for z_missing in (0.0, 25.0, -7.0):  # whatever the network says where no label is
        zz = z.clone()
        zz[i, j] = z_missing
        zz.requires_grad_()
        loss = multitask.masked_bce(zz, y)
        loss.backward()
        losses.append(loss.item())
        grads.append(zz.grad)
    assert losses[0] == losses[1] == losses[2]
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    assert torch.all(grads[0][missing] == 0) and torch.all(grads[0][~missing] != 0)
    # and a label that is present does count: flipping it changes the loss
    k, m = (~missing).nonzero()[0].tolist()
    flipped = y.clone()
    flipped[k, m] = 1 - flipped[k, m]
    assert multitask.masked_bce(z, flipped).item() != pytest.approx(losses[0])


def test_no_label_present_gives_zero_loss_not_nan():
    y = torch.full((2, 3), MISSING)
    z = torch.randn(2, 3, requires_grad=True)
    loss = multitask.masked_bce(z, y)
    loss.backward()
    assert loss.item() == 0 and torch.all(z.grad == 0)


def test_report_matches_scikit_learn_per_task_on_present_labels():
    rng = np.random.default_rng(0)
    yt = rng.integers(0, 2, (200, 4))
    yt[rng.random((200, 4)) < 0.25] = MISSING
    yp = rng.integers(0, 2, (200, 4))
    r = multitask.report(yt, yp, ["a", "b", "c", "d"])
    for j, row in enumerate(r["per_class"]):
        present = yt[:, j] != MISSING
        p, rec, f, _ = precision_recall_fscore_support(yt[present, j], yp[present, j],
                                                       average="binary", zero_division=0)
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p, rec, f))
        assert row["support"] == present.sum() and row["positives"] == yt[present, j].sum()
        tn, fp, fn, tp = np.bincount(2 * yt[present, j] + yp[present, j], minlength=4)
        assert r["confusion_matrix"][j] == [[tn, fp], [fn, tp]]
    present = yt != MISSING
    assert r["accuracy"] == pytest.approx((yt[present] == yp[present]).mean())
    assert r["f1"] == pytest.approx(np.mean([row["f1"] for row in r["per_class"]]))
    micro = precision_recall_fscore_support(yt[present], yp[present], average="binary")[2]
    assert r["f1_micro"] == pytest.approx(micro)


def test_hide_labels_hides_about_the_fraction_asked():
    y = torch.randint(0, 2, (4000, 5), generator=torch.Generator().manual_seed(0))
    hidden = multitask.hide_labels(y, 0.3, seed=2)
    share = (hidden == MISSING).float().mean().item()
    assert share == pytest.approx(0.3, abs=0.02)
    kept = hidden != MISSING
    assert torch.equal(hidden[kept], y[kept])


# ---------------------------------------------------------------- multi-label CSVs
def write_csv(path, n=300, seed=0, missing=0.3):
    """Features f1..f4; task a = f1 > 0, b = f2 + f3 > 0, c = f4 > 0.5; labels hidden at random
    (empty cells, and "?" in column c as in the notes' table)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    labels = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] > 0.5], 1).astype(int)
    lines = ["f1,f2,f3,f4,a,b,c"]
    for row, lab in zip(x, labels):
        cells = [str(v) for v in lab]
        for j in range(3):
            if rng.random() < missing:
                cells[j] = "?" if j == 2 else ""
        lines.append(",".join([f"{v:.5f}" for v in row] + cells))
    path.write_text("\n".join(lines) + "\n")
    return x, labels


def test_csv_with_several_targets_loads_labels_and_gaps(tmp_path):
    path = tmp_path / "tasks.csv"
    x, labels = write_csv(path, n=50)
    ds = load_dataset(str(path), targets=["a", "b", "c"])
    assert ds.kind == "table" and ds.classes == ["a", "b", "c"]
    assert ds.x.shape == (50, 4) and ds.y.shape == (50, 3) and ds.y.dtype == torch.int64
    np.testing.assert_allclose(ds.x.numpy(), x, atol=1e-5)
    present = ds.y != MISSING
    assert 0 < (~present).sum() < 50 * 3
    assert torch.equal(ds.y[present], torch.from_numpy(labels)[present])
    with pytest.raises(DeepnotesError, match="column 'b': '' is not a number"):
        load_dataset(str(path), targets=["c", "a"])  # b becomes a feature, with gaps
    full = tmp_path / "full.csv"
    write_csv(full, n=50, missing=0)
    reordered = load_dataset(str(full), targets=["c", "a"])
    assert reordered.x.shape == (50, 5) and reordered.classes == ["c", "a"]
    assert torch.equal(reordered.y, torch.from_numpy(labels[:, [2, 0]]))


@pytest.mark.parametrize("row, targets, needle", [
    ("0.1,0.2,0.3,0.4,1,2,0", "a,b,c", "line 3, column 'b': '2'; expected 0, 1 or an empty"),
    ("0.1,0.2,0.3,0.4,yes,1,0", "a,b,c", "column 'a': 'yes'"),
    ("0.1,0.2,0.3,0.4,1,1,0", "a,z", "'z' is not a column"),
    ("0.1,0.2,0.3,0.4,1,1,0", "a,a", "named twice"),
    ("0.1,0.2,0.3,0.4,1,1,0", "a", "one task; for a single label column use --label-column a"),
])
def test_bad_multi_label_csv_is_one_line(tmp_path, cli, row, targets, needle):
    path = tmp_path / "bad.csv"
    path.write_text("f1,f2,f3,f4,a,b,c\n0.5,0.1,0.2,0.3,0,1,\n" + row + "\n")
    rc, out, err = cli("train", "--data", path, "--targets", targets, "--epochs", 1, "--quiet",
                       "--out", tmp_path / "runs")
    assert rc == 2 and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_targets_need_a_csv_table(tmp_path):
    with pytest.raises(DeepnotesError, match="--targets needs a CSV table"):
        load_dataset("digits", targets=["a", "b"])
    text = tmp_path / "t.csv"
    text.write_text("text,label\nhello there,a\n")
    with pytest.raises(DeepnotesError, match="--targets needs a CSV table"):
        load_dataset(str(text), targets=["a", "b"])
    with pytest.raises(DeepnotesError, match="give one"):
        load_dataset(str(text), targets=["a", "b"], label_column="label")


# ---------------------------------------------------------------- deepnotes train --targets
@pytest.mark.slow
def test_train_with_targets_learns_every_task_and_reports_each(tmp_path, cli):
    path = tmp_path / "tasks.csv"
    write_csv(path, n=600)
    rc, out, err = cli("train", "--data", path, "--targets", "a,b,c", "--epochs", 15, "--quiet",
                       "--out", tmp_path, "--name", "mt")
    assert rc == 0, err
    assert "macro averages over the tasks" in out
    m = json.loads((tmp_path / "mt" / "metrics.json").read_text())
    tasks = [row["class"] for row in m["test"]["per_class"]]
    assert tasks == ["a", "b", "c"]
    for row in m["test"]["per_class"]:
        assert row["f1"] > 0.75, row  # each rule is learnable from the features
    assert len(m["test"]["confusion_matrix"]) == 3
    assert (tmp_path / "mt" / "confusion_matrix.png").stat().st_size > 0
    config = json.loads((tmp_path / "mt" / "config.json").read_text())
    assert config["targets"] == ["a", "b", "c"]
    rc, out, err = cli("evaluate", tmp_path / "mt", "--split", "dev")
    assert rc == 0, err
    assert out.count("\n") > 5 and "c " in out


@pytest.mark.slow
def test_the_courses_multitask_loss_is_an_option_kept_with_the_run(tmp_path, cli):
    path = tmp_path / "tasks.csv"
    write_csv(path, n=300)
    rc, _, err = cli("train", "--data", path, "--targets", "a,b,c", "--multitask-loss",
                     "examples", "--epochs", 3, "--quiet", "--out", tmp_path, "--name", "m")
    assert rc == 0, err
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["multitask_loss"] == "examples"
    run = read_config(tmp_path / "m")
    session = prepare(run, progress=False, fresh=False)
    model = load_trained(tmp_path / "m", run).eval()
    x, y = session.dataset.x[session.splits.dev], session.dataset.y[session.splits.dev]
    with torch.no_grad():
        z = model(Normalizer.from_dict(run.normalize)(x))
    per_label = torch.nn.functional.binary_cross_entropy_with_logits(
        z.double(), y.clamp(min=0).double(), reduction="none")
    expected = torch.where(y != MISSING, per_label, 0).sum() / len(y)  # 1/m over dev
    kept = json.loads((tmp_path / "m" / "metrics.json").read_text())["dev"]["loss"]
    assert kept == pytest.approx(expected.item(), rel=1e-4)
    rc, _, err = cli("train", "--data", "breast-cancer", "--multitask-loss", "examples",
                     "--out", tmp_path)
    assert rc == 2 and "--multitask-loss examples: applies to a multi-task run" in err
