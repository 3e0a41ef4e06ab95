"""word2vec's GPU path: a chunk of the corpus in one Triton kernel, one program per centre word.

The mini-batch path (``word2vec.sg_step``) launches about 40 small kernels a step, and a step may
hold only about a thousand centres (their stale updates of one frequent row add up). Here, as in
BlazingText (Gupta & Khare 2017), each centre word is a program of its own and a chunk of
hundreds of thousands of centres is one launch: a program walks its window as word2vec.c does,
so within a program every update sees the ones before it, and programs update the shared tables
without locks (Hogwild, Recht et al. 2011) by atomic additions. For the centre c, its K negatives
n_k (drawn once per centre, shared by its contexts as on the other paths; a negative equal to c
is skipped), the targets t_0 = c (label 1) and t_k = n_k (label 0):

    skip-gram, for each context o in turn, x = v_o:
        e_k = eta (label_k - sigma(u_{t_k} . x)),   u_{t_k} += e_k x,   v_o += sum_k e_k u_{t_k}
    CBOW, once, h = mean of the contexts' v:
        e_k = eta (label_k - sigma(u_{t_k} . h)),   u_{t_k} += e_k h,   v_o += sum_k e_k u_{t_k}
        for every context o (unscaled, as word2vec.c and gensim)

where the sums use each u before its own update. A context o of the centre at position i is a
kept word at i + o with 0 < |o| <= b_i (b_i uniform in [1, W], the reduced window) in the same
sentence. The learning rate falls linearly over the chunk, eta_i = max(eta_0 - i s, eta_min).

Subsampling, the reduced windows and the negatives are drawn on the tables' device with torch
(``train_chunk``), so a chunk costs a few launches and one wait (for the number of kept words).
On the CPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``): programs one after
another, in order, which is what the tests compare with a transcription of the updates above.
Triton comes with torch's CUDA wheels; without it ``available()`` is False.
"""

from __future__ import annotations

import os

import torch

from deepnotes.embeddings.corpus import NoiseSampler

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only torch has no Triton: word2vec trains on the other paths
    triton = None  # type: ignore[assignment]  # optional module: None stands for "missing"


def _jit(fn):
    """triton.jit where Triton is installed (compiled, or interpreted under TRITON_INTERPRET=1,
    which Triton reads on import); without Triton the functions are never called."""
    return fn if triton is None else triton.jit(fn)


