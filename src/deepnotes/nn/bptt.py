"""Back-propagation through time for the cells, where torch has no fused kernel.

For a sequence, the inputs' share of every gate, W_gx x<t> + b_g, is one matrix product over all
steps (done by the caller); what remains is the time loop over a<t-1> -> a<t>. The loops here
run it forward and backward (by hand, so each step costs only its matrix product with W_ga), are
replayed from CUDA graphs on a GPU, and sit inside autograd Functions: ``RNNScan``,
``LSTMScan``, ``GRUScan``. The weight gradient dW_ga = sum_t dz<t>^T a<t-1> is one product after
the loop. ``keep`` (T, B, 1) marks the real steps of padded sequences; padded steps pass the
state on.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from deepnotes.graphs import Replayed

# ---------------------------------------------------------------- the time loops


class _Loop:
    """A time loop: on a GPU replayed from CUDA graphs (deepnotes.graphs: one launch for the T
    steps' kernels, captured per shape), elsewhere run as it is. (TorchScript compiled it here
    before torch deprecated it: on a CPU the plain loops train the CLI's recurrent models in the
    same time, and at hidden size 256 the loops themselves run within 3% of it.)"""

    def __init__(self, fn):
        self.python, self.replayed = fn, Replayed(fn, limit=4)

    def __call__(self, *args):
        return self.replayed(*args) if args[0].is_cuda else self.python(*args)


def _real(d: Tensor, keep: Optional[Tensor], t: int) -> Tensor:
    """d at real steps, 0 at padded ones (padded steps have no gradient)."""
    return d if keep is None else d.masked_fill(keep[t].logical_not(), 0.0)


def _pass(d: Tensor, g: Tensor, keep: Optional[Tensor], t: int) -> Tensor:
    """The gradient reaching the state before step t: d, plus g itself at padded steps (a padded
    step passes its state on unchanged)."""
    return d if keep is None else d + g.masked_fill(keep[t], 0.0)


def _emit(out: Tensor, states: Tensor, t: int, new: Tensor, old: Tensor,
          keep: Optional[Tensor]) -> Tensor:
    """out[t] = the new a<t> (0 at padded steps); states[t] = the state carried on, returned."""
    if keep is None:  # out is states
        out[t].copy_(new)
        return out[t]
    torch.mul(new, keep[t], out=out[t])
    torch.where(keep[t], new, old, out=states[t])
    return states[t]


def _states(out: Tensor, keep: Optional[Tensor]) -> Tensor:
    return out if keep is None else torch.empty_like(out)


def _rnn_forward(xw: Tensor, w_a: Tensor, a: Tensor,
                 keep: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """xw<t> = W_ax x<t> + b_a; a<t> = tanh(xw<t> + W_aa a<t-1>). Returns outputs, states."""
    out = torch.empty_like(xw)  # (T, B, n_a)
    states = _states(out, keep)
    w_t = w_a.t()
    for t in range(xw.size(0)):
        a = _emit(out, states, t, torch.tanh(torch.addmm(xw[t], a, w_t)), a, keep)  # a<t>
    return out, states


def _rnn_backward(d_out: Tensor, g: Tensor, out: Tensor, w_a: Tensor,
                  keep: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Back through time: dz<t> = da<t> (1 - a<t>^2); da<t-1> = dz<t> W_aa. Returns dz, da<0>."""
    d_tanh = 1 - out * out  # tanh' for every step at once: (T, B, n_a)
    d_pre = torch.empty_like(out)
    for t in range(out.size(0) - 1, -1, -1):
        dz = torch.mul(_real(g + d_out[t], keep, t), d_tanh[t], out=d_pre[t])
        g = _pass(dz @ w_a, g, keep, t)
    return d_pre, g


