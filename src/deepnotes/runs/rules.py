"""The rows of ``deepnotes compare-optimizers``: an update rule, the variants it uses, and
its learning rate alpha.

An entry is ``NAME[+VARIANT...]``: NAME one of sgd, momentum, rmsprop, adam; VARIANT ``eps=X``
(rmsprop, adam), ``eps-inside-sqrt`` (sqrt(s + eps) rather than sqrt(s) + eps; rmsprop, adam) or
``no-bias-correction`` (adam): ``deepnotes train``'s flags without the dashes. ``rmsprop+eps=0``
is the notes' RMSprop, dW / sqrt(s). Each :class:`Rule` has a canonical ``label`` (variants in a
fixed order, numbers written one way) that names its row and its run folder.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field

from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.optim import DEFAULT_LRS, FLAGS, VARIANTS, check_lr, list_optimizers

# each rule's moving averages; the step follows from the variants (Rule.text)
AVERAGES = {
    "sgd": "",
    "momentum": "v := beta v + (1-beta) dW",
    "rmsprop": "s := beta s + (1-beta) dW^2",
    "adam": "v := beta1 v + (1-beta1) dW; s := beta2 s + (1-beta2) dW^2",
}
ORDER = ["sgd", "momentum", "rmsprop", "adam"]  # the course's order: each builds on the one before
# a variant's spelling in an --optimizers entry: deepnotes train's flag without the dashes
SPELLING = {key: flag.removeprefix("--") for key, flag in FLAGS.items()}
SYNTAX = "expected NAME[+VARIANT...] with VARIANT eps=X, eps-inside-sqrt or no-bias-correction"


# ---------------------------------------------------------------- rules, names, learning rates


@dataclass
class Rule:
    """One row of a comparison: an update rule and the variants it uses.

    ``variants`` are :func:`deepnotes.optim.create_optimizer`'s keywords, only those that differ
    from the rule: ``eps`` (>= 0), ``eps_inside_sqrt=True``, ``bias_correction=False``.
    ``Rule("adam", {"eps_inside_sqrt": True}).label == "adam+eps-inside-sqrt"``.
    """

    name: str
    variants: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.name not in list_optimizers():
            raise DeepnotesError(unknown_name("optimizer", self.name, list_optimizers()))
        for key, value in self.variants.items():
            if key not in VARIANTS:
                raise DeepnotesError(unknown_name("variant", key, list(VARIANTS)))
            if self.name not in VARIANTS[key]:
                rules = VARIANTS[key]
                raise DeepnotesError(f"{self.name} has no variant {SPELLING[key]} (only "
                                     f"{' and '.join(rules)} {'has' if len(rules) == 1 else 'have'}"
                                     " it)")
            if key == "eps" and (isinstance(value, bool) or not isinstance(value, int | float)
                                 or not math.isfinite(value) or value < 0):
                raise DeepnotesError(f"eps={value}: expected a finite number >= 0")
            if key != "eps" and value is not (key == "eps_inside_sqrt"):
                raise DeepnotesError(f"{key}={value!r}: a variant is {key}="
                                     f"{key == 'eps_inside_sqrt'} (the plain rule has none)")

    @property
    def label(self) -> str:
        """The canonical entry: the name, then the variants in a fixed order."""
        parts = [self.name, *(f"eps={number(self.variants[key])}" if key == "eps"
                              else SPELLING[key] for key in VARIANTS if key in self.variants)]
        return "+".join(parts)

    def options(self) -> dict:
        """create_optimizer's keywords."""
        return dict(self.variants)

    def config_fields(self) -> dict:
        """RunConfig's variant fields, all three (a variant the rule lacks: the default)."""
        return {"eps": self.variants.get("eps"),
                "eps_inside_sqrt": self.variants.get("eps_inside_sqrt", False),
                "bias_correction": self.variants.get("bias_correction", True)}

    @property
    def text(self) -> str:
        """The update rule in the notes' notation, variants included."""
        if self.name == "sgd":
            return "W := W - alpha dW"
        if self.name == "momentum":
            return f"{AVERAGES['momentum']}; W := W - alpha v"
        steps = [AVERAGES[self.name]]
        top, s = ("dW", "s") if self.name == "rmsprop" else ("v", "s")
        if self.name == "adam" and self.variants.get("bias_correction", True):
            steps.append("v_hat = v / (1-beta1^t), s_hat = s / (1-beta2^t)")
            top, s = "v_hat", "s_hat"
        root = f"sqrt({s} + eps)" if self.variants.get("eps_inside_sqrt") else f"(sqrt({s}) + eps)"
        steps.append(f"W := W - alpha {top} / {root}")
        if "eps" in self.variants:
            steps.append(f"eps = {number(self.variants['eps'])}")
        return "; ".join(steps)


def number(x: float) -> str:
    """A number as a label writes it: ``0``, ``0.001``, ``1e-8`` (and exactly: repr if needed)."""
    text = f"{x:g}" if float(f"{x:g}") == x else repr(float(x))
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", text)


