"""Gradient descent: W := W - alpha dW."""

from __future__ import annotations

import torch

from deepnotes.optim.rule import NotesRule, with_weight_decay


class GradientDescent(NotesRule):
    """Mini-batch gradient descent, W := W - alpha dW (with L2 weight decay lambda:
    dW := dW + lambda W first). The same as ``torch.optim.SGD(lr)`` with no momentum.
    """

    _kernel = "sgd"

    def __init__(self, params, lr: float, weight_decay: float = 0.0,
                 implementation: str = "auto"):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay}, implementation)

    def _reference(self, group, p, dW, state):
        if group["weight_decay"]:
            dW = dW + group["weight_decay"] * p
        p -= group["lr"] * dW

    def _foreach(self, group, params, grads, states):
        grads = with_weight_decay(grads, params, group["weight_decay"])
        torch._foreach_add_(params, grads, alpha=-group["lr"])

    def _fused(self, group, params, grads, states):
        torch._fused_sgd_(params, grads, [], weight_decay=group["weight_decay"], momentum=0.0,
                          lr=group["lr"], dampening=0.0, nesterov=False, maximize=False,
                          is_first_step=False)
