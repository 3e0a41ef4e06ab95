"""CUDA graphs: a function of fixed-shape CUDA tensors captured once and replayed.

A time loop launches a few small kernels a step; on a GPU each launch costs microseconds of CPU
time, and the GPU waits on Python. A CUDA graph records the kernels of one call and replays them
all with one launch. :class:`Replayed` wraps a function of tensors and plain flags: on a CUDA
device, a signature (the tensors' shapes, dtypes and device, the flags' values) seen for the
second time is captured; that call and later ones copy their inputs into the graph's static
inputs, replay it and return copies of its static outputs. Elsewhere, under autocast, while
torch.compile traces, while another capture runs, past ``limit`` signatures, or where capture
fails, the function runs as it is; so does a signature's first call (one seen once, such as an
epoch's last short batch, is not worth a capture).

The function must be one CUDA graphs can hold: no host synchronisation, no random numbers, no
shape that depends on tensor values (a learning rate that changes is a 0-d tensor, not a
float). It writes to no input but those named by ``in_place`` (positions of tensors updated in
place, such as word2vec's tables): those are not copied, the graph is captured on them and their
address is part of the signature; its warm-up runs on copies of them, so that capturing changes
nothing. It returns None, a tensor or a tuple of tensors (one tensor may appear twice: it is
copied once).

:class:`GraphedNetwork` does the same for a network's training step: its forward and backward
for one batch shape, as two graphs, around which the loss and the optimizer run as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor

# DEEPNOTES_CUDA_GRAPHS=0 runs every function as it is (to compare, or to rule graphs out)
ENABLED = os.environ.get("DEEPNOTES_CUDA_GRAPHS", "1") != "0"
SIGNATURES_KEPT = 1024  # signatures counted before the count starts afresh


class Replayed:
    """``fn`` run through CUDA graphs on a GPU (module docstring); as it is elsewhere."""

    def __init__(self, fn: Callable, limit: int = 8, in_place: tuple[int, ...] = ()):
        self.fn, self.limit, self.in_place = fn, limit, in_place
        self.seen: dict[tuple, int] = {}
        self.graphs: dict[tuple, tuple | None] = {}  # signature -> (graph, inputs, outputs)

    def __call__(self, *args):
        key = _signature(args, self.in_place)
        if key is None:
            return self.fn(*args)
        if key not in self.graphs:
            if len(self.seen) >= SIGNATURES_KEPT:
                self.seen.clear()
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] < 2 or len(self.graphs) >= self.limit:
                return self.fn(*args)
            self.graphs[key] = _capture(self.fn, args, self.in_place)
        entry = self.graphs[key]
        if entry is None:  # capture failed for this signature
            return self.fn(*args)
        graph, inputs, outputs = entry
        for i, (static, value) in enumerate(zip(inputs, args)):
            if isinstance(static, Tensor) and i not in self.in_place:
                static.copy_(value)
        graph.replay()
        return _copies(outputs)


def _signature(args: tuple, in_place: tuple[int, ...] = ()) -> tuple | None:
    """What a graph is captured for, or None where the function should run as it is."""
    if not ENABLED or torch.is_autocast_enabled() or torch.compiler.is_compiling():
        return None
    if not _on_one_gpu([a for a in args if isinstance(a, Tensor)]):
        return None
    if torch.cuda.is_current_stream_capturing():
        return None
    return tuple(("=", a) if not isinstance(a, Tensor)
                 else (tuple(a.shape), a.dtype, a.device, a.data_ptr() if i in in_place else 0)
                 for i, a in enumerate(args))


def _on_one_gpu(tensors: list[Tensor]) -> bool:
    """Whether there are tensors and all are on one CUDA device."""
    return bool(tensors) and torch.cuda.is_available() and all(
        t.is_cuda and t.device == tensors[0].device for t in tensors)


def _capture(fn: Callable, args: tuple, in_place: tuple[int, ...] = ()) -> tuple | None:
    """(graph, static inputs, static outputs) for ``args``' signature, or None if it fails."""
    inputs = [a if i in in_place or not isinstance(a, Tensor)
              else torch.empty_like(a, memory_format=torch.contiguous_format).copy_(a)
              for i, a in enumerate(args)]
    device = next(a.device for a in inputs if isinstance(a, Tensor))
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(side):  # warm-up off the main stream: cuBLAS handles, workspaces
            scratch = [a.clone() if i in in_place else a for i, a in enumerate(inputs)]
            for _ in range(2):
                fn(*scratch)
            del scratch
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the autograd engine captures backward loops in its own thread, while
        # other threads (a DistributedDataParallel hook, a data loader) may call CUDA
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = fn(*inputs)
    except RuntimeError:
        torch.cuda.synchronize(device)
        return None
    return graph, inputs, outputs


def _copies(outputs):
    """Fresh copies of the graph's outputs (the next replay overwrites them); a tensor that
    appears twice is copied once and returned twice."""
    if outputs is None or isinstance(outputs, Tensor):
        return None if outputs is None else outputs.clone()
    made: dict[int, Tensor] = {}
    for t in outputs:
        if isinstance(t, Tensor) and id(t) not in made:
            made[id(t)] = t.clone()
    return tuple(made[id(t)] if isinstance(t, Tensor) else t for t in outputs)


class GraphedNetwork:
    """``net(x)`` in training mode with its forward and backward replayed from two CUDA graphs
    (torch.cuda.make_graphed_callables), for the batch shape of the first call; the loss, the
    optimizer and other shapes (an epoch's last short batch), eval mode, extra arguments and
    other devices run as they are. Capture's warm-up runs the network three times on the first
    batch: the buffers it changes (batch norm's running averages) are put back, so a step
    replayed computes what the step run as it is would. Under autocast the weights' casts are
    recomputed every call (``cache_enabled=False``, which capture needs); ``failed`` says why
    capture was refused, if it was (the network then always runs as it is)."""

    def __init__(self, net: torch.nn.Module):
        self.net = net
        self.key: tuple | None = None
        self.forward: Callable | None = None
        self.failed: str | None = None if ENABLED else "DEEPNOTES_CUDA_GRAPHS=0"

    def __call__(self, x, *rest, **options):
        if rest or options or not self.net.training or not torch.is_grad_enabled() \
                or self.failed or not isinstance(x, Tensor) or not _on_one_gpu([x]):
            return self.net(x, *rest, **options)
        key = (tuple(x.shape), x.stride(), x.dtype, x.device)
        if self.forward is None:
            self._capture(x, key)
        if self.forward is None or key != self.key:
            return self.net(x)
        return self.forward(x)

    def _capture(self, x: Tensor, key: tuple) -> None:
        if torch.is_autocast_enabled(x.device.type) and torch.is_autocast_cache_enabled():
            self.failed = "autocast with its cache on"
            return
        kept = {name: b.clone() for name, b in self.net.named_buffers()}
        try:
            torch.cuda.make_graphed_callables(self.net, (x.detach().clone(),))
        except (RuntimeError, AssertionError) as exc:
            self.net.__dict__.pop("forward", None)  # had it been replaced, the class's is back
            self.failed = f"capture failed: {exc}"
            return
        finally:
            with torch.no_grad():
                for name, b in self.net.named_buffers():
                    b.copy_(kept[name])
        self.forward = self.net.__dict__.pop("forward")  # the graphed one; the class's is back
        self.key = key
