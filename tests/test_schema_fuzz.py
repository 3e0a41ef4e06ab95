"""Hand-edited run folders (deepnotes.runs.config, deepnotes.train.schema): every field of
config.json and of the trainer state in state.safetensors, made wrong in many ways, is refused in
one line that names the file and the field, with exit status 2, by every command that reads a run
back; never a traceback.

The quick tests run the mutations through check_config / check_state on a hand-made run; the slow
ones train one tiny run and run evaluate, predict, train --resume and finetune on each mutation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from conftest import run_cli_quietly
from deepnotes import cli
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model
from deepnotes.optim import create_optimizer
from deepnotes.runs import config as run_config
from deepnotes.runs.config import DEFAULTS, OPTIONAL_KEYS, RUN_KEYS
from deepnotes.train import checkpoint, precision, schema, trainer
from deepnotes.train.checkpoint import STATE_KEY
from deepnotes.train.state import TrainState

GONE = "<removed>"  # the mutation that deletes the field
WRONG = [None, "x", "", -1, 0, 10**30, 1.5, math.inf, True, [], {}, [1, "a"], {"a": 1}, GONE]

# -- what a run of lenet5 on digits holds (the slow tests read a real one) -----------------------

CONFIG = {**DEFAULTS, "model": "lenet5", "epochs": 1, "lr": 0.003, "batch_size": 64,
          "classes": [str(i) for i in range(10)], "in_channels": 1, "input_shape": [1, 32, 32],
          "kind": "image", "normalize": {"mean": [0.3], "std": [0.4], "scale": 1 / 255},
          "splits": {"train": 1439, "dev": 179, "test": 179}, "format": "deepnotes run",
          "format_version": 1, "provenance": {"deepnotes": "0.1.0", "git_commit": None}}
ROW = {"epoch": 1, "train_loss": 1.37, "train_accuracy": 0.64, "dev_loss": 0.78,
       "dev_accuracy": 0.84, "lr": 2.6e-05, "seconds": 0.2}
GROUP = {"lr": 2.6e-05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08, "weight_decay": 0.0,
         "bias_correction": True, "eps_inside_sqrt": False, "params": list(range(10))}
STATE = {"epoch": 1, "step": 0, "global_step": 22, "loss_sum": 0.0, "correct": 0, "seen": 0,
         "seconds": 0.0, "history": [ROW], "checkpoint": "1:0:22",
         "optimizer": {"param_groups": [GROUP], "scalars": {f"{i}.step": 22 for i in range(10)}}}

# -- the mutations: (field, value) pairs, each made alone ---------------------------------------

# values of WRONG that a field takes (all else is refused)
TAKES = {"data": ["x", ""], "data_dir": [None, "x", ""], "label_column": [None, "x", ""],
         "lr": [None, 1.5, 10**30], "beta": [None, 0], "weight_decay": [0, 1.5, 10**30],
         "max_len": [None], "seq_len": [None], "min_count": [None], "targets": [None],
         "augment": [None, ""],
         "seed": [0], "precision": [None], "recipe": [None], "skip_bad": [True],
         "bf16": [True], "channels_last": [True], "compile": [True], "cuda_graphs": [True],
         "train_dev": [0],
         "provenance": [{}, {"a": 1}], "splits": [{}, {"a": 1}], "image_size": [None],
         "data_cache": ["on", "off"], "cache_dir": [None, "x", ""], "early_stop": [None],
         "min_delta": [0, 1.5, 10**30], "monitor": ["dev_f1"], "tensorboard": [True],
         "eps": [None, 0, 1.5, 10**30], "eps_inside_sqrt": [True], "bias_correction": [True],
         "rnn_cell": [None], "channels": [None], "class_weights": [None],
         "batch_size": [None]}  # null: prepare chooses it again
TAKES.update({k: [*TAKES.get(k, []), GONE]
              for k in [*OPTIONAL_KEYS, *run_config.CONFIG_EXTRAS]})
MORE_CONFIG = {
    "model": ["lenet", "mlp", "charlm", 5], "optimizer": ["adamw", "ADAM"],
    "schedule": ["onecycl", "step:x", "inverse:-1", "warmup:2", "onecycle:0.1:2", 1],
    "epochs": [2**31], "batch_size": [2**31, -64], "errors": ["ignore", "STRICT"],
    "fractions": [[0.5, 0.5], [0.5, 0.6, 0.1], [0, 0.5, 0.5], ["a", 0.5, 0.5], [0.8, 0.1, -0.1],
                  [math.nan, 0.1, 0.1]],
    "augment": ["rotate", "crop,zoom", ["crop"]], "device": ["gpu", "cuda:x", "cpu:0"],
    "precision": ["64", 16, 32], "train_dev": [1.0, -0.1, math.nan], "recipe": ["slow"],
    "classes": [["only"], [1, 2], ["a", None], ["a", "a", "b"], ["a", ""]],
    "in_channels": [3, 2**21, [1]],
    "input_shape": [[1, 8, 8], [1, 32], [1, 32, 32, 1], [0, 32, 32], [1, "a", 32], [3, 32, 32],
                    [1, 2**21, 2**21]],
    "kind": ["video", "table", "tokens", "IMAGE"],
    "normalize": [{"mean": [0.1], "std": [0.2]},
                  {"mean": [0.1, 0.2], "std": [0.1, 0.2], "scale": 1},
                  {"mean": ["a"], "std": [0.2], "scale": 1},
                  {"mean": [0.1], "std": [-1], "scale": 1},
                  {"mean": [0.1], "std": [1], "scale": 0},
                  {"mean": [math.nan], "std": [1], "scale": 1},
                  {"mean": 0.1, "std": 1, "scale": 1},
                  {"mean": [0.1], "std": [1], "scale": 1e308}],
    "targets": [["a", "b"], ["a"], [1, 2]], "beta": [1.0, -0.1, math.nan],
    "format": ["other", "Deepnotes Run"], "format_version": ["1", 1.0, 99],
    "splits": [{"train": -1}, {"test": "x"}, [1]], "provenance": [[]],
    "transfer": [{"source": 1}, {"source": "r", "source_model": "lenet5"}],
    "lr": [-math.inf, -0.0], "weight_decay": [-1e-9],
    "max_len": [0, 1.0], "seq_len": [0], "min_count": [0], "seed": [10**8 + 1, 2**63],
    "label_column": [5], "data": [5], "data_dir": [5],
    "image_size": [0, "32", 2**21], "channels": [2, 3, "1"], "data_cache": ["yes", True],
    "cache_dir": [5],
    "monitor": ["accuracy", "dev_f1"], "early_stop": [2**31, 1.0], "min_delta": [-0.1],
    "multitask_loss": ["1/m", 5, "examples"],  # examples: only with targets
    "class_weights": [[1.0], [0.0] * 10, [math.inf] * 10, "balanced", [1.0] * 3],
    "features": [["a"], [1], "a"], "label_name": [5, None],  # a table run's, by name
    "train_examples": [0, 1.5, "10"],  # a learning curve's m
}
# several fields at once: each fine alone, wrong together
CROSS_CONFIG = [{"optimizer": "sgd", "beta": 0.9}, {"augment": "flip", "kind": "table",
                                                    "model": "mlp", "input_shape": [1]}]
# well-typed and each fine alone, but not this run's: refused later (the weights, the data), or
# taken; never a traceback
MISMATCHED = [{"classes": ["a", "b", "c"]}, {"model": "resnet18"},
              {"in_channels": 3, "input_shape": [3, 32, 32],
               "normalize": {"mean": [0.1] * 3, "std": [0.2] * 3, "scale": 1 / 255}},
              {"data": "breast-cancer"}, {"fractions": [1.0, 0.0, 0.0]},
              {"seed": 10**8, "train_dev": 0.5, "augment": "crop"},
              {"normalize": {"mean": [1e308], "std": [1e-308], "scale": 1e308}}]
RAW_CONFIG = ["", "{", "not json", "[]", "null", "5", '"run"', "[" * 100_000,
              '{"epochs": ' + "1" * 5000 + "}", b"\xff\xfe{}", "\ufeff{}"]

MORE_STATE = {
    "epoch": [-5, 2**63], "step": [-1], "loss_sum": [-1.0, math.nan],
    "history": [[{}], [1], [{"epoch": 0, "train_loss": 1, "train_accuracy": 0.5}],
                [{"epoch": 1, "train_loss": "x", "train_accuracy": 0.5}],
                [{"epoch": 1, "train_loss": 1, "train_accuracy": 2}],
                [ROW, {"epoch": 2, "train_loss": 1, "train_accuracy": 0.5}], "x"],
    "optimizer": [{"param_groups": []}, {"param_groups": [{}], "scalars": {}},
                  {"param_groups": "x", "scalars": {}}, {"param_groups": [GROUP], "scalars": "x"},
                  {"param_groups": [GROUP], "scalars": {"bad": 1}},
                  {"param_groups": [GROUP], "scalars": {"0.step": "x"}},
                  {"param_groups": [GROUP]},
                  *({"param_groups": [{**GROUP, k: v}], "scalars": {}} for k, v in
                    [("lr", -1), ("lr", "x"), ("params", ["a"]), ("params", "x"), ("beta1", 2),
                     ("eps", -1), ("bias_correction", "yes"), ("weight_decay", math.inf)])],
    "scaler": [{"scale": -1}, {}, "x"], "checkpoint": [5],
    "monitor": ["dev_f1", "loss"], "best_epoch": [3, 0], "best_value": [0.5, math.nan],
    "stopped": ["early stop", 5],
}
TAKES_STATE = {"loss_sum": [0, 1.5, 10**30], "seconds": [0, 1.5, 10**30], "history": [[]],
               "step": [0], "global_step": [0], "correct": [0], "seen": [0], "epoch": [0],
               "checkpoint": ["x", "", GONE], "monitor": ["dev_f1"], "best_epoch": [3],
               "best_value": [0.5, -1, 0, 1.5, 10**30], "stopped": ["early stop", "", "x"]}
# refused only when the optimizer it is loaded into is known (checkpoint.load)
OPTIMIZER_MISFITS = [{"param_groups": [{**GROUP, "params": [0]}], "scalars": {}},
                     {"param_groups": [GROUP, GROUP], "scalars": {}},
                     {"param_groups": [{k: v for k, v in GROUP.items() if k != "beta1"}],
                      "scalars": {}}]
RAW_STATE = ["", "not json", "[]", "null", "[" * 100_000, '{"epoch": ' + "1" * 5000 + "}"]


def cases(base: dict, more: dict, takes: dict) -> list[tuple[str, object, bool]]:
    """(field, value, refused?) for every field of ``base`` and of ``more``."""
    out = []
    for field in dict.fromkeys([*base, *more]):
        for value in [*WRONG, *more.get(field, [])]:
            if field not in base and value == GONE:
                continue
            ok = any(same(value, t) for t in takes.get(field, []))
            out.append((field, value, not ok))
    return out


def same(a, b) -> bool:
    return type(a) is type(b) and a == b


def mutated(obj: dict, field: str, value) -> dict:
    out = json.loads(json.dumps(obj))  # a deep copy
    if isinstance(value, str) and value == GONE:
        out.pop(field, None)
    else:
        out[field] = value
    return out


CONFIG_CASES = cases(CONFIG, MORE_CONFIG, TAKES)
STATE_CASES = cases(STATE, MORE_STATE, TAKES_STATE)


def case_id(case) -> str:
    field, value, refused = case
    return f"{field}={json.dumps(value)[:30]}{'' if refused else '-ok'}"


def assert_one_line(message: str, *names: str) -> None:
    assert "\n" not in message.strip(), message
    for name in names:
        assert re.search(rf"(?<![\w.]){re.escape(name)}\b", message), (name, message)


# -- quick: the schema alone ----------------------------------------------------------------------

def test_a_valid_config_and_state_pass_and_are_returned():
    config, state = json.loads(json.dumps(CONFIG)), json.loads(json.dumps(STATE))
    assert run_config.check_config(config, "r/config.json") is config
    assert schema.check_state(state, "r/state.safetensors") is state
    assert config == CONFIG and state == STATE  # nothing changed on the way


def test_one_line_messages_name_file_field_and_expectation():
    cases = [(("in_channels", "x"), "r/config.json: field 'in_channels': expected an integer "
              "from 1 to 1048576, found \"x\""),
             (("classes", 5), "r/config.json: field 'classes': expected a list of at least 2 "
              "items, found 5"),
             (("normalize", {}), "r/config.json: field 'normalize.mean' is missing"),
             (("seed", "abc"), "r/config.json: field 'seed': expected an integer from 0 to "
              "100000000, found \"abc\""),
             (("in_channels", [1, "a"]), "r/config.json: field 'in_channels': expected an "
              "integer from 1 to 1048576, found [1, \"a\"]"),
             (("classes", ["a", None]), "r/config.json: field 'classes[1]': expected a string, "
              "found null")]
    for (field, value), message in cases:
        with pytest.raises(DeepnotesError) as exc:
            run_config.check_config(mutated(CONFIG, field, value), "r/config.json")
        assert str(exc.value) == message
    with pytest.raises(DeepnotesError, match=r"^r/state.safetensors: field 'epoch': expected an "
                       r"integer >= 0 \(64-bit\), found \"x\"$"):
        schema.check_state(mutated(STATE, "epoch", "x"), "r/state.safetensors")
    with pytest.raises(DeepnotesError, match=r"field 'schedule': unknown schedule 'onecycl'; did "
                       "you mean 'onecycle'"):
        run_config.check_config(mutated(CONFIG, "schedule", "onecycl"), "r/config.json")


def test_a_config_that_breaks_the_rules_is_never_written(tmp_path):
    config = run_config.RunConfig.from_dict(json.loads(json.dumps(CONFIG)))
    config.write(tmp_path / "config.json")  # a valid one is, and reads back the same
    assert run_config.read_config(tmp_path).to_dict() == config.to_dict()
    before = (tmp_path / "config.json").read_bytes()
    config.early_stop = 0
    with pytest.raises(DeepnotesError, match=r"config.json: field 'early_stop'"):
        config.write(tmp_path / "config.json")
    assert (tmp_path / "config.json").read_bytes() == before


def assert_verdict(check, obj, path: str, field: str, refused: bool) -> None:
    """``check`` accepts ``obj``, or refuses it in one line naming ``path`` and ``field``."""
    if not refused:
        check(obj, path)
        return
    with pytest.raises(DeepnotesError) as exc:
        check(obj, path)
    assert_one_line(str(exc.value), path, field)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=case_id)
def test_config_mutation_by_the_schema(case):
    field, value, refused = case
    config = {**{k: DEFAULTS[k] for k in OPTIONAL_KEYS},  # as read_config fills it in
              **mutated(CONFIG, field, value)}
    assert_verdict(run_config.check_config, config, "r/config.json", field, refused)


@pytest.mark.parametrize("change", CROSS_CONFIG, ids=lambda c: ",".join(c))
def test_fields_that_do_not_fit_together(change):
    with pytest.raises(DeepnotesError) as exc:
        run_config.check_config({**CONFIG, **change}, "r/config.json")
    assert_one_line(str(exc.value), "r/config.json")
    assert re.search(r"fields? '(" + "|".join(change) + ")", str(exc.value))


@pytest.mark.parametrize("case", STATE_CASES, ids=case_id)
def test_state_mutation_by_the_schema(case):
    field, value, refused = case
    state = mutated(STATE, field, value)
    assert_verdict(schema.check_state, state, "r/state.safetensors", field, refused)


def test_saved_optimizer_state_must_fit_the_optimizer():
    model = create_model("lenet5", num_classes=10, in_channels=1)
    optimizer = create_optimizer("adam", model.parameters(), 0.003)
    schema.check_state(json.loads(json.dumps(STATE)), "s", optimizer)
    for saved in OPTIMIZER_MISFITS:
        schema.check_state(mutated(STATE, "optimizer", saved), "s")  # fine on its own
        with pytest.raises(DeepnotesError) as exc:
            schema.check_state(mutated(STATE, "optimizer", saved), "s", optimizer)
        assert_one_line(str(exc.value), "optimizer.param_groups")


def test_the_tables_cover_what_the_code_writes():
    assert set(run_config.CONFIG) == {*RUN_KEYS, *OPTIONAL_KEYS}
    assert schema.PRECISIONS == precision.PRECISIONS
    t = trainer.Trainer(torch.nn.Linear(2, 2), torch.optim.SGD([torch.zeros(1)], 0.1), epochs=1)
    written = set(t.state.to_dict())  # what a checkpoint of a fresh trainer holds
    fields = {f.name for f in dataclasses.fields(TrainState)}
    assert written <= set(schema.STATE)
    assert fields <= {*schema.STATE, *schema.STATE_EXTRAS}  # every field has a rule
    assert set(schema.STATE) - {"optimizer"} <= fields  # every rule has a field, but the optimizer


# -- slow: every mutation through the commands, on a run folder that deepnotes train wrote ------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A trained run (lenet5 on digits, one epoch) and an image to predict, in a folder; main()
    reuses one argument parser meanwhile (building it is most of the time of a refusal)."""
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as patch:
        parser = cli.build_parser()
        patch.setattr(cli, "build_parser", lambda: parser)
        rc, _, err = run_cli_quietly("train", "--data", "digits", "--epochs", 1, "--batch-size",
                                     64, "--out", root, "--name", "run", "--quiet")
        assert rc == 0, err
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "x.png")
        yield root


