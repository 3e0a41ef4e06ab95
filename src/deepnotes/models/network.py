"""The surface every model of the zoo shares: ``features(x)``, a ``head``, ``reset_head``, and
the layer groups that transfer learning freezes.

A model is a body that computes the features a[L-1] and a head, the last Linear layer (the
softmax layer): z = head(features(x)). Each model writes ``features(x)`` and names its ``head``
(an attribute ``self.head``, or a property returning ``self.fc`` or ``self.classifier[-1]``);
:class:`Network` gives the rest once:

- ``reset_head(num_classes)`` puts a new, freshly initialised head where the old one was, with
  the old one's inputs, bias (or none), device and dtype: transfer to a task with other classes;
- ``head_prefix()`` is the head's state_dict prefix (``head.``, ``fc.``, ``classifier.6.``);
- ``layer_groups()`` cuts the body into layer groups.

A network is cut into *layer groups*, in forward order, without the head: a group is one layer
with weights (a convolution, a fully connected layer, a recurrent layer) together with the batch
norm, activation, pooling and dropout layers around it; a residual stage (ResNet's ``layer1``) or
an Inception module counts as one group. Freezing the first n groups (``transfer.freeze``) makes
them a fixed function::

    >>> from deepnotes.models import create_model
    >>> model = create_model("lenet5", num_classes=5)
    >>> [name for name, _ in model.layer_groups()]
    ['conv.0', 'conv.3', 'fc.1', 'fc.3']
    >>> model.head_prefix()
    'head.'

The layers are the model's children, except the containers a class names in ``opened``, whose
children are the layers (LeNet-5's ``conv`` and ``fc``); any other child (a ResNet stage, an
Inception module, an LSTM) is one layer. Children named in ``aux_heads`` (GoogLeNet's auxiliary
classifiers) are outputs, not layers: they are in no group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.nn import BatchNorm1d, BatchNorm2d

NORMS = (BatchNorm1d, BatchNorm2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)


def fresh_linear(old: nn.Linear, num_classes: int) -> nn.Linear:
    """A newly initialised Linear with ``old``'s inputs, bias (or none), device and dtype."""
    return nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                     device=old.weight.device, dtype=old.weight.dtype)


def starts_group(module: nn.Module) -> bool:
    """A layer with weights (batch norm aside) or a dropout layer (which feeds the next one)."""
    if isinstance(module, nn.Dropout):
        return True
    return not isinstance(module, NORMS) and any(True for _ in module.parameters())


class Network(nn.Module):
    """The zoo's base class: ``features(x)`` and ``head`` come from the model, ``reset_head``,
    ``head_prefix`` and ``layer_groups`` from here (see the module doc)."""

    input_kind: ClassVar[str | tuple[str, ...]]  # "image", "table" or the sequence tasks it takes
    input_size: ClassVar[int | None]  # n_H = n_W that images are resized to; None for any
    # the smallest n_H = n_W it reads when it reads any size from there (--image-size); None:
    # input_size only (a Linear layer or an RNN step reads a fixed width)
    min_input_size: ClassVar[int | None] = None
    opened: tuple[str, ...] = ()  # containers whose children are single layers
    aux_heads: tuple[str, ...] = ()  # children that are extra outputs: in no layer group
    if TYPE_CHECKING:  # for the type checker only: at run time each model provides it
        @property
        def head(self) -> nn.Linear:
            """The softmax layer: an attribute (declared ``head: nn.Linear``) or a property of
            each model."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The activations a[L-1] the head reads."""
        raise NotImplementedError(f"{type(self).__name__} does not define features(x), the "
                                  "activations its head reads")

    def _head_name(self) -> str:
        """The head's dotted name among the modules: ``head``, ``fc``, ``classifier.6``."""
        head = self.head
        name = next((n for n, m in self.named_modules() if m is head and n), None)
        if name is None:
            raise DeepnotesError(f"{type(self).__name__}: its head is not one of its modules")
        return name

    def head_prefix(self) -> str:
        """The state_dict prefix of the head: ``head.``, ``fc.`` or ``classifier.6.``."""
        return f"{self._head_name()}."

    def reset_head(self, num_classes: int) -> None:
        """A new head for ``num_classes`` outputs, freshly initialised, where the old one was;
        it keeps the old head's inputs, bias (or none), device and dtype."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise DeepnotesError(f"reset_head({num_classes!r}): expected a positive number of "
                                 "classes")
        parent, _, attr = self._head_name().rpartition(".")
        setattr(self.get_submodule(parent), attr, fresh_linear(self.head, num_classes))

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """The layers in forward order, head and ``aux_heads`` left out: the children, with
        those of the ``opened`` containers in their place."""
        head, out = self.head, []
        for name, child in self.named_children():
            if child is head or name in self.aux_heads:
                continue
            if name in self.opened:
                out += [(f"{name}.{i}", m) for i, m in child.named_children() if m is not head]
            elif any(m is head for m in child.modules()):
                raise DeepnotesError(f"{type(self).__name__}: the head is inside {name!r}, which "
                                     f"is not in opened {self.opened}: it would be frozen")
            else:
                out.append((name, child))
        return out

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        """(name, modules) of each layer group, input first, head excluded; a group is named
        after its layer with weights, and trailing layers without weights (a last pool or
        dropout) join the last group."""
        groups: list[list] = []  # [name, modules, has a layer with weights]
        for name, module in self.named_layers():
            if not groups or (starts_group(module) and groups[-1][2]):
                groups.append([name, [], False])
            group = groups[-1]
            group[1].append(module)
            if not group[2] and any(True for _ in module.parameters()):
                group[0], group[2] = name, True
        if len(groups) > 1 and not groups[-1][2]:
            groups[-2][1].extend(groups.pop()[1])
        return [(name, modules) for name, modules, _ in groups]
