"""deepnotes.nn.recurrent against NumPy transcriptions of the notes and against torch.nn.

Oracles (STYLE.md habit 7): the NumPy cells below are written here from the notes' equations
(RNN; the full, simplified and reset-after GRU; the LSTM with a = Gamma_o * tanh(c) and the
slide's a = Gamma_o * c), and so is a NumPy layer that runs them sequence by sequence for real
steps only (that is the definition of padding changing nothing). torch.nn.LSTM / GRU / RNN are the
second opinion, with weights mapped here independently of src/. Comparisons run in float64 against
NumPy (tight tolerances) and in float32 between paths and against torch (1e-5).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from conftest import close
from deepnotes.errors import DeepnotesError
from deepnotes.models.weights import load_checked
from deepnotes.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

F64 = dict(atol=1e-10, rtol=1e-10)
F32 = dict(atol=1e-5, rtol=1e-5)

# name -> (layer class, cell class, cell options); the first three have a torch.nn twin
VARIANTS = {
    "rnn": (RNN, RNNCell, {}),
    "lstm": (LSTM, LSTMCell, {}),
    "gru_reset_after": (GRU, GRUCell, {"reset_after": True}),
    "gru_notes": (GRU, GRUCell, {}),
    "gru_simplified": (GRU, GRUCell, {"full": False}),
    "lstm_notes": (LSTM, LSTMCell, {"output_tanh": False}),
}
FUSABLE = ["rnn", "lstm", "gru_reset_after"]
TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru_reset_after": nn.GRU}



def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def states(result) -> list[torch.Tensor]:
    """[outputs, h_n] or [outputs, h_n, c_n]."""
    out, st = result
    return [out, *(st if isinstance(st, tuple) else (st,))]


# ---------------------------------------------------------------- NumPy oracles (from the notes)

def sigma(z):
    return 1 / (1 + np.exp(-z))


def np_step(name, p, a, c, x):
    """One step of the notes' cell; p maps W_g (n_a, n_a + n_x) over [a, x], b_g. Returns (a, c)."""
    def lin(g, a_part):
        return p[f"W_{g}"] @ np.concatenate([a_part, x]) + p[f"b_{g}"]
    n = a.shape[0]
    if name == "rnn":
        a = np.tanh(lin("a", a))
        return a, a
    if name.startswith("lstm"):
        u, f, o = sigma(lin("u", a)), sigma(lin("f", a)), sigma(lin("o", a))
        c = u * np.tanh(lin("c", a)) + f * c
        return (o * np.tanh(c) if name == "lstm" else o * c), c
    u = sigma(lin("u", c))  # GRU: a<t> = c<t>
    if name == "gru_simplified":
        c_tilde = np.tanh(lin("c", c))
    elif name == "gru_notes":
        c_tilde = np.tanh(lin("c", sigma(lin("r", c)) * c))
    else:  # reset after: tanh(W_cx x + b_c + r * (W_ca c + b_ca))
        r = sigma(lin("r", c))
        c_tilde = np.tanh(p["W_c"][:, n:] @ x + p["b_c"] + r * (p["W_c"][:, :n] @ c + p["b_ca"]))
    c = u * c_tilde + (1 - u) * c
    return c, c


def np_layer(name, cells, x, lengths, num_layers, D, h0=None, c0=None):
    """The layer, one sequence at a time over its real steps only; 0 at padded steps.
    x: (B, T, n_x); cells[l * D + d]: dict of arrays. Returns out, h_n, c_n."""
    B, T, _ = x.shape
    H = cells[0]["b_" + ("a" if name == "rnn" else "c")].shape[0]
    h_n, c_n = np.zeros((num_layers * D, B, H)), np.zeros((num_layers * D, B, H))
    inp = x
    for layer in range(num_layers):
        out = np.zeros((B, T, D * H))
        for d in range(D):
            k = layer * D + d
            for b in range(B):
                a = np.zeros(H) if h0 is None else h0[k, b]
                c = (a if name.startswith("gru") else np.zeros(H)) if c0 is None else c0[k, b]
                steps = range(lengths[b]) if d == 0 else reversed(range(lengths[b]))
                for t in steps:
                    a, c = np_step(name, cells[k], a, c, inp[b, t])
                    out[b, t, d * H:(d + 1) * H] = a
                h_n[k, b], c_n[k, b] = a, c
        inp = out
    return inp, h_n, c_n


