"""The notes' recurrent cells, one time step each (x<t>: (B, n_x), a<t>: (B, n_a), sigma the
logistic function)::

    RNN    a<t> = tanh(W_a [a<t-1>, x<t>] + b_a)
    GRU    Gamma_u = sigma(W_u [c<t-1>, x<t>] + b_u)                    (update gate)
           Gamma_r = sigma(W_r [c<t-1>, x<t>] + b_r)                    (relevance gate)
           c~<t> = tanh(W_c [Gamma_r * c<t-1>, x<t>] + b_c)
           c<t> = Gamma_u * c~<t> + (1 - Gamma_u) * c<t-1>,    a<t> = c<t>
    LSTM   Gamma_u, Gamma_f, Gamma_o = sigma(W_{u,f,o} [a<t-1>, x<t>] + b_{u,f,o})
           c~<t> = tanh(W_c [a<t-1>, x<t>] + b_c)
           c<t> = Gamma_u * c~<t> + Gamma_f * c<t-1>
           a<t> = Gamma_o * tanh(c<t>)

Variants, each a parameter of its cell: ``GRUCell(full=False)`` is the course's simplified GRU (no
Gamma_r: c~<t> = tanh(W_c [c<t-1>, x<t>] + b_c)). ``GRUCell(reset_after=True)`` is the GRU that
cuDNN, torch.nn.GRU and Keras' default compute: Gamma_r applied after the product,
c~<t> = tanh(W_cx x<t> + b_c + Gamma_r * (W_ca c<t-1> + b_ca)), with one more bias b_ca. The two
GRUs are different functions (a test shows it). ``LSTMCell(output_tanh=False)`` is the notes'
slide, a<t> = Gamma_o * c<t>, again a different function from the default.

The notes' parameters, per gate g: a weight W_g (n_a, n_a + n_x) over [a<t-1>, x<t>] (its first
n_a columns are W_ga, acting on a<t-1>; the rest W_gx, acting on x<t>) and a bias b_g (n_a,). A
cell stores them as torch.nn does, the gates stacked in row blocks, so that torch's fused kernel
(and cuDNN's flat weight buffer) reads the parameters themselves, with no copy::

    weight_ih (G n_a, n_x)   the W_gx, gate after gate     bias_ih (G n_a)   the b_g
    weight_hh (G n_a, n_a)   the W_ga                      bias_hh (G n_a)   0, a fixed buffer

``cell.W_u``, ``cell.b_u``, ... (and ``cell.notes()``, all at once) give the notes' W_g and b_g,
computed from these (differentiable, read-only). Row blocks are in the notes' gate order, which
is torch's: LSTM (u, f, c, o) = torch's (i, f, g, o); RNN (a). All parameters start from
uniform(-1/sqrt(n_a), 1/sqrt(n_a)), as in torch.nn.

The reset-after GRU is cuDNN's GRU and is stored exactly as cuDNN and torch.nn.GRU store it:
gates (r, z, c) with z = 1 - Gamma_u (torch: h' = (1 - z) * n + z * h), so its u rows hold -W_u
and -b_u; and bias_hh is a trained parameter, torch's second bias: b_r and b_u are the sums of
the two biases' rows, b_c is bias_ih's c rows and b_ca bias_hh's.

State dicts written before this layout (keys W_g, b_g, b_ca) load into it: :func:`upgrade` maps
them, and a cell's load_state_dict does so on its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.errors import DeepnotesError
from deepnotes.nn.bptt import GRUScan, LSTMScan, RNNScan

LAYOUT = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # torch's names, in its order


def positive(name: str, value, owner: str) -> None:
    """Refuse anything but a positive int, naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DeepnotesError(f"{owner}: {name} must be a positive int, got {value!r}")


