"""Edge detection on the course's 6x6 examples, and the notes' RMSprop (no epsilon, or epsilon
inside the square root) against NumPy transcriptions.

The notes have the heading "卷积运算: 边缘检测" with the figures left out; the numbers below are the
course's (Andrew Ng, "Convolutional Neural Networks", edge-detection lectures): a 6x6 image of
10s and 0s convolved with a 3x3 filter gives a 4x4 output with a band of 30 where the edge is.
Convolution is the deep-learning one, cross-correlation (the filter is not flipped).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes.nn import detect_edges, edge_filter
from deepnotes.optim import RMSprop

HORIZONTAL = [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]
VERTICAL = [[1, 0, -1], [1, 0, -1], [1, 0, -1]]


def cross_correlate(image: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Valid cross-correlation: out[i, j] = sum(image[i:i+f, j:j+f] * filter)."""
    n, k = image.shape[0], f.shape[0]
    m = image.shape[1]
    out = np.zeros((n - k + 1, m - k + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i : i + k, j : j + k] * f)
    return out


# bright (10) top half, dark (0) bottom half: the edge runs across the middle rows
TOP_BRIGHT = np.array([[10] * 6] * 3 + [[0] * 6] * 3, dtype=float)
TOP_BRIGHT_EDGES = [[0, 0, 0, 0], [30, 30, 30, 30], [30, 30, 30, 30], [0, 0, 0, 0]]
# the course's horizontal example: bright top-left and bottom-right quarters
QUARTERS = np.array([[10, 10, 10, 0, 0, 0]] * 3 + [[0, 0, 0, 10, 10, 10]] * 3, dtype=float)
QUARTERS_EDGES = [[0, 0, 0, 0], [30, 10, -10, -30], [30, 10, -10, -30], [0, 0, 0, 0]]
# the course's vertical example: bright left half
LEFT_BRIGHT = TOP_BRIGHT.T.copy()
LEFT_BRIGHT_EDGES = [[0, 30, 30, 0]] * 4


