"""The rules of a JSON file a person may have edited, and those of a checkpoint's trainer state.

``train --resume``, ``evaluate`` and the rest read what ``train`` wrote, often after a person
edited it. A checkpoint's state is read through :func:`check_state` (in ``checkpoint.load``),
config.json through ``deepnotes.runs.config.check_config``, both built of the checkers here;
they refuse a bad value in one line::

    runs/x/config.json: field 'in_channels': expected an integer from 1 to 1048576, found "x"

The rules are tables, field -> checker; a checker is a small function that returns quietly or
raises :class:`Bad`. Fields not in the tables are allowed (a newer deepnotes may add some). Then
cheap cross-field rules: the model reads the kind of data, input_shape and the normaliser fit
in_channels, the saved optimizer state fits the optimizer it is loaded into.
"""

from __future__ import annotations

import json
import math
import re

from deepnotes.data.dataset import SEQUENCE_TASKS
from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.train.history import MONITORS

KINDS = ("image", "table", *SEQUENCE_TASKS)
PRECISIONS = ("32", "bf16", "16")  # deepnotes.train.precision.PRECISIONS (a test keeps them equal)
SPLIT_NAMES = ("train", "train_dev", "dev", "test")
INT64 = 2**63 - 1
COUNT = 2**31 - 1  # epochs, batch sizes, lengths
WIDTH = 2**20  # channels, features, vocabulary, steps: far above any real run, far below OOM


class Bad(Exception):
    """What a rule expected (or, ``said``, the whole complaint), of which value, where inside
    the field (``.mean``, ``[2]``)."""

    def __init__(self, expected: str, value=Ellipsis, said: bool = False):
        self.expected, self.value, self.said, self.where = expected, value, said, ""


# -- checkers: value -> None, or raise Bad ---------------------------------------------------------

def rule(ok, expected: str):
    """The checker of a predicate ``ok(value)``."""
    def check(v):
        if not ok(v):
            raise Bad(expected)
    return check


def integer(low: int, high: int = INT64):  # JSON true/false and 1.0 are not integers
    return rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
                f"an integer >= {low} (64-bit)" if high == INT64 else
                f"an integer from {low} to {high}")


def number(low=None, high=None, *, above=False, below=False, finite=True):
    """A real number (JSON true/false are not numbers); ``above``/``below``: open bounds."""
    def ok(v):
        return (isinstance(v, (int, float)) and not isinstance(v, bool)
                and (not finite or math.isfinite(v))
                and (low is None or (v > low if above else v >= low))
                and (high is None or (v < high if below else v <= high)))
    return rule(ok, f"a number in {'(' if above else '['}{low:g}, {high:g}{')' if below else ']'}"
                if high is not None else f"a {'finite ' * finite}number"
                + ("" if low is None else f" {'>' if above else '>='} {low:g}"))


boolean = rule(lambda v: isinstance(v, bool), "true or false")
string = rule(lambda v: isinstance(v, str), "a string")
MISSING = object()  # a field that is not there


def one_of(*choices):
    return rule(lambda v: not isinstance(v, bool) and v in choices,
                "one of " + ", ".join(json.dumps(c) for c in choices))


def matching(pattern: str, expected: str):
    return rule(lambda v: isinstance(v, str) and re.fullmatch(pattern, v, re.I) is not None,
                expected)


def optional(check):  # None, or what check accepts
    return lambda v: None if v is None else check(v)


def list_of(check, min_len: int = 0, max_len: int = INT64):
    def check_list(v):
        if not isinstance(v, list) or not min_len <= len(v) <= max_len:
            raise Bad("a list" if not min_len else f"a list of {min_len} items"
                      if min_len == max_len else f"a list of at least {min_len} items"
                      if max_len == INT64 else f"a list of {min_len} to {max_len} items")
        for i, item in enumerate(v):
            _inside(check, item, f"[{i}]")
    return check_list


def record(fields: dict, required=None):
    """A JSON object whose fields follow ``fields``; ``required`` (default: all) must be there."""
    def check(v):
        if not isinstance(v, dict):
            raise Bad("a JSON object")
        for name, rule in fields.items():
            if name in v or required is None or name in required:
                _inside(rule, v.get(name, MISSING), f".{name}")
    return check


def _inside(check, value, where: str) -> None:
    """``check(value)``, a complaint placed at ``where`` inside the field."""
    try:
        if value is MISSING:
            raise Bad("", MISSING)
        check(value)
    except Bad as bad:
        bad.where = where + bad.where
        bad.value = value if bad.value is Ellipsis else bad.value  # the innermost value
        raise


names = list_of(string, 1)


