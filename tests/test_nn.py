"""deepnotes.nn against NumPy transcriptions of the notes and against torch's own layers.

Oracles (STYLE.md habit 7): the NumPy functions below are written here from the notes'
definitions (cross-correlation over an (n_H, n_W, n_C) volume, f x f pooling windows, the batch
norm lines), independently of src/; torch.nn.Conv2d / BatchNorm / softmax are the second opinion.
Comparisons run in float64 against NumPy (tight tolerances) and in float32 against torch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import close
from deepnotes.errors import DeepnotesError
from deepnotes.nn import (
    FILTERS,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    MaxPool2d,
    conv_output_size,
    detect_edges,
    edge_filter,
    same_padding,
    softmax,
)

F64 = dict(atol=1e-10, rtol=1e-10)  # float64 layer vs float64 NumPy oracle
F32 = dict(atol=1e-5, rtol=1e-5)  # float32 layer vs torch / vs float64 oracle
BN_KEYS = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]



# ---------------------------------------------------------------- NumPy oracles (from the notes)

def np_conv2d(x, w, b=None, s=1, pad=(0, 0, 0, 0)):
    """Convolution (cross-correlation, filter not flipped) of x: (B, n_C, n_H, n_W) with
    w: (K, n_C, f, f); pad = (top, bottom, left, right) zeros. out[b, k, i, j] =
    sum_{c,u,v} x[b, c, i*s + u, j*s + v] * w[k, c, u, v] + b[k]."""
    top, bottom, left, right = pad
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    B, _, H, W = x.shape
    K, _, f_h, f_w = w.shape
    rows = range(0, H - f_h + 1, s)  # every window that fits entirely
    cols = range(0, W - f_w + 1, s)
    out = np.zeros((B, K, len(rows), len(cols)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            window = x[:, :, r:r + f_h, c:c + f_w]  # (B, n_C, f, f)
            out[:, :, i, j] = np.einsum("bcuv,kcuv->bk", window, w)
    if b is not None:
        out += b[None, :, None, None]
    return out


def np_same_pad(n: int, f: int, s: int) -> tuple[int, int]:
    """Smallest total padding P giving ceil(n / s) outputs; the odd pixel goes after."""
    P = 0
    while len(range(0, n + P - f + 1, s)) < math.ceil(n / s):
        P += 1
    return P // 2, P - P // 2


def np_pool(x, f, s, op):
    """op (np.max / np.mean) over each f x f window with stride s, per channel."""
    B, C, H, W = x.shape
    rows, cols = range(0, H - f + 1, s), range(0, W - f + 1, s)
    out = np.zeros((B, C, len(rows), len(cols)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[:, :, i, j] = op(x[:, :, r:r + f, c:c + f], axis=(2, 3))
    return out


def np_batchnorm_train(z, gamma, beta, eps):
    """The notes: mu, sigma^2 over the mini-batch (all axes but 1); gamma z_norm + beta."""
    axes = (0, *range(2, z.ndim))
    shape = [1, -1] + [1] * (z.ndim - 2)
    mu = z.mean(axis=axes, keepdims=True)
    sigma2 = ((z - mu) ** 2).mean(axis=axes, keepdims=True)
    z_norm = (z - mu) / np.sqrt(sigma2 + eps)
    return gamma.reshape(shape) * z_norm + beta.reshape(shape)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- conv_output_size, same_padding

GRID = [(n, f, p, s) for n in range(1, 11) for f in range(1, 6) for p in range(3)
        for s in range(1, 4)]


def test_conv_output_size_matches_formula_and_torch_over_grid():
    checked = 0
    for n, f, p, s in GRID:
        expected = math.floor((n + 2 * p - f) / s) + 1
        if expected < 1:
            continue
        assert conv_output_size(n, f, p, s) == expected, (n, f, p, s)
        y = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, f, f), stride=s, padding=p)
        assert tuple(y.shape[-2:]) == (expected, expected), (n, f, p, s)
        checked += 1
    assert checked > 300  # the grid really exercised the formula


@pytest.mark.parametrize("n,f,p,s", [(n, f, p, s) for n, f, p, s in GRID
                                     if math.floor((n + 2 * p - f) / s) + 1 < 1][::7])
def test_conv_output_size_below_one_shows_the_arithmetic(n, f, p, s):
    out = math.floor((n + 2 * p - f) / s) + 1
    with pytest.raises(DeepnotesError) as exc:
        conv_output_size(n, f, p, s)
    msg = str(exc.value)
    assert f"floor(({n} + 2*{p} - {f}) / {s}) + 1 = {out} < 1" in msg
    assert f"f={f}, p={p}, s={s}" in msg
    with pytest.raises(RuntimeError):  # torch agrees the input is too small
        F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, f, f), stride=s, padding=p)


@pytest.mark.parametrize("f,p,s", [(0, 0, 1), (3, -1, 1), (3, 0, 0)])
def test_conv_output_size_rejects_bad_hyperparameters(f, p, s):
    with pytest.raises(DeepnotesError, match=f"f={f}, p={p}, s={s}"):
        conv_output_size(7, f, p, s)


def test_same_padding_gives_ceil_n_over_s_with_odd_pixel_after():
    for n in range(1, 13):
        for f in range(1, 6):
            for s in range(1, 4):
                before, after = same_padding(n, f, s)
                assert (before, after) == np_same_pad(n, f, s), (n, f, s)
                assert after - before in (0, 1)
                assert (n + before + after - f) // s + 1 == math.ceil(n / s)
                if s == 1 and f % 2 == 1:
                    assert before == after == (f - 1) // 2  # the course's p = (f - 1) / 2


# ---------------------------------------------------------------- Conv2d: valid / int padding

@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("f", [1, 2, 3, 5])
@pytest.mark.parametrize("padding", ["valid", 0, 1, 2])
def test_conv2d_valid_and_int_padding_vs_numpy(padding, f, stride):
    torch.manual_seed(0)
    layer = Conv2d(3, 4, f, stride=stride, padding=padding).double()  # RGB in, 4 filters
    x = randn(2, 3, 7, 8, seed=1)  # (B, n_C, n_H, n_W)
    p = 0 if padding == "valid" else padding
    y = layer(x)
    expected = np_conv2d(x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                         s=stride, pad=(p, p, p, p))
    assert tuple(y.shape) == (2, 4, conv_output_size(7, f, p, stride),
                              conv_output_size(8, f, p, stride))
    close(y, expected, **F64)


@pytest.mark.parametrize("stride,padding", [(1, "valid"), (2, "valid"), (1, 1), (2, 2)])
def test_conv2d_state_dict_round_trips_with_torch_conv2d(stride, padding):
    torch.manual_seed(0)
    ours = Conv2d(3, 5, 3, stride=stride, padding=padding)
    p = 0 if padding == "valid" else padding
    theirs = nn.Conv2d(3, 5, 3, stride=stride, padding=p)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    x = randn(2, 3, 9, 8, seed=2, dtype=torch.float32)

    theirs.load_state_dict(ours.state_dict())  # ours -> torch
    close(ours(x), theirs(x), **F32)

    torch.manual_seed(1)
    theirs = nn.Conv2d(3, 5, 3, stride=stride, padding=p)
    ours.load_state_dict(theirs.state_dict())  # torch -> ours
    close(ours(x), theirs(x), **F32)


def test_conv2d_without_bias_matches_numpy():
    layer = Conv2d(3, 2, 3, bias=False).double()
    assert list(layer.state_dict()) == ["weight"]
    x = randn(1, 3, 6, 6, seed=3)
    close(layer(x), np_conv2d(x.numpy(), layer.weight.detach().numpy()), **F64)


# ---------------------------------------------------------------- Conv2d: "same"

@pytest.mark.parametrize("f", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n_H,n_W", [(5, 5), (6, 7)])
def test_conv2d_same_stride_1_keeps_size_vs_torch_and_numpy(f, n_H, n_W):
    torch.manual_seed(0)
    layer = Conv2d(3, 4, f, padding="same")
    x = randn(2, 3, n_H, n_W, seed=4, dtype=torch.float32)
    y = layer(x)
    assert tuple(y.shape) == (2, 4, n_H, n_W)
    with warnings.catch_warnings():  # torch warns that even f needs a padded copy
        warnings.simplefilter("ignore", UserWarning)
        expected = F.conv2d(x, layer.weight, layer.bias, padding="same")
    close(y, expected, **F32)

    layer64, x64 = layer.double(), x.double()
    (top, bottom), (left, right) = np_same_pad(n_H, f, 1), np_same_pad(n_W, f, 1)
    if f % 2 == 1:
        assert top == bottom == left == right == (f - 1) // 2
    else:  # even f: the extra pixel at the bottom and right
        assert (bottom - top, right - left) == (1, 1)
    oracle = np_conv2d(x64.numpy(), layer64.weight.detach().numpy(),
                       layer64.bias.detach().numpy(), pad=(top, bottom, left, right))
    close(layer64(x64), oracle, **F64)


def test_conv2d_same_odd_f_equals_int_padding_f_minus_1_over_2():
    torch.manual_seed(0)
    same = Conv2d(3, 2, 5, padding="same")
    explicit = Conv2d(3, 2, 5, padding=2)
    explicit.load_state_dict(same.state_dict())
    x = randn(1, 3, 6, 9, seed=5, dtype=torch.float32)
    close(same(x), explicit(x), **F32)


@pytest.mark.parametrize("s", [2, 3])
@pytest.mark.parametrize("f", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n_H,n_W", [(6, 6), (7, 8)])
def test_conv2d_same_stride_s_gives_ceil_n_over_s_vs_numpy(f, s, n_H, n_W):
    torch.manual_seed(0)
    layer = Conv2d(3, 4, f, stride=s, padding="same").double()
    x = randn(2, 3, n_H, n_W, seed=6)
    y = layer(x)
    assert tuple(y.shape) == (2, 4, math.ceil(n_H / s), math.ceil(n_W / s))
    pad = (*np_same_pad(n_H, f, s), *np_same_pad(n_W, f, s))
    oracle = np_conv2d(x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                       s=s, pad=pad)
    close(y, oracle, **F64)


@pytest.mark.parametrize("f,s,padding", [(2, 1, "same"), (3, 2, "same"), (4, 1, "same"),
                                         (3, 1, "valid"), (2, 2, 1)])
def test_conv2d_gradcheck(f, s, padding):
    torch.manual_seed(0)
    layer = Conv2d(2, 2, f, stride=s, padding=padding).double()
    x = randn(1, 2, 4, 5, seed=7).requires_grad_()  # tiny: gradcheck is O(numel^2)
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()

    def fn(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_conv2d_same_gradients_flow_to_every_input_pixel():
    layer = Conv2d(1, 1, 2, padding="same").double()
    x = randn(1, 1, 4, 4, seed=8).requires_grad_()
    layer(x).sum().backward()
    assert x.grad is not None and torch.all(x.grad != 0)
    assert layer.weight.grad is not None and layer.bias.grad is not None


# ---------------------------------------------------------------- Conv2d: errors

def test_conv2d_wrong_channel_count_names_n_C_and_shape():
    layer = Conv2d(3, 2, 3)
    with pytest.raises(DeepnotesError) as exc:
        layer(torch.zeros(1, 4, 5, 5))
    assert "n_C = 3" in str(exc.value) and "got 4" in str(exc.value)
    assert "(1, 4, 5, 5)" in str(exc.value)


def test_conv2d_three_dim_input_names_the_shape():
    with pytest.raises(DeepnotesError) as exc:
        Conv2d(3, 2, 3)(torch.zeros(3, 5, 5))
    assert "(B, n_C, n_H, n_W)" in str(exc.value) and "(3, 5, 5)" in str(exc.value)


def test_conv2d_too_small_input_names_axis_and_arithmetic():
    with pytest.raises(DeepnotesError) as exc:
        Conv2d(3, 2, 5)(torch.zeros(1, 3, 9, 4))
    msg = str(exc.value)
    assert msg.startswith("Conv2d(") and "n_W" in msg
    assert "floor((4 + 2*0 - 5) / 1) + 1 = 0 < 1" in msg


def test_conv2d_unknown_padding_word():
    with pytest.raises(DeepnotesError, match="padding='full'"):
        Conv2d(3, 2, 3, padding="full")


# ---------------------------------------------------------------- edge detection (the notes)

def notes_image() -> torch.Tensor:
    img = torch.zeros(6, 6)
    img[:, :3] = 10  # left three columns bright, right three dark
    return img


def test_notes_vertical_edge_example():
    y = detect_edges(notes_image(), "vertical")
    expected = torch.tensor([[0.0, 30.0, 30.0, 0.0]] * 4)
    close(y, expected, atol=0, rtol=0)
    oracle = np_conv2d(notes_image().double().numpy()[None, None],
                       np.array(FILTERS["vertical"], dtype=float)[None, None])[0, 0]
    close(y, oracle, atol=0, rtol=0)


def test_horizontal_filter_on_transposed_image_gives_the_transpose():
    vertical = detect_edges(notes_image(), "vertical")
    horizontal = detect_edges(notes_image().T, "horizontal")
    close(horizontal, vertical.T, atol=0, rtol=0)
    close(edge_filter("vertical", transpose=True), edge_filter("horizontal"), atol=0, rtol=0)
    close(detect_edges(notes_image().T, "vertical", transpose=True), vertical.T, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["sobel", "scharr"])
def test_sobel_and_scharr_shapes_and_values(name):
    f = edge_filter(name)
    assert f.shape == (3, 3) and f.dtype == torch.float32
    img = randn(7, 6, seed=9, dtype=torch.float32)
    y = detect_edges(img, name)
    assert y.shape == (5, 4)
    assert detect_edges(img, name, padding="same").shape == (7, 6)
    oracle = np_conv2d(img.double().numpy()[None, None],
                       np.array(FILTERS[name], dtype=float)[None, None])[0, 0]
    close(y, oracle, **F32)


def test_unknown_filter_name_suggests_a_close_one():
    with pytest.raises(DeepnotesError) as exc:
        edge_filter("sobell")
    assert "did you mean 'sobel'?" in str(exc.value)
    assert "vertical" in str(exc.value)  # and lists the valid names


def test_detect_edges_on_uint8_image():
    img = notes_image().to(torch.uint8)
    close(detect_edges(img, "vertical"), torch.tensor([[0.0, 30.0, 30.0, 0.0]] * 4),
          atol=0, rtol=0)


# ---------------------------------------------------------------- pooling

@pytest.mark.parametrize("cls,op", [(MaxPool2d, np.max), (AvgPool2d, np.mean)])
@pytest.mark.parametrize("n", [4, 5])
def test_pooling_defaults_f2_s2_vs_numpy(cls, op, n):
    layer = cls()
    assert layer.kernel_size == 2 and layer.stride == 2
    x = randn(2, 3, n, n, seed=10)  # (B, n_C, n_H, n_W)
    y = layer(x)
    assert tuple(y.shape) == (2, 3, 2, 2)  # floor((n - 2) / 2) + 1, n_C stays
    close(y, np_pool(x.numpy(), 2, 2, op), **F64)


@pytest.mark.parametrize("cls,op", [(MaxPool2d, np.max), (AvgPool2d, np.mean)])
def test_pooling_f3_s1_vs_numpy(cls, op):
    x = randn(1, 2, 5, 6, seed=11)
    close(cls(3, 1)(x), np_pool(x.numpy(), 3, 1, op), **F64)


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pooling_has_no_parameters(cls):
    layer = cls()
    assert list(layer.parameters()) == [] and len(layer.state_dict()) == 0


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pooling_too_small_input_names_the_layer(cls):
    with pytest.raises(DeepnotesError) as exc:
        cls()(torch.zeros(1, 3, 1, 4))
    msg = str(exc.value)
    assert msg.startswith(cls.__name__ + "(") and "n_H" in msg
    assert "floor((1 + 2*0 - 2) / 2) + 1 = 0 < 1" in msg


# ---------------------------------------------------------------- batch norm

BN_CASES = [  # (ours, torch's, input shape)
    (BatchNorm2d, nn.BatchNorm2d, (4, 3, 5, 6)),  # (B, n_C, n_H, n_W)
    (BatchNorm1d, nn.BatchNorm1d, (8, 5)),  # (B, n)
    (BatchNorm1d, nn.BatchNorm1d, (4, 5, 7)),  # (B, n, T)
]
BN_IDS = ["2d", "1d-(B,n)", "1d-(B,n,T)"]


def bn_pair(ours_cls, torch_cls, n, reference, seed=0):
    """Ours and torch's with the same non-trivial gamma, beta (and momentum 0.3)."""
    ours = ours_cls(n, momentum=0.3, reference=reference)
    theirs = torch_cls(n, momentum=0.3)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in (ours, theirs):
            m.weight.copy_(torch.linspace(0.5, 2.0, n))
            m.bias.copy_(torch.linspace(-1.0, 1.0, n))
    assert torch.equal(ours.weight, theirs.weight)
    return ours, theirs, g


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fused"])
@pytest.mark.parametrize("ours_cls,torch_cls,shape", BN_CASES, ids=BN_IDS)
def test_batchnorm_train_steps_and_eval_equal_torch(ours_cls, torch_cls, shape, reference):
    ours, theirs, g = bn_pair(ours_cls, torch_cls, shape[1], reference)
    for _ in range(4):
        x = torch.randn(*shape, generator=g) * 3 + 2
        upstream = torch.randn(*shape, generator=g)
        results = []
        for m in (ours, theirs):
            m.train()
            m.zero_grad()
            xi = x.clone().requires_grad_()
            y = m(xi)
            (y * upstream).sum().backward()
            results.append((y, xi.grad, m.weight.grad, m.bias.grad))
        for a, b in zip(*results):
            close(a, b, **F32)
    close(ours.running_mean, theirs.running_mean, **F32)
    close(ours.running_var, theirs.running_var, **F32)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 4

    ours.eval()
    theirs.eval()
    x = torch.randn(*shape, generator=g) * 3 + 2
    close(ours(x), theirs(x), **F32)
    assert int(ours.num_batches_tracked) == 4  # eval does not count


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fused"])
@pytest.mark.parametrize("ours_cls,torch_cls,shape", BN_CASES, ids=BN_IDS)
def test_batchnorm_train_output_vs_numpy(ours_cls, torch_cls, shape, reference):
    ours, _, g = bn_pair(ours_cls, torch_cls, shape[1], reference)
    x = torch.randn(*shape, generator=g) * 3 + 2
    expected = np_batchnorm_train(x.double().numpy(), ours.weight.detach().double().numpy(),
                                  ours.bias.detach().double().numpy(), ours.eps)
    close(ours(x), expected, **F32)
    ours64 = ours_cls(shape[1], reference=reference).double()
    ours64.load_state_dict(ours.state_dict())
    close(ours64(x.double()), expected, **F64)