class Cell(nn.Module):
    """The gates' W_g and b_g in torch's row-block layout (module docstring)."""

    torch_mode: str | None = None  # the torch._VF kernel computing the same function, if any
    negated = ""  # gates whose rows hold -W_g and -b_g (torch's z = 1 - Gamma_u)
    weight_ih: nn.Parameter
    weight_hh: nn.Parameter
    bias_ih: nn.Parameter
    bias_hh: Tensor

    def __init__(self, input_size: int, hidden_size: int, gates: tuple[str, ...],
                 trained_bias_hh: bool = False):
        super().__init__()
        positive("input_size", input_size, type(self).__name__)
        positive("hidden_size", hidden_size, type(self).__name__)
        self.input_size, self.hidden_size, self.gates = input_size, hidden_size, gates
        rows = len(gates) * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        if trained_bias_hh:
            self.bias_hh = nn.Parameter(torch.empty(rows))
        else:  # 0 and fixed, so not saved: torch's second bias adds nothing to bias_ih
            self.register_buffer("bias_hh", torch.zeros(rows), persistent=False)

    def reset_parameters(self) -> None:
        """uniform(-1/sqrt(n_a), 1/sqrt(n_a)), as torch.nn initialises its recurrent layers."""
        k = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    # ------------------------------------------------------------ the notes' parameters

    def _rows(self, g: str) -> slice:
        k, n = self.gates.index(g), self.hidden_size
        return slice(k * n, (k + 1) * n)

    def _sign(self, g: str) -> int:
        return -1 if g in self.negated else 1

    def gate(self, g: str) -> tuple[Tensor, Tensor, Tensor]:
        """(W_ga, W_gx, b_g) of gate g: views of the stored rows (negated where stored negated)."""
        r, s = self._rows(g), self._sign(g)
        w_a, w_x, b = self.weight_hh[r], self.weight_ih[r], self.bias_ih[r]
        return (w_a, w_x, b) if s == 1 else (-w_a, -w_x, -b)

    def notes(self) -> dict[str, Tensor]:
        """The notes' parameters: W_g = [W_ga, W_gx] (n_a, n_a + n_x) and b_g per gate."""
        out = {}
        for g in self.gates:
            w_a, w_x, b = self.gate(g)
            out[f"W_{g}"], out[f"b_{g}"] = torch.cat([w_a, w_x], 1), b
        return out

    def __getattr__(self, name: str):
        gates = self.__dict__.get("gates", ())
        if name[:2] in ("W_", "b_") and (name[2:] in gates or name == "b_ca"):
            notes = self.notes()
            if name in notes:
                return notes[name]
        return super().__getattr__(name)

    def _from_notes(self, notes: dict[str, Tensor]) -> dict[str, Tensor]:
        """The stored tensors holding the notes' W_g, b_g (and b_ca): the inverse of notes()."""
        n, s = self.hidden_size, self._sign
        ws = [s(g) * notes[f"W_{g}"] for g in self.gates]
        return {"weight_ih": torch.cat([w[:, n:] for w in ws]),
                "weight_hh": torch.cat([w[:, :n] for w in ws]),
                "bias_ih": torch.cat([s(g) * notes[f"b_{g}"] for g in self.gates])}

    def upgrade(self, state_dict: dict, prefix: str) -> None:
        """Rewrite, in place, this cell's keys W_g, b_g (a state dict saved before the row-block
        layout) as the stored tensors."""
        old = [f"{prefix}W_{g}" for g in self.gates] + [f"{prefix}b_{g}" for g in self.gates]
        if not all(k in state_dict for k in old):
            return
        notes = {k[len(prefix):]: state_dict.pop(k) for k in old}
        if f"{prefix}b_ca" in state_dict:
            notes["b_ca"] = state_dict.pop(f"{prefix}b_ca")
        try:
            new = self._from_notes(notes)
        except (RuntimeError, KeyError, IndexError):
            state_dict.update({prefix + k: v for k, v in notes.items()})  # let the check name it
            return
        state_dict.update({prefix + k: v for k, v in new.items()})

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.upgrade(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------ the paths' views

    def z(self, g: str, a: Tensor, x: Tensor) -> Tensor:
        """W_g [a<t-1>, x<t>] + b_g = W_ga a<t-1> + W_gx x<t> + b_g."""
        w_a, w_x, b = self.gate(g)
        return F.linear(x, w_x, b) + F.linear(a, w_a)

    def stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        """(W_a, W_x, b): the gates' W_ga (G n_a, n_a), W_gx (G n_a, n_x), b_g stacked in gate
        order, for the cell path (the stored tensors themselves, but for the reset-after GRU)."""
        return self.weight_hh, self.weight_ih, self.bias_ih

    def torch_weights(self) -> list[Tensor]:
        """[weight_ih, weight_hh, bias_ih, bias_hh]: what torch's kernel takes, uncopied."""
        return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]

    @torch.no_grad()
    def load_torch_weights(self, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> None:
        """torch.nn's four tensors into this cell; its two biases add up to our one b_g."""
        self.weight_ih.copy_(w_ih)
        self.weight_hh.copy_(w_hh)
        self.bias_ih.copy_(b_ih + b_hh)

    def _check(self, x: Tensor, state: Tensor | None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise DeepnotesError(f"{self}: expected x<t> of shape (B, {self.input_size}), "
                                 f"got {tuple(x.shape)}")
        if state is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        if tuple(state.shape) != (x.shape[0], self.hidden_size):
            raise DeepnotesError(f"{self}: expected a state of shape ({x.shape[0]}, "
                                 f"{self.hidden_size}), got {tuple(state.shape)}")
        return state

    def _scan(self, xw: Tensor, w_a: Tensor, state: list[Tensor],
              keep: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        """The compiled time loop over xw = W_gx x<t> + b_g (T, B, G n_a): (outputs, the states
        after the last step). Each cell's own."""
        raise NotImplementedError


class RNNCell(Cell):
    """a<t> = tanh(W_a [a<t-1>, x<t>] + b_a). (An output y<t> = g(W_y a<t> + b_y) is a Linear.)"""

    torch_mode = "rnn_tanh"

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, ("a",))
        self.reset_parameters()

    def forward(self, x: Tensor, a: Tensor | None = None) -> Tensor:
        a = self._check(x, a)  # a<t-1>: (B, n_a); x<t>: (B, n_x)
        return torch.tanh(self.z("a", a, x))

    def _scan(self, xw: Tensor, w_a: Tensor, state: list[Tensor],
              keep: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        out, a = RNNScan.apply(xw, w_a, state[0], keep)
        return out, [a]


class GRUCell(Cell):
    """The notes' GRU (see the module docstring); a<t> = c<t>.

    full=True:  c~<t> = tanh(W_c [Gamma_r * c<t-1>, x<t>] + b_c), Gamma_r applied before W_c.
    full=False: the simplified GRU, c~<t> = tanh(W_c [c<t-1>, x<t>] + b_c), no Gamma_r.
    reset_after=True: c~<t> = tanh(W_cx x<t> + b_c + Gamma_r * (W_ca c<t-1> + b_ca)), what cuDNN
    and torch.nn.GRU compute (Keras' reset_after=True); Gamma_r then scales the product
    W_ca c<t-1> + b_ca rather than c<t-1> itself, so the two are different functions. It adds
    the bias ``b_ca``, is stored as torch.nn.GRU is (module docstring) and is the only GRU that
    can run torch's fused kernel.
    """

    def __init__(self, input_size: int, hidden_size: int, full: bool = True,
                 reset_after: bool = False):
        if reset_after and not full:
            raise DeepnotesError("GRUCell: reset_after=True needs the reset gate Gamma_r of the "
                                 "full GRU; use full=True")
        super().__init__(input_size, hidden_size, ("r", "u", "c") if full else ("u", "c"),
                         trained_bias_hh=reset_after)
        self.full, self.reset_after = full, reset_after
        if reset_after:
            self.torch_mode, self.negated = "gru", "u"
        self.reset_parameters()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", full={self.full}, reset_after={self.reset_after}"

    def gate(self, g: str) -> tuple[Tensor, Tensor, Tensor]:
        w_a, w_x, b = super().gate(g)
        if self.reset_after and g != "c":  # b_g is the sum of torch's two biases
            b = b + self._sign(g) * self.bias_hh[self._rows(g)]
        return w_a, w_x, b

    def notes(self) -> dict[str, Tensor]:
        out = super().notes()
        if self.reset_after:
            out["b_ca"] = self.bias_hh[self._rows("c")]
        return out

    def _from_notes(self, notes: dict[str, Tensor]) -> dict[str, Tensor]:
        out = super()._from_notes(notes)
        if self.reset_after:
            n = self.hidden_size
            out["bias_hh"] = torch.cat([notes["b_ca"].new_zeros(2 * n), notes["b_ca"]])
        return out

    @torch.no_grad()
    def load_torch_weights(self, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> None:
        for mine, theirs in zip(self.torch_weights(), (w_ih, w_hh, b_ih, b_hh)):
            mine.copy_(theirs)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        c = self._check(x, c)  # c<t-1>: (B, n_a); x<t>: (B, n_x)
        gamma_u = torch.sigmoid(self.z("u", c, x))
        if not self.full:
            c_tilde = torch.tanh(self.z("c", c, x))
        elif self.reset_after:
            gamma_r = torch.sigmoid(self.z("r", c, x))
            w_ca, w_cx, b_c = self.gate("c")
            b_ca = self.bias_hh[self._rows("c")]
            c_tilde = torch.tanh(F.linear(x, w_cx, b_c) + gamma_r * F.linear(c, w_ca, b_ca))
        else:
            gamma_r = torch.sigmoid(self.z("r", c, x))
            c_tilde = torch.tanh(self.z("c", gamma_r * c, x))
        return gamma_u * c_tilde + (1 - gamma_u) * c  # c<t> = a<t>

    def stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        if not self.reset_after:
            return super().stacked()
        w_a, w_x, b = zip(*(self.gate(g) for g in self.gates))
        return torch.cat(w_a), torch.cat(w_x), torch.cat(b)

    def _scan(self, xw: Tensor, w_a: Tensor, state: list[Tensor],
              keep: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        b_ca = self.bias_hh[self._rows("c")] if self.reset_after else None
        out, c = GRUScan.apply(xw, w_a, b_ca, state[0], keep, self.full)
        return out, [c]


class LSTMCell(Cell):
    """The LSTM (see the module docstring): gates u (update), f (forget), o (output).

    output_tanh=True: a<t> = Gamma_o * tanh(c<t>), as torch.nn.LSTM, Keras and most papers.
    output_tanh=False: a<t> = Gamma_o * c<t>, as the notes' slide writes it (a different function;
    the slide also labels the forget gate Gamma_r). forward returns (a<t>, c<t>).
    """

    def __init__(self, input_size: int, hidden_size: int, output_tanh: bool = True):
        super().__init__(input_size, hidden_size, ("u", "f", "c", "o"))
        self.output_tanh = output_tanh
        self.torch_mode = "lstm" if output_tanh else None
        self.reset_parameters()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", output_tanh={self.output_tanh}"

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        a, c = (None, None) if state is None else state
        a, c = self._check(x, a), self._check(x, c)  # a<t-1>, c<t-1>: (B, n_a)
        gamma_u, gamma_f, gamma_o = (torch.sigmoid(self.z(g, a, x)) for g in "ufo")
        c = gamma_u * torch.tanh(self.z("c", a, x)) + gamma_f * c  # c<t>
        return gamma_o * (torch.tanh(c) if self.output_tanh else c), c

    def _scan(self, xw: Tensor, w_a: Tensor, state: list[Tensor],
              keep: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        out, a, c = LSTMScan.apply(xw, w_a, state[0], state[1], keep, self.output_tanh)
        return out, [a, c]


def upgrade(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` with every recurrent cell's keys of the older layout (W_g, b_g, b_ca)
    rewritten as the stored tensors (a new dict; other keys untouched)."""
    state_dict = dict(state_dict)
    for prefix, module in model.named_modules():
        if isinstance(module, Cell):
            module.upgrade(state_dict, f"{prefix}." if prefix else "")
    return state_dict
