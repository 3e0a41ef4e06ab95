"""A model, layer by layer, in the notes' notation: n_H x n_W x n_C, f, p, s, parameters, MACs.

    model = create_model("lenet5")
    rows = summarize(model, (1, 32, 32))  # (n_C, n_H, n_W), no batch axis
    text = format_table(rows, totals(rows, model))

A model built under ``with torch.device("meta"):`` gives the same rows without allocating or
computing anything, which makes even VGG's 138M parameters instant.

One forward pass of a zero input of shape (1, *input_shape) with the model in eval mode, under
``torch.no_grad``, records what every leaf module (one without children) outputs, so the shapes
are those the model really produces. A row holds:

- ``name``: the module's path (``conv.0``, ``layer1.0.conv1``); ``type``: its class name;
- ``input`` / ``output``: the shapes in the notes' order, ``n_H x n_W x n_C`` for a
  (B, n_C, n_H, n_W) tensor and ``n`` for a (B, n) one (``shape`` keeps torch's order, no B);
- ``f``, ``p``, ``s``: filter size, padding and stride of a convolution or pooling layer (an int,
  or a tuple when n_H and n_W differ; ``"same"`` for same padding), None for other layers;
- ``parameters``: the module's own parameters (a module called twice counts them once);
- ``macs``: multiply-adds for one example. A convolution does
  n_H[l] * n_W[l] * n_C[l] * f_h * f_w * n_C[l-1] / groups, a linear layer n_in * n_out.
  Biases, batch norm (it folds into the layer before it at inference), pooling, activations and
  any layer not listed here count 0: the figure is the usual one for comparing networks, the
  products of weights and activations that dominate the cost.

Modules that do nothing (``nn.Identity``, an empty ``nn.Sequential``) get no row, and neither do
operations a ``forward`` does by itself (a residual addition, ``torch.flatten``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepnotes.errors import DeepnotesError

_PASSIVE = (nn.Identity, nn.Sequential, nn.ModuleList, nn.ModuleDict)


def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """One row per leaf module call of a forward pass on zeros of shape (1, *input_shape).

    A layer that cannot take its input (an image too small for a filter, a linear layer fed the
    wrong n) raises :class:`DeepnotesError` naming the module path, with the layer's own message.
    """
    input_shape = _check_shape(input_shape)
    leaves = [(name, m) for name, m in model.named_modules()
              if not any(True for _ in m.children()) and not isinstance(m, _PASSIVE)]
    recorder = _Recorder()
    handles = [h for name, m in leaves for h in recorder.attach(name, m)]
    was_training = model.training
    try:
        model.eval()
        first = next(model.parameters(), None)
        kwargs: dict[str, Any] = ({"device": first.device, "dtype": first.dtype}
                                  if first is not None else {})
        with torch.no_grad():
            recorder.run(model, torch.zeros(1, *input_shape, **kwargs))  # (1, *input_shape)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return recorder.rows


def totals(rows: list[dict], model: nn.Module | None = None) -> dict:
    """Sums: ``parameters`` (every parameter of ``model`` if given, else the rows'),
    ``trainable`` (those with requires_grad) and ``macs`` for one example.

    With the model, the parameters include those of layers the forward pass skipped (such as
    GoogLeNet's auxiliary classifiers at inference) and equal sum(p.numel() for p in params).
    """
    if model is None:
        params = trainable = sum(row["parameters"] for row in rows)
    else:
        params = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": params, "trainable": trainable, "macs": sum(r["macs"] for r in rows)}


COLUMNS = [("name", "layer"), ("type", "type"), ("input", "input"), ("output", "output"),
           ("f", "f"), ("p", "p"), ("s", "s"), ("parameters", "parameters"), ("macs", "MACs")]
_RIGHT = {"f", "p", "s", "parameters", "macs"}


def format_table(rows: list[dict], total: dict) -> str:
    """The rows as aligned text columns, with a totals line under a rule."""
    cells = [[_cell(row.get(key)) for key, _ in COLUMNS] for row in rows]
    head = [title for _, title in COLUMNS]
    foot = ["total", "", "", "", "", "", "", _cell(total["parameters"]), _cell(total["macs"])]
    widths = [max(len(line[i]) for line in [head, foot, *cells]) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if key in _RIGHT else v.ljust(w)
                 for v, w, (key, _) in zip(values, widths, COLUMNS)]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(head))
    lines = [line(head), rule, *(line(c) for c in cells), rule, line(foot)]
    if total.get("trainable", total["parameters"]) != total["parameters"]:
        lines.append(f"trainable parameters: {total['trainable']:,}")
    return "\n".join(lines)


def notation(shape: tuple[int, ...]) -> str:
    """(n_C, n_H, n_W) -> ``"n_H x n_W x n_C"``; (n,) -> ``"n"``; other ranks in torch's order."""
    if len(shape) == 3:
        shape = (shape[1], shape[2], shape[0])
    return " x ".join(str(n) for n in shape)


class _Recorder:
    """Forward hooks that append a row per leaf call and remember which leaf is running."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.seen: set[int] = set()
        self.current: tuple[str, nn.Module, tuple] | None = None

    def attach(self, name: str, module: nn.Module) -> list:
        def pre(mod, inputs):
            self.current = (name, mod, _shape_of(inputs))

        def post(mod, inputs, output):
            self.current = None
            self.rows.append(self.row(name, mod, _shape_of(inputs), _shape_of(output)))

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def row(self, name: str, module: nn.Module, in_shape: tuple, out_shape: tuple) -> dict:
        own = 0 if id(module) in self.seen else sum(p.numel() for p in module.parameters())
        self.seen.add(id(module))
        f, p, s = _window(module)
        return {"name": name, "type": type(module).__name__, "input": notation(in_shape),
                "output": notation(out_shape), "shape": list(out_shape), "f": f, "p": p, "s": s,
                "parameters": own, "macs": _macs(module, in_shape, out_shape)}

    def run(self, model: nn.Module, x: torch.Tensor) -> None:
        """model(x), with a failure inside a leaf turned into a one-line error naming it."""
        try:
            model(x)
        except DeepnotesError as exc:
            raise DeepnotesError(f"{self._where()}: {exc}") from None
        except (RuntimeError, ValueError) as exc:
            raise DeepnotesError(f"{self._where()}: {self._explain(exc)}") from None

    def _explain(self, exc: Exception) -> str:
        """The first line of torch's message, or the course's n for a linear layer's mismatch."""
        if self.current is not None and isinstance(self.current[1], nn.Linear):
            n_in, n = self.current[1].in_features, self.current[2][-1:]
            if n and n[0] != n_in:
                return f"expected n = {n_in} input features, got {n[0]}"
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__

    def _where(self) -> str:
        if self.current is not None:
            name, module, in_shape = self.current
            return f"layer {name} ({type(module).__name__}) with input {notation(in_shape)}"
        if self.rows:
            return f"after layer {self.rows[-1]['name']} (output {self.rows[-1]['output']})"
        return "forward pass"


def _shape_of(value) -> tuple[int, ...]:
    """The shape, without the batch axis, of a tensor or of the first tensor in a tuple/list."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape[1:])
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, (torch.Tensor, tuple, list)):
                return _shape_of(item)
    return ()


def _window(module: nn.Module) -> tuple:
    """(f, p, s) of a convolution or pooling layer; (None, None, None) for any other."""
    if not all(hasattr(module, k) for k in ("kernel_size", "stride", "padding")):
        return None, None, None
    padding: object = module.padding
    if getattr(module, "same", False) or padding == "same":
        padding = "same"
    elif padding == "valid":
        padding = 0
    return tuple(_compact(v) for v in (module.kernel_size, padding, module.stride))


def _compact(value):
    """3 for 3 or (3, 3); (3, 1) stays a tuple; a word stays a word."""
    if isinstance(value, (tuple, list)):
        return value[0] if len(set(value)) == 1 else tuple(value)
    return value


def _macs(module: nn.Module, in_shape: tuple, out_shape: tuple) -> int:
    """Multiply-adds for one example (see the module docstring for what counts)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return _numel(in_shape) * module.weight[0].numel()  # each input pixel scatters a filter
    if isinstance(module, nn.modules.conv._ConvNd):
        return _numel(out_shape) * module.weight[0].numel()  # f_h * f_w * n_C[l-1] / groups
    if isinstance(module, nn.Linear):
        return _numel(out_shape) * module.in_features
    return 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


def _check_shape(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(n < 1 for n in shape):
        raise DeepnotesError(f"input_shape={input_shape!r}: expected positive sizes such as "
                             "(3, 224, 224) or (30,)")
    return shape
