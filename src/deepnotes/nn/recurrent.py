"""Layers of the notes' recurrent cells (deepnotes.nn.cells): RNN, GRU, LSTM, deep and
bidirectional.

Layers ``RNN``, ``GRU``, ``LSTM`` run a cell over x: (B, T_x, n_x) (batch_first, the default) and
return ``(outputs, h_n)``, or ``(outputs, (h_n, c_n))`` for the LSTM, like torch.nn: outputs
(B, T_x, D * n_a) hold a<t> of the last layer (both directions concatenated), h_n and c_n
(num_layers * D, B, n_a) the states after the last step. ``cells[l * D + d]`` is layer l,
direction d (0 forward, 1 backward; D = 2 if bidirectional), the order of torch's h_n. Layer l + 1
reads a[l]<t> (deep RNN); ``dropout`` acts between layers, in training only. ``lengths`` (B,)
gives each sequence's real length: steps past it are padding and change nothing (outputs there
are 0, h_n is the state at the last real step, the backward direction starts at the last real
step). (Lengths rather than a (B, T_x) mask: padding is at the end of each sequence, as
pack_padded_sequence has it.) ::

    lstm = LSTM(input_size=300, hidden_size=128, num_layers=2, bidirectional=True)
    outputs, (h_n, c_n) = lstm(x, lengths=lengths)  # (B, T_x, 256); (4, B, 128) each
    y_hat = head(torch.cat([h_n[-2], h_n[-1]], 1))  # many-to-one: last layer, both directions

Two paths behind one signature (``implementation=``): ``"fused"`` runs torch's kernel
(torch._VF.lstm / gru / rnn_tanh, oneDNN or cuDNN where torch uses them) on the cells' own
parameters, stored in torch's layout, for the configurations where it computes the same function:
LSTM with tanh, GRU with reset_after=True, RNN. On cuDNN the parameters are views of one flat
buffer in its layout (as torch.nn.LSTM.flatten_parameters makes them, after every ``.to()``), so
the kernel reads them without a copy. ``"cell"`` runs the cells' equations: W_gx x<t> + b_g for
every t in one matrix product, then a time loop inside an autograd function that back-propagates
through time by hand and forms the weight gradient dW_ga = sum_t dz<t>^T a<t-1> in one product
after the loop (deepnotes.nn.bptt). It has no double backward. On a GPU the loops are replayed
from CUDA graphs, captured the second time a shape comes.
``"steps"`` runs each cell's own ``forward`` one time step at a time in plain tensor ops, with
padding masked as above and lengths left unchecked: the slowest path, and the one torch.export
can trace (the ONNX export unrolls it over a fixed T_x).
``"auto"`` (default) picks "fused" where it applies. Tests hold the paths equal to each other, to
NumPy transcriptions of the equations and to torch.nn. ``layer.to_torch()`` and
``Layer.from_torch(module)`` copy weights to and from torch.nn's layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Optional, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.backends.cudnn import rnn as cudnn_rnn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from deepnotes.errors import DeepnotesError
from deepnotes.nn.cells import Cell, GRUCell, LSTMCell, RNNCell, positive

IMPLEMENTATIONS = ("auto", "fused", "cell", "steps")  # the layers' paths (module docstring)
CUDNN_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH"}  # torch._VF kernel -> cuDNN

# ---------------------------------------------------------------- layers


def _tracing() -> bool:
    """Whether torch.export or torch.compile is tracing the call (values are then symbolic)."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)  # torch >= 2.7
    return bool(torch.compiler.is_compiling() or exporting())


def _reverse(z: Tensor, rev: Optional[Tensor]) -> Tensor:
    """Each sequence in reverse time order, within its own length (T, B, n)."""
    return z.flip(0) if rev is None else z.gather(0, rev.expand(-1, -1, z.size(2)))


