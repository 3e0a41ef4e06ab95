"""What the four update rules share: checked hyperparameters, state made on first use, and
three implementations of each rule that give the same numbers.

``implementation="reference"`` runs the rule one tensor at a time, line by line as the course writes
it: the readable specification. ``"foreach"`` runs the same arithmetic on whole lists of tensors
(torch's ``_foreach_*`` kernels, a few kernel launches per step instead of a few per tensor).
``"fused"`` updates every tensor in one pass over memory, by handing the rule to one of torch's
fused kernels (``_fused_sgd_``, ``_fused_adam_``) whose arithmetic is the same rule. ``"auto"`` (the
default) takes the fused kernel where the tensors' device and dtype have one, else foreach.
The tests hold all three to the reference and the reference to a NumPy transcription of the rule.
"""

from __future__ import annotations

import functools

import torch

from deepnotes.errors import DeepnotesError, check_range, unknown_name

IMPLEMENTATIONS = ("auto", "fused", "foreach", "reference")
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


class NotesRule(torch.optim.Optimizer):
    """Base of GradientDescent, Momentum, RMSprop and Adam (a ``torch.optim.Optimizer``).

    A subclass gives ``_check(group)``, ``_new_state(group, p)`` and the rule three times:
    ``_reference(group, p, dW, state)``, ``_foreach(group, params, grads, states)`` and
    ``_fused(group, params, grads, states)`` (or ``_fused = None`` where no torch kernel fits).
    """

    _fused = None
    _kernel = ""  # the torch fused kernel the fused path calls: "sgd" or "adam"

    def __init__(self, params, defaults: dict, implementation: str = "auto"):
        if implementation not in IMPLEMENTATIONS:
            raise DeepnotesError(unknown_name("implementation", implementation,
                                              list(IMPLEMENTATIONS)))
        self.implementation = implementation
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_range("lr", group["lr"], 0.0, low_open=True)
        check_range("weight_decay", group["weight_decay"], 0.0)
        self._check(group)

    def _check(self, group: dict) -> None:
        """Refuse a group's impossible hyperparameters (beyond lr and weight_decay)."""

    def _new_state(self, group: dict, p: torch.Tensor) -> dict:
        return {}

    def _can_fuse(self, group: dict) -> bool:
        """Whether this group's hyperparameters map onto the fused kernel exactly."""
        return self._fused is not None

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for same, grads in _with_gradients(group["params"], type(self).__name__):
                states = [self._state(group, p) for p in same]
                how = self._how(group, same[0])
                if how == "reference":
                    for p, g, st in zip(same, grads, states):
                        self._reference(group, p, g, st)
                else:
                    getattr(self, f"_{how}")(group, same, grads, states)
        return loss

    def _state(self, group: dict, p: torch.Tensor) -> dict:
        state = self.state.get(p)
        if state is not None:
            return state
        state = self._new_state(group, p)
        if state:  # a rule without state (gradient descent) keeps none
            self.state[p] = state
        return state

    def _how(self, group: dict, p: torch.Tensor) -> str:
        fusable = (self._can_fuse(group) and p.device.type in _FUSED_DEVICES
                   and p.dtype in _FUSED_DTYPES and fused_kernel_runs(self._kernel, p.device.type))
        if self.implementation == "auto":
            return "fused" if fusable else "foreach"
        if self.implementation == "fused" and not fusable:
            raise DeepnotesError(f"{type(self).__name__}(implementation='fused'): no fused kernel "
                                 f"for {p.dtype} on {p.device.type} with these settings; "
                                 "use 'auto' or 'foreach'")
        return self.implementation


@functools.cache
def fused_kernel_runs(kernel: str, device_type: str) -> bool:
    """Whether this torch build has the fused ``kernel`` on ``device_type`` (older releases have
    fused kernels on CUDA only): tried once, on one number."""
    one = [torch.zeros(1, device=device_type)]
    try:
        if kernel == "sgd":
            torch._fused_sgd_(one, [torch.ones_like(one[0])], [], weight_decay=0.0, momentum=0.0,
                              lr=0.1, dampening=0.0, nesterov=False, maximize=False,
                              is_first_step=False)
        else:
            torch._fused_adam_(one, [torch.ones_like(one[0])], [torch.zeros_like(one[0])],
                               [torch.zeros_like(one[0])], [], [torch.ones((), device=device_type)],
                               lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                               amsgrad=False, maximize=False)
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return True


def _with_gradients(params: list[torch.Tensor], rule: str) -> list[tuple[list, list]]:
    """(parameters, their gradients) for each device and dtype (one foreach or fused call takes
    each pair of lists); parameters without a gradient are left out, sparse ones refused."""
    groups: dict = {}
    for p in params:
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            raise DeepnotesError(f"{rule} does not take sparse gradients (from "
                                 "nn.Embedding(sparse=True) or nn.EmbeddingBag(sparse=True)); "
                                 "use sparse=False")
        same, grads = groups.setdefault((p.device, p.dtype), ([], []))
        same.append(p)
        grads.append(g)
    return list(groups.values())


def with_weight_decay(grads: list[torch.Tensor], params: list[torch.Tensor],
                      weight_decay: float) -> list[torch.Tensor] | tuple[torch.Tensor, ...]:
    """L2 regularisation, J + (lambda / 2) ||W||^2: dW := dW + lambda W (the grads stay as they
    were; torch's ``_foreach_add`` returns the new ones as a tuple)."""
    if weight_decay == 0:
        return grads
    return torch._foreach_add(grads, params, alpha=weight_decay)


_NO_BIAS_CORRECTION: dict = {}


def no_bias_correction_step(device: torch.device) -> torch.Tensor:
    """A step count t so large that beta^t is exactly 0 for any beta < 1: torch's fused Adam
    kernel then divides by 1 - beta^t = 1, which turns its bias correction off exactly."""
    if device not in _NO_BIAS_CORRECTION:
        _NO_BIAS_CORRECTION[device] = torch.full((), 1e30, dtype=torch.float32, device=device)
    return _NO_BIAS_CORRECTION[device]
