"""ResNet's residual blocks and Inception's modules by value, and Inception's bottleneck arithmetic.

The oracle for a block is the notes' skip connection written out with torch's functional ops on
the block's own parameters: z[l+1] = W[l+1] a[l] (+ batch norm), a[l+1] = g(z[l+1]), ...,
a[l+2] = g(z[l+2] + a[l]), with a[l] first mapped by W_s (1x1 convolution, stride s, batch norm)
when the block changes n_C or n_H x n_W. Batch norm at inference is the notes' z_norm with the
course's gamma, beta and running statistics: gamma (z - mu) / sqrt(sigma^2 + eps) + beta.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.models.inception import NaiveInception
from deepnotes.models.resnet import BasicBlock, Bottleneck
from deepnotes.models.summary import summarize, totals
from deepnotes.nn import Conv2d


def randomise_batch_norm(block: nn.Module, seed: int) -> None:
    """Non-trivial gamma, beta and running mu, sigma^2 in every batch norm of ``block``."""
    g = torch.Generator().manual_seed(seed)
    for m in block.modules():
        if hasattr(m, "running_mean"):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g, dtype=torch.float64) * 1.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.1)


def bn(z: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """The notes' batch norm at test time, per channel, from the running statistics."""
    shape = (1, -1, 1, 1)
    z_norm = (z - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
    return m.weight.view(shape) * z_norm + m.bias.view(shape)


def prepared(block: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    block = block.double()
    randomise_batch_norm(block, seed)
    return block.eval()


def a_l(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def shortcut_by_hand(block: nn.Module, a: torch.Tensor, stride: int) -> torch.Tensor:
    """a[l] itself, or W_s a[l]: 1x1 convolution with stride s, then batch norm."""
    if block.downsample is None:
        return a
    conv, norm = block.downsample[0], block.downsample[1]
    assert conv.weight.shape[2:] == (1, 1) and conv.bias is None
    return bn(F.conv2d(a, conv.weight, stride=stride), norm)


# (in_channels, n_C, stride, n_H, n_W): identity skip, projection for n_C, for n_C and stride
BASIC = [(8, 8, 1, 7, 6), (4, 8, 1, 7, 6), (4, 8, 2, 9, 7)]


@pytest.mark.parametrize("in_channels, n_C, stride, n_H, n_W", BASIC,
                         ids=["identity", "projection", "projection-stride2"])
def test_basic_block_is_the_notes_skip_connection(in_channels, n_C, stride, n_H, n_W):
    block = prepared(BasicBlock(in_channels, n_C, stride), seed=in_channels + stride)
    assert (block.downsample is None) == (in_channels == n_C and stride == 1)
    a = a_l((3, in_channels, n_H, n_W), seed=stride)
    with torch.no_grad():
        a1 = F.relu(bn(F.conv2d(a, block.conv1.weight, stride=stride, padding=1), block.bn1))
        z2 = bn(F.conv2d(a1, block.conv2.weight, stride=1, padding=1), block.bn2)
        expected = F.relu(z2 + shortcut_by_hand(block, a, stride))  # a[l+2] = g(z[l+2] + a[l])
        actual = block(a.clone())
    assert actual.shape == (3, n_C, -(-n_H // stride), -(-n_W // stride))
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    # the skip really contributes: without it the result is different
    assert not torch.allclose(actual, F.relu(z2), atol=1e-3)


# (in_channels, n_C, stride, n_H, n_W); the block's output has 4 n_C channels
BOTTLENECK = [(16, 4, 1, 7, 6), (8, 4, 1, 7, 6), (8, 4, 2, 9, 7)]


@pytest.mark.parametrize("in_channels, n_C, stride, n_H, n_W", BOTTLENECK,
                         ids=["identity", "projection", "projection-stride2"])
def test_bottleneck_block_is_the_notes_skip_connection(in_channels, n_C, stride, n_H, n_W):
    block = prepared(Bottleneck(in_channels, n_C, stride), seed=in_channels + stride)
    assert (block.downsample is None) == (in_channels == 4 * n_C and stride == 1)
    a = a_l((2, in_channels, n_H, n_W), seed=stride)
    with torch.no_grad():
        a1 = F.relu(bn(F.conv2d(a, block.conv1.weight), block.bn1))  # 1x1: reduce n_C
        # ResNet v1.5 (torchvision): the stride is on the 3x3 convolution
        a2 = F.relu(bn(F.conv2d(a1, block.conv2.weight, stride=stride, padding=1), block.bn2))
        z3 = bn(F.conv2d(a2, block.conv3.weight), block.bn3)  # 1x1: restore 4 n_C
        expected = F.relu(z3 + shortcut_by_hand(block, a, stride))
        actual = block(a.clone())
    assert actual.shape == (2, 4 * n_C, -(-n_H // stride), -(-n_W // stride))
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(actual, F.relu(z3), atol=1e-3)


@pytest.mark.parametrize("make", [lambda: BasicBlock(6, 6), lambda: Bottleneck(12, 3)],
                         ids=["basic", "bottleneck"])
def test_a_block_whose_last_batch_norm_outputs_zero_is_the_identity(make):
    """The notes: with W[l+2] = 0 (here gamma = beta = 0 of the last batch norm) the block gives
    a[l+2] = g(a[l]) = a[l] for the non-negative a[l] a ReLU layer hands it."""
    block = prepared(make(), seed=3)
    last = block.bn2 if isinstance(block, BasicBlock) else block.bn3
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        a = F.relu(a_l((2, block.conv1.in_channels, 5, 5), seed=0))
        torch.testing.assert_close(block(a.clone()), a, rtol=0, atol=0)


def test_the_block_does_not_modify_its_input():
    block = prepared(BasicBlock(5, 5), seed=1)
    a = a_l((2, 5, 6, 6), seed=1)
    before = a.clone()
    with torch.no_grad():
        block(a)
    assert torch.equal(a, before)


# ---------------------------------------------------------------- Inception's bottleneck layer
def conv_macs(n_H: int, n_W: int, n_C_out: int, f: int, n_C_in: int) -> int:
    """The closed form: every output value is f * f * n_C_in multiply-adds."""
    return n_H * n_W * n_C_out * f * f * n_C_in


def test_inception_5x5_on_28x28x192_costs_the_course_figure():
    model = nn.Sequential(Conv2d(192, 32, 5, padding="same"))
    rows = summarize(model, (192, 28, 28))
    assert [r["output"] for r in rows] == ["28 x 28 x 32"]
    assert rows[0]["macs"] == conv_macs(28, 28, 32, 5, 192)
    assert totals(rows, model)["macs"] == conv_macs(28, 28, 32, 5, 192) == 120_422_400


def test_inception_bottleneck_costs_a_tenth_the_course_figure():
    model = nn.Sequential(Conv2d(192, 16, 1), Conv2d(16, 32, 5, padding="same"))
    rows = summarize(model, (192, 28, 28))
    assert [r["output"] for r in rows] == ["28 x 28 x 16", "28 x 28 x 32"]
    first, second = conv_macs(28, 28, 16, 1, 192), conv_macs(28, 28, 32, 5, 16)
    assert [r["macs"] for r in rows] == [first, second] == [2_408_448, 10_035_200]
    assert totals(rows, model)["macs"] == first + second == 12_443_648


def test_the_bottleneck_figures_do_not_depend_on_real_weights():
    """The same rows for a model built on the meta device (nothing allocated or computed)."""
    with torch.device("meta"):
        model = nn.Sequential(Conv2d(192, 16, 1), Conv2d(16, 32, 5, padding="same"))
    assert totals(summarize(model, (192, 28, 28)), model)["macs"] == 12_443_648


# ---------------------------------------------------------------- the naive Inception module
@pytest.mark.parametrize("n_H, n_W", [(9, 9), (8, 11)])
def test_naive_inception_is_its_branches_concatenated_on_channels(n_H, n_W):
    torch.manual_seed(0)
    module = NaiveInception(6, 4, 5, 3).double().eval()
    x = a_l((2, 6, n_H, n_W), seed=n_W)
    b1, b3, b5 = module.branch1[0], module.branch3[0], module.branch5[0]
    with torch.no_grad():
        expected = torch.cat([
            F.relu(F.conv2d(x, b1.weight, b1.bias)),
            F.relu(F.conv2d(x, b3.weight, b3.bias, padding=1)),  # "same" for f = 3: p = 1
            F.relu(F.conv2d(x, b5.weight, b5.bias, padding=2)),  # f = 5: p = 2
            F.max_pool2d(x, 3, stride=1, padding=1),  # the pool passes all n_C through
        ], dim=1)
        actual = module(x.clone())
    assert module.out_channels == 4 + 5 + 3 + 6
    assert actual.shape == (2, 18, n_H, n_W)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
