"""Residual networks (He et al., 2015): the notes' skip connection, 18 to 152 layers.

A residual block lets a[l] skip ahead two (or three) layers and join before the last ReLU:

    z[l+1] = W[l+1] a[l] + b[l+1]        a[l+1] = g(z[l+1])
    z[l+2] = W[l+2] a[l+1] + b[l+2]      a[l+2] = g(z[l+2] + a[l])

If the block changes n_C or n_H x n_W, a[l] is first mapped to the new shape by W_s a[l]
(a 1x1 convolution with stride s, the ``downsample`` layer). Each convolution is followed by batch
norm, so it has no bias: beta takes the place of b. Learning the identity is easy (W[l+2] = 0), so
a deeper network does no worse than a shallower one, and 152 layers still train.

One class, two block types and four layer counts:

    resnet18  basic       (2, 2, 2, 2)     resnet50   bottleneck (3, 4, 6, 3)
    resnet34  basic       (3, 4, 6, 3)     resnet101  bottleneck (3, 4, 23, 3)
                                           resnet152  bottleneck (3, 8, 36, 3)

The state_dict keys and shapes are torchvision's (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ``fc.weight``), so torchvision or
timm weight files load with :func:`deepnotes.models.load_weights`.

Small images: the ImageNet stem (7x7 conv stride 2, then a 3x3 max pool stride 2) divides n_H and
n_W by 4 before the first block; a 32x32 image reaches ``layer4`` as 1x1, which works (the pooling
at the end is adaptive) and is what ``input_size = 32`` uses. ``small_input=True`` is the CIFAR
ResNet's stem instead: a 3x3 stride-1 convolution and no max pool, so 32x32 reaches ``layer4`` as
4x4. Use it to train from scratch on images of 64 pixels or fewer (Fashion-MNIST, digits, CIFAR);
it costs 16 times the multiply-adds. Keep the default to load ImageNet weights: the keys are the
same, but ``conv1.weight`` is (64, n_C, 3, 3) instead of (64, n_C, 7, 7).
"""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.models.network import Network
from deepnotes.nn import BatchNorm2d, Conv2d, MaxPool2d


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """W_s: a 1x1 convolution and batch norm mapping a[l] to the shape of z[l+2], if it differs."""
    if stride == 1 and in_channels == out_channels:
        return None  # the identity: a[l] is added as it is
    return nn.Sequential(Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the skip: a[l+2] = g(z[l+2] + a[l]) (resnet18, resnet34)."""

    expansion = 1

    def __init__(self, in_channels: int, n_C: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2d(in_channels, n_C, 3, stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(n_C)
        self.conv2 = Conv2d(n_C, n_C, 3, padding=1, bias=False)  # p = (f - 1) / 2: "same"
        self.bn2 = BatchNorm2d(n_C)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, n_C, stride)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        skip = a if self.downsample is None else self.downsample(a)  # a[l]: (B, n_C, n_H, n_W)
        a1 = self.relu(self.bn1(self.conv1(a)))  # a[l+1]: (B, n_C, n_H / s, n_W / s)
        z2 = self.bn2(self.conv2(a1))  # z[l+2]: (B, n_C, n_H / s, n_W / s)
        return self.relu(z2 + skip)  # a[l+2] = g(z[l+2] + a[l])


class Bottleneck(nn.Module):
    """1x1 (reduce n_C), 3x3, 1x1 (restore 4 n_C), then a[l+3] = g(z[l+3] + a[l]) (resnet50+).

    The stride is on the 3x3 convolution, as in torchvision ("ResNet v1.5").
    """

    expansion = 4

    def __init__(self, in_channels: int, n_C: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2d(in_channels, n_C, 1, bias=False)
        self.bn1 = BatchNorm2d(n_C)
        self.conv2 = Conv2d(n_C, n_C, 3, stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(n_C)
        self.conv3 = Conv2d(n_C, n_C * 4, 1, bias=False)
        self.bn3 = BatchNorm2d(n_C * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, n_C * 4, stride)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        skip = a if self.downsample is None else self.downsample(a)  # (B, 4 n_C, n_H/s, n_W/s)
        a1 = self.relu(self.bn1(self.conv1(a)))  # (B, n_C, n_H, n_W)
        a2 = self.relu(self.bn2(self.conv2(a1)))  # (B, n_C, n_H / s, n_W / s)
        z3 = self.bn3(self.conv3(a2))  # (B, 4 n_C, n_H / s, n_W / s)
        return self.relu(z3 + skip)  # a[l+3] = g(z[l+3] + a[l])


BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Network):
    """Stem, four stages of residual blocks (n_C 64, 128, 256, 512; stride 1, 2, 2, 2), global
    average pooling and one fully connected softmax layer, ``fc`` (the ``head``)."""

    input_kind = "image"
    input_size = 32
    min_input_size = 32  # the pooling before the head is adaptive

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, block: str = "basic",
                 layers: tuple = (2, 2, 2, 2), small_input: bool = False):
        super().__init__()
        if block not in BLOCKS:
            raise DeepnotesError(f"block={block!r}: expected one of {sorted(BLOCKS)}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise DeepnotesError(f"layers={layers!r}: expected four block counts >= 1")
        self.block, self.small_input = BLOCKS[block], small_input
        if small_input:  # CIFAR stem: (B, 64, n_H, n_W), no max pool
            self.conv1 = Conv2d(in_channels, 64, 3, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:  # ImageNet stem: (B, 64, n_H / 2, n_W / 2), then the pool halves it again
            self.conv1 = Conv2d(in_channels, 64, 7, 2, padding=3, bias=False)
            self.maxpool = MaxPool2d(3, 2, padding=1)
        self.bn1 = BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        e = self.block.expansion
        self.layer1 = self._stage(64, 64, layers[0], 1)
        self.layer2 = self._stage(64 * e, 128, layers[1], 2)
        self.layer3 = self._stage(128 * e, 256, layers[2], 2)
        self.layer4 = self._stage(256 * e, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * self.block.expansion, num_classes)
        self._init_weights()

    def _stage(self, in_channels: int, n_C: int, blocks: int, stride: int) -> nn.Sequential:
        """``blocks`` residual blocks; the first one changes n_C and applies the stride."""
        out_channels = n_C * self.block.expansion
        stage = [self.block(in_channels, n_C, stride)]
        stage += [self.block(out_channels, n_C) for _ in range(int(blocks) - 1)]
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        """He initialisation for the convolutions (fan_out, for ReLU), as torchvision does."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_C, n_H, n_W) -> (B, 512 * expansion), the activations ``fc`` reads."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, n_H / 4, n_W / 4)
        x = self.layer2(self.layer1(x))  # (B, 128 e, n_H / 8, n_W / 8)
        x = self.layer4(self.layer3(x))  # (B, 512 e, n_H / 32, n_W / 32)
        return torch.flatten(self.avgpool(x), 1)  # (B, 512 e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # logits z: (B, num_classes)