def library(rule, expected: str | None = None):
    """A string the library's ``rule`` accepts; its message is the complaint, or ``expected``."""
    def check(v):
        string(v)
        try:
            rule(v)
        except DeepnotesError as exc:
            raise Bad(expected or str(exc), said=expected is None) from None
    return check


def known(what: str, valid):
    def rule(v):
        if v not in valid():
            raise DeepnotesError(unknown_name(what, v, valid()))
    return library(rule)


# -- the tables ------------------------------------------------------------------------------------

HISTORY_ROW = record({"epoch": integer(1), "train_loss": number(), "train_accuracy": number(0, 1),
                      "dev_loss": number(finite=False), "dev_accuracy": number(finite=False),
                      "dev_f1": number(finite=False),
                      "lr": number(), "seconds": number(0)},
                     required=("epoch", "train_loss", "train_accuracy"))
GROUP_KEYS = {"params": list_of(integer(0)), "lr": number(0, above=True),
              "weight_decay": number(0), "beta": number(0, 1, below=True),
              "beta1": number(0, 1, below=True), "beta2": number(0, 1, below=True),
              "eps": number(0), "bias_correction": boolean, "eps_inside_sqrt": boolean}


def scalars(v):  # {"PARAM.NAME": number}: the optimizer state that is not a tensor
    record({})(v)
    for key, value in v.items():
        _inside(matching(r"\d+\..+", "a key PARAM.NAME like '0.step'"), key, f"[{key!r}]")
        _inside(number(), value, f"[{key!r}]")


STATE = {
    "epoch": integer(0), "step": integer(0), "global_step": integer(0), "loss_sum": number(0),
    "correct": integer(0), "seen": integer(0), "seconds": number(0),
    "history": list_of(HISTORY_ROW),
    "optimizer": record({"param_groups": list_of(record(GROUP_KEYS, required=("params", "lr")), 1),
                         "scalars": scalars}),
}
SCALER = record({"scale": number(0, above=True), "growth_factor": number(0),  # float16's
                 "backoff_factor": number(0), "growth_interval": integer(1),
                 "_growth_tracker": integer(0)})
STATE_EXTRAS = {"checkpoint": string, "scaler": SCALER, "monitor": one_of(*MONITORS),
                "best_epoch": integer(1), "best_value": number(), "stopped": string,
                "cycle_start": integer(0)}


# -- checking a file -------------------------------------------------------------------------------

def check_state(state, path, optimizer=None) -> dict:
    """``state`` (the trainer state in a checkpoint) if it follows :data:`STATE` and, given the
    ``optimizer`` it will be loaded into, fits that optimizer's groups; else a one-line error."""
    check_fields(state, path, STATE, STATE_EXTRAS, "an object of trainer state")
    if len({"dev_loss" in row for row in state["history"]}) > 1:  # the plots read all or none
        raise DeepnotesError(f"{path}: field 'history': every row has dev_loss, or none does")
    message = optimizer and _optimizer_fits(state["optimizer"]["param_groups"], optimizer)
    if message:
        raise DeepnotesError(f"{path}: field 'optimizer.param_groups{message} (a checkpoint "
                             "of another model, or from a deepnotes whose layers held other "
                             "parameters: --resume cannot continue it)")
    return state


def check_fields(obj, path, fields: dict, extras: dict, what: str) -> None:
    if not isinstance(obj, dict):
        raise DeepnotesError(f"{path}: expected {what}, found {_show(obj)}")
    for name, rule in {**fields, **extras}.items():
        if name in obj or name in fields:
            try:
                _inside(rule, obj.get(name, MISSING), name)
            except Bad as bad:
                field = f"{path}: field '{bad.where}'"
                raise DeepnotesError(f"{field} is missing" if bad.value is MISSING else
                                     f"{field}: {bad.expected}" if bad.said else
                                     f"{field}: expected {bad.expected}, found {_show(bad.value)}"
                                     ) from None


def _show(value) -> str:
    text = json.dumps(value)  # one line: a string's newlines come out as \n
    return text if len(text) <= 80 else text[:76] + " ..."


def _optimizer_fits(groups: list, optimizer) -> str | None:
    """The saved groups match the optimizer's in number, size and hyperparameter names."""
    if len(groups) != len(optimizer.param_groups):
        return f"': expected {len(optimizer.param_groups)} groups, found {len(groups)}"
    for i, (saved, own) in enumerate(zip(groups, optimizer.param_groups)):
        keys = [", ".join(sorted(g.keys() - {"params"})) for g in (own, saved)]
        if len(saved["params"]) != len(own["params"]) or any(k not in saved for k in own):
            return (f"[{i}]': expected {len(own['params'])} params and the hyperparameters "
                    f"{keys[0]}, found {len(saved['params'])} and {keys[1]}")
    return None
