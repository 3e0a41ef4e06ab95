"""VGG (Simonyan & Zisserman, 2014): the notes' VGG-16 and its siblings, one rule for all.

Every convolution is f = 3, s = 1, "same" (p = 1); every pool is max, f = 2, s = 2. Blocks of
convolutions double n_C (64, 128, 256, 512, 512) while each pool halves n_H and n_W:

    224x224x3 -> [CONV 64] x2 -> POOL -> 112x112x64 -> [CONV 128] x2 -> POOL -> 56x56x128
    -> [CONV 256] x3 -> POOL -> 28x28x256 -> [CONV 512] x3 -> POOL -> 14x14x512
    -> [CONV 512] x3 -> POOL -> 7x7x512 -> FC 4096 -> FC 4096 -> softmax     (VGG-16, 138M)

The depths differ only in how many convolutions each block has (``CONFIGS``, "M" is a pool).
``batch_norm=True`` puts batch norm between each convolution and its ReLU; the convolution keeps
its bias there, as torchvision's VGG-BN does, so that its weight files load (beta would do).

State_dict keys and shapes are torchvision's: ``features.N.*`` (N counts every layer, ReLUs and
pools included), ``classifier.0/3/6.*``. An adaptive average pool makes the classifier's input
7x7x512 for any image of 32 pixels or more (a 32x32 image is 1x1x512 after the fifth pool, copied
to 7x7), hence ``input_size = 32``: small images are resized to it.
"""

from __future__ import annotations

from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.models.classifier import ConvClassifier
from deepnotes.nn import BatchNorm2d, Conv2d, MaxPool2d

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def conv_layers(config: list, in_channels: int, batch_norm: bool) -> nn.Sequential:
    """CONV f=3 "same" (+ BN) + ReLU for each n_C in ``config``, MAX POOL f=2 s=2 for each "M"."""
    layers: list[nn.Module] = []
    for v in config:
        if v == "M":
            layers.append(MaxPool2d(2, 2))  # (B, n_C, n_H / 2, n_W / 2)
            continue
        layers.append(Conv2d(in_channels, v, 3, padding=1))  # p = 1: "same", (B, v, n_H, n_W)
        if batch_norm:
            layers.append(BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(ConvClassifier):
    """VGG-``depth`` (11, 13, 16 or 19 weight layers), with or without batch norm.

    ``features`` (the attribute, keys ``features.N``) is the convolution stack; it lives in
    ``self._modules`` and is reached as ``self.body``, because ``features(x)`` is the method every
    model of ours has. ``classifier[-1]`` is the ``head``.
    """

    input_kind = "image"
    input_size = 32
    min_input_size = 32  # the pooling before the head is adaptive

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, depth: int = 16,
                 batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        if depth not in CONFIGS:
            raise DeepnotesError(f"depth={depth!r}: expected one of {sorted(CONFIGS)}")
        # the key "features" as torchvision has it; not an attribute, which would hide features(x)
        self._modules["features"] = conv_layers(CONFIGS[depth], in_channels, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's: He normal (fan_out) for convolutions, N(0, 0.01) for Linear, b = 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                assert m.bias is not None  # every convolution of conv_layers has a bias
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