@pytest.mark.parametrize("ours_cls,torch_cls,shape", BN_CASES, ids=BN_IDS)
def test_batchnorm_reference_equals_fused(ours_cls, torch_cls, shape):
    ref, _, g = bn_pair(ours_cls, torch_cls, shape[1], reference=True)
    fused = ours_cls(shape[1], momentum=0.3)
    fused.load_state_dict(ref.state_dict())
    for _ in range(3):
        x = torch.randn(*shape, generator=g) + 1
        close(ref(x), fused(x), **F32)
    for name in ("running_mean", "running_var"):
        close(getattr(ref, name), getattr(fused, name), **F32)


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fused"])
@pytest.mark.parametrize("ours_cls,torch_cls,shape", BN_CASES, ids=BN_IDS)
def test_batchnorm_state_dict_keys_and_round_trip_with_torch(ours_cls, torch_cls, shape,
                                                             reference):
    ours, theirs, g = bn_pair(ours_cls, torch_cls, shape[1], reference)
    assert list(ours.state_dict()) == BN_KEYS == list(theirs.state_dict())
    for _ in range(2):
        ours(torch.randn(*shape, generator=g) + 1)  # non-default running statistics
    fresh_torch = torch_cls(shape[1]).eval()
    fresh_torch.load_state_dict(ours.state_dict())  # ours -> torch, strict
    ours.eval()
    x = torch.randn(*shape, generator=g)
    close(ours(x), fresh_torch(x), **F32)

    for _ in range(2):
        theirs(torch.randn(*shape, generator=g) - 1)
    fresh_ours = ours_cls(shape[1], reference=reference).eval()
    fresh_ours.load_state_dict(theirs.state_dict())  # torch -> ours, strict
    assert int(fresh_ours.num_batches_tracked) == 2
    theirs.eval()
    close(fresh_ours(x), theirs(x), **F32)


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fused"])
@pytest.mark.parametrize("cls,one", [(BatchNorm1d, (1, 4)), (BatchNorm1d, (1, 4, 1)),
                                     (BatchNorm2d, (1, 4, 1, 1))])