def np_params(cell) -> dict:
    """The cell's W_g, b_g (and b_ca) as the notes write them."""
    return {k: v.detach().double().numpy() for k, v in cell.notes().items()}


def notes_state(layer) -> dict:
    """A state dict of the layer's cells keyed by the notes' names (the layout before 2026-12)."""
    return {f"cells.{k}.{name}": t.detach().clone() for k, cell in enumerate(layer.cells)
            for name, t in cell.notes().items()}


def np_cells(layer) -> list[dict]:
    return [np_params(cell) for cell in layer.cells]


# ---------------------------------------------------------------- torch.nn weights -> ours

def load_from_torch(ours, theirs, name) -> None:
    """torch's gates -> the notes': LSTM (i, f, g, o) = (u, f, c, o); GRU (r, z, n) with
    z = 1 - Gamma_u, so W_u = -[W_hz, W_iz]; b_hn is b_ca; RNN W_a = [W_hh, W_ih]."""
    H, D = theirs.hidden_size, 2 if theirs.bidirectional else 1
    state = {}
    for k in range(theirs.num_layers * D):
        sfx = f"_l{k // D}" + ("_reverse" if k % D else "")
        w_ih, w_hh, b_ih, b_hh = (getattr(theirs, f"{w}{sfx}").detach() for w in
                                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        gates = {"rnn": "a", "lstm": "ufco", "gru_reset_after": "ruc"}[name]
        for j, g in enumerate(gates):
            rows = slice(j * H, (j + 1) * H)
            sign = -1 if (name, g) == ("gru_reset_after", "u") else 1
            state[f"cells.{k}.W_{g}"] = sign * torch.cat([w_hh[rows], w_ih[rows]], 1)
            state[f"cells.{k}.b_{g}"] = sign * (b_ih[rows] + b_hh[rows])
        if name == "gru_reset_after":
            state[f"cells.{k}.b_c"] = b_ih[2 * H:]
            state[f"cells.{k}.b_ca"] = b_hh[2 * H:]
    ours.load_state_dict(state)


# ---------------------------------------------------------------- cells vs NumPy

@pytest.mark.parametrize("name", list(VARIANTS))
def test_cell_matches_numpy_over_steps(name):
    _, cell_class, options = VARIANTS[name]
    torch.manual_seed(0)
    cell = cell_class(3, 4, **options).double()
    p = np_params(cell)
    a = c = None
    a_np, c_np = np.zeros((2, 4)), np.zeros((2, 4))
    for t in range(4):
        x = randn(2, 3, seed=t)  # x<t>: (B, n_x)
        if name.startswith("lstm"):
            a, c = cell(x, None if a is None else (a, c))
        else:
            a = c = cell(x, a)
        for b in range(2):
            a_np[b], c_np[b] = np_step(name, p, a_np[b], c_np[b], x[b].numpy())
        close(a, a_np, **F64)
        close(c, c_np, **F64)


def test_cell_golden_values_one_unit():
    """n_x = n_a = 1, every W entry 0.5, every b 0.1, x<1> = 1, x<2> = -2: the lines worked by hand
    with math, for the notes' full GRU and the slide's LSTM (a = Gamma_o * c)."""
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    gru, lstm = GRUCell(1, 1).double(), LSTMCell(1, 1, output_tanh=False).double()
    for p in [*gru.parameters(), *lstm.parameters()]:
        nn.init.constant_(p, 0.5 if p.dim() == 2 else 0.1)
    c = a = lc = 0.0
    c_t = a_t = lc_t = None
    for x in (1.0, -2.0):
        u, r = s(0.5 * c + 0.5 * x + 0.1), s(0.5 * c + 0.5 * x + 0.1)
        c = u * math.tanh(0.5 * r * c + 0.5 * x + 0.1) + (1 - u) * c
        gate = s(0.5 * a + 0.5 * x + 0.1)  # u, f, o share weights here
        lc = gate * math.tanh(0.5 * a + 0.5 * x + 0.1) + gate * lc
        a = gate * lc
        xt = torch.tensor([[x]], dtype=torch.float64)
        c_t = gru(xt, c_t)
        a_t, lc_t = lstm(xt, None if a_t is None else (a_t, lc_t))
        assert c_t.item() == pytest.approx(c, abs=1e-12)
        assert (a_t.item(), lc_t.item()) == pytest.approx((a, lc), abs=1e-12)
    # written down once from the lines above: a regression guard should both drift together
    assert (c, a, lc) == pytest.approx((0.0096005064, -0.0303446128, -0.0970762071), abs=1e-9)


# ---------------------------------------------------------------- layers vs NumPy

@pytest.mark.parametrize("implementation", ["auto", "cell", "steps"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_layer_matches_numpy_deep_bidirectional_with_lengths(name, implementation):
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(1)
    layer = layer_class(3, 4, num_layers=2, bidirectional=True, implementation=implementation,
                        **options).double()
    x, lengths = randn(4, 5, 3, seed=2), [5, 2, 4, 1]
    h0 = randn(4, 4, 4, seed=3)
    c0 = randn(4, 4, 4, seed=4)
    state = (h0, c0) if layer_class is LSTM else h0
    result = states(layer(x, state, lengths=torch.tensor(lengths)))
    expected = np_layer(name, np_cells(layer), x.numpy(), lengths, 2, 2, h0.numpy(),
                        c0.numpy() if layer_class is LSTM else None)
    for got, want in zip(result, expected):
        close(got, want, **F64)


def test_variants_are_different_functions():
    """Same weights where they share names, different maths: each pair differs."""
    torch.manual_seed(0)
    x = randn(2, 6, 3, seed=1, dtype=torch.float32)
    notes, simplified, after = GRU(3, 4), GRU(3, 4, full=False), GRU(3, 4, reset_after=True)
    shared = notes_state(notes)
    simplified.load_state_dict({k: v for k, v in shared.items() if not k.endswith("_r")})
    after.load_state_dict({**shared, "cells.0.b_ca": torch.zeros(4)})  # r scales W_ca c, not c
    outs = [m(x)[0] for m in (notes, simplified, after)]
    for i in range(3):
        for j in range(i):
            assert (outs[i] - outs[j]).abs().max() > 1e-3
    lstm, slide = LSTM(3, 4), LSTM(3, 4, output_tanh=False)
    slide.load_state_dict(lstm.state_dict())
    assert (lstm(x)[0] - slide(x)[0]).abs().max() > 1e-3
    assert not notes.fused and not simplified.fused and not slide.fused
    assert after.fused and lstm.fused and RNN(3, 4).fused


# ---------------------------------------------------------------- fused vs cell path

CONFIGS = [(1, False, False), (2, False, False), (1, True, False), (2, True, True),
           (1, False, True)]  # (num_layers, bidirectional, with lengths)


@pytest.mark.parametrize("layers,bidirectional,with_lengths", CONFIGS)
@pytest.mark.parametrize("name", FUSABLE)
def test_fused_and_cell_paths_agree_with_gradients(name, layers, bidirectional, with_lengths):
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(0)
    fused = layer_class(5, 6, layers, bidirectional, implementation="fused", **options)
    cell = layer_class(5, 6, layers, bidirectional, implementation="cell", **options)
    cell.load_state_dict(fused.state_dict())
    x = randn(4, 7, 5, seed=1, dtype=torch.float32)
    lengths = torch.tensor([7, 3, 6, 1]) if with_lengths else None
    results = []
    for layer in (fused, cell):
        xi = x.clone().requires_grad_()
        outs = states(layer(xi, lengths=lengths))
        weights = [torch.linspace(-1, 1, o.numel()).view_as(o) for o in outs]
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        results.append(outs + [xi.grad] + [p.grad for p in layer.parameters()])
    for a, b in zip(*results):
        close(a, b, **F32)


# ---------------------------------------------------------------- vs torch.nn

@pytest.mark.parametrize("implementation", ["auto", "cell"])
@pytest.mark.parametrize("layers,bidirectional,with_lengths", CONFIGS)
@pytest.mark.parametrize("name", FUSABLE)
def test_equals_torch_nn_given_its_weights(name, layers, bidirectional, with_lengths,
                                           implementation):
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(2)
    theirs = TORCH[name](5, 6, layers, batch_first=True, bidirectional=bidirectional)
    ours = layer_class(5, 6, layers, bidirectional, implementation=implementation, **options)
    load_from_torch(ours, theirs, name)
    x = randn(4, 7, 5, seed=3, dtype=torch.float32)
    if with_lengths:
        lengths = torch.tensor([7, 3, 6, 1])
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, st = theirs(packed)
        expected = [pad_packed_sequence(out, batch_first=True, total_length=7)[0],
                    *(st if isinstance(st, tuple) else (st,))]
    else:
        lengths, expected = None, states(theirs(x))
    for got, want in zip(states(ours(x, lengths=lengths)), expected):
        close(got, want, **F32)


@pytest.mark.parametrize("name", FUSABLE)
def test_to_torch_and_from_torch_round_trip(name):
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(0)
    ours = layer_class(3, 4, 2, True, **options)
    x = randn(2, 5, 3, dtype=torch.float32)
    for got, want in zip(states(ours(x)), states(ours.to_torch()(x))):
        close(got, want, **F32)
    theirs = TORCH[name](3, 4, 2, batch_first=True, bidirectional=True)
    back = layer_class.from_torch(theirs, implementation="cell")
    assert not back.fused
    for got, want in zip(states(back(x)), states(theirs(x))):
        close(got, want, **F32)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradcheck_cell(name):
    _, cell_class, options = VARIANTS[name]
    torch.manual_seed(0)
    cell = cell_class(2, 3, **options).double()
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x, a, c = (randn(2, k, seed=k).requires_grad_() for k in (2, 3, 3))

    def step(x, a, c, *ps):
        state = (a, c) if name.startswith("lstm") else a
        return functional_call(cell, dict(zip(names, ps)), (x, state))

    assert torch.autograd.gradcheck(step, (x, a, c, *params))


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradcheck_cell_path_layer(name, layers, bidirectional):
    """The hand-written back-propagation through time, with padding; every Jacobian entry for one
    layer, random projections of it (fast mode) for two layers both ways."""
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(0)
    layer = layer_class(2, 3, layers, bidirectional, implementation="cell", **options).double()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = randn(3, 4, 2, seed=1).requires_grad_()
    k = layers * (1 + bidirectional)
    hx = [randn(k, 3, 3, seed=s).requires_grad_() for s in (2, 3)][:1 + (layer_class is LSTM)]
    lengths = torch.tensor([4, 1, 3])

    def run(x, *rest):
        ps, hs = rest[:len(params)], rest[len(params):]
        state = tuple(hs) if len(hs) == 2 else hs[0]
        return tuple(states(functional_call(layer, dict(zip(names, ps)), (x, state),
                                            {"lengths": lengths})))

    assert torch.autograd.gradcheck(run, (x, *params, *hx), fast_mode=layers > 1)


# ---------------------------------------------------------------- padding, dropout, shapes

@pytest.mark.parametrize("implementation", ["auto", "cell", "steps"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_padded_steps_change_nothing(name, implementation):
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(0)
    layer = layer_class(3, 4, 2, True, implementation=implementation, **options)
    lengths = [6, 2, 4]
    x = randn(3, 6, 3, seed=1, dtype=torch.float32).requires_grad_()
    batch = states(layer(x, lengths=torch.tensor(lengths)))
    sum(o.sum() for o in batch).backward()
    for b, n in enumerate(lengths):
        alone = states(layer(x[b:b + 1, :n].detach()))
        close(batch[0][b, :n], alone[0][0], **F32)
        for got, want in zip(batch[1:], alone[1:]):  # h_n (, c_n): the last real step's
            close(got[:, b], want[:, 0], **F32)
        assert torch.all(batch[0][b, n:] == 0)  # outputs 0 at padded steps
        assert torch.all(x.grad[b, n:] == 0)  # and padding gets no gradient


def test_dropout_between_layers_in_training_only():
    torch.manual_seed(0)
    x = randn(2, 5, 3, dtype=torch.float32)
    for impl in ("auto", "cell"):
        layer = LSTM(3, 4, num_layers=2, dropout=0.5, implementation=impl)
        plain = LSTM(3, 4, num_layers=2, implementation=impl)
        plain.load_state_dict(layer.state_dict())
        layer.eval()
        assert torch.equal(layer(x)[0], layer(x)[0])
        close(layer(x)[0], plain(x)[0], atol=0, rtol=0)
        layer.train()
        assert not torch.equal(layer(x)[0], plain(x)[0])
    with pytest.warns(UserWarning, match="num_layers=1"):
        GRU(3, 4, dropout=0.2)


def test_shapes_batch_first_false_and_unbatched():
    torch.manual_seed(0)
    for impl in ("auto", "cell"):
        layer = LSTM(3, 4, 2, True, implementation=impl)
        time_major = LSTM(3, 4, 2, True, batch_first=False, implementation=impl)
        time_major.load_state_dict(layer.state_dict())
        x = randn(2, 5, 3, dtype=torch.float32)
        out, (h, c) = layer(x)
        assert out.shape == (2, 5, 8) and h.shape == c.shape == (4, 2, 4)
        out_t, (h_t, _) = time_major(x.transpose(0, 1))
        close(out_t.transpose(0, 1), out, **F32)
        close(h_t, h, **F32)
        one, (h1, _) = layer(x[0])
        assert one.shape == (5, 8) and h1.shape == (4, 4)
        close(one, out[0], **F32)


def test_parameters_in_torchs_layout_give_the_notes_W_g_and_start_like_torch():
    torch.manual_seed(0)
    layer = GRU(3, 100, 2, True, reset_after=True)
    cell = layer.cells[0]
    assert sorted(dict(cell.named_parameters())) == ["bias_hh", "bias_ih", "weight_hh",
                                                     "weight_ih"]
    assert sorted(cell.notes()) == ["W_c", "W_r", "W_u", "b_c", "b_ca", "b_r", "b_u"]
    assert cell.W_u.shape == (100, 103) and layer.cells[2].W_u.shape == (100, 300)
    assert torch.equal(cell.W_u[:, 100:], -cell.weight_ih[100:200])  # torch's z = 1 - Gamma_u
    assert torch.equal(cell.b_ca, cell.bias_hh[200:])
    lstm = LSTMCell(3, 4)
    assert sorted(dict(lstm.named_parameters())) == ["bias_ih", "weight_hh", "weight_ih"]
    assert sorted(lstm.state_dict()) == ["bias_ih", "weight_hh", "weight_ih"]  # no bias_hh
    assert torch.equal(lstm.W_f, torch.cat([lstm.weight_hh[4:8], lstm.weight_ih[4:8]], 1))
    assert not hasattr(GRUCell(3, 4, full=False), "W_r") and not hasattr(lstm, "b_ca")
    lstm.W_o.sum().backward()  # the notes' W_g is a function of the stored rows
    assert lstm.weight_hh.grad[12:].eq(1).all() and lstm.weight_hh.grad[:12].eq(0).all()
    for p in layer.parameters():
        assert p.abs().max() <= 0.1 and p.std() > 0.05  # uniform(-1/sqrt(100), 1/sqrt(100))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_state_dict_in_the_notes_names_loads_into_the_same_function(name):
    """Files from before the row-block layout (keys W_g, b_g, b_ca) load, by load_state_dict and
    by the weights loader, into a layer computing what the saved one computed."""
    layer_class, _, options = VARIANTS[name]
    torch.manual_seed(0)
    saved = layer_class(3, 4, 2, True, **options)
    old = notes_state(saved)
    x = randn(2, 5, 3, dtype=torch.float32)
    for load in (lambda m: m.load_state_dict(old), lambda m: load_checked(m, old, "old.pth")):
        torch.manual_seed(1)
        fresh = layer_class(3, 4, 2, True, **options)
        load(fresh)
        for got, want in zip(states(fresh(x)), states(saved(x))):
            close(got, want, **F32)  # the reset-after GRU: b_r, b_u are sums of two biases
    assert sorted(notes_state(fresh)) == sorted(old)
    with pytest.raises(DeepnotesError, match="weights of another architecture"):
        load_checked(RNN(3, 5), old, "old.pth")


@pytest.mark.parametrize("name", FUSABLE)
def test_the_fused_kernel_reads_the_parameters_themselves(name, monkeypatch):
    """No copy between the parameters and torch's kernel: it is handed the very tensors."""
    layer_class, _, options = VARIANTS[name]
    layer = layer_class(3, 4, 2, True, **options)
    mode = layer.cells[0].torch_mode
    kernel, seen = getattr(torch._VF, mode), []

    def spy(*args):
        seen.append(next(a for a in args if isinstance(a, list)))
        return kernel(*args)

    monkeypatch.setattr(torch._VF, mode, spy)
    for lengths in (None, torch.tensor([5, 2])):
        layer(randn(2, 5, 3, dtype=torch.float32), lengths=lengths)
    expected = [w for cell in layer.cells for w in (cell.weight_ih, cell.weight_hh,
                                                      cell.bias_ih, cell.bias_hh)]
    assert len(seen) == 2 and all(len(ws) == len(expected) for ws in seen)
    assert all(a is b for ws in seen for a, b in zip(ws, expected))


def test_the_cell_path_needs_no_torchscript_and_warns_nothing(monkeypatch):
    """TorchScript is deprecated: the loops run without it (scripting would fail here), and
    forward and backward raise no warning (torch's deprecation warning included)."""
    def no_script(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "script", no_script)
    torch.manual_seed(0)
    layer = GRU(3, 4, bidirectional=True)
    x = randn(2, 5, 3, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, h = layer(x, lengths=torch.tensor([5, 3]))
        (out.sum() + h.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


# ---------------------------------------------------------------- bad arguments

X = torch.zeros(2, 5, 3)  # (B, T_x, n_x)
BAD = [
    (lambda: LSTM(3, 0), "hidden_size must be a positive int, got 0"),
    (lambda: GRUCell(0, 4), "input_size must be a positive int, got 0"),
    (lambda: RNN(3, 4, num_layers=0), "num_layers must be a positive int"),
    (lambda: GRU(3, 4, dropout=1.0), "dropout must be in [0, 1)"),
    (lambda: GRU(3, 4, implementation="fast"),
     "implementation must be one of 'auto', 'fused', 'cell', 'steps'"),
    (lambda: GRU(3, 4, implementation="fused"), "no fused kernel"),
    (lambda: GRU(3, 4, full=False, reset_after=True), "needs the reset gate"),
    (lambda: LSTM(3, 4)(torch.zeros(2, 5, 7)), "expected input of shape (B, T_x, 3)"),
    (lambda: LSTM(3, 4)(torch.zeros(2, 0, 3)), "with B, T_x >= 1"),
    (lambda: GRU(3, 4)(X, lengths=torch.tensor([5, 6])), "lengths must be in 1..5"),
    (lambda: GRU(3, 4)(X, lengths=torch.tensor([0, 5])), "got values from 0"),
    (lambda: LSTM(3, 4, implementation="steps")(X, lengths=[6, 5]), "lengths must be in 1..5"),
    (lambda: RNN(3, 4)(X, lengths=torch.tensor([5])), "lengths must be 2 integers"),
    (lambda: RNN(3, 4)(X, lengths=torch.tensor([5.0, 2.0])), "integers"),
    (lambda: GRU(3, 4)(X, torch.zeros(1, 3, 4)), "expected a state of shape (1, 2, 4)"),
    (lambda: LSTM(3, 4)(X, torch.zeros(1, 2, 4)), "a pair (h_0, c_0)"),
    (lambda: GRUCell(3, 4)(torch.zeros(2, 5)), "expected x<t> of shape (B, 3)"),
    (lambda: LSTM(3, 4, output_tanh=False).to_torch(), "torch.nn has no layer"),
]


@pytest.mark.parametrize("make,message", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_raise_one_line(make, message):
    with pytest.raises(DeepnotesError) as exc:
        make()
    assert message in str(exc.value) and "\n" not in str(exc.value)
