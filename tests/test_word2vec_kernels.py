"""word2vec's Triton kernels (embeddings/kernels.py) against a NumPy transcription of the updates.

Without a GPU the kernels run in Triton's interpreter (conftest sets TRITON_INTERPRET=1), which
runs the programs one after another, in order: the result must then be word2vec.c's updates,
centre after centre, exactly. On a GPU (marker ``cuda``) the programs run at once, so the test
there launches one centre at a time. The interpreter takes about 20 ms a centre: the data is tiny.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes.embeddings import kernels
from deepnotes.embeddings.corpus import NoiseSampler
from deepnotes.embeddings.word2vec import IMPLEMENTATIONS, Word2Vec, _implementation
from deepnotes.errors import DeepnotesError

needs_triton = pytest.mark.skipif(not kernels.available(), reason="triton not installed")
interpreted = pytest.mark.skipif(not (kernels.available() and kernels.interpreting()),
                                 reason="needs Triton's interpreter (TRITON_INTERPRET=1)")


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def updates_in_order(sg, w_in, w_out, ids, sent, reach, negs, lrs, window):
    """word2vec.c's updates, centre after centre, in float64 (module docstring of kernels)."""
    w_in, w_out = w_in.double().numpy().copy(), w_out.double().numpy().copy()
    ids, sent, reach, negs = ids.tolist(), sent.tolist(), reach.tolist(), negs.tolist()
    lr0, lr1, lr_min = lrs
    m = len(ids)
    for i in range(m):
        lr = max(lr0 - (lr0 - lr1) * i / m, lr_min)
        targets = [ids[i], *negs[i]]
        counts = np.array([1.0] + [float(n != ids[i]) for n in negs[i]])
        label = np.array([1.0] + [0.0] * len(negs[i]))
        contexts = [ids[i + o] for o in range(-window, window + 1)
                    if 0 < abs(o) <= reach[i] and 0 <= i + o < m and sent[i + o] == sent[i]]
        for x_id in (contexts if sg else [None] * bool(contexts)):
            x = w_in[x_id].copy() if sg else w_in[contexts].mean(0)
            u = w_out[targets].copy()
            e = lr * (label - sigmoid(u @ x)) * counts
            np.add.at(w_out, targets, np.outer(e, x))
            np.add.at(w_in, [x_id] if sg else contexts, e @ u)
    return torch.from_numpy(w_in).float(), torch.from_numpy(w_out).float()


