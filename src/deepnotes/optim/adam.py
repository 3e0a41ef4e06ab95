"""Adam: momentum and RMSprop together, with bias correction."""

from __future__ import annotations

import math

import torch

from deepnotes.errors import check_range
from deepnotes.optim.rule import NotesRule, no_bias_correction_step, with_weight_decay


class Adam(NotesRule):
    """Adaptive moment estimation. On iteration t, with V_dW = S_dW = 0 at the start:

        V_dW = beta1 V_dW + (1 - beta1) dW                 ("momentum", beta1 = 0.9)
        S_dW = beta2 S_dW + (1 - beta2) dW^2               ("RMSprop", beta2 = 0.999)
        V_corrected = V_dW / (1 - beta1^t),   S_corrected = S_dW / (1 - beta2^t)
        W := W - alpha V_corrected / (sqrt(S_corrected) + eps)          eps = 1e-8

    That is ``torch.optim.Adam``. The notes write eps inside the square root,
    W := W - alpha V_corrected / sqrt(S_corrected + eps): ``eps_inside_sqrt=True``. The two differ
    only where S_corrected is near eps (about 1e-8 against (1e-8)^2 = 1e-16 outside), that is for
    gradients around 1e-4 and below, which the inside form damps more. ``bias_correction=False``
    uses V and S as they are (the first steps are then small: V starts at 0).

    With eps inside the root, S_dW is kept with eps folded in: the state "s" is the average of
    dW^2 + eps, S~ = beta2 S~ + (1 - beta2)(dW^2 + eps). As eps = beta2 eps + (1 - beta2) eps,
    S~ = S_dW + eps (1 - beta2^t) (S~ starts at 0), so S~ / (1 - beta2^t) = S_corrected + eps:
    the notes' denominator with one division. (Without bias correction S~ starts at eps and
    S~ = S_dW + eps.)

    The fused path is torch's fused Adam kernel. With eps inside it adds eps (1 - beta2) / beta2
    to S~ and runs the kernel with eps = 0 (beta2 (S~ + that) = beta2 S~ + (1 - beta2) eps); for no
    bias correction it runs the kernel at a step count where beta^t is exactly 0.
    """

    _kernel = "adam"

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, bias_correction: bool = True,
                 eps_inside_sqrt: bool = False, implementation: str = "auto"):
        defaults = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
                    "weight_decay": weight_decay, "bias_correction": bool(bias_correction),
                    "eps_inside_sqrt": bool(eps_inside_sqrt)}
        super().__init__(params, defaults, implementation)

    def _check(self, group):
        check_range("beta1", group["beta1"], 0.0, 1.0, high_open=True)
        check_range("beta2", group["beta2"], 0.0, 1.0, high_open=True)
        check_range("eps", group["eps"], 0.0)

    def _new_state(self, group, p):
        zeros = torch.zeros_like(p, memory_format=torch.preserve_format)
        s0 = group["eps"] if group["eps_inside_sqrt"] and not group["bias_correction"] else 0.0
        return {"step": 0, "v": zeros, "s": torch.full_like(zeros, s0)}

    def _can_fuse(self, group):
        return not (group["eps_inside_sqrt"] and group["beta2"] == 0)

    @staticmethod
    def _corrections(group, t: int) -> tuple[float, float]:
        """(1 - beta1^t, 1 - beta2^t), or (1, 1) without bias correction."""
        if not group["bias_correction"]:
            return 1.0, 1.0
        return 1 - group["beta1"] ** t, 1 - group["beta2"] ** t

    def _reference(self, group, p, dW, state):
        b1, b2, eps = group["beta1"], group["beta2"], group["eps"]
        if group["weight_decay"]:
            dW = dW + group["weight_decay"] * p
        state["step"] += 1
        V, S = state["v"], state["s"]
        V.mul_(b1).add_(dW, alpha=1 - b1)
        S.mul_(b2).addcmul_(dW, dW, value=1 - b2)
        c1, c2 = self._corrections(group, state["step"])
        if group["eps_inside_sqrt"]:
            S.add_((1 - b2) * eps)  # S~, the average of dW^2 + eps: S~ / c2 = S_corrected + eps
            p -= group["lr"] * (V / c1) / (S / c2).sqrt()
        else:
            V_corrected, S_corrected = V / c1, S / c2
            p -= group["lr"] * V_corrected / (S_corrected.sqrt() + eps)

    def _foreach(self, group, params, grads, states):
        b1, b2, eps = group["beta1"], group["beta2"], group["eps"]
        grads = with_weight_decay(grads, params, group["weight_decay"])
        Vs, Ss = [st["v"] for st in states], [st["s"] for st in states]
        torch._foreach_mul_(Vs, b1)
        torch._foreach_add_(Vs, grads, alpha=1 - b1)
        torch._foreach_mul_(Ss, b2)
        torch._foreach_addcmul_(Ss, grads, grads, value=1 - b2)
        for st in states:
            st["step"] += 1
        corrections = [self._corrections(group, st["step"]) for st in states]
        if group["eps_inside_sqrt"]:
            torch._foreach_add_(Ss, (1 - b2) * eps)  # S~: see the class docstring
            denom = torch._foreach_div(Ss, [c2 for _, c2 in corrections])
            torch._foreach_sqrt_(denom)
        else:
            denom = torch._foreach_sqrt(Ss)
            torch._foreach_div_(denom, [math.sqrt(c2) for _, c2 in corrections])
            torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, Vs, denom, [-group["lr"] / c1 for c1, _ in corrections])

    def _fused(self, group, params, grads, states):
        device = params[0].device
        for st in states:
            st["step"] += 1
        Ss = [st["s"] for st in states]
        if group["bias_correction"]:
            counts = {t: torch.full((), float(t), device=device)
                      for t in {st["step"] for st in states}}
            steps = [counts[st["step"]] for st in states]
        else:
            steps = [no_bias_correction_step(device)] * len(states)
        inside = group["eps_inside_sqrt"]
        if inside:  # S~ + eps (1 - beta2) / beta2, so the kernel's average is that of dW^2 + eps
            torch._foreach_add_(Ss, group["eps"] * (1 - group["beta2"]) / group["beta2"])
        torch._fused_adam_(params, grads, [st["v"] for st in states], Ss, [], steps,
                           lr=group["lr"], beta1=group["beta1"], beta2=group["beta2"],
                           weight_decay=group["weight_decay"], eps=0.0 if inside else group["eps"],
                           amsgrad=False, maximize=False)
