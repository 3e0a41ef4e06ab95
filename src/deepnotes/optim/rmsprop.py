"""RMSprop: S = beta S + (1 - beta) dW^2; W := W - alpha dW / (sqrt(S) + eps), or with eps
inside the root, W := W - alpha dW / sqrt(S + eps)."""

from __future__ import annotations

import torch

from deepnotes.errors import check_range
from deepnotes.optim.rule import NotesRule, no_bias_correction_step, with_weight_decay


class RMSprop(NotesRule):
    """Root mean square prop: divide each step by the recent size of its gradient,

        S_dW = beta S_dW + (1 - beta) dW^2,    W := W - alpha dW / (sqrt(S_dW) + eps).

    The notes write dW / sqrt(S_dW) (``eps=0``); eps keeps the division finite where S_dW is 0.
    This is ``torch.optim.RMSprop(lr, alpha=beta, eps)``: torch calls beta "alpha". With
    ``eps_inside_sqrt`` the step is alpha dW / sqrt(S_dW + eps): S~ = S_dW + eps is kept
    instead, starting at eps and averaging dW^2 + eps, so S~ = beta S~ + (1 - beta)(dW^2 + eps).

    The fused path runs torch's fused Adam kernel with beta1 = 0 (so its first moment is dW) and
    its bias correction switched off, which is exactly this rule, in one pass over memory.
    """

    _kernel = "adam"

    def __init__(self, params, lr: float, beta: float = 0.9, eps: float = 1e-8,
                 weight_decay: float = 0.0, eps_inside_sqrt: bool = False,
                 implementation: str = "auto"):
        super().__init__(params, {"lr": lr, "beta": beta, "eps": eps,
                                  "weight_decay": weight_decay,
                                  "eps_inside_sqrt": bool(eps_inside_sqrt)}, implementation)
        self._first_moment: dict = {}  # the fused path's scratch when weight decay is on

    def _check(self, group):
        check_range("beta", group["beta"], 0.0, 1.0, high_open=True)
        check_range("eps", group["eps"], 0.0)

    def _new_state(self, group, p):
        s0 = group["eps"] if group["eps_inside_sqrt"] else 0.0  # S~ = S + eps
        return {"s": torch.full_like(p, s0, memory_format=torch.preserve_format)}

    def _can_fuse(self, group):
        return not (group["eps_inside_sqrt"] and group["beta"] == 0)

    def _reference(self, group, p, dW, state):
        beta, S = group["beta"], state["s"]
        if group["weight_decay"]:
            dW = dW + group["weight_decay"] * p
        S.mul_(beta).addcmul_(dW, dW, value=1 - beta)
        if group["eps_inside_sqrt"]:
            S.add_((1 - beta) * group["eps"])  # S~: the average of dW^2 + eps
            p -= group["lr"] * dW / S.sqrt()
        else:
            p -= group["lr"] * dW / (S.sqrt() + group["eps"])

    def _foreach(self, group, params, grads, states):
        beta, Ss = group["beta"], [st["s"] for st in states]
        grads = with_weight_decay(grads, params, group["weight_decay"])
        torch._foreach_mul_(Ss, beta)
        torch._foreach_addcmul_(Ss, grads, grads, value=1 - beta)
        if group["eps_inside_sqrt"]:
            torch._foreach_add_(Ss, (1 - beta) * group["eps"])  # S~
            denom = torch._foreach_sqrt(Ss)
        else:
            denom = torch._foreach_sqrt(Ss)
            torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])

    def _fused(self, group, params, grads, states):
        # Adam's first moment with beta1 = 0 is dW itself. Without weight decay the kernel may
        # write it over the gradient (the same values); with it, dW + lambda W needs a buffer,
        # zeroed: the kernel mixes the old value in at weight 0, and 0 * NaN is NaN.
        if group["weight_decay"]:
            firsts = [self._first_moment.setdefault(p, torch.zeros_like(p)) for p in params]
        else:
            firsts = grads
        steps = [no_bias_correction_step(params[0].device)] * len(params)
        Ss, inside = [st["s"] for st in states], group["eps_inside_sqrt"]
        if inside:  # S~ + eps (1 - beta) / beta: the kernel's average is then that of dW^2 + eps
            torch._foreach_add_(Ss, group["eps"] * (1 - group["beta"]) / group["beta"])
        torch._fused_adam_(params, grads, firsts, Ss, [], steps,
                           lr=group["lr"], beta1=0.0, beta2=group["beta"],
                           weight_decay=group["weight_decay"], eps=0.0 if inside else group["eps"],
                           amsgrad=False, maximize=False)