def copy_of(made: Path, name: str) -> Path:
    run = made / "cases" / name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(made / "run", run, ignore=shutil.ignore_patterns("*.png"))
    return run


def commands(made: Path, run: Path) -> dict:
    return {"evaluate": ["evaluate", run, "--device", "cpu"],
            "predict": ["predict", run, made / "x.png", "--device", "cpu"],
            "resume": ["train", "--resume", run, "--quiet"],
            "finetune": ["finetune", run, "--data", "digits", "--epochs", 1, "--out",
                         made / "finetuned", "--quiet", "--device", "cpu"]}


def refused_by_all(made, run: Path, file: str, field: str | None, which) -> None:
    for name, argv in commands(made, run).items():
        if name not in which:
            continue
        rc, _, err = run_cli_quietly(*argv)
        assert rc == 2, (name, rc, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert_one_line(err, file, *([field] if field else []))


def not_a_traceback(made, run: Path, which) -> None:
    for name, argv in commands(made, run).items():
        if name in which:
            rc, _, err = run_cli_quietly(*argv)  # an exception here is a traceback for a user
            assert rc == 0 or (rc == 2 and err.count("error:") == 1), (name, rc, err)


@pytest.mark.slow
@pytest.mark.parametrize("case", CONFIG_CASES, ids=case_id)
def test_config_mutation_by_the_commands(made, case):
    field, value, refused = case
    run = copy_of(made, "config")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(mutated(config, field, value)))
    if refused:
        refused_by_all(made, run, "config.json", field, ("evaluate", "predict", "resume",
                                                         "finetune"))
    else:  # evaluate takes a second: only where it reads the field
        not_a_traceback(made, run, ("predict", *(("evaluate",) if field in READ_BY_EVALUATE
                                                 else ())))


