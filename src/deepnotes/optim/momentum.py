"""Gradient descent with momentum: v = beta v + (1 - beta) dW; W := W - alpha v."""

from __future__ import annotations

import torch

from deepnotes.errors import check_range
from deepnotes.optim.rule import NotesRule, with_weight_decay


class Momentum(NotesRule):
    """The notes' momentum: an exponentially weighted average of the gradients,

        v_dW = beta v_dW + (1 - beta) dW,    W := W - alpha v_dW,    v_dW = 0 at the start.

    ``torch.optim.SGD(momentum=beta)`` keeps b = beta b + dW instead, and starts with b = dW. The
    two walk the same path: v = (1 - beta) b, so torch's SGD with ``lr = alpha (1 - beta)`` is this
    rule. ``SGD(momentum=beta, dampening=beta)`` computes v itself from the second step on; only
    its first step differs (b = dW there, not (1 - beta) dW). The notes' form keeps alpha on the
    scale of plain gradient descent, so a rate tuned for one carries over to the other.
    """

    _kernel = "sgd"

    def __init__(self, params, lr: float, beta: float = 0.9, weight_decay: float = 0.0,
                 implementation: str = "auto"):
        super().__init__(params, {"lr": lr, "beta": beta, "weight_decay": weight_decay},
                         implementation)

    def _check(self, group):
        check_range("beta", group["beta"], 0.0, 1.0, high_open=True)

    def _new_state(self, group, p):
        return {"v": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _can_fuse(self, group):
        return group["beta"] > 0  # torch's fused SGD keeps no buffer for momentum 0

    def _reference(self, group, p, dW, state):
        beta, v = group["beta"], state["v"]
        if group["weight_decay"]:
            dW = dW + group["weight_decay"] * p
        v.mul_(beta).add_(dW, alpha=1 - beta)
        p -= group["lr"] * v

    def _foreach(self, group, params, grads, states):
        beta, vs = group["beta"], [st["v"] for st in states]
        grads = with_weight_decay(grads, params, group["weight_decay"])
        torch._foreach_mul_(vs, beta)
        torch._foreach_add_(vs, grads, alpha=1 - beta)
        torch._foreach_add_(params, vs, alpha=-group["lr"])

    def _fused(self, group, params, grads, states):
        # torch's fused SGD: b = momentum b + (1 - dampening) dW; W -= lr b. With
        # dampening = momentum = beta and b starting at 0 (is_first_step=False), b is v.
        torch._fused_sgd_(params, grads, [st["v"] for st in states],
                          weight_decay=group["weight_decay"], momentum=group["beta"],
                          lr=group["lr"], dampening=group["beta"], nesterov=False,
                          maximize=False, is_first_step=False)