def warps(block_d: int) -> int:
    """Warps a program: one for rows of up to 128 floats, up to four for longer ones (a guess
    that keeps each thread's share of a (K + 1, d) tile small; not yet measured on a GPU)."""
    return max(1, min(4, block_d // 128))


def available() -> bool:
    """Whether Triton is installed (it comes with torch's CUDA wheels)."""
    return triton is not None


def interpreting() -> bool:
    """Whether TRITON_INTERPRET=1 asks for Triton's interpreter (kernels on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@_jit
def _targets(w_out, ids, negs, i, d, K: tl.constexpr, BLOCK_K: tl.constexpr,
             BLOCK_D: tl.constexpr):
    """Centre i's targets t_0 = c, t_k = n_k: pointers to their rows u_t (a BLOCK_K x BLOCK_D
    block), whether each counts (not past K, not a negative equal to c) and their labels."""
    kk, dd = tl.arange(0, BLOCK_K), tl.arange(0, BLOCK_D)
    centre = tl.load(ids + i).to(tl.int64)
    neg = tl.load(negs + i * K + kk - 1, mask=(kk >= 1) & (kk <= K), other=0).to(tl.int64)
    live = (kk == 0) | ((kk <= K) & (neg != centre))
    uptr = w_out + tl.where(kk == 0, centre, neg)[:, None] * d + dd[None, :]
    return uptr, live, (kk == 0).to(tl.float32)


@_jit
def _skip_gram(w_in, w_out, ids, sent, reach, negs, lr0, slope, lr_min, first, m, d,
               WINDOW: tl.constexpr, K: tl.constexpr, BLOCK_K: tl.constexpr,
               BLOCK_D: tl.constexpr):
    """Program i: centre i's contexts in turn, each against the K + 1 targets."""
    i = first + tl.program_id(0)
    lr = tl.maximum(lr0 - slope * i, lr_min)
    uptr, live, label = _targets(w_out, ids, negs, i, d, K, BLOCK_K, BLOCK_D)
    dd = tl.arange(0, BLOCK_D)
    b, s = tl.load(reach + i), tl.load(sent + i)
    for o in range(-WINDOW, WINDOW + 1):
        j = tl.minimum(tl.maximum(i + o, 0), m - 1)
        ok = (o != 0) & (o >= -b) & (o <= b) & (i + o == j) & (tl.load(sent + j) == s)
        xptr = w_in + tl.load(ids + j).to(tl.int64) * d + dd
        xmask = (dd < d) & ok
        umask = live[:, None] & xmask[None, :]
        x = tl.load(xptr, mask=xmask, other=0.0)
        u = tl.load(uptr, mask=umask, other=0.0)
        e = tl.where(live, (label - tl.sigmoid(tl.sum(u * x[None, :], axis=1))) * lr, 0.0)
        tl.atomic_add(xptr, tl.sum(e[:, None] * u, axis=0), mask=xmask)
        tl.atomic_add(uptr, e[:, None] * x[None, :], mask=umask)


@_jit
def _cbow(w_in, w_out, ids, sent, reach, negs, lr0, slope, lr_min, first, m, d,
          WINDOW: tl.constexpr, K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_W: tl.constexpr,
          BLOCK_D: tl.constexpr):
    """Program i: h from centre i's whole window at once, one update, its change of h added to
    each context."""
    i = first + tl.program_id(0)
    lr = tl.maximum(lr0 - slope * i, lr_min)
    uptr, live, label = _targets(w_out, ids, negs, i, d, K, BLOCK_K, BLOCK_D)
    dd = tl.arange(0, BLOCK_D)
    b, s = tl.load(reach + i), tl.load(sent + i)
    o = tl.arange(0, BLOCK_W) - WINDOW
    j = tl.minimum(tl.maximum(i + o, 0), m - 1)
    ok = (o != 0) & (o >= -b) & (o <= b) & (i + o == j) & (tl.load(sent + j) == s)
    xptr = w_in + tl.load(ids + j).to(tl.int64)[:, None] * d + dd[None, :]
    xmask = ok[:, None] & (dd < d)[None, :]
    n = tl.sum(ok.to(tl.float32), axis=0)
    h = tl.sum(tl.load(xptr, mask=xmask, other=0.0), axis=0) / tl.maximum(n, 1.0)
    umask = live[:, None] & (dd < d)[None, :]
    u = tl.load(uptr, mask=umask, other=0.0)
    e = tl.where(live, (label - tl.sigmoid(tl.sum(u * h[None, :], axis=1))) * lr, 0.0)
    e = e * tl.minimum(n, 1.0)  # a centre without contexts changes nothing
    dh = tl.sum(e[:, None] * u, axis=0)
    tl.atomic_add(xptr, dh[None, :] + tl.zeros([BLOCK_W, BLOCK_D], dtype=tl.float32), mask=xmask)
    tl.atomic_add(uptr, e[:, None] * h[None, :], mask=umask)


def launch(sg, w_in, w_out, ids, sent, reach, negs, lr0: float, lr1: float, lr_min: float,
           window: int, first: int = 0, count: int | None = None) -> None:
    """Update the tables in place for the m centres of ``ids`` (kept word ids, int32),
    ``sent`` (their sentence numbers), ``reach`` (b_i, int32) and ``negs`` (m, K), eta falling
    from lr0 at the first to lr1 past the last (never below lr_min). ``first``, ``count``: run
    only centres first .. first + count - 1 (all by default)."""
    m, (_, d), k = ids.shape[0], w_in.shape, negs.shape[1]
    count = m - first if count is None else count
    if count <= 0:
        return
    blocks = dict(K=k, BLOCK_K=triton.next_power_of_2(k + 1), BLOCK_D=triton.next_power_of_2(d))
    if not sg:
        blocks["BLOCK_W"] = triton.next_power_of_2(2 * window + 1)
    kernel = _skip_gram if sg else _cbow
    kernel[(count,)](w_in, w_out, ids, sent, reach, negs, lr0, (lr0 - lr1) / m, lr_min, first, m,
                     d, WINDOW=window, **blocks, num_warps=warps(blocks["BLOCK_D"]))


def train_chunk(sg, w_in, w_out, ids, sent, keep, noise: NoiseSampler, g: torch.Generator,
                window: int, negative: int, lrs: tuple[float, float, float]) -> None:
    """Subsample ``ids`` (word ids of a chunk, on the tables' device) with ``keep``, draw the
    reduced windows and the negatives with ``g`` (a generator on that device), and run the
    kernel with eta falling from lrs[0] to lrs[1] (never below lrs[2])."""
    dev = w_in.device
    kept = torch.rand(ids.shape[0], generator=g, device=dev) < keep[ids]
    wid, sid = ids[kept], sent[kept]
    m = wid.shape[0]
    reach = torch.randint(1, window + 1, (m,), generator=g, device=dev, dtype=torch.int32)
    negs = noise.sample((m, negative), g).to(torch.int32)
    launch(sg, w_in, w_out, wid.to(torch.int32), sid, reach, negs, *lrs, window)