READ_BY_EVALUATE = {"data", "data_dir", "label_column", "skip_bad", "max_len", "errors", "seq_len",
                    "min_count", "targets", "seed", "fractions", "train_dev", "precision", "bf16"}


@pytest.mark.slow
@pytest.mark.parametrize("change", CROSS_CONFIG, ids=lambda c: ",".join(c))
def test_config_mutations_together_by_the_commands(made, change):
    run = copy_of(made, "cross")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, **change}))
    refused_by_all(made, run, "config.json", None, ("evaluate", "predict", "resume", "finetune"))


@pytest.mark.slow
@pytest.mark.parametrize("change", MISMATCHED, ids=lambda c: ",".join(c))
def test_config_of_another_run_by_the_commands(made, change):
    run = copy_of(made, "mismatched")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, **change}))
    not_a_traceback(made, run, ("evaluate", "predict"))


@pytest.mark.slow
@pytest.mark.parametrize("text", RAW_CONFIG, ids=lambda t: repr(t)[:20])
def test_config_that_is_not_a_run_config(made, text):
    run = copy_of(made, "raw")
    data = text if isinstance(text, bytes) else text.encode()
    (run / "config.json").write_bytes(data)
    refused_by_all(made, run, "config.json", None, ("evaluate", "predict", "finetune"))
    rc, _, err = run_cli_quietly(*commands(made, run)["resume"])  # may also say: not a run folder
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err


