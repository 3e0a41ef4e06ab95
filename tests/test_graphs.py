"""deepnotes.graphs off the GPU: the function runs as it is, nothing is counted or captured
(the captures themselves are tested on CUDA, in test_cuda.py)."""

from __future__ import annotations

import torch

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