def parse_rule(entry: str, option: str = "--optimizers") -> Rule:
    """``"adam+eps-inside-sqrt"`` -> Rule("adam", {"eps_inside_sqrt": True}); ``option`` names
    the command-line option in the error."""
    name, *parts = (p.strip() for p in re.split(r"\+(?!\d)", entry.strip()))  # 1e+5 stays
    try:
        if name not in list_optimizers():
            raise DeepnotesError(unknown_name("optimizer", name, list_optimizers()))
        variants: dict = {}
        for part in parts:
            spelling, sep, value = part.partition("=")
            key = next((k for k, v in SPELLING.items() if v == spelling.strip()), None)
            if not part:
                raise DeepnotesError("an empty variant ('+' with nothing after it)")
            if key is None:
                close = difflib.get_close_matches(spelling, list(SPELLING.values()), n=1)
                raise DeepnotesError(f"unknown variant {part!r}" + (
                    f" (did you mean {close[0]!r}?)" if close else ""))
            if key in variants:
                raise DeepnotesError(f"{SPELLING[key]} is given twice")
            if (key == "eps") != bool(sep):
                raise DeepnotesError("eps needs a value (eps=X)" if key == "eps" else
                                     f"{SPELLING[key]} takes no value")
            variants[key] = _eps(value) if key == "eps" else key == "eps_inside_sqrt"
        return Rule(name, variants)
    except DeepnotesError as exc:
        hint = f"; {SYNTAX}" if name in list_optimizers() else ""
        raise DeepnotesError(f"{option} {entry.strip()}: {exc}{hint}") from None


def _eps(text: str) -> float:
    try:
        eps = float(text)
    except ValueError:
        eps = math.nan
    if not math.isfinite(eps) or eps < 0:
        raise DeepnotesError(f"eps={text}: expected a finite number >= 0")
    return eps


def check_rules(entries) -> list[Rule]:
    """The rows to compare, in the given order: names, entries (``"rmsprop+eps=0"``) or Rules;
    unknown, repeated or no entries are refused."""
    rules = [entry if isinstance(entry, Rule) else parse_rule(entry) for entry in entries]
    if not rules:
        raise DeepnotesError(f"--optimizers: no optimizer given; {SYNTAX}, NAME one of "
                             f"{', '.join(list_optimizers())}")
    labels = [rule.label for rule in rules]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise DeepnotesError(f"--optimizers: {label} is listed twice")
    return rules


def parse_rules(text: str) -> list[Rule]:
    """``"sgd,rmsprop,rmsprop+eps=0"`` -> three Rules (checked by :func:`check_rules`)."""
    return check_rules([part.strip() for part in text.split(",") if part.strip()])


def parse_lrs(text: str) -> float | dict:
    """``--lr`` text: ``0.01`` (alpha for every rule) or ``sgd=0.05,adam=1e-3`` (per rule).

    A bare number may be mixed with pairs (``0.01,adam=1e-3``): it applies to the rules not named.
    A name sets the rule and its variants; a label (``rmsprop+eps=0=1e-2``) that entry alone.
    Returns a float or a dict of name or label -> alpha, with the bare number under ``None``.
    """
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        before, sep, value = part.rpartition("=")
        name = before.strip() if sep else None
        if sep and not name:
            raise DeepnotesError(f"--lr {text}: {part!r} has no optimizer name before '='")
        try:
            alpha = float(value)
        except ValueError:
            raise DeepnotesError(f"--lr {text}: expected ALPHA or NAME=ALPHA[,NAME=ALPHA...], "
                                 f"got {part!r}") from None
        if name in out:
            raise DeepnotesError(f"--lr {text}: {'a bare alpha' if name is None else name} "
                                 "is given twice")
        out[name] = alpha
    return out[None] if list(out) == [None] else out


def learning_rates(rules, lrs: float | dict | None = None) -> dict[str, float]:
    """alpha for each row, by label: ``lrs`` (one float, or by label, then by name, with ``None``
    for the rest), else :data:`deepnotes.optim.DEFAULT_LRS` of the name. Every alpha must be
    > 0; every name or label must be compared."""
    rules = check_rules(rules)
    if lrs is None:
        lrs = {}
    elif not isinstance(lrs, dict):
        lrs = {None: lrs}
    given: dict = {}  # canonical label or name -> alpha
    for key, alpha in lrs.items():
        if key is None:
            continue
        rule = key if isinstance(key, Rule) else parse_rule(key, option="--lr")
        compared = [r.label for r in rules] if rule.variants else [r.name for r in rules]
        if rule.label not in compared:
            raise DeepnotesError(f"--lr {rule.label}={alpha:g}: {rule.label} is not among the "
                                 f"compared optimizers ({', '.join(r.label for r in rules)})")
        if rule.label in given:
            raise DeepnotesError(f"--lr: {rule.label} is given twice")
        given[rule.label] = alpha
    out = {rule.label: float(given.get(rule.label, given.get(rule.name, lrs.get(
        None, DEFAULT_LRS[rule.name])))) for rule in rules}
    for label, alpha in out.items():
        try:
            check_lr(alpha)
        except DeepnotesError:
            raise DeepnotesError(f"--lr {label}={alpha:g}: the learning rate must be > 0 "
                                 "and finite") from None
    return out


def is_label(text: str) -> bool:
    """``text`` is a rule's canonical label (``adam+eps-inside-sqrt``, not ``adam+eps=0.0``)."""
    try:
        return parse_rule(text).label == text
    except DeepnotesError:
        return False
