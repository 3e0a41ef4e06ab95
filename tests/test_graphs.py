"""deepnotes.graphs off the GPU: the function runs as it is, nothing is counted or captured.
And with a CUDA graph simulated on the CPU (the ops a capture records, rerun on the same tensors
at replay), the bookkeeping around it: captured on a signature's second call, inputs copied in,
in-place arguments updated once a call, outputs copied out. The real captures are tested on
CUDA, in test_cuda.py."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deepnotes import graphs


def test_on_the_cpu_the_function_runs_as_it_is_every_time():
    calls = []

    def fn(x, flag):
        calls.append(flag)
        return x * 2, x

    replayed = graphs.Replayed(fn)
    for _ in range(3):
        doubled, same = replayed(torch.ones(3), True)
        assert torch.equal(doubled, torch.full((3,), 2.0))
    assert calls == [True] * 3 and not replayed.seen and not replayed.graphs
    assert graphs._signature((torch.ones(2), None, 3)) is None


def test_copies_are_fresh_and_keep_a_repeated_output_one_tensor():
    a, b = torch.arange(3.0), torch.ones(2)
    first, second, third = graphs._copies((a, a, b))
    assert first is second and first is not a and torch.equal(first, a)
    assert third is not b and torch.equal(third, b)
    a.add_(1)  # the next replay overwrites the static outputs: the copies keep their values
    assert torch.equal(first, torch.arange(3.0))
    assert graphs._copies(b) is not b


# ---------------------------------------------------------------- a CUDA graph simulated on the CPU

class _Recorder(TorchDispatchMode):
    """Runs and records every aten op (func, args, kwargs, out); tensors from outside that the
    ops write to are put back as they were on exit, since a real capture runs nothing."""

    def __init__(self):
        super().__init__()
        self.ops, self.made, self.saved = [], set(), {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        written = [a for a, spec in zip(args, func._schema.arguments)
                   if isinstance(a, torch.Tensor) and spec.alias_info is not None
                   and spec.alias_info.is_write]
        written += [v for k, v in kwargs.items() if k == "out" and isinstance(v, torch.Tensor)]
        for t in written:
            if id(t) not in self.made and id(t) not in self.saved:
                self.saved[id(t)] = (t, t.clone())
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.made.add(id(t))
        return out

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        for t, before in self.saved.values():
            t.copy_(before)
        return result


class _FakeGraph:
    """replay() reruns the recorded ops on the same tensors: in-place ops as they are, views
    not at all (they see their base), others copied into the tensor they made at capture."""

    def __init__(self):
        self.ops = []

    def replay(self):
        for func, args, kwargs, out in self.ops:
            returns = func._schema.returns
            if any(r.alias_info is not None and r.alias_info.is_write for r in returns) \
                    or "out" in kwargs:
                func(*args, **kwargs)
            elif not all(r.alias_info is not None for r in returns):
                new = func(*args, **kwargs)
                pairs = zip(out, new) if isinstance(out, (tuple, list)) else [(out, new)]
                for old, fresh in pairs:
                    if isinstance(old, torch.Tensor):
                        old.copy_(fresh)


@contextlib.contextmanager
def _fake_capture(graph, **options):
    with _Recorder() as recorder:
        yield
    graph.ops = recorder.ops


@pytest.fixture
def simulated_gpu(monkeypatch):
    """deepnotes.graphs capturing CPU tensors into _FakeGraph, through its real _capture."""
    nothing = contextlib.nullcontext
    stream = type("Stream", (), {"wait_stream": lambda self, other: None})
    monkeypatch.setattr(graphs, "_on_one_gpu", lambda tensors: bool(tensors))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: nothing())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", _fake_capture)
    monkeypatch.setattr(torch.cuda.graphs, "graph_pool_handle", lambda: None)


def test_the_simulator_replays_new_inputs_and_leaves_outside_tensors_alone(simulated_gpu):
    def fn(x, table, lr):
        y = torch.tanh(x @ x.t()).mul_(lr)
        table.index_add_(0, torch.tensor([0, 0]), y[:, :2])
        return y, y.sum(1)

    replayed = graphs.Replayed(fn, in_place=(1,))
    table, eager_table = torch.zeros(3, 2), torch.zeros(3, 2)
    for step in range(4):
        x, lr = torch.randn(2, 4, generator=torch.Generator().manual_seed(step)), \
            torch.tensor(0.5 + step)
        got = replayed(x, table, lr)
        want = fn(x, eager_table, lr)
        for a, b in zip(got, want):
            assert torch.allclose(a, b)
        assert torch.allclose(table, eager_table)  # one update a call, the capture's included
    assert len(replayed.graphs) == 1 and replayed.graphs[next(iter(replayed.graphs))]


@pytest.mark.parametrize("cell", ["gru", "gru_simplified", "lstm_slide"])
def test_the_time_loops_replayed_agree_with_them_run_as_they_are(cell, simulated_gpu,
                                                                 monkeypatch):
    """The cell path with every loop going through Replayed (captured on the second call):
    outputs, states and gradients equal those of the loops run as they are, call after call,
    with and without padding."""
    from deepnotes.nn import GRU, LSTM, bptt

    make = {"gru": lambda: GRU(3, 5, 2, True), "gru_simplified": lambda: GRU(3, 5, full=False),
            "lstm_slide": lambda: LSTM(3, 5, 2, True, output_tanh=False)}[cell]
    torch.manual_seed(0)
    layer = make()
    for loop in bptt._LOOPS.values():
        monkeypatch.setattr(loop, "replayed", graphs.Replayed(loop.python, limit=4))
    results = {}
    for name, on_gpu in (("replayed", True), ("as is", False)):
        results[name] = []
        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "is_cuda", property(lambda t, on=on_gpu: on))
            for step, lengths in enumerate([None, None, [4, 2], [4, 2], None]):
                x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(step))
                layer.zero_grad()
                out, state = layer(x, lengths=None if lengths is None else torch.tensor(lengths))
                states = list(state) if isinstance(state, tuple) else [state]
                (out.square().sum() + sum(s.sum() for s in states)).backward()
                results[name].append([out.detach(), *[s.detach() for s in states],
                                      *[p.grad.clone() for p in layer.parameters()]])
    captured = [g for loop in bptt._LOOPS.values() for g in loop.replayed.graphs.values()]
    assert captured and all(g is not None for g in captured)
    for got, want in zip(results["replayed"], results["as is"]):
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-6)


def test_word2vec_steps_replayed_train_the_same_tables(simulated_gpu, monkeypatch):
    import random

    from deepnotes.embeddings import Word2Vec

    rng = random.Random(0)
    sents = [[f"w{rng.randrange(30)}" for _ in range(12)] for _ in range(300)]
    options = dict(sg=1, min_count=1, vector_size=8, window=2, epochs=2, seed=3,
                   batch_centres=64, implementation="minibatch")
    replayed = Word2Vec(sents, **options).wv.vectors.clone()
    monkeypatch.setattr(graphs, "ENABLED", False)
    plain = Word2Vec(sents, **options).wv.vectors
    assert torch.allclose(torch.as_tensor(replayed), torch.as_tensor(plain), atol=1e-6)


@pytest.mark.parametrize("amp", [False, True])
def test_a_graphed_network_trains_as_the_network_itself(simulated_gpu, amp):
    """Steps of SGD with momentum on a batch-norm network, one with its forward and backward
    replayed from (simulated) graphs, one run as it is: the same weights and running averages
    after every step, a short batch in between run as it is, eval mode as it is; in float32
    and under bfloat16 autocast without its cache (as the Trainer runs it)."""
    from torch import nn

    def network():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, 3))

    plain, model = network(), network()
    graphed = graphs.GraphedNetwork(model)
    replays = []
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (plain, model)]
    g = torch.Generator().manual_seed(1)
    for n in (8, 8, 5, 8, 8):
        x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
        if graphed.forward is not None and n == 8:
            replays.append(n)
        for net, opt in zip((plain, graphed), optimizers):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", torch.bfloat16, enabled=amp, cache_enabled=False):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        for a, b in zip([*plain.parameters(), *plain.buffers()],
                        [*model.parameters(), *model.buffers()]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert graphed.failed is None and graphed.key[0] == (8, 1, 8, 8) and replays == [8, 8, 8]
    plain.eval(), model.eval()
    torch.testing.assert_close(graphed(x), plain(x))


def test_a_graphed_network_refuses_autocast_with_its_cache_and_runs_as_it_is(simulated_gpu):
    from torch import nn

    net = nn.Linear(4, 2)
    graphed = graphs.GraphedNetwork(net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = graphed(torch.randn(3, 4))
    assert graphed.failed == "autocast with its cache on" and graphed.forward is None
    assert out.dtype == torch.bfloat16
    assert torch.equal(graphed(torch.ones(2, 4)), net(torch.ones(2, 4)))  # as it is from now on


def test_a_graphed_network_whose_capture_fails_runs_as_it_is(simulated_gpu, monkeypatch):
    from torch import nn

    def refuse(net, sample_args):
        net.forward = lambda x: x * 0  # as torch does before a later failure could strike
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", refuse)
    net = nn.Linear(4, 2)
    graphed = graphs.GraphedNetwork(net)
    x = torch.randn(3, 4)
    assert torch.equal(graphed(x), nn.Linear.forward(net, x))
    assert graphed.failed.startswith("capture failed: operation not permitted")
    assert "forward" not in net.__dict__ and torch.equal(net(x), graphed(x))
