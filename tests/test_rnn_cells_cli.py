"""The notes' recurrent cell variants on the command line (--rnn-cell): the model a run builds,
saves and rebuilds for evaluate and resume."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model
from deepnotes.models.sequence import cell_options


def names(model) -> set[str]:
    """The notes' names of the model's recurrent parameters (W_r, b_ca, ...)."""
    return {name for cell in model.rnn.cells for name in cell.notes()}


def test_each_variant_builds_its_own_cells():
    full = create_model("gru", num_classes=3, in_channels=1)
    simplified = create_model("gru", num_classes=3, in_channels=1, rnn_cell="simplified")
    after = create_model("gru", num_classes=3, in_channels=1, rnn_cell="reset-after")
    assert "W_r" in names(full) and "W_r" not in names(simplified)  # no Gamma_r
    assert "b_ca" in names(after) and "b_ca" not in names(full)
    slide = create_model("lstm", num_classes=3, in_channels=1, rnn_cell="slide")
    assert all(not cell.output_tanh for cell in slide.rnn.cells)
    assert all(cell.output_tanh for cell in create_model("lstm", num_classes=3,
                                                          in_channels=1).rnn.cells)
    lm = create_model("charlm", num_classes=5, in_channels=5, rnn_cell="slide")
    assert all(not cell.output_tanh for cell in lm.rnn.cells)


@pytest.mark.parametrize("layer, variant, needle", [
    ("gru", "slide", "not a variant of the GRU layer (its cells are full, simplified, "
                     "reset-after)"),
    ("lstm", "simplified", "not a variant of the LSTM layer (its cells are tanh, slide)"),
    ("rnn", "full", "not a variant of the RNN layer (it has no cell variants)")])
def test_a_variant_of_another_layer_is_refused_in_one_line(layer, variant, needle):
    with pytest.raises(DeepnotesError, match="^" + re.escape(f"--rnn-cell {variant}: {needle}")):
        cell_options(layer, variant)


@pytest.mark.slow  # trains through the CLI
def test_a_run_keeps_its_variant_for_evaluate_and_resume(cli, tmp_path):
    common = ("train", "--data", "digits", "--model", "gru", "--quiet", "--out", tmp_path)
    rc, _, err = cli(*common, "--epochs", 1, "--rnn-cell", "simplified", "--name", "gru")
    assert rc == 0, err
    run = tmp_path / "gru"
    assert json.loads((run / "config.json").read_text())["rnn_cell"] == "simplified"
    rc, out, err = cli("evaluate", run, "--split", "test")  # rebuilt without Gamma_r, or fails
    assert rc == 0, err
    rc, _, err = cli("train", "--resume", run, "--epochs", 2, "--allow-changes", "--quiet")
    assert rc == 0, err
    assert len(json.loads((run / "state.json").read_text())["history"]) == 2
    for model, variant in (("lenet5", "slide"), ("gru", "slide")):
        rc, _, err = cli("train", "--data", "digits", "--model", model, "--rnn-cell", variant,
                         "--epochs", 1, "--quiet", "--out", tmp_path / "bad")
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith(f"error: --rnn-cell {variant}:")
        assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def legacy_keys(tensors: dict) -> dict:
    """A notes' GRU's weights as deepnotes wrote them before the row-block layout: per gate
    W_g = [W_ga, W_gx] and b_g (gates r, u, c; mapped here, independently of src/)."""
    old = {k: v for k, v in tensors.items() if ".cells." not in k}
    for key in [k for k in tensors if k.endswith(".weight_ih")]:
        prefix = key[: -len("weight_ih")]
        w_ih, w_hh, b_ih = (tensors[prefix + n] for n in ("weight_ih", "weight_hh", "bias_ih"))
        n = w_hh.shape[1]
        for j, g in enumerate("ruc"):
            rows = slice(j * n, (j + 1) * n)
            old[f"{prefix}W_{g}"] = torch.cat([w_hh[rows], w_ih[rows]], 1).contiguous()
            old[f"{prefix}b_{g}"] = b_ih[rows].clone()
    return old


@pytest.mark.slow  # trains through the CLI
def test_a_run_saved_with_the_notes_parameter_names_still_evaluates(cli, tmp_path):
    """A GRU run whose model.safetensors holds the older keys (W_r, b_r, ...) evaluates as it
    did: the weights loader reads them into the row-block layout."""
    rc, _, err = cli("train", "--data", "digits", "--model", "gru", "--epochs", 1, "--quiet",
                     "--out", tmp_path, "--name", "gru")
    assert rc == 0, err
    run = tmp_path / "gru"
    rc, before, err = cli("evaluate", run, "--split", "test")
    assert rc == 0, err
    path = run / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    old = legacy_keys(tensors)
    assert "rnn.cells.0.W_u" in old and not any(k.endswith("weight_ih") for k in old)
    save_file(old, str(path), metadata=meta)
    rc, after, err = cli("evaluate", run, "--split", "test")
    assert rc == 0, err
    assert after == before
