"""Inception (Szegedy et al., 2014): let the network choose the filter size by using them all.

The notes' naive module (:class:`NaiveInception`) runs a 1x1, a 3x3 and a 5x5 "same" convolution
and a 3x3 "same" max pool (s = 1) side by side on the same input and stacks the outputs along n_C:

    (B, n_C, n_H, n_W) -> concat[(B, n_1, ...), (B, n_3, ...), (B, n_5, ...), (B, n_C, ...)]
                       = (B, n_1 + n_3 + n_5 + n_C, n_H, n_W)

Its cost is the 5x5 convolutions on many channels, and the pool passes all n_C through. The real
module (:class:`Inception`) first shrinks n_C with 1x1 convolutions (the "bottleneck layer"): a
1x1 reduction before the 3x3 and 5x5 branches and a 1x1 projection after the pool. GoogLeNet
stacks nine such modules, with max pools between some of them, global average pooling and one
FC softmax layer; two auxiliary classifiers on intermediate modules (``aux_logits=True``) add a
softmax in the middle of the network, which regularises it (loss = L + 0.3 (L_aux1 + L_aux2)).

State_dict keys and shapes are torchvision's GoogLeNet (``conv1.conv.weight``, ``conv1.bn.*``,
``inception3a.branch1.conv.weight``, ..., ``fc.weight``; 6,624,904 parameters without the
auxiliary classifiers). Each convolution is ``BasicConv2d``: conv (no bias: beta replaces b),
batch norm with eps = 0.001, ReLU. As in torchvision, the "5x5" branch uses a 3x3 convolution
(pytorch/vision issue 906): the weight files were made that way, so the shapes must be too.

Shape comments are for a 224x224 input. The pools use ceil_mode, and the average pool is
adaptive, so a 32x32 image works too (it reaches ``inception5b`` as 1x1): ``input_size = 32``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.models.network import Network, fresh_linear
from deepnotes.nn import BatchNorm2d, Conv2d, MaxPool2d


class NaiveInception(nn.Module):
    """The notes' naive Inception module: 1x1, 3x3, 5x5 "same" convolutions (each with ReLU) and a
    3x3 "same" max pool, concatenated on channels; ``out_channels = n_1 + n_3 + n_5 + n_C``."""

    def __init__(self, in_channels: int, n_1x1: int, n_3x3: int, n_5x5: int):
        super().__init__()
        self.branch1 = nn.Sequential(Conv2d(in_channels, n_1x1, 1), nn.ReLU(inplace=True))
        self.branch3 = nn.Sequential(Conv2d(in_channels, n_3x3, 3, padding="same"),
                                     nn.ReLU(inplace=True))
        self.branch5 = nn.Sequential(Conv2d(in_channels, n_5x5, 5, padding="same"),
                                     nn.ReLU(inplace=True))
        self.pool = MaxPool2d(3, stride=1, padding=1)  # "same": n_H, n_W and n_C kept
        self.out_channels = n_1x1 + n_3x3 + n_5x5 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch3(x), self.branch5(x), self.pool(x)]
        return torch.cat(branches, dim=1)  # (B, n_1 + n_3 + n_5 + n_C, n_H, n_W)


class BasicConv2d(nn.Module):
    """CONV (no bias) -> batch norm (eps = 0.001) -> ReLU, torchvision's keys ``conv``, ``bn``."""

    def __init__(self, in_channels: int, out_channels: int, f: int, stride: int = 1,
                 padding: int = 0):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, f, stride, padding, bias=False)
        self.bn = BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)  # (B, out_channels, n_H', n_W')


class Inception(nn.Module):
    """The Inception module with 1x1 reductions: four branches concatenated on n_C."""

    def __init__(self, in_channels: int, n_1x1: int, n_3x3_reduce: int, n_3x3: int,
                 n_5x5_reduce: int, n_5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, n_1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, n_3x3_reduce, 1),
                                     BasicConv2d(n_3x3_reduce, n_3x3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, n_5x5_reduce, 1),
                                     BasicConv2d(n_5x5_reduce, n_5x5, 3, padding=1))  # see above
        self.branch4 = nn.Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # (B, n_1 + n_3 + n_5 + pool_proj, n_H, n_W)