def with_state(run: Path, text: str | None) -> None:
    """Rewrite the trainer state in run/state.safetensors (None: leave none)."""
    path = run / "state.safetensors"
    tensors = st_load(path.read_bytes())
    path.write_bytes(st_save(tensors, metadata=None if text is None else {STATE_KEY: text}))


@pytest.mark.slow
@pytest.mark.parametrize("case", STATE_CASES, ids=case_id)
def test_state_mutation_by_resume(made, case):
    field, value, refused = case
    run = copy_of(made, "state")
    state = json.loads(st_load_meta(run)[STATE_KEY])
    with_state(run, json.dumps(mutated(state, field, value)))
    if refused:
        refused_by_all(made, run, "state.safetensors", field, ("resume",))
    elif (field, value) in RESUMED:
        not_a_traceback(made, run, ("resume",))
    else:  # what --resume does with the checkpoint, without the data and the metrics
        checkpoint.repair(run)
        model = create_model("lenet5", num_classes=10, in_channels=1)
        checkpoint.load(run, model, create_optimizer("adam", model.parameters(), 0.003))


# valid trainer states that the slow tests resume from (the others are loaded: resuming takes
# seconds, metrics and plots included)
RESUMED = [("checkpoint", GONE), ("checkpoint", "x"), ("history", []), ("loss_sum", 10**30)]


@pytest.mark.slow
@pytest.mark.parametrize("saved", OPTIMIZER_MISFITS, ids=lambda s: str(len(s["param_groups"])))
def test_optimizer_state_that_does_not_fit_by_resume(made, saved):
    run = copy_of(made, "misfit")
    state = json.loads(st_load_meta(run)[STATE_KEY])
    with_state(run, json.dumps({**state, "optimizer": saved}))
    refused_by_all(made, run, "state.safetensors", "optimizer.param_groups", ("resume",))


@pytest.mark.slow
@pytest.mark.parametrize("text", [*RAW_STATE, None], ids=lambda t: repr(t)[:20])
def test_state_that_is_not_a_trainer_state_by_resume(made, text):
    run = copy_of(made, "rawstate")
    with_state(run, text)
    refused_by_all(made, run, "state.safetensors", None, ("resume",))


def st_load_meta(run: Path) -> dict:
    with safe_open(str(run / "state.safetensors"), framework="pt") as f:
        return f.metadata()
