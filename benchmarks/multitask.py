"""Multi-task learning on real data: Fashion-MNIST recast as overlapping binary tasks.

The ten classes become four yes/no questions about a garment, several of which can be "yes" at
once: footwear (sandal, sneaker, ankle boot), upper body (T-shirt, pullover, coat, shirt), long
sleeves (pullover, coat, shirt), and covers the legs (trouser, dress). A share of the training
labels is hidden at random (the course's "?"), so each image is trained only on the tasks it has
labels for. One LeNet-5 with four sigmoid outputs (``deepnotes.multitask``) is compared with four
LeNet-5s, one per task, each trained on the same images and the same present labels, with the
same epochs (a two-class softmax that ignores the missing labels): per-task test F1 and total
training time, in this process.

    python benchmarks/multitask.py                       # 10,000 training images, 3 epochs
    python benchmarks/multitask.py --train 60000 --hide 0.5
"""

from __future__ import annotations

import argparse
import time

import torch

TASKS = {"footwear": (5, 7, 9), "upper_body": (0, 2, 4, 6), "long_sleeves": (2, 4, 6),
         "covers_legs": (1, 3)}


def task_labels(y: torch.Tensor) -> torch.Tensor:
    """(m,) class ids -> (m, T) 0/1 answers to the TASKS questions."""
    return torch.stack([torch.isin(y, torch.tensor(c)) for c in TASKS.values()], 1).long()


def train(x, y, splits, normalizer, args, seed: int):
    """A LeNet-5 with T sigmoid outputs for y (m, T), or a two-class softmax for one task's
    y (m,) (missing labels ignored by the cross-entropy); returns (model, seconds)."""
    from deepnotes.data import Batches
    from deepnotes.models import create_model
    from deepnotes.optim import create_optimizer
    from deepnotes.train import Trainer

    torch.manual_seed(seed)
    model = create_model("lenet5", num_classes=y.shape[1] if y.dim() == 2 else 2,
                         in_channels=1)
    trainer = Trainer(model, create_optimizer("adam", model.parameters()), epochs=args.epochs,
                      progress=False, task=task_of(y))
    batches = Batches(x, y, splits[0], 64, normalizer, shuffle=True, drop_last=True, seed=seed)
    start = time.perf_counter()
    trainer.fit(batches)
    return model, time.perf_counter() - start


def task_of(y: torch.Tensor):
    """Several binary tasks for y (m, T), a softmax over the classes for y (m,)."""
    from deepnotes.train.tasks import task_for

    return task_for("image", multitask=y.dim() == 2)


def test_predictions(model, x, y, test, normalizer) -> torch.Tensor:
    from deepnotes.data import Batches
    from deepnotes.train import evaluate

    return evaluate(model, Batches(x, y, test, 1024, normalizer), task_of(y))["y_pred"]


def measure(args) -> dict:
    """One net with T outputs against T nets, on the same images and present labels: the per-task
    reports (``deepnotes.multitask.report``) and training seconds of both, and the sizes."""
    from deepnotes import multitask
    from deepnotes.data import Normalizer, load_dataset

    data = load_dataset("fashion-mnist", image_size=32)
    test = data.test_indices
    pool = torch.ones(len(data.y), dtype=torch.bool)
    pool[test] = False
    g = torch.Generator().manual_seed(args.seed)
    pool_idx = pool.nonzero().flatten()
    train_idx = pool_idx[torch.randperm(len(pool_idx), generator=g)[: args.train]].sort().values
    y_true = task_labels(data.y)
    y_train = y_true.clone()
    y_train[train_idx] = multitask.hide_labels(y_true[train_idx], args.hide, args.seed)
    normalizer = Normalizer.fit(data.x[train_idx])
    names = list(TASKS)

    model, joint_s = train(data.x, y_train, (train_idx,), normalizer, args, args.seed)
    joint = multitask.report(y_true[test], test_predictions(model, data.x, y_true, test,
                                                            normalizer), names)
    single_s, single_pred = 0.0, []
    for j in range(len(names)):
        model, s = train(data.x, y_train[:, j], (train_idx,), normalizer, args, args.seed)
        single_s += s
        single_pred.append(test_predictions(model, data.x, y_true[:, j], test, normalizer))
    single = multitask.report(y_true[test], torch.stack(single_pred, 1), names)
    return {"n_train": len(train_idx), "n_test": len(test), "joint": joint, "single": single,
            "joint_s": joint_s, "single_s": single_s}


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows (CPU only; ``device`` is not used; no goal stated): macro F1 and training
    seconds, one net against four. Quick mode: 5,000 training images, 2 epochs."""
    args = make_parser().parse_args([])
    if quick:
        args.train, args.epochs = 5_000, 2
    r = measure(args)
    size = f"{r['n_train']:,} images, {args.hide:.0%} labels hidden, {args.epochs} epochs"
    peer = "4 LeNet-5s, one per task"
    return [{"task": f"multi-task Fashion-MNIST, test macro F1 of one LeNet-5 ({size})",
             "peer": peer, "unit": "", "ours": r["joint"]["f1"], "peer_figure": r["single"]["f1"],
             "compare": "ours-peer", "goal": None},
            {"task": f"multi-task Fashion-MNIST, training seconds ({size})", "peer": peer,
             "unit": "s", "ours": r["joint_s"], "peer_figure": r["single_s"],
             "compare": "peer/ours", "goal": None}]


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=10_000, help="training images (10000)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hide", type=float, default=0.3, help="share of training labels hidden")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main() -> None:
    args = make_parser().parse_args()
    torch.set_num_threads(torch.get_num_threads())
    r = measure(args)
    print(f"Fashion-MNIST: {r['n_train']} training images, {args.hide:.0%} of their labels "
          f"hidden, {args.epochs} epochs, {r['n_test']} test images; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    joint, single = r["joint"], r["single"]
    print(f"\n{'task':14s} {'positives':>9s} {'F1 one net':>11s} {'F1 4 nets':>10s}")
    for a, b in zip(joint["per_class"], single["per_class"]):
        print(f"{a['class']:14s} {a['positives']:9d} {a['f1']:11.4f} {b['f1']:10.4f}")
    print(f"{'macro F1':14s} {'':9s} {joint['f1']:11.4f} {single['f1']:10.4f}")
    print(f"{'train seconds':14s} {'':9s} {r['joint_s']:11.1f} {r['single_s']:10.1f}")


if __name__ == "__main__":
    main()
