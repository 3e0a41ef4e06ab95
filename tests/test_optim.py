"""The notes' update rules: NumPy transcriptions are the oracle, torch.optim the second opinion.

Each rule runs 200 steps on a random least-squares problem with mini-batch-like noise,
J_t = 1/2 ||A W - B||^2 + sum(N_t * W) (+ lambda/2 ||W||^2), whose gradient the NumPy side computes
for itself: dW = A^T (A W - B) + N_t + lambda W. (The noise keeps dW away from 0, where RMSprop's
dW / sqrt(S) would turn rounding differences into different paths.)
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from deepnotes.errors import DeepnotesError
from deepnotes.optim import (
    DEFAULT_LRS,
    Adam,
    GradientDescent,
    Momentum,
    RMSprop,
    create_optimizer,
    lambda_lr,
    learning_rate,
)
from deepnotes.optim.schedules import check_schedule
from deepnotes.train import checkpoint
from deepnotes.train.state import TrainState

IMPLEMENTATIONS = ["reference", "foreach", "fused"]


# ------------------------------------------------------------------ NumPy transcriptions


def np_gradient_descent(W, dW, st, t, lr, weight_decay=0.0):
    return W - lr * (dW + weight_decay * W)


def np_momentum(W, dW, st, t, lr, beta=0.9, weight_decay=0.0):
    dW = dW + weight_decay * W
    st["v"] = beta * st.get("v", 0.0) + (1 - beta) * dW
    return W - lr * st["v"]


def np_rmsprop(W, dW, st, t, lr, beta=0.9, eps=1e-8, weight_decay=0.0, eps_inside_sqrt=False):
    dW = dW + weight_decay * W
    st["S"] = beta * st.get("S", 0.0) + (1 - beta) * dW**2
    if eps_inside_sqrt:
        return W - lr * dW / np.sqrt(st["S"] + eps)
    return W - lr * dW / (np.sqrt(st["S"]) + eps)


def np_adam(W, dW, st, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
            bias_correction=True, eps_inside_sqrt=False):
    dW = dW + weight_decay * W
    st["V"] = beta1 * st.get("V", 0.0) + (1 - beta1) * dW
    st["S"] = beta2 * st.get("S", 0.0) + (1 - beta2) * dW**2
    V_corrected = st["V"] / (1 - beta1**t) if bias_correction else st["V"]
    S_corrected = st["S"] / (1 - beta2**t) if bias_correction else st["S"]
    if eps_inside_sqrt:
        return W - lr * V_corrected / np.sqrt(S_corrected + eps)
    return W - lr * V_corrected / (np.sqrt(S_corrected) + eps)


CASES = [
    (GradientDescent, np_gradient_descent, {"lr": 0.01}),
    (GradientDescent, np_gradient_descent, {"lr": 0.01, "weight_decay": 0.1}),
    (Momentum, np_momentum, {"lr": 0.01}),
    (Momentum, np_momentum, {"lr": 0.02, "beta": 0.5, "weight_decay": 0.1}),
    (RMSprop, np_rmsprop, {"lr": 0.001}),
    (RMSprop, np_rmsprop, {"lr": 0.001, "beta": 0.99, "eps": 1e-6, "weight_decay": 0.1}),
    (RMSprop, np_rmsprop, {"lr": 0.001, "eps": 1e-3, "eps_inside_sqrt": True}),
    (RMSprop, np_rmsprop, {"lr": 0.001, "eps": 0.0}),  # the notes' RMSprop: no eps at all
    (Adam, np_adam, {"lr": 0.001}),
    (Adam, np_adam, {"lr": 0.001, "eps_inside_sqrt": True}),
    (Adam, np_adam, {"lr": 0.001, "eps_inside_sqrt": True, "eps": 1e-3}),
    (Adam, np_adam, {"lr": 0.001, "bias_correction": False}),
    (Adam, np_adam, {"lr": 0.003, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.05,
                     "bias_correction": False, "eps_inside_sqrt": True}),
]
CASE_IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, _, kw in CASES]


def problem(seed=0, n=(6, 4), steps=200):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((10, n[0]))
    B = rng.standard_normal((10, n[1])) * 3
    return A, B, rng.standard_normal(n), rng.standard_normal((steps, *n))


def run_numpy(rule, kw, steps=200, seed=0):
    A, B, W, N = problem(seed, steps=steps)
    st = {}
    for t in range(1, steps + 1):
        W = rule(W, A.T @ (A @ W - B) + N[t - 1], st, t, **kw)
    return W


def run_torch(cls, kw, implementation, steps=200, seed=0, dtype=torch.float64):
    A, B, W0, N = (torch.tensor(a, dtype=dtype) for a in problem(seed, steps=steps))
    W = W0.clone().requires_grad_()
    opt = cls([W], implementation=implementation, **kw)
    for t in range(steps):
        opt.zero_grad()
        (0.5 * ((A @ W - B) ** 2).sum() + (N[t] * W).sum()).backward()
        opt.step()
    return W.detach().numpy()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("cls, rule, kw", CASES, ids=CASE_IDS)
def test_200_steps_equal_the_numpy_transcription(cls, rule, kw, implementation):
    expected = run_numpy(rule, kw)
    got = run_torch(cls, kw, implementation)
    assert np.abs(expected - problem()[2]).max() > 1e-2  # the weights did move
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)


def test_fused_rmsprop_with_weight_decay_ignores_what_fresh_memory_holds(monkeypatch):
    """The fused path's buffer for dW + lambda W enters the kernel at weight 0; uninitialised
    memory may hold NaN (a CI run's did), and 0 * NaN would poison the weights."""
    kw = {"lr": 1e-3, "beta": 0.99, "eps": 1e-6, "weight_decay": 0.1}
    reference = run_torch(RMSprop, kw, "reference", steps=5, dtype=torch.float32)
    monkeypatch.setattr(torch, "empty_like", lambda t, **k: torch.full_like(t, math.nan, **k))
    got = run_torch(RMSprop, kw, "fused", steps=5, dtype=torch.float32)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls, rule, kw", CASES, ids=CASE_IDS)
def test_fast_paths_equal_the_reference_in_float32(cls, rule, kw):
    reference = run_torch(cls, kw, "reference", dtype=torch.float32)
    for implementation in ("foreach", "fused"):
        got = run_torch(cls, kw, implementation, dtype=torch.float32)
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_eps_inside_the_root_is_a_different_rule(implementation):
    """First step, V_corrected = dW and S_corrected = dW^2: outside the root the step is
    alpha dW / (|dW| + eps), inside alpha dW / sqrt(dW^2 + eps): much smaller for small dW."""
    dW = torch.tensor([1e-4, 1e-2, 1.0], dtype=torch.float64)
    steps = {}
    for inside in (False, True):
        w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        w.grad = dW.clone()
        Adam([w], lr=0.1, eps=1e-4, eps_inside_sqrt=inside, implementation=implementation).step()
        steps[inside] = -w.detach()
    torch.testing.assert_close(steps[False], 0.1 * dW / (dW.abs() + 1e-4))
    torch.testing.assert_close(steps[True], 0.1 * dW / (dW**2 + 1e-4).sqrt())
    assert steps[True][0] < steps[False][0] / 50


# ------------------------------------------------ torch.optim where the maths coincides


def run_model(make_optimizer, steps=200, seed=0):
    """A small network (so many tensors, some 1-d) trained on fixed random data."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    net.double()
    x, y = torch.randn(64, 5, dtype=torch.float64), torch.randint(0, 3, (64,))
    opt = make_optimizer(net.parameters())
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def with_zero_buffers(opt):
    """torch's SGD starts its buffer at dW; the notes' v starts at 0."""
    for group in opt.param_groups:
        for p in group["params"]:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return opt


EQUIVALENT = {
    "adam": (lambda ps: Adam(ps, 1e-2, beta1=0.8, beta2=0.99, weight_decay=0.01),
             lambda ps: torch.optim.Adam(ps, 1e-2, betas=(0.8, 0.99), weight_decay=0.01)),
    "rmsprop": (lambda ps: RMSprop(ps, 1e-3, beta=0.95, eps=1e-7),
                lambda ps: torch.optim.RMSprop(ps, 1e-3, alpha=0.95, eps=1e-7)),
    "momentum-dampening": (
        lambda ps: Momentum(ps, 0.1, beta=0.9),
        lambda ps: with_zero_buffers(torch.optim.SGD(ps, 0.1, momentum=0.9, dampening=0.9))),
    "momentum-lr-scaled": (lambda ps: Momentum(ps, 0.1, beta=0.9, weight_decay=1e-3),
                           lambda ps: torch.optim.SGD(ps, 0.1 * (1 - 0.9), momentum=0.9,
                                                      weight_decay=1e-3)),
    "gradient-descent": (lambda ps: GradientDescent(ps, 0.1, weight_decay=1e-3),
                         lambda ps: torch.optim.SGD(ps, 0.1, weight_decay=1e-3)),
}


@pytest.mark.parametrize("name", EQUIVALENT)
def test_equal_to_torch_optim_where_the_maths_coincides(name):
    ours, theirs = EQUIVALENT[name]
    a, b = run_model(ours), run_model(theirs)
    assert (a - run_model(lambda ps: torch.optim.SGD(ps, 0.0))).abs().max() > 1e-2
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_torch_sgd_without_the_zero_buffer_differs_on_its_first_step():
    """The documented difference: SGD(dampening=beta) starts with b = dW, not (1 - beta) dW."""
    ours = run_model(lambda ps: Momentum(ps, 0.1), steps=1)
    theirs = run_model(lambda ps: torch.optim.SGD(ps, 0.1, momentum=0.9, dampening=0.9), steps=1)
    assert (ours - theirs).abs().max() > 1e-4


# ------------------------------------------------------------------ state, groups, resume


def make(name, params, implementation="auto"):
    lrs = {"sgd": 0.05, "momentum": 0.05, "rmsprop": 1e-3, "adam": 1e-3}
    return create_optimizer(name, params, lrs[name], implementation=implementation)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_a_checkpoint_round_trip_resumes_bit_exactly(tmp_path, name):
    """100 steps, save through the run folder's safetensors checkpoint, load into a new
    optimizer, 100 more: the same weights as 200 steps straight."""
    torch.manual_seed(1)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    def train(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    straight = net()
    train(straight, make(name, straight.parameters()), 200)
    first = net()
    opt = make(name, first.parameters())
    train(first, opt, 100)
    trainer_state = TrainState(epoch=1, global_step=100)  # what Trainer checkpoints
    checkpoint.save(tmp_path, first, opt, trainer_state)
    second = net()
    opt2 = make(name, second.parameters())
    checkpoint.load(tmp_path, second, opt2)
    assert_same_state(opt2.state_dict(), opt.state_dict())
    train(second, opt2, 100)
    for a, b in zip(straight.parameters(), second.parameters()):
        assert torch.equal(a, b)


def assert_same_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for pid, entries in a["state"].items():
        assert entries.keys() == b["state"][pid].keys()
        for name, value in entries.items():
            other = b["state"][pid][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def test_param_groups_keep_their_own_hyperparameters():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    opt = Momentum([{"params": [a]}, {"params": [b], "lr": 1.0, "beta": 0.0}], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((3,), 1 - 0.1 * 0.1))  # v = 0.1 dW
    torch.testing.assert_close(b.detach(), torch.zeros(3))  # beta 0: v = dW, alpha 1
    assert opt.state_dict()["param_groups"][1]["beta"] == 0.0


def test_mixed_dtypes_take_one_path_per_dtype():
    p32 = torch.nn.Parameter(torch.ones(4))
    p64 = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = Adam([p32, p64], lr=0.1)
    p32.grad, p64.grad = torch.ones(4), torch.ones(4, dtype=torch.float64)
    opt.step()
    assert p32.dtype == torch.float32 and p64.dtype == torch.float64
    torch.testing.assert_close(p32.detach(), torch.full((4,), 0.9))  # the first Adam step: alpha
    torch.testing.assert_close(p64.detach(), torch.full((4,), 0.9, dtype=torch.float64))


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_rmsprop_leaves_the_gradients_as_they_were(implementation, weight_decay):
    p = torch.nn.Parameter(torch.randn(5))
    grad = torch.randn(5)
    p.grad = grad.clone()
    RMSprop([p], lr=0.1, weight_decay=weight_decay, implementation=implementation).step()
    assert torch.equal(p.grad, grad)


def test_the_closure_is_called_and_its_loss_returned():
    w = torch.nn.Parameter(torch.tensor([3.0]))
    opt = GradientDescent([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).detach().item() == 9.0
    assert w.detach().item() == 3.0 - 0.25 * 6.0


def test_parameters_without_gradients_are_left_alone():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Adam([a, b], lr=0.1)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state
    assert not torch.equal(a.detach(), torch.ones(2))


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("cls", [GradientDescent, Momentum, RMSprop, Adam])
def test_sparse_gradients_are_refused_with_a_clear_error(cls):
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(DeepnotesError, match="sparse gradients.*sparse=False"):
        cls(emb.parameters(), lr=0.1).step()


BAD = [
    (GradientDescent, {"lr": 0.0}, "lr=0.0"),
    (GradientDescent, {"lr": -1.0}, "lr=-1.0"),
    (GradientDescent, {"lr": math.nan}, "lr=nan"),
    (GradientDescent, {"lr": math.inf}, "lr=inf"),
    (GradientDescent, {"lr": 0.1, "weight_decay": -1.0}, "weight_decay=-1.0"),
    (Momentum, {"lr": 0.1, "beta": 1.0}, "beta=1.0"),
    (Momentum, {"lr": 0.1, "beta": -0.1}, "beta=-0.1"),
    (RMSprop, {"lr": 0.1, "beta": math.nan}, "beta=nan"),
    (RMSprop, {"lr": 0.1, "eps": -1e-8}, "eps=-1e-08"),
    (Adam, {"lr": 0.1, "beta2": 1.5}, "beta2=1.5"),
    (Adam, {"lr": 0.1, "beta1": math.inf}, "beta1=inf"),
    (Adam, {"lr": 0.1, "eps": math.nan}, "eps=nan"),
]


@pytest.mark.parametrize("cls, kw, needle", BAD, ids=[n for _, _, n in BAD])
def test_non_finite_or_impossible_hyperparameters_are_refused(cls, kw, needle):
    with pytest.raises(DeepnotesError, match="expected a finite number") as err:
        cls([torch.nn.Parameter(torch.ones(1))], **kw)
    assert needle in str(err.value)


def test_an_added_group_is_checked_too():
    opt = Adam([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(DeepnotesError, match="beta1=1.0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "beta1": 1.0})


def test_unknown_implementation_and_an_impossible_fused_request():
    p = [torch.nn.Parameter(torch.ones(1))]
    with pytest.raises(DeepnotesError, match="'fuse'.*'fused'"):
        Adam(p, implementation="fuse")
    opt = Adam(p, beta2=0.0, eps_inside_sqrt=True, implementation="fused")
    p[0].grad = torch.ones(1)
    with pytest.raises(DeepnotesError, match="no fused kernel"):
        opt.step()


def test_create_optimizer_maps_beta_onto_each_rule():
    p = [torch.nn.Parameter(torch.ones(1))]
    assert create_optimizer("adam", p, beta=0.8).defaults["beta1"] == 0.8
    assert create_optimizer("momentum", p, beta=0.8).defaults["beta"] == 0.8
    assert create_optimizer("rmsprop", p).defaults["lr"] == 1e-3
    with pytest.raises(DeepnotesError, match="sgd has no beta"):
        create_optimizer("sgd", p, beta=0.8)


# ------------------------------------------------------------------ learning-rate decay


def test_the_notes_decay_and_its_relatives_by_epoch():
    per_epoch, total = 10, 100
    at = [learning_rate("inverse:0.5", 0.2, e * per_epoch, total, per_epoch) for e in range(10)]
    assert at == pytest.approx([0.2 / (1 + 0.5 * e) for e in range(10)])
    assert learning_rate("inverse", 0.2, 19, total, per_epoch) == pytest.approx(0.2 / 2)
    assert learning_rate("exponential:0.9", 1.0, 35, total, per_epoch) == pytest.approx(0.9**3)
    assert learning_rate("step:4:0.5", 1.0, 85, total, per_epoch) == pytest.approx(0.25)
    assert learning_rate("step", 1.0, 35, total, per_epoch) == pytest.approx(0.1)  # every 3
    assert learning_rate("constant", 0.3, 99, total, per_epoch) == 0.3


def test_cosine_and_warm_up_by_step():
    total = 100
    cosine = [learning_rate("cosine", 1.0, t, total) for t in range(total + 1)]
    assert cosine[0] == 1.0 and cosine[50] == pytest.approx(0.5) and cosine[100] == 0.0
    assert all(a >= b for a, b in zip(cosine, cosine[1:]))
    warm = [learning_rate("warmup:0.2", 1.0, t, total) for t in range(total)]
    assert warm[0] == pytest.approx(0.04) and warm[10] == pytest.approx(0.04 + 0.96 * 0.5)
    assert warm[20:] == [1.0] * 80


@pytest.mark.parametrize("spec, needle", [
    ("cosin", "'cosine'"), ("inverse:x", "numbers"), ("inverse:-1", "positive"),
    ("warmup:1.5", "below 1"), ("cosine:2", "at most 0 arguments"),
    ("step:1:2:3", "at most 2"), ("exponential:nan", "finite"),
])
def test_bad_schedules_are_refused(spec, needle):
    with pytest.raises(DeepnotesError, match=needle):
        check_schedule(spec)


def test_lambda_lr_drives_any_torch_loop():
    w = torch.nn.Parameter(torch.ones(1))
    opt = GradientDescent([w], lr=0.5)
    sched = lambda_lr(opt, "inverse:1", total_steps=40, steps_per_epoch=10)
    seen = []
    for _ in range(40):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[::10] == pytest.approx([0.5, 0.25, 0.5 / 3, 0.125])


# ------------------------------------------------------------------ from the command line

CLI_ARGS = ["train", "--data", "breast-cancer", "--batch-size", "32", "--quiet",
            "--schedule", "inverse:0.5"]


@pytest.mark.parametrize("name, extra", [
    ("sgd", ["--weight-decay", "1e-3"]),
    ("momentum", ["--beta", "0.8"]),
    ("rmsprop", []),
    ("adam", ["--beta", "0.85", "--weight-decay", "1e-4"]),
])
@pytest.mark.slow
def test_each_rule_trains_and_resumes_bit_exactly_from_the_cli(cli, tmp_path, name, extra):
    """Two epochs straight equal one epoch, then --resume for a second (the inverse decay depends
    on the epoch only, so the longer run is the same run)."""
    args = [*CLI_ARGS, "--optimizer", name, *extra, "--out", tmp_path]
    rc, out, err = cli(*args, "--epochs", 2, "--name", "straight")
    assert rc == 0, err
    rc, _, err = cli(*args, "--epochs", 1, "--name", "halves")
    assert rc == 0, err
    rc, _, err = cli("train", "--resume", tmp_path / "halves", "--epochs", 2, "--allow-changes",
                     "--quiet")
    assert rc == 0, err
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert (straight / "model.safetensors").read_bytes() == (
        halves / "model.safetensors").read_bytes()
    config = json.loads((straight / "config.json").read_text())
    assert config["optimizer"] == name and config["lr"] == DEFAULT_LRS[name]
    assert config["schedule"] == "inverse:0.5"
    history = (straight / "history.csv").read_text().splitlines()
    lrs = [float(row.split(",")[-2]) for row in history[1:]]
    assert lrs == pytest.approx([DEFAULT_LRS[name], DEFAULT_LRS[name] / 1.5])
    assert json.loads((straight / "metrics.json").read_text())["test"]["accuracy"] > 0.8


@pytest.mark.parametrize("args, needle", [
    (["--beta", "1"], "--beta 1.0"),
    (["--optimizer", "sgd", "--beta", "0.9"], "sgd has no beta"),
    (["--weight-decay", "-1"], "--weight-decay -1.0"),
    (["--weight-decay", "inf"], "--weight-decay inf"),
    (["--eps", "-1"], "--eps -1.0"),
    (["--early-stop", "0"], "--early-stop 0"),
    (["--min-delta", "-1"], "--min-delta -1.0"),
    (["--min-delta", "nan"], "--min-delta nan"),
    (["--schedule", "inverse:abc"], "inverse:abc"),
    (["--schedule", "warmup:2"], "below 1"),
])
def test_bad_optimizer_options_are_one_line_and_leave_nothing(cli, tmp_path, args, needle):
    rc, out, err = cli(*CLI_ARGS, "--epochs", 1, "--out", tmp_path, "--name", "r", *args)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_the_notes_variants_go_only_to_the_rules_that_have_them():
    w = [torch.zeros(2, requires_grad=True)]
    opt = create_optimizer("rmsprop", w, 0.01, eps=0.0, eps_inside_sqrt=True)
    assert opt.param_groups[0]["eps"] == 0.0 and opt.param_groups[0]["eps_inside_sqrt"]
    assert not create_optimizer("adam", w, bias_correction=False).param_groups[0][
        "bias_correction"]
    for name, kw, flag in [("sgd", {"eps": 1e-3}, "--eps"),
                           ("momentum", {"eps_inside_sqrt": True}, "--eps-inside-sqrt"),
                           ("rmsprop", {"bias_correction": False}, "--no-bias-correction")]:
        with pytest.raises(DeepnotesError, match=f"^{flag}: {name} has no such variant"):
            create_optimizer(name, w, 0.01, **kw)


@pytest.mark.slow  # trains through the CLI
def test_the_notes_variants_from_the_command_line_are_kept_by_the_run(cli, tmp_path):
    common = ("train", "--data", "breast-cancer", "--epochs", 1, "--quiet", "--out", tmp_path)
    rc, _, err = cli(*common, "--name", "rms", "--optimizer", "rmsprop", "--eps", "1e-6",
                     "--eps-inside-sqrt")
    assert rc == 0, err
    config = json.loads((tmp_path / "rms" / "config.json").read_text())
    assert config["eps"] == 1e-6 and config["eps_inside_sqrt"] and config["bias_correction"]
    state = checkpoint.committed_state(tmp_path / "rms")
    assert state is not None
    rc, _, err = cli(*common, "--name", "adam", "--no-bias-correction")
    assert rc == 0, err
    assert json.loads((tmp_path / "adam" / "config.json").read_text())["bias_correction"] is False
    rc, _, err = cli("train", "--resume", tmp_path / "adam", "--epochs", 2, "--allow-changes",
                     "--quiet")
    assert rc == 0, err  # the resumed optimizer is the run's: no bias correction
    rc, _, err = cli(*common, "--name", "bad", "--optimizer", "sgd", "--eps", "1e-3")
    assert rc == 2 and err.strip() == ("error: --eps: sgd has no such variant (only rmsprop "
                                       "and adam do)")
    assert not (tmp_path / "bad").exists()
