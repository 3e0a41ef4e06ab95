"""``deepnotes export RUN``: the trained model as an ONNX graph a deployment runtime can load.

The graph takes what a deployment has and gives what it wants: images as uint8 (N, n_C, n_H, n_W)
at the run's input size (features as float32 (N, n_x) for a table, token ids as int64 (N, T_x)
for text, padded with 0 to the run's T_x), any batch size N; inside, the run's normalisation
x_norm = (x * scale - mu) / sigma, the network, and softmax, so the output is each class's
probability (N, K); for a multi-task run (``--targets``), a sigmoid for each of its m yes/no
tasks instead, sigma(z_j) = P(task j is yes), (N, m), which need not add up to 1. Exported
with ``torch.onnx.export(dynamo=True)``, then checked: ``onnx.checker.check_model(full_check=
True)``, and ONNX Runtime on a batch of inputs must give the top classes and, within 1e-4, the
probabilities that the model gives in PyTorch. A text classifier's recurrent layers are exported
on their "steps" path (each cell's forward unrolled over the T_x steps, padding masked), the one
torch.export can trace; it computes what the trained layers compute. Needs
``pip install 'deepnotes[onnx]'`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepnotes import atomic
from deepnotes.data import Normalizer
from deepnotes.errors import DeepnotesError
from deepnotes.nn import GRU, LSTM, RNN
from deepnotes.runs.config import RunConfig

FORMATS = ("onnx",)
KINDS = ("image", "table", "tokens")  # classification of one label an example
TOLERANCE = 1e-4  # ONNX Runtime's probabilities against PyTorch's

log = logging.getLogger(__name__)


class Deployed(nn.Module):
    """Raw input -> probabilities: the run's normalisation, the network, then softmax over the
    classes, or with ``multitask`` a sigmoid for each task."""

    def __init__(self, model: nn.Module, normalize: dict, multitask: bool = False):
        super().__init__()
        self.model, self.normalizer = model, Normalizer.from_dict(normalize)
        self.multitask = multitask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(self.normalizer(x)).float()
        return torch.sigmoid(z) if self.multitask else torch.softmax(z, dim=-1)


def example_input(config: RunConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A batch of inputs of the kind and shape the run reads, random but valid."""
    g = torch.Generator().manual_seed(seed)
    if config.kind == "image":
        return torch.randint(0, 256, (batch, *config.input_shape), dtype=torch.uint8,
                             generator=g)
    if config.kind == "table":
        return torch.randn(batch, *config.input_shape, generator=g)
    x = torch.randint(1, config.in_channels, (batch, *config.input_shape), generator=g)
    lengths = torch.randint(1, config.input_shape[0] + 1, (batch, 1), generator=g)
    lengths[0] = config.input_shape[0]  # one sequence of all T_x steps, the others padded
    return x * (torch.arange(config.input_shape[0]) < lengths)


def traceable(model: nn.Module) -> nn.Module:
    """``model`` itself, or for a recurrent one a copy whose layers run the "steps" path."""
    if not any(isinstance(m, (RNN, GRU, LSTM)) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for layer in model.modules():
        if isinstance(layer, (RNN, GRU, LSTM)):
            layer.implementation = "steps"
    return model


def export_onnx(model: nn.Module, config: RunConfig, out: Path) -> Path:
    """Write ``model`` (trained on ``config``'s data) to ``out`` as a checked ONNX graph."""
    if config.kind not in KINDS:
        raise DeepnotesError(f"export: a {config.kind} run cannot be exported yet (image, table "
                             "and text classifiers can)")
    onnx, ort = _libraries()
    multitask = bool(config.targets)
    deployed = Deployed(model.eval(), config.normalize, multitask).eval()
    x = example_input(config)
    dims = {0: torch.export.Dim("batch", min=1)}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.export.tmp")  # atomic.sweep's pattern
    try:
        _export(Deployed(traceable(model), config.normalize, multitask).eval(), x, dims, tmp,
                config.model)
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
        check_against_runtime(deployed, ort, tmp, config)
        atomic.write_bytes(out, tmp.read_bytes())  # only a checked graph reaches ``out``
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _export(deployed: nn.Module, x: torch.Tensor, dims: dict, path: Path, name) -> None:
    """torch.onnx.export with its own chatter kept off the user's screen; a model the exporter
    cannot trace is refused in one line."""
    chatter, torch_log = io.StringIO(), logging.getLogger("torch")
    level = torch_log.level
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), \
                contextlib.redirect_stderr(chatter):
            warnings.simplefilter("ignore")
            torch_log.setLevel(logging.CRITICAL)  # the exporter's warnings and graph dumps
            program = torch.onnx.export(deployed, (x,), dynamo=True, dynamic_shapes=(dims,),
                                        input_names=["input"], output_names=["probabilities"])
        assert program is not None  # dynamo=True returns the program
        program.save(str(path))
    except Exception as exc:  # noqa: BLE001 - any exporter failure means: cannot export
        why = exc.__cause__ or exc
        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(why).strip().splitlines() or [""])[0])[:160]
        raise DeepnotesError(f"--model {name} cannot be exported to ONNX: torch.export cannot "
                             f"trace it ({type(why).__name__}: {first})") from None
    finally:
        torch_log.setLevel(level)


def check_against_runtime(deployed: nn.Module, ort, path: Path, config: RunConfig) -> None:
    """ONNX Runtime on a batch of 5 (another size than the export's) agrees with PyTorch."""
    x = example_input(config, batch=5, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        want = deployed(x).numpy()
    if got.shape != want.shape or not (got.argmax(1) == want.argmax(1)).all() or \
            np.abs(got - want).max() > TOLERANCE:
        raise DeepnotesError(f"{path}: ONNX Runtime's probabilities differ from PyTorch's "
                             f"(largest difference {np.abs(got - want).max():.2g}); not written")


def _libraries():
    """onnx and onnxruntime (onnxscript is what torch's exporter needs), or a one-line error."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) imports it
    except ImportError as exc:
        raise DeepnotesError(f"deepnotes export needs onnx, onnxscript and onnxruntime ({exc}); "
                             "pip install 'deepnotes[onnx]'") from None
    return onnx, onnxruntime