def test_batchnorm_batch_of_one_in_training_raises(cls, one, reference):
    layer = cls(4, reference=reference)
    with pytest.raises(DeepnotesError, match="batch"):
        layer(torch.randn(*one))
    layer.eval()
    assert layer(torch.randn(*one)).shape == one  # fine at test time: running statistics


def test_batchnorm_batch_of_one_with_spatial_extent_is_fine():
    # one image but 2 x 2 values per channel: a variance exists (torch agrees)
    assert BatchNorm2d(3)(torch.randn(1, 3, 2, 2)).shape == (1, 3, 2, 2)
    assert BatchNorm1d(3)(torch.randn(1, 3, 5)).shape == (1, 3, 5)


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "fused"])
@pytest.mark.parametrize("cls,bad", [
    (BatchNorm2d, (2, 4, 5, 5)),  # wrong n_C
    (BatchNorm1d, (4, 5)),  # wrong n
    (BatchNorm1d, (4, 5, 6)),
    (BatchNorm2d, (2, 3, 5)),  # wrong number of dims
    (BatchNorm1d, (2, 3, 4, 4)),
])
def test_batchnorm_wrong_shape_raises(cls, bad, reference):
    layer = cls(3, reference=reference)
    with pytest.raises(DeepnotesError) as exc:
        layer(torch.randn(*bad))
    assert str(tuple(bad)) in str(exc.value) and "3 features" in str(exc.value)
    assert int(layer.num_batches_tracked) == 0


# ---------------------------------------------------------------- softmax

@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_equals_torch_and_is_a_distribution(dim):
    z = randn(4, 5, 6, seed=12, dtype=torch.float32) * 3
    y = softmax(z, dim)
    close(y, torch.softmax(z, dim), atol=1e-7, rtol=1e-6)
    assert torch.all(y > 0) and torch.all(y < 1)
    close(y.sum(dim), torch.ones_like(y.sum(dim)), atol=1e-6, rtol=0)


def test_softmax_large_logits_do_not_overflow():
    z = torch.tensor([[1000.0, 1001.0, 1002.0], [1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0]])
    y = softmax(z)
    assert torch.isfinite(y).all()
    close(y, torch.softmax(z, -1), atol=1e-7, rtol=1e-6)
    close(y.sum(-1), torch.ones(3), atol=1e-6, rtol=0)
    e = np.exp(np.array([0.0, 1.0, 2.0]) - 2.0)
    close(y[0], e / e.sum(), atol=1e-7, rtol=1e-6)
    assert torch.all(y[0] > 0) and torch.all(y[0] < 1)