def _lstm_forward(xw: Tensor, w_a: Tensor, a: Tensor, c: Tensor, keep: Optional[Tensor],
                  output_tanh: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gates (u, f, c~, o) = activations of xw<t> + W_a a<t-1>.
    Returns outputs, a states, gates, c states, tanh(c) states (empty if not output_tanh)."""
    n = a.size(1)
    out = torch.empty_like(xw[:, :, :n])  # (T, B, n_a)
    states, cs, gates = _states(out, keep), torch.empty_like(out), torch.empty_like(xw)
    tcs = torch.empty_like(out) if output_tanh else xw.new_empty(0)
    w_t = w_a.t()
    for t in range(xw.size(0)):
        z = torch.addmm(xw[t], a, w_t, out=gates[t])  # (B, 4 n_a)
        z[:, :2 * n].sigmoid_()
        z[:, 2 * n:3 * n].tanh_()
        z[:, 3 * n:].sigmoid_()
        u, f, c_tilde, o = z.chunk(4, 1)
        c = _emit(cs, cs, t, torch.addcmul(f * c, u, c_tilde), c, keep)  # c<t>
        tc = torch.tanh(c, out=tcs[t]) if output_tanh else c
        a = _emit(out, states, t, o * tc, a, keep)  # a<t>
    return out, states, gates, cs, tcs


def _lstm_backward(d_out: Tensor, ga: Tensor, gc: Tensor, gates: Tensor, cs: Tensor,
                   tcs: Tensor, c0: Tensor, w_a: Tensor,
                   keep: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """Back through time; returns dz<t> for the gates' pre-activations, da<0>, dc<0>."""
    u, f, c_tilde, o = gates.chunk(4, 2)
    c_prev = torch.cat([c0.unsqueeze(0), cs[:-1]])
    tc = tcs if tcs.numel() > 0 else cs  # a<t> = Gamma_o * tc<t>
    # dz<t> = [dc, dc, dc, da] * m<t>; dc<t> gets da<t> * k<t>; factors for every step at once
    m = torch.cat([c_tilde * u * (1 - u), c_prev * f * (1 - f), u * (1 - c_tilde * c_tilde),
                   tc * o * (1 - o)], 2)
    k = o * (1 - tc * tc) if tcs.numel() > 0 else o
    d_pre = torch.empty_like(gates)
    for t in range(gates.size(0) - 1, -1, -1):
        da = _real(ga + d_out[t], keep, t)
        dc = torch.addcmul(_real(gc, keep, t), da, k[t])
        dz = torch.mul(torch.cat([dc, dc, dc, da], 1), m[t], out=d_pre[t])
        ga = _pass(dz @ w_a, ga, keep, t)
        gc = _pass(dc * f[t], gc, keep, t)
    return d_pre, ga, gc


def _gru_forward(xw: Tensor, w_a: Tensor, b_ca: Optional[Tensor], c: Tensor,
                 keep: Optional[Tensor], full: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gates ([r,] u, c~). b_ca given: reset after the product. Returns outputs, states, gates and
    W_ca c<t-1> + b_ca (reset after) or Gamma_r * c<t-1> (full GRU; empty if simplified)."""
    n = c.size(1)
    out = torch.empty_like(xw[:, :, :n])  # (T, B, n_a)
    states, gates = _states(out, keep), torch.empty_like(xw)
    extra = torch.empty_like(out) if full else xw.new_empty(0)
    w_t, g = w_a.t(), xw.size(2) - n  # g: columns of the sigmoid gates
    for t in range(xw.size(0)):
        x, z = xw[t], gates[t]  # W_gx x<t> + b_g, activations: (B, G n_a)
        if b_ca is not None:
            hw = torch.addmm(b_ca, c, w_t[:, g:], out=extra[t])  # W_ca c<t-1> + b_ca
            torch.addmm(x[:, :g], c, w_t[:, :g], out=z[:, :g]).sigmoid_()
            torch.tanh(torch.addcmul(x[:, g:], z[:, :n], hw), out=z[:, g:])
        elif full:
            torch.addmm(x[:, :g], c, w_t[:, :g], out=z[:, :g]).sigmoid_()
            rc = torch.mul(z[:, :n], c, out=extra[t])  # Gamma_r * c<t-1>
            torch.addmm(x[:, g:], rc, w_t[:, g:], out=z[:, g:]).tanh_()
        else:
            torch.addmm(x, c, w_t, out=z)
            z[:, :g].sigmoid_()
            z[:, g:].tanh_()
        u, c_tilde = z[:, g - n:g], z[:, g:]
        c = _emit(out, states, t, torch.addcmul(c, u, c_tilde - c), c, keep)  # c<t>
    return out, states, gates, extra


def _gru_backward(d_out: Tensor, gc: Tensor, gates: Tensor, states: Tensor, extra: Tensor,
                  c0: Tensor, w_a: Tensor, keep: Optional[Tensor], full: bool,
                  reset_after: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """Back through time; returns dz<t> (the x side), dz_ca<t> (the gradient of W_ca's product:
    differs from dz_c<t> when reset after), dc<0>."""
    n = c0.size(1)
    g = gates.size(2) - n
    c_prev = torch.cat([c0.unsqueeze(0), states[:-1]])
    u, c_tilde = gates[:, :, g - n:g], gates[:, :, g:]
    # [dz_u, dz_c] = dc<t> * m<t>; factors for every step at once
    m = torch.cat([(c_tilde - c_prev) * u * (1 - u), u * (1 - c_tilde * c_tilde)], 2)
    r = gates[:, :, :n]  # Gamma_r (full GRU)
    m_r = (extra if reset_after else c_prev) * r * (1 - r) if full else r
    d_pre = torch.empty_like(gates)
    d_ca = torch.empty_like(c_prev) if reset_after else d_pre[:, :, g:]
    for t in range(gates.size(0) - 1, -1, -1):
        dc = _real(gc + d_out[t], keep, t)
        dz_uc = torch.mul(dc.repeat(1, 2), m[t], out=d_pre[t, :, g - n:])
        d_prev = dc * (1 - u[t])
        if reset_after:  # dz_r = dz_c (W_ca c<t-1> + b_ca) r (1 - r)
            torch.mul(dz_uc[:, n:], m_r[t], out=d_pre[t, :, :n])
            torch.mul(dz_uc[:, n:], r[t], out=d_ca[t])
            d_prev = d_prev + torch.cat([d_pre[t, :, :g], d_ca[t]], 1) @ w_a
        elif full:  # d(Gamma_r * c<t-1>) = dz_c W_ca
            d_rc = dz_uc[:, n:] @ w_a[g:]
            torch.mul(d_rc, m_r[t], out=d_pre[t, :, :n])
            d_prev = torch.addcmul(d_prev, d_rc, r[t]) + d_pre[t, :, :g] @ w_a[:g]
        else:
            d_prev = d_prev + dz_uc @ w_a
        gc = _pass(d_prev, gc, keep, t)
    return d_pre, d_ca, gc


_LOOPS = {name: _Loop(fn) for name, fn in [
    ("rnn_forward", _rnn_forward), ("rnn_backward", _rnn_backward),
    ("lstm_forward", _lstm_forward), ("lstm_backward", _lstm_backward),
    ("gru_forward", _gru_forward), ("gru_backward", _gru_backward)]}


def _previous(a0: Tensor, states: Tensor) -> Tensor:
    """a<t-1> for t = 1..T_x: (T, B, n_a)."""
    return torch.cat([a0.unsqueeze(0), states[:-1]])


def _bulk(d_pre: Tensor, inputs: Tensor) -> Tensor:
    """dW = sum_t dz<t>^T a<t-1>: one product over all steps instead of one per step."""
    return d_pre.flatten(0, 1).t() @ inputs.flatten(0, 1)


class RNNScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_a, a0, keep):
        out, states = _LOOPS["rnn_forward"](xw, w_a, a0, keep)
        ctx.save_for_backward(w_a, a0, out, states, keep)
        return out, states[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_a):
        w_a, a0, out, states, keep = ctx.saved_tensors
        d_pre, d_a0 = _LOOPS["rnn_backward"](d_out, d_a, out, w_a, keep)
        return d_pre, _bulk(d_pre, _previous(a0, states)), d_a0, None


class LSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_a, a0, c0, keep, output_tanh):
        out, states, gates, cs, tcs = _LOOPS["lstm_forward"](xw, w_a, a0, c0, keep, output_tanh)
        ctx.save_for_backward(w_a, a0, c0, states, gates, cs, tcs, keep)
        return out, states[-1].clone(), cs[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_a, d_c):
        w_a, a0, c0, states, gates, cs, tcs, keep = ctx.saved_tensors
        d_pre, d_a0, d_c0 = _LOOPS["lstm_backward"](d_out, d_a, d_c, gates, cs, tcs, c0, w_a, keep)
        return d_pre, _bulk(d_pre, _previous(a0, states)), d_a0, d_c0, None, None


class GRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, w_a, b_ca, c0, keep, full):
        out, states, gates, extra = _LOOPS["gru_forward"](xw, w_a, b_ca, c0, keep, full)
        ctx.save_for_backward(w_a, c0, states, gates, extra, keep)
        ctx.full, ctx.reset_after = full, b_ca is not None
        return out, states[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_c):
        w_a, c0, states, gates, extra, keep = ctx.saved_tensors
        d_pre, d_ca, d_c0 = _LOOPS["gru_backward"](d_out, d_c, gates, states, extra, c0, w_a,
                                                   keep, ctx.full, ctx.reset_after)
        prev, g = _previous(c0, states), gates.size(2) - c0.size(1)
        # W_ca acts on Gamma_r * c<t-1> in the notes' full GRU, on c<t-1> otherwise
        ca_input = extra if ctx.full and not ctx.reset_after else prev
        d_w = torch.cat([_bulk(d_pre[:, :, :g], prev), _bulk(d_ca, ca_input)])
        d_b_ca = d_ca.sum((0, 1)) if ctx.reset_after else None
        return d_pre, d_w, d_b_ca, d_c0, None, None