def test_the_filters_are_the_courses():
    assert edge_filter("horizontal").tolist() == HORIZONTAL
    assert edge_filter("vertical").tolist() == VERTICAL
    assert torch.equal(edge_filter("vertical", transpose=True), edge_filter("horizontal"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
@pytest.mark.parametrize("image, name, expected", [
    (TOP_BRIGHT, "horizontal", TOP_BRIGHT_EDGES),
    (QUARTERS, "horizontal", QUARTERS_EDGES),
    (LEFT_BRIGHT, "vertical", LEFT_BRIGHT_EDGES),
], ids=["top-bright", "quarters", "left-bright-vertical"])
def test_edge_detection_gives_the_courses_4x4_output(image, name, expected, dtype):
    oracle = cross_correlate(image, np.array(HORIZONTAL if name == "horizontal" else VERTICAL,
                                             dtype=float))
    np.testing.assert_array_equal(oracle, expected)  # the transcription agrees with the course
    out = detect_edges(torch.tensor(image).to(dtype), name)
    assert out.shape == (4, 4)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert out.tolist() == expected


def test_the_transposed_vertical_filter_finds_horizontal_edges():
    out = detect_edges(torch.tensor(QUARTERS), "vertical", transpose=True)
    assert out.tolist() == QUARTERS_EDGES


def test_a_dark_to_bright_edge_has_the_opposite_sign():
    flipped = 10 - TOP_BRIGHT  # dark top, bright bottom
    out = detect_edges(torch.tensor(flipped), "horizontal")
    assert out.tolist() == [[-v for v in row] for row in TOP_BRIGHT_EDGES]


def test_edges_of_a_random_image_match_the_numpy_cross_correlation():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(9, 7))
    for name in ("horizontal", "vertical", "sobel", "scharr"):
        f = edge_filter(name).double().numpy()
        np.testing.assert_allclose(detect_edges(torch.tensor(image), name).numpy(),
                                   cross_correlate(image, f), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- RMSprop, the notes' form
STEPS = 8
IMPLEMENTATIONS = ["auto", "reference", "foreach", "fused"]


def gradients(seed: int, scale: float) -> list[list[np.ndarray]]:
    """STEPS rounds of nonzero gradients dW (4x3) and db (3,)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(STEPS):
        dW, db = rng.normal(size=(4, 3)) * scale, rng.normal(size=3) * scale
        dW[np.abs(dW) < 1e-3 * scale] = scale  # nonzero everywhere: eps = 0 divides by sqrt(S)
        db[np.abs(db) < 1e-3 * scale] = scale
        out.append([dW, db])
    return out


def start_params(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    return [rng.normal(size=(4, 3)), rng.normal(size=3)]


def numpy_rmsprop(params, grads, alpha, beta, eps=0.0, where="none"):
    """S = beta S + (1 - beta) dW^2, then W := W - alpha dW / sqrt(S) (where="none"),
    / sqrt(S + eps) ("inside") or / (sqrt(S) + eps) ("outside"); S starts at 0."""
    params = [p.copy() for p in params]
    S = [np.zeros_like(p) for p in params]
    for step in grads:
        for i, dW in enumerate(step):
            S[i] = beta * S[i] + (1 - beta) * dW**2
            if where == "inside":
                denom = np.sqrt(S[i] + eps)
            elif where == "outside":
                denom = np.sqrt(S[i]) + eps
            else:
                denom = np.sqrt(S[i])
            params[i] = params[i] - alpha * dW / denom
    return params


def run_rmsprop(params, grads, **kw) -> list[np.ndarray]:
    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    opt = RMSprop(tensors, **kw)
    for step in grads:
        for t, g in zip(tensors, step):
            t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return [t.detach().numpy() for t in tensors]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("beta", [0.9, 0.5])
def test_rmsprop_without_epsilon_is_the_notes_rule(implementation, beta):
    params, grads = start_params(0), gradients(0, scale=1.0)
    expected = numpy_rmsprop(params, grads, alpha=0.01, beta=beta)
    actual = run_rmsprop(params, grads, lr=0.01, beta=beta, eps=0,
                         implementation=implementation)
    for a, e, p in zip(actual, expected, params):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)
        assert not np.allclose(a, p)  # the parameters moved


def test_the_first_rmsprop_step_without_epsilon_is_alpha_over_root_1_minus_beta():
    """S_1 = (1 - beta) dW^2, so the first step is alpha sign(dW) / sqrt(1 - beta) (the notes'
    rule: the size of the step no longer depends on the size of the gradient)."""
    params, grads = start_params(1), gradients(1, scale=1.0)[:1]
    actual = run_rmsprop(params, grads, lr=0.01, beta=0.9, eps=0)
    for a, p, g in zip(actual, params, grads[0]):
        np.testing.assert_allclose(p - a, 0.01 * np.sign(g) / np.sqrt(0.1), rtol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_rmsprop_with_epsilon_inside_the_root(implementation):
    # gradients ~1e-4, so dW^2 ~1e-8 is the size of eps and where eps sits matters
    params, grads = start_params(2), gradients(2, scale=1e-4)
    kw = dict(alpha=0.01, beta=0.9, eps=1e-8)
    expected = numpy_rmsprop(params, grads, where="inside", **kw)
    actual = run_rmsprop(params, grads, lr=0.01, beta=0.9, eps=1e-8, eps_inside_sqrt=True,
                         implementation=implementation)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-14)
    # the test tells the forms apart: outside the root, or no eps, gives other numbers
    for other in (numpy_rmsprop(params, grads, where="outside", **kw),
                  numpy_rmsprop(params, grads, alpha=0.01, beta=0.9)):
        assert not np.allclose(actual[0], other[0], rtol=1e-4, atol=0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_rmsprop_with_epsilon_outside_the_root(implementation):
    params, grads = start_params(3), gradients(3, scale=1e-4)
    expected = numpy_rmsprop(params, grads, alpha=0.01, beta=0.9, eps=1e-4, where="outside")
    actual = run_rmsprop(params, grads, lr=0.01, beta=0.9, eps=1e-4,
                         implementation=implementation)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-14)
