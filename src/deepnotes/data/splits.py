"""Train / dev / test splits, seeded and stratified.

The notes: dev and test must come from the same distribution, the one you want to do well on.
A stratified split keeps each class's share equal in every split; :func:`label_shift` measures how
far two splits' label distributions are apart, so a mismatch is reported rather than trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from deepnotes.errors import DeepnotesError, check_range


def shuffled_prefix(indices: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """The first ``m`` of ``indices`` in one seeded shuffle, sorted: for any m it lies inside
    every larger m's."""
    generator = torch.Generator().manual_seed(seed * 7919 + 31)  # not the splits' streams
    return indices[torch.randperm(len(indices), generator=generator)][:m].sort().values


@dataclass
class Splits:
    """Index tensors into a data set's x and y; disjoint, sorted. ``train_dev`` (optional, see
    :func:`hold_out_train_dev`) comes from the training distribution but is never trained on."""

    train: torch.Tensor
    dev: torch.Tensor
    test: torch.Tensor
    train_dev: torch.Tensor | None = None

    def with_train(self, m: int, seed: int) -> Splits:
        """These splits with the training split cut to its first ``m`` examples in one seeded
        shuffle (sorted, as a split is): a smaller m's examples lie inside every larger one's
        (a learning curve's sizes)."""
        if not 1 <= m <= len(self.train):
            raise DeepnotesError(f"train_examples {m}: expected 1 to {len(self.train)}, the "
                                 "examples of the training split")
        return replace(self, train=shuffled_prefix(self.train, m, seed))

    def names(self) -> list[str]:
        """The splits present, in the course's order: train, train_dev (if held out), dev, test."""
        return ["train", *(["train_dev"] if self.train_dev is not None else []), "dev", "test"]

    def sizes(self) -> dict:
        return {name: len(getattr(self, name)) for name in self.names()}


def stratified_split(y: torch.Tensor, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                     test_indices: torch.Tensor | None = None) -> Splits:
    """Split indices 0..m-1 class by class in the proportions ``fractions`` (train, dev, test).

    When the data set has its own test set (``test_indices``), it is kept as the test split and dev
    is cut from the rest, a ``fractions[1]`` share of it. The same seed gives the same split.
    Targets that are sequences (y of shape (m, T)) are split at random, as one stratum.
    """
    check_fractions(fractions)
    if y.dim() > 1:
        y = y.new_zeros(len(y))
    generator = torch.Generator().manual_seed(seed)
    pool = torch.ones(len(y), dtype=torch.bool)
    if test_indices is not None:
        pool[test_indices] = False
        dev_share, test_share = fractions[1], 0.0
    else:
        dev_share, test_share = fractions[1], fractions[2]
    parts: dict[str, list[torch.Tensor]] = {"train": [], "dev": [], "test": []}
    for c in torch.unique(y[pool]):
        members = (pool & (y == c)).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_dev, n_test = _counts(len(members), dev_share, test_share)
        parts["dev"].append(members[:n_dev])
        parts["test"].append(members[n_dev : n_dev + n_test])
        parts["train"].append(members[n_dev + n_test :])
    if test_indices is not None:
        parts["test"] = [test_indices.to(torch.long)]
    splits = Splits(*(torch.cat(parts[k]).sort().values for k in ("train", "dev", "test")))
    for name in splits.names():
        if len(getattr(splits, name)) == 0:
            raise DeepnotesError(
                f"the {name} split is empty: {len(y)} examples are too few for "
                f"fractions {fractions}"
            )
    return splits


