"""Mini-batches from tensors in memory, by indexing: no per-example Python, no worker processes.

Images stay uint8 until a batch is drawn; the batch is then converted to float and normalised,
x_norm = (x - mu) / sigma per channel (per feature for tables), with mu and sigma from the training
split only, so nothing about dev or test leaks into training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from deepnotes.errors import DeepnotesError


class Normalizer:
    """x -> (x * scale - mu) / sigma, per channel (images, scale 1/255) or feature (tables)."""

    def __init__(self, mean: list[float], std: list[float], scale: float = 1.0):
        self.mean, self.std, self.scale = list(mean), list(std), scale
        std_t = torch.tensor(self.std, dtype=torch.float32).clamp_min(1e-8)
        self._mul = scale / std_t
        self._add = -torch.tensor(self.mean, dtype=torch.float32) / std_t
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # copies by device

    @classmethod
    def fit(cls, x: torch.Tensor) -> Normalizer:
        """Per-channel mean and std of uint8 images (m, n_C, n_H, n_W) or features (m, n_x); token
        ids (int64) are left as they are."""
        if x.dtype == torch.int64:
            return cls([], [], 1.0)
        scale = 1 / 255 if x.dtype == torch.uint8 else 1.0
        dims = [0, 2, 3] if x.dim() == 4 else [0]
        xs = x.double() * scale
        return cls(xs.mean(dims).tolist(), xs.std(dims).tolist(), scale)

    @classmethod
    def fit_blocks(cls, x: torch.Tensor, indices: torch.Tensor) -> Normalizer:
        """:meth:`fit` of uint8 images ``x[indices]`` read a block at a time (``x`` mapped from
        disk stays there): per channel the sums of x and x^2 in exact integers, then
        mu = S1 / n and sigma^2 = (S2 - S1^2 / n) / (n - 1), scaled by 1/255."""
        per_image = int(x[0].numel()) if len(x) else 1
        block = max(1, 4_000_000 // per_image)  # about 32 MB of int64 at a time
        order = indices.sort().values  # in file order: the disk reads ahead
        s1 = torch.zeros(x.shape[1], dtype=torch.int64)
        s2 = torch.zeros(x.shape[1], dtype=torch.int64)
        for i in range(0, len(order), block):
            xb = x[order[i:i + block]].to(torch.int64)
            s1 += xb.sum((0, 2, 3))
            s2 += (xb * xb).sum((0, 2, 3))
        n = len(order) * x.shape[2] * x.shape[3]
        mean = [int(a) / n / 255 for a in s1]
        std = [math.sqrt((int(b) * n - int(a) ** 2) / (n * (n - 1))) / 255
               for a, b in zip(s1, s2)]
        return cls(mean, std, 1 / 255)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(d["mean"], d["std"], d["scale"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mean:  # token ids
            return x
        if x.device not in self._on:  # copied once: a copy to a GPU every batch would wait for it
            self._on[x.device] = (self._mul.to(x.device), self._add.to(x.device))
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        mul, add = (t.view(shape) for t in self._on[x.device])
        return torch.addcmul(add, x.float(), mul)


ORDERS = ("random", "quasi-random")
BLOCK_BYTES = 4 << 20  # quasi-random: neighbours read together (in records of a cache)
WINDOW_BYTES = 256 << 20  # and shuffled together: the pages in use at a time


class Batches:
    """The examples ``indices`` of (x, y) in mini-batches of ``batch_size``.

    With ``shuffle`` the order of epoch e is a permutation drawn from (seed, e) alone, and an
    ``augment`` of batch b draws from (seed, e, b), so a resumed run sees exactly the batches the
    uninterrupted run saw. ``drop_last`` drops a final short batch
    (a batch of one breaks batch norm's sigma^2) unless it is the only batch. ``shard`` = (r, N):
    data-parallel rank r of N takes the r-th of N equal slices of every batch (the batches
    themselves are the same on every rank) and reads only that slice. With ``stream`` the
    examples ``x`` stay where they are (a memory-mapped cache on disk) and each batch is gathered
    there into reused buffers and moved to ``device``; ``readahead(idx)`` (the cache's) asks the
    disk for the next batch while the step computes. ``order`` "quasi-random" shuffles by
    :func:`quasi_random` (for a cache larger than memory).
    """

    MAX_SEED = 10**8  # the seeds drawn from it, (seed * 100_003 + e) * 1_000_003 + b, fit 64 bits

    def __init__(self, x, y, indices, batch_size: int, normalizer: Normalizer, *,
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0,
                 device: torch.device | str = "cpu", augment=None, shard=(0, 1),
                 stream: bool = False, order: str = "random", readahead=None):
        if order not in ORDERS:
            raise DeepnotesError(f"--data-order {order}: expected one of {', '.join(ORDERS)}")
        self.shard, self.device, self.stream = shard, torch.device(device), stream
        self.order_kind = order
        self.x = x if stream else x.to(device)  # stream: x stays where it is (a memory map)
        self.y = y.to(device)
        self.augment = augment  # augment(x_slice, generator, batch, part) before normalising
        self.indices = indices.to(device)
        self.batch_size, self.normalizer = batch_size, normalizer
        self.shuffle, self.seed = shuffle, seed
        self.drop_last = drop_last and len(indices) > batch_size
        self.readahead = readahead  # readahead(idx): the records idx will be read next

    def __len__(self) -> int:
        n, b = len(self.indices), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def num_examples(self) -> int:
        return len(self.indices)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return self.indices
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.order_kind == "quasi-random":
            record = max(1, self.x[0].numel() * self.x.element_size()) if len(self.x) else 1
            block = max(1, BLOCK_BYTES // record)
            window = max(8 * self.batch_size, WINDOW_BYTES // record)
            return quasi_random(self.indices.cpu(), generator, block,
                                window).to(self.indices.device)
        perm = torch.randperm(len(self.indices), generator=generator).to(self.indices.device)
        return self.indices[perm]

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x, y) batches of ``epoch`` from batch number ``start`` on."""
        order = self.order(epoch)
        rows = [order[b * self.batch_size : (b + 1) * self.batch_size]
                for b in range(start, len(self))]
        slices = [self._slice(len(idx)) for idx in rows]
        parts = [idx[part] for idx, part in zip(rows, slices)]
        gathered = self._streamed(parts) if self.stream else (self.x[idx] for idx in parts)
        for b, idx, part, x in zip(range(start, len(self)), rows, slices, gathered):
            if self.augment is not None:  # drawn for the whole batch: a rank draws what one would
                seed = (self.seed * 100_003 + epoch) * 1_000_003 + b
                x = self.augment(x, generator_on(x.device, seed), len(idx), part)
            yield self.normalizer(x), self.y[idx[part]]

    def _streamed(self, parts: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """x[idx] of each ``idx`` in turn, read from where x lies into reused buffers, with the
        records of the next batch asked for (``readahead``) before this one is handed out: the
        disk reads them in the background while the step computes."""
        if not parts:
            return
        staging = _Staging(self.x, max(len(p) for p in parts), self.device)
        for n, idx in enumerate(parts):
            x = staging.gather(idx)
            if self.readahead is not None and n + 1 < len(parts):
                self.readahead(parts[n + 1])
            yield x

    def _slice(self, n: int) -> slice:
        r, world = self.shard
        return slice(r * n // world, (r + 1) * n // world)


def quasi_random(indices: torch.Tensor, generator: torch.Generator, block: int,
                 window: int) -> torch.Tensor:
    """An order of ``indices`` that reads a file a window at a time: the indices in file order
    are cut into blocks of ``block`` neighbours, the blocks are shuffled, and the examples of
    each run of about ``window`` examples (whole blocks) of the shuffled blocks are shuffled
    among themselves. Every example comes once; the pages an epoch needs at any time are one
    window's, so a cache larger than memory is read from disk about once an epoch, in runs of
    ``block`` records, instead of one random record per read."""
    ordered = indices.sort().values
    n = len(ordered)
    blocks = -(-n // block)
    place = torch.empty(blocks, dtype=torch.int64)
    place[torch.randperm(blocks, generator=generator)] = torch.arange(blocks)
    per_window = max(1, window // block)
    window_of = place[torch.arange(n) // block] // per_window
    key = window_of.double() + torch.rand(n, generator=generator, dtype=torch.float64)
    return ordered[key.argsort()]


class _Staging:
    """Two host buffers that streamed batches are gathered into in turn (pinned for a GPU, and
    copied from there without blocking): no memory is allocated per batch. A batch's buffer is
    reused two batches later, once its copy to the GPU is done; on the CPU the batch itself is
    the buffer, valid until the next batch is drawn (:meth:`Batches.epoch` augments and
    normalises it into new memory)."""

    def __init__(self, x: torch.Tensor, rows: int, device: torch.device):
        pinned = device.type == "cuda"
        with torch.inference_mode(False):  # plain tensors: written again in any later mode
            self.buffers = [torch.empty((rows, *x.shape[1:]), dtype=x.dtype, pin_memory=pinned)
                            for _ in range(2)]
        self.copied: list = [None, None]  # CUDA events: the copy out of each buffer is done
        self.x, self.device, self.turn = x, device, 0

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        i, self.turn = self.turn, 1 - self.turn
        if self.copied[i] is not None:
            self.copied[i].synchronize()
        out = torch.index_select(self.x, 0, idx.cpu(), out=self.buffers[i][:len(idx)])
        if self.device.type != "cuda":
            return out.to(self.device)  # the buffer itself on the CPU
        with torch.cuda.device(self.device):  # the event on this rank's own GPU
            moved = out.to(self.device, non_blocking=True)
            self.copied[i] = torch.cuda.Event()
            self.copied[i].record()
        return moved


def generator_on(device: torch.device, seed: int) -> torch.Generator:
    """A random generator seeded with ``seed``: on the GPU for CUDA data, so that augmenting a
    batch there copies nothing from the CPU (a copy would wait for the GPU to catch up); on the
    CPU otherwise."""
    device = torch.device(device)
    return torch.Generator(device if device.type == "cuda" else "cpu").manual_seed(seed)
