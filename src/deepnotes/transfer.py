"""Transfer learning: pre-train on task A, fine-tune on task B.

The notes: transfer from A to B makes sense when A and B have the same input x, there is a lot
more data for A than for B, and A's low-level features could help B. Pre-training learns the
weights on A; fine-tuning replaces the output (softmax) layer with one for B's classes and trains
on B, with the first layers frozen. "The more data you have, the fewer layers you need to freeze,
and the more layers you can train."

A network is cut into *layer groups*, in forward order, without the head: a group is one layer
with weights (a convolution, a fully connected layer, a recurrent layer) together with the batch
norm, activation, pooling and dropout layers around it; a residual stage (ResNet's ``layer1``) or
an Inception module counts as one group. ``freeze(model, n)`` freezes the first n groups: their
parameters get no gradient, and they run in inference mode (batch norm uses its running mu and
sigma^2, dropout is off), so a frozen group is a fixed function::

    >>> from deepnotes import transfer
    >>> from deepnotes.models import create_model
    >>> model = create_model("lenet5", num_classes=5)
    >>> transfer.group_names(model)
    ['conv.0', 'conv.3', 'fc.1', 'fc.3']
    >>> transfer.auto_freeze(per_class=20, num_groups=4)  # little data: train the head only
    4
    >>> transfer.freeze(model, 4)
    ['conv.0', 'conv.3', 'fc.1', 'fc.3']

When everything but the head is frozen, the network up to the head is a fixed function, so its
outputs (the features a[L-1]) are computed once, saved to disk and the softmax layer is trained on
them (:mod:`deepnotes.feature_cache`): the course's advice for a small B.
:func:`optimizer_groups` gives earlier groups lower learning rates (discriminative fine-tuning)
and :func:`unfreeze_next` thaws the frozen groups one an epoch, top first (gradual unfreezing).
The whole ``deepnotes finetune`` flow is :mod:`deepnotes.runs.finetune`.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.models.network import Network

FREEZE_WORDS = ("auto", "none", "all-but-head")


# -- layer groups and freezing ---------------------------------------------------------------

def layer_groups(model: Network) -> list[tuple[str, list[nn.Module]]]:
    """(name, modules) of each layer group, input first, head excluded: the model's own
    :meth:`~deepnotes.models.network.Network.layer_groups`."""
    return model.layer_groups()


def group_names(model: Network) -> list[str]:
    return [name for name, _ in layer_groups(model)]


def _eval_before_forward(module: nn.Module, args) -> None:
    module.eval()  # a frozen group is a fixed function, whatever mode the trainer set


def set_frozen(modules: list[nn.Module], frozen: bool) -> None:
    for module in modules:
        module.requires_grad_(not frozen)
        handle = module.__dict__.pop("_frozen_hook", None)
        if handle is not None:
            handle.remove()
        if frozen:
            module.__dict__["_frozen_hook"] = module.register_forward_pre_hook(
                _eval_before_forward)


def freeze(model: Network, n: int) -> list[str]:
    """Freeze the first ``n`` layer groups (and unfreeze the rest); return the frozen names."""
    groups = layer_groups(model)
    check_freeze(n, groups)
    for i, (_, modules) in enumerate(groups):
        set_frozen(modules, i < n)
    model.head.requires_grad_(True)
    return [name for name, _ in groups[:n]]


def check_freeze(n: int, groups: list) -> None:
    if not 0 <= n <= len(groups):
        names = ", ".join(name for name, _ in groups)
        raise DeepnotesError(f"--freeze {n}: the model has {len(groups)} layer groups ({names}); "
                             f"expected 0 to {len(groups)}, auto, none or all-but-head")


def unfreeze_next(model: Network, floor: int = 0) -> str | None:
    """Gradual unfreezing: thaw the last frozen group at or above index ``floor``; its name, or
    None when every group from ``floor`` on is trainable already."""
    groups = layer_groups(model)
    for i in range(len(groups) - 1, floor - 1, -1):
        name, modules = groups[i]
        if any(not p.requires_grad for m in modules for p in m.parameters()):
            set_frozen(modules, False)
            return name
    return None


def auto_freeze(per_class: float, num_groups: int) -> int:
    """How many of ``num_groups`` layer groups to freeze for ``per_class`` training examples of B
    per class. The notes: the more data B has, the fewer layers to freeze. The rule:

    - n <= 100 examples a class: freeze every group and train the softmax layer only;
    - n >= 10,000: freeze none (A's weights are only the starting point);
    - in between, each tenfold more data unfreezes half of the groups:
      N = round(L * (1 - log10(n / 100) / 2)).
    """
    if per_class <= 100:
        return num_groups
    trainable = min(1.0, math.log10(per_class / 100) / 2)
    return round(num_groups * (1 - trainable))


def explain_auto(per_class: float, num_groups: int) -> str:
    """One line: the rule and the choice it makes."""
    n = auto_freeze(per_class, num_groups)
    return (f"--freeze auto: {per_class:.0f} training examples per class -> freezing {n} of "
            f"{num_groups} layer groups (rule: n <= 100 all, n >= 10000 none, else "
            "round(L * (1 - log10(n / 100) / 2)))")


def parse_freeze(option: str | int, num_groups: int, per_class: float) -> int:
    """--freeze auto | none | all-but-head | N -> the number of groups to freeze."""
    text = str(option).strip()
    if text == "auto":
        return auto_freeze(per_class, num_groups)
    if text in ("none", "all-but-head"):
        return 0 if text == "none" else num_groups
    if not text.lstrip("-").isdigit():
        raise DeepnotesError(f"--freeze {option}: expected auto, none, all-but-head or a number "
                             f"of layer groups 0 to {num_groups}")
    return int(text)


def optimizer_groups(model: Network, lr: float, decay: float = 1.0,
                     frozen: int = 0) -> list[dict[str, Any]]:
    """Parameter groups of groups ``frozen``.. and the head; discriminative learning rates:
    group l of L gets alpha / decay^(L - l), the head alpha (ULMFiT uses decay 2.6)."""
    groups = layer_groups(model)
    out: list[dict[str, Any]] = [
        {"params": [p for m in modules for p in m.parameters()],
         "lr": lr / decay ** (len(groups) - i)}
        for i, (_, modules) in enumerate(groups) if i >= frozen]
    out = [g for g in out if g["params"]]
    grouped = {id(p) for g in out for p in g["params"]}
    grouped |= {id(p) for _, modules in groups[:frozen] for m in modules for p in m.parameters()}
    rest = [p for p in model.parameters() if id(p) not in grouped]  # the head (and aux outputs)
    return [{"params": rest, "lr": lr}, *out]
