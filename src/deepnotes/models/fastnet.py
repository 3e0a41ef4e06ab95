"""A small, wide convolutional network for training fast: the network of ``--recipe fast``.

It follows the CIFAR-10 speedruns (Keller Jordan's airbench: 94 % in seconds on one GPU): few
layers, many channels, batch norm after every convolution, max pooling to shrink n_H and n_W,
and no fully connected layers but the softmax layer. With widths (c1, c2, c3):

    stem   conv f=3 "same" (c1) -> BN -> GELU                               n x n x c1
    block  conv f=3 "same" -> max pool f=2 s=2 -> BN -> GELU
           -> conv f=3 "same" -> BN -> GELU                                 three blocks:
                                                                            c1, c2, c3 channels
    head   max over n_H x n_W -> fc -> softmax                              c3 -> classes

A 28x28 Fashion-MNIST image is 14x14, 7x7 and 3x3 after the three blocks. Every convolution is
followed by batch norm, so none has a bias (beta takes its place).

``mirror_tta=True`` is test-time augmentation: in eval mode the logits are averaged over the
image and its mirror image, z = (f(x) + f(flip(x))) / 2. It is right where mirroring does not
change the class (clothes, photos), which is where training used ``--augment flip``; the run
turns it on exactly then.
"""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.models.network import Network
from deepnotes.nn import BatchNorm2d, Conv2d, MaxPool2d


def conv_bn(in_channels: int, out_channels: int, pool: bool = False) -> list[nn.Module]:
    """conv f=3 "same" (no bias) [-> max pool f=2 s=2] -> batch norm -> GELU."""
    layers: list[nn.Module] = [Conv2d(in_channels, out_channels, 3, padding="same", bias=False)]
    if pool:
        layers.append(MaxPool2d(2, 2))
    return [*layers, BatchNorm2d(out_channels), nn.GELU()]


class FastNet(Network):
    """Stem, three two-convolution blocks that halve n_H and n_W, global max pool, softmax layer;
    widths (64, 256, 256) by default (2.0 M parameters for one channel and 10 classes)."""

    input_kind = "image"
    input_size = 28  # what the CLI resizes to; any n >= 8 works (the pooling at the end is global)
    min_input_size = 8  # the pooling before the head is adaptive
    head: nn.Linear
    opened = ("body",)  # layer groups: each convolution with its pool, norm and GELU
    takes_mirror_tta = True  # the run passes mirror_tta (see deepnotes.runs.build.build_model)

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 widths: tuple[int, int, int] = (64, 256, 256), mirror_tta: bool = False):
        super().__init__()
        c1, c2, c3 = widths
        self.mirror_tta = mirror_tta
        self.body = nn.Sequential(
            *conv_bn(in_channels, c1),
            *conv_bn(c1, c1, pool=True), *conv_bn(c1, c1),  # n/2
            *conv_bn(c1, c2, pool=True), *conv_bn(c2, c2),  # n/4
            *conv_bn(c2, c3, pool=True), *conv_bn(c3, c3),  # n/8
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(c3, num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_C, n_H, n_W) -> (B, c3), the activations the softmax layer reads."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.features(x))  # logits z: (B, num_classes)
        if self.mirror_tta and not self.training:
            z = (z + self.head(self.features(x.flip(-1)))) / 2
        return z