class InceptionAux(nn.Module):
    """An auxiliary classifier: average pool to 4x4, 1x1 conv (128), FC 1024, dropout, FC."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))  # (B, 128, 4, 4)
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)  # (B, 1024)
        return self.fc2(self.dropout(x))  # (B, num_classes)


# (in_channels, n_1x1, n_3x3_reduce, n_3x3, n_5x5_reduce, n_5x5, pool_proj) of each module
MODULES = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
POOLS_AFTER = {"inception3b": ("maxpool3", 3), "inception4e": ("maxpool4", 2)}  # name, f


class GoogLeNet(Network):
    """GoogLeNet (Inception v1); ``fc`` is the ``head``.

    ``aux_logits=True`` adds the two auxiliary classifiers; ``forward`` still returns the main
    logits only, and ``forward_with_aux(x)`` returns ``(logits, aux1, aux2)`` for a loss
    L + 0.3 (L_aux1 + L_aux2). ``transform_input=True`` maps ImageNet-normalised input to the
    [-1, 1] scale that torchvision's GoogLeNet weights (ported from TensorFlow) expect.
    """

    input_kind = "image"
    input_size = 32
    min_input_size = 32  # the pooling before the head is adaptive
    optional_weights = ("aux1.", "aux2.")  # torchvision's weight file has them; we may not
    aux_heads = ("aux1", "aux2")  # outputs, in no layer group
    # added by name from MODULES and POOLS_AFTER (add_module)
    inception3a: Inception
    inception3b: Inception
    inception4a: Inception
    inception4b: Inception
    inception4c: Inception
    inception4d: Inception
    inception4e: Inception
    inception5a: Inception
    inception5b: Inception
    maxpool3: MaxPool2d
    maxpool4: MaxPool2d

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
                 transform_input: bool = False, dropout: float = 0.2):
        super().__init__()
        if transform_input and in_channels != 3:
            raise DeepnotesError(f"transform_input=True needs in_channels=3, got {in_channels}")
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv1 = BasicConv2d(in_channels, 64, 7, stride=2, padding=3)
        self.maxpool1 = MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = MaxPool2d(3, 2, ceil_mode=True)
        for name, channels in MODULES.items():
            self.add_module(name, Inception(*channels))
            if name in POOLS_AFTER:  # max pool s = 2 between stages: n_H, n_W halved
                pool_name, f = POOLS_AFTER[name]
                self.add_module(pool_name, MaxPool2d(f, 2, ceil_mode=True))
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's: truncated N(0, 0.01) (at +-2) for every convolution and Linear."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """(x * std + mean - 0.5) / 0.5 per channel: ImageNet-normalised -> [-1, 1]."""
        if not self.transform_input:
            return x
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The head's input and the inputs of the two auxiliary classifiers."""
        x = self.maxpool1(self.conv1(self._transform(x)))  # (B, 64, 56, 56)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (B, 480, 14, 14)
        to_aux1 = x = self.inception4a(x)  # (B, 512, 14, 14)
        to_aux2 = x = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, 14, 14)
        x = self.maxpool4(self.inception4e(x))  # (B, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)
        x = self.dropout(torch.flatten(self.avgpool(x), 1))  # (B, 1024)
        return x, to_aux1, to_aux2

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_C, n_H, n_W) -> (B, 1024), the pooled activations ``fc`` reads."""
        return self._trunk(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # logits z: (B, num_classes)

    def forward_with_aux(self, x: torch.Tensor):
        """(logits, aux1 logits, aux2 logits); the aux logits are None without ``aux_logits``."""
        x, to_aux1, to_aux2 = self._trunk(x)
        if not self.aux_logits:
            return self.fc(x), None, None
        assert self.aux1 is not None and self.aux2 is not None  # made with aux_logits=True
        return self.fc(x), self.aux1(to_aux1), self.aux2(to_aux2)

    def reset_head(self, num_classes: int) -> None:
        """A new ``fc`` (and new auxiliary output layers, if there are any)."""
        super().reset_head(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = fresh_linear(aux.fc2, num_classes)