def chunk(seed, vocab=12, d=10, m=40, window=3, k=4, device="cpu"):
    """Random tables and a chunk of m centres in sentences of 15 (repeated ids and negatives
    equal to their centre included)."""
    g = torch.Generator().manual_seed(seed)
    tables = (torch.randn(vocab, d, generator=g) * 0.5, torch.randn(vocab, d, generator=g) * 0.5)
    ids = torch.randint(0, vocab, (m,), generator=g, dtype=torch.int32)
    sent = (torch.arange(m) // 15).to(torch.int32)
    reach = torch.randint(1, window + 1, (m,), generator=g, dtype=torch.int32)
    negs = torch.randint(0, vocab, (m, k), generator=g, dtype=torch.int32)
    negs[0, 0] = ids[0]  # skipped: a negative equal to its centre
    return [t.to(device) for t in (*tables, ids, sent, reach, negs)]


@interpreted
@pytest.mark.parametrize("sg", [1, 0])
def test_the_kernel_makes_word2vec_updates_centre_after_centre(sg):
    w_in, w_out, *data = chunk(sg)
    lrs, window = (0.3, 0.1, 0.15), 3  # the floor 0.15 is reached inside the chunk
    want_in, want_out = updates_in_order(sg, w_in, w_out, *data, lrs, window)
    kernels.launch(sg, w_in, w_out, *data, *lrs, window)
    assert not torch.allclose(w_in, chunk(sg)[0], atol=1e-3)  # it trained
    torch.testing.assert_close(w_in, want_in, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_out, want_out, rtol=1e-5, atol=1e-5)


@interpreted
def test_a_range_of_centres_continues_where_the_last_stopped():
    """first/count split one chunk's launch into parts: the same updates as one launch."""
    w_in, w_out, *data = chunk(5, m=20)
    a_in, a_out = w_in.clone(), w_out.clone()
    kernels.launch(1, a_in, a_out, *data, 0.2, 0.05, 0.0, 3)
    for first, count in ((0, 7), (7, 1), (8, None)):
        kernels.launch(1, w_in, w_out, *data, 0.2, 0.05, 0.0, 3, first=first, count=count)
    torch.testing.assert_close(w_in, a_in, rtol=0, atol=1e-6)
    torch.testing.assert_close(w_out, a_out, rtol=0, atol=1e-6)


@interpreted
def test_one_pair_is_gradient_ascent_on_the_notes_loss():
    """Centre 2 in a two-word sentence [3, 2] with negatives 4 and 0: v_3 and the targets' u
    move by eta times the gradient of log sigma(u_2 . v_3) + sum_k log sigma(-u_k . v_3)."""
    g = torch.Generator().manual_seed(2)
    w_in, w_out = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 0.5
    a, b = w_in.clone().requires_grad_(), w_out.clone().requires_grad_()
    x = a[3]
    loss = torch.nn.functional.logsigmoid(b[2] @ x) + torch.nn.functional.logsigmoid(
        -(b[[4, 0]] @ x)).sum()
    loss.backward()
    ids, sent = torch.tensor([3, 2], dtype=torch.int32), torch.zeros(2, dtype=torch.int32)
    reach, negs = torch.ones(2, dtype=torch.int32), torch.tensor([[4, 0]], dtype=torch.int32)
    new_in, new_out = w_in.clone(), w_out.clone()
    kernels.launch(1, new_in, new_out, ids, sent, reach, negs.expand(2, 2).contiguous(),
                   0.1, 0.1, 0.0, 1, first=1)
    torch.testing.assert_close(new_in - w_in, 0.1 * a.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(new_out - w_out, 0.1 * b.grad, rtol=0, atol=1e-6)


@interpreted
def test_word2vec_on_the_triton_path_is_seeded_and_trains_in_place():
    sents = [[f"w{(3 * s + i) % 7}" for i in range(6)] for s in range(12)]
    kw = dict(min_count=1, vector_size=8, window=2, epochs=1, sample=0, seed=3,
              implementation="triton")
    a, b, c = Word2Vec(sents, **kw), Word2Vec(sents, **kw), Word2Vec(sents, **{**kw, "seed": 4})
    assert a.implementation == "triton"
    assert torch.equal(a.wv.vectors, b.wv.vectors) and torch.equal(a.w_out, b.w_out)
    assert not torch.equal(a.wv.vectors, c.wv.vectors)
    assert a.w_out.abs().sum() > 0  # U_out starts at zero: the kernel wrote it


def test_noise_sampler_on_a_device_draws_from_the_same_distribution():
    counts = [50, 20, 10, 5, 1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    draws = NoiseSampler(counts, device=device).sample((200_000,),
                                                       torch.Generator(device).manual_seed(0))
    assert draws.device.type == device
    draws = draws.cpu()
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    p = torch.tensor(counts, dtype=torch.float64) ** 0.75
    torch.testing.assert_close(freq, p / p.sum(), rtol=0, atol=4e-3)


def test_triton_is_refused_where_it_cannot_run(monkeypatch):
    monkeypatch.setattr(kernels, "interpreting", lambda: False)
    with pytest.raises(DeepnotesError, match="needs a CUDA GPU and Triton"):
        _implementation("triton", "cpu")
    monkeypatch.setattr(kernels, "available", lambda: False)
    with pytest.raises(DeepnotesError, match="needs a CUDA GPU and Triton"):
        _implementation("triton", "cuda")
    assert _implementation("auto", "cuda") == "minibatch"
    monkeypatch.setattr(kernels, "available", lambda: True)
    assert _implementation("auto", "cuda") == "triton"
    assert _implementation("minibatch", "cuda") == "minibatch"


def test_the_cli_offers_every_implementation():
    from deepnotes.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions[0].choices["word2vec"]
                  ._subparsers._group_actions[0].choices["train"]._actions
                  if "--implementation" in a.option_strings)
    assert tuple(action.choices) == IMPLEMENTATIONS


COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from deepnotes.embeddings import kernels

sg = int(sys.argv[1])
fn = kernels._skip_gram if sg else kernels._cbow
types = {"w_in": "*fp32", "w_out": "*fp32", "ids": "*i32", "sent": "*i32", "reach": "*i32",
         "negs": "*i32", "lr0": "fp32", "slope": "fp32", "lr_min": "fp32", "first": "i32",
         "m": "i32", "d": "i32"}
blocks = {"WINDOW": 5, "K": 5, "BLOCK_K": 8, "BLOCK_D": 128, "BLOCK_W": 16}
names = fn.arg_names
assert set(names) == set(types) | ({*blocks} - ({"BLOCK_W"} if sg else set())), names
source = ASTSource(fn=fn, signature={n: types.get(n, "constexpr") for n in names},
                   constexprs={(names.index(n),): v for n, v in blocks.items() if n in names})
compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": kernels.warps(128)})
ptx = compiled.asm["ptx"]
assert ".target sm_90" in ptx and "atom.global" in ptx and compiled.asm["cubin"]
print("compiled", len(compiled.asm["cubin"]), "bytes of cubin")
"""


@needs_triton
@pytest.mark.slow  # a process of its own: Triton's compiler and ptxas, a few seconds a kernel
@pytest.mark.parametrize("sg", [1, 0])
def test_the_kernels_compile_for_a_hopper_gpu_here(sg, tmp_path):
    """The interpreter runs Python, so it does not see what only the compiler refuses (types,
    shapes of blocks); Triton compiles without a GPU: each kernel, with the argument types
    ``launch`` passes, to PTX and a cubin for sm_90 (an H100 or H200). In a process without
    TRITON_INTERPRET (Triton reads it on import) and with a cache of its own."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", COMPILE, str(sg)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("compiled ")


# ---------------------------------------------------------------- on a GPU
@pytest.mark.cuda
@pytest.mark.parametrize("sg", [1, 0])
def test_the_compiled_kernel_on_the_gpu_makes_the_same_updates(sg):
    """One centre a launch (so in order): the compiled kernel's updates are the transcription's."""
    w_in, w_out, *data = chunk(sg, d=100, m=40, window=5, k=5, device="cuda")
    want = updates_in_order(sg, w_in.cpu(), w_out.cpu(), *(t.cpu() for t in data),
                            (0.3, 0.1, 0.15), 5)
    for i in range(40):
        kernels.launch(sg, w_in, w_out, *data, 0.3, 0.1, 0.15, 5, first=i, count=1)
    torch.testing.assert_close(w_in.cpu(), want[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w_out.cpu(), want[1], rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("sg", [1, 0])
def test_word2vec_on_the_gpu_defaults_to_the_kernels_and_separates_two_topics(sg):
    import random

    rng = random.Random(0)
    groups = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    sents = [[rng.choice(groups[k % 2]) for _ in range(8)] for k in range(1500)]
    m = Word2Vec(sents, sg=sg, min_count=1, vector_size=20, window=3, epochs=5, sample=0,
                 device="cuda")
    assert m.implementation == "triton"
    x = torch.nn.functional.normalize(m.wv.vectors.float().cpu(), dim=1)
    ia = torch.tensor([m.wv.key_to_index[w] for w in groups[0]])
    ib = torch.tensor([m.wv.key_to_index[w] for w in groups[1]])
    assert (x[ia] @ x[ia].T).mean() > (x[ia] @ x[ib].T).mean() + 0.3