class _Recurrent(nn.Module):
    cell_class: type = Cell
    n_states = 1
    torch_options: dict = {}  # the cell options under which torch.nn computes the same function

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = True, dropout: float = 0.0,
                 implementation: str = "auto", **cell_options):
        super().__init__()
        name = type(self).__name__
        for arg, value in [("input_size", input_size), ("hidden_size", hidden_size),
                           ("num_layers", num_layers)]:
            positive(arg, value, name)
        if not 0 <= dropout < 1:
            raise DeepnotesError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers; with num_layers=1 it "
                          "does nothing", stacklevel=2)
        if implementation not in IMPLEMENTATIONS:
            raise DeepnotesError(f"{name}: implementation must be one of "
                                 f"{', '.join(map(repr, IMPLEMENTATIONS))}, got {implementation!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.batch_first, self.dropout = bidirectional, batch_first, dropout
        D = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            self.cell_class(input_size if k < D else D * hidden_size, hidden_size, **cell_options)
            for k in range(num_layers * D))
        mode = self.cells[0].torch_mode
        if implementation == "fused" and mode is None:
            options = ", ".join(f"{k}={v!r}" for k, v in cell_options.items())
            raise DeepnotesError(f"{name}({options}): torch has no fused kernel for these "
                                 "equations; use implementation='cell' or 'auto'")
        self.implementation = implementation
        self.flatten_parameters()  # made on a GPU (torch's default device)

    @property
    def _cells(self) -> Sequence[Cell]:
        """self.cells as what it holds (nn.ModuleList types its items as Module)."""
        return cast("Sequence[Cell]", self.cells)

    @property
    def fused(self) -> bool:
        """Whether forward runs torch's fused kernel (else the cells' equations in a loop)."""
        return self.cells[0].torch_mode is not None and self.implementation in ("auto", "fused")

    def _torch_weights(self) -> list[Tensor]:
        """Every cell's [weight_ih, weight_hh, bias_ih, bias_hh], in torch's order l * D + d."""
        return [w for cell in self._cells for w in cell.torch_weights()]

    def _apply(self, fn, recurse=True):
        """After .to(), .cuda(), .half(), ...: the weights flattened again for cuDNN."""
        module = super()._apply(fn, recurse)
        self.flatten_parameters()
        return module

    def flatten_parameters(self) -> None:
        """On cuDNN, make the fused path's weights views of one contiguous buffer in cuDNN's
        layout, as torch.nn.LSTM.flatten_parameters does, so its kernel reads them in place
        (otherwise it copies them into such a buffer on every call). A no-op elsewhere."""
        weights = self._torch_weights()
        first = weights[0]
        mode = self._cells[0].torch_mode
        if not self.fused or mode is None or not first.is_cuda:
            return
        if any(w.dtype != first.dtype or not w.is_cuda or not torch.backends.cudnn.is_acceptable(w)
               for w in weights) or len({w.data_ptr() for w in weights}) != len(weights):
            return
        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights, 4, self.input_size, cudnn_rnn.get_cudnn_mode(CUDNN_MODES[mode]),
                    self.hidden_size, 0, self.num_layers, self.batch_first, self.bidirectional)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}, "
                f"dropout={self.dropout}, path={self._path}")

    @property
    def _path(self) -> str:
        """The path forward takes: "fused", "cell" or "steps" (module docstring)."""
        return "fused" if self.fused else ("steps" if self.implementation == "steps" else "cell")

    def forward(self, x: Tensor, state=None, lengths: Optional[Tensor] = None):
        """x: (B, T_x, n_x) if batch_first else (T_x, B, n_x), or (T_x, n_x) unbatched.
        state: h_0, or (h_0, c_0) for the LSTM, each (num_layers * D, B, n_a); zeros if None.
        lengths: (B,) integers in 1..T_x (a tensor on any device, or a list), each sequence's
        real length; None: all T_x. Returns (outputs, h_n) or (outputs, (h_n, c_n))."""
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        self._check_input(x)
        B, T = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        hx = self._initial_state(state, x, B, unbatched)
        if self.implementation == "steps" and _tracing():  # lengths are symbolic: not checkable
            lengths = None if lengths is None else torch.as_tensor(lengths)
        else:
            lengths = self._check_lengths(lengths, B, T)
        path = {"fused": self._fused, "cell": self._scan, "steps": self._steps}[self._path]
        out, states = path(x, hx, lengths)
        if unbatched:
            out, states = out.squeeze(0 if self.batch_first else 1), [s.squeeze(1) for s in states]
        return out, (states[0] if self.n_states == 1 else tuple(states))

    def _as_list(self, state) -> list[Tensor]:
        if self.n_states == 1:
            return [state]
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise DeepnotesError(f"{type(self).__name__}: state must be a pair (h_0, c_0)")
        return list(state)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[2] != self.input_size or 0 in x.shape:
            order = "B, T_x" if self.batch_first else "T_x, B"
            raise DeepnotesError(f"{type(self).__name__}: expected input of shape ({order}, "
                                 f"{self.input_size}) with B, T_x >= 1, got {tuple(x.shape)}")

    def _initial_state(self, state, x: Tensor, B: int, unbatched: bool) -> list[Tensor]:
        """h_0 (and c_0): (num_layers * D, B, n_a); zeros when not given."""
        shape = (self.num_layers * (2 if self.bidirectional else 1), B, self.hidden_size)
        if state is None:
            return [x.new_zeros(shape) for _ in range(self.n_states)]
        hx = self._as_list(state)
        expected = shape[::2] if unbatched else shape
        for h in hx:
            if not isinstance(h, Tensor) or tuple(h.shape) != expected:
                got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
                raise DeepnotesError(f"{type(self).__name__}: expected a state of shape "
                                     f"{expected} (num_layers * directions, "
                                     f"{'' if unbatched else 'B, '}hidden_size), got {got}")
        return [h.unsqueeze(1) for h in hx] if unbatched else hx

    def _check_lengths(self, lengths: Optional[Tensor], B: int, T: int) -> Optional[Tensor]:
        """lengths as a CPU int64 tensor, or None when every sequence has all T_x steps."""
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (B,) or lengths.is_floating_point() or lengths.is_complex():
            raise DeepnotesError(f"{type(self).__name__}: lengths must be {B} integers (one per "
                                 f"sequence), got {lengths.dtype} of shape {tuple(lengths.shape)}")
        lengths = lengths.to("cpu", torch.int64)
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > T:
            raise DeepnotesError(f"{type(self).__name__}: lengths must be in 1..{T} (T_x), got "
                                 f"values from {low} to {high}")
        return None if low == T else lengths

    def _fused(self, x: Tensor, hx: list[Tensor], lengths: Optional[Tensor]):
        """torch's kernel on the cells' own parameters (stored in its layout); packed when
        lengths vary."""
        weights = self._torch_weights()
        mode = self._cells[0].torch_mode
        assert mode is not None  # self.fused
        kernel = getattr(torch._VF, mode)
        options = (True, self.num_layers, self.dropout, self.training, self.bidirectional)
        with warnings.catch_warnings():  # weights not flat (assigned ones): cuDNN copies them
            warnings.filterwarnings("ignore", "RNN module weights are not part")
            if lengths is None:
                h = tuple(hx) if self.n_states == 2 else hx[0]
                result = kernel(x, h, weights, *options, self.batch_first)
                return result[0], list(result[1:])
            packed = pack_padded_sequence(x, lengths, self.batch_first, enforce_sorted=False)
            assert packed.sorted_indices is not None  # enforce_sorted=False sorts
            hx = [s.index_select(1, packed.sorted_indices) for s in hx]
            h = tuple(hx) if self.n_states == 2 else hx[0]
            result = kernel(packed.data, packed.batch_sizes, h, weights, *options)
        packed_out = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices,
                                    packed.unsorted_indices)
        T = x.shape[1] if self.batch_first else x.shape[0]
        out = pad_packed_sequence(packed_out, self.batch_first, total_length=T)[0]
        return out, [s.index_select(1, packed.unsorted_indices) for s in result[1:]]

    def _scan(self, x: Tensor, hx: list[Tensor], lengths: Optional[Tensor]):
        """The cells: W_gx x<t> + b_g for all t in one product, then the compiled loop."""
        inp = x.transpose(0, 1) if self.batch_first else x  # (T, B, n_x)
        keep = rev = None
        if lengths is not None:
            t = torch.arange(inp.shape[0]).unsqueeze(1)  # (T, 1)
            lengths = lengths.unsqueeze(0)
            keep = (t < lengths).unsqueeze(2).to(x.device)  # (T, B, 1): real steps
            rev = torch.where(t < lengths, lengths - 1 - t, t).unsqueeze(2).to(x.device)
        D = 2 if self.bidirectional else 1
        finals: list[list[Tensor]] = [[] for _ in hx]
        for layer in range(self.num_layers):
            cells = self._cells[layer * D:(layer + 1) * D]
            stacks = [cell.stacked() for cell in cells]
            xw = F.linear(inp, torch.cat([s[1] for s in stacks]), torch.cat([s[2] for s in stacks]))
            outs = []
            for d, (cell, (w_a, _, _), xw_d) in enumerate(zip(cells, stacks, xw.chunk(D, 2))):
                state = [h[layer * D + d] for h in hx]
                out, final = cell._scan(xw_d if d == 0 else _reverse(xw_d, rev), w_a, state, keep)
                outs.append(out if d == 0 else _reverse(out, rev))
                for f, s in zip(finals, final):
                    f.append(s)
            inp = torch.cat(outs, 2) if D == 2 else outs[0]  # a[l]<t>: (T, B, D n_a)
            if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                inp = F.dropout(inp, self.dropout, True)
        out = inp.transpose(0, 1) if self.batch_first else inp
        return out, [torch.stack(f) for f in finals]

    def _steps(self, x: Tensor, hx: list[Tensor], lengths: Optional[Tensor]):
        """The cells' own forward, one step at a time; past a sequence's length the state is
        carried and the output is 0, the backward direction reads each sequence reversed within
        its length. No packing, no data-dependent branch: what torch.export traces."""
        inp = x.transpose(0, 1) if self.batch_first else x  # (T, B, n_x)
        keep = rev = None
        if lengths is not None:
            t = torch.arange(inp.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
            lengths = lengths.to(x.device).unsqueeze(0)
            keep = (t < lengths).unsqueeze(2)  # (T, B, 1): real steps
            rev = torch.where(t < lengths, lengths - 1 - t, t).unsqueeze(2)
        D = 2 if self.bidirectional else 1
        finals: list[list[Tensor]] = [[] for _ in hx]
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                cell = self._cells[layer * D + d]
                state = [h[layer * D + d] for h in hx]
                seq = inp if d == 0 else _reverse(inp, rev)
                steps = []
                for t_step in range(seq.shape[0]):
                    new = cell(seq[t_step], state[0] if self.n_states == 1 else tuple(state))
                    new = list(new) if isinstance(new, tuple) else [new]
                    if keep is not None:
                        new = [torch.where(keep[t_step], n, s) for n, s in zip(new, state)]
                    steps.append(new[0] if keep is None else new[0] * keep[t_step])
                    state = new
                out = torch.stack(steps)
                outs.append(out if d == 0 else _reverse(out, rev))
                for f, s in zip(finals, state):
                    f.append(s)
            inp = torch.cat(outs, 2) if D == 2 else outs[0]
            if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                inp = F.dropout(inp, self.dropout, True)
        out = inp.transpose(0, 1) if self.batch_first else inp
        return out, [torch.stack(f) for f in finals]

    def to_torch(self) -> nn.Module:
        """A torch.nn.RNN / GRU / LSTM computing the same function, with copies of our weights."""
        if self.cells[0].torch_mode is None:
            raise DeepnotesError(f"{type(self).__name__} of {self.cells[0]}: torch.nn has no "
                                 "layer for these equations")
        cls = getattr(nn, type(self).__name__)
        p = next(self.parameters())
        module = cls(self.input_size, self.hidden_size, self.num_layers,
                     batch_first=self.batch_first, dropout=self.dropout,
                     bidirectional=self.bidirectional)
        module.to(p.device, p.dtype)
        with torch.no_grad():
            for i, cell in enumerate(self._cells):
                names = _torch_names(i, self.bidirectional)
                for name, w in zip(names, cell.torch_weights()):
                    getattr(module, name).copy_(w)
        return module.train(self.training)

    @classmethod
    def from_torch(cls, module: nn.RNNBase, **options):
        """Ours with the configuration and weights of a torch.nn.RNN / GRU / LSTM (options such as
        implementation= pass through)."""
        name = cls.__name__
        if type(module).__name__ != name or not module.bias \
                or bool(getattr(module, "proj_size", 0)) \
                or getattr(module, "nonlinearity", "tanh") != "tanh":
            raise DeepnotesError(f"{name}.from_torch: expected a torch.nn.{name} with biases"
                                 f"{' and tanh' if name == 'RNN' else ''}, got {module}")
        p = cast(Tensor, module.weight_ih_l0)
        layer = cls(module.input_size, module.hidden_size, module.num_layers,
                    module.bidirectional, module.batch_first, module.dropout,
                    **cls.torch_options, **options).to(p.device, p.dtype)
        for i, cell in enumerate(layer._cells):
            names = _torch_names(i, layer.bidirectional)
            cell.load_torch_weights(*(getattr(module, n) for n in names))
        return layer.train(module.training)


def _torch_names(i: int, bidirectional: bool) -> list[str]:
    """torch's parameter names for our cell i = l * D + d."""
    layer, d = divmod(i, 2) if bidirectional else (i, 0)
    suffix = f"_l{layer}" + ("_reverse" if d else "")
    return [f"{k}{suffix}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


class RNN(_Recurrent):
    """Layers of RNNCell: a[l]<t> = tanh(W_a[l] [a[l]<t-1>, a[l-1]<t>] + b_a[l]), a[0]<t> = x<t>.
    Returns (outputs, h_n). Always fused unless implementation="cell"."""

    cell_class = RNNCell


class GRU(_Recurrent):
    """Layers of GRUCell (options full=True, reset_after=False: the notes' GRU, run by the cell
    path; reset_after=True runs torch's fused kernel). Returns (outputs, h_n), h_n = c<T_x>."""

    cell_class = GRUCell
    torch_options = {"reset_after": True}


class LSTM(_Recurrent):
    """Layers of LSTMCell (option output_tanh=True: torch's fused kernel; False: the notes' slide,
    a<t> = Gamma_o * c<t>, run by the cell path). Returns (outputs, (h_n, c_n))."""

    cell_class = LSTMCell
    n_states = 2