def hold_out_train_dev(y: torch.Tensor, splits: Splits, fraction: float, seed: int = 0) -> Splits:
    """Cut a train-dev split out of the training pool: a ``fraction`` share of each class.

    The course: train-dev has the training data's distribution but is never trained on, so
    variance = train-dev error - train error and data mismatch = dev error - train-dev error.
    dev and test stay as they were; the same seed gives the same split; ``fraction`` 0 holds out
    nothing (``train_dev`` stays None).
    """
    check_range("--train-dev", fraction, 0.0, 1.0, high_open=True, hint="a share, e.g. 0.05")
    if fraction == 0:
        return splits
    if y.dim() > 1:
        y = y.new_zeros(len(y))
    generator = torch.Generator().manual_seed(seed * 7919 + 17)  # not the train/dev/test stream
    keep, held = [], []
    for c in torch.unique(y[splits.train]):
        members = splits.train[y[splits.train] == c]
        members = members[torch.randperm(len(members), generator=generator)]
        n = min(round(len(members) * fraction), len(members) - 1)  # one stays for training
        held.append(members[:n])
        keep.append(members[n:])
    train_dev = torch.cat(held).sort().values
    if len(train_dev) == 0:
        raise DeepnotesError(f"--train-dev {fraction}: holds out no example of the "
                             f"{len(splits.train)} in the training pool; use a larger fraction")
    return Splits(torch.cat(keep).sort().values, splits.dev, splits.test, train_dev)


def _counts(n: int, dev_share: float, test_share: float) -> tuple[int, int]:
    """Examples of one class for dev and test; at least one stays for training."""
    n_dev, n_test = round(n * dev_share), round(n * test_share)
    while n_dev + n_test >= n and n_dev + n_test > 0:
        if n_test >= n_dev and n_test > 0:
            n_test -= 1
        else:
            n_dev -= 1
    return n_dev, n_test


def check_fractions(fractions) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DeepnotesError(
            f"split fractions {tuple(fractions)}: expected three shares (train, dev, test) "
            "that are >= 0 and sum to 1"
        )
    if fractions[0] <= 0:
        raise DeepnotesError(f"split fractions {tuple(fractions)}: the train share must be > 0")


def label_shift(y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, num_classes: int) -> float:
    """Total variation distance between the label distributions of splits a and b (0 = same)."""
    p = torch.bincount(y[a], minlength=num_classes).double() / max(1, len(a))
    q = torch.bincount(y[b], minlength=num_classes).double() / max(1, len(b))
    return float((p - q).abs().sum() / 2)


def duplicates_across(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    """Pairs (i in a, j in b) of byte-for-byte equal examples: leakage from train into test.
    Examples are compared by a 128-bit BLAKE2 digest, so memory holds 16 bytes an example."""
    seen = {_digest(x[i]): int(i) for i in a}
    pairs = []
    for j in b:
        i = seen.get(_digest(x[j]))
        if i is not None:
            pairs.append((i, int(j)))
    return pairs


def _digest(example: torch.Tensor) -> bytes:
    return hashlib.blake2b(example.numpy().tobytes(), digest_size=16).digest()


def data_warnings(dataset, splits: Splits) -> list[str]:
    """Checks on data: dev and test alike (the notes), classes balanced, no test example in
    train."""
    out: list[str] = []
    if dataset.y.dim() > 1:  # one target per step: no class counts to compare
        return out
    shift = label_shift(dataset.y, splits.dev, splits.test, dataset.num_classes)
    if shift > 0.1:
        out.append(f"dev and test label distributions differ (total variation {shift:.2f}); "
                   "the notes: dev and test should come from the same distribution")
    counts = torch.bincount(dataset.y[splits.train], minlength=dataset.num_classes)
    if counts.min() * 10 < counts.max():
        out.append(f"classes are imbalanced ({int(counts.min())} to {int(counts.max())} training "
                   "examples); judge by macro F1, not accuracy, or train with --class-weights "
                   "balanced")
    if dataset.kind == "image" and len(dataset.y) <= 200_000:
        for split in ("dev", "test"):
            pairs = duplicates_across(dataset.x, splits.train, getattr(splits, split))
            if pairs:
                out.append(f"{len(pairs)} {split} examples also appear in train (leakage), "
                           f"{_pairs(dataset, pairs, split)}")
    return out


def _pairs(dataset, pairs: list[tuple[int, int]], split: str, shown: int = 3) -> str:
    """``e.g. train a/1.png = test b/7.png; ...``: the first pairs, by file where the data set
    knows its files, else by index."""
    def name(i: int) -> str:
        return dataset.sources[i] if dataset.sources is not None else f"#{i}"

    listed = "; ".join(f"train {name(i)} = {split} {name(j)}" for i, j in pairs[:shown])
    more = f" and {len(pairs) - shown} more" if len(pairs) > shown else ""
    return f"e.g. {listed}{more}"
