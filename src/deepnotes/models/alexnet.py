"""AlexNet (Krizhevsky et al., 2012), the notes' second classic network.

227x227x3 -> CONV 11x11 s=4 (96) -> 55x55x96 -> MAX POOL 3x3 s=2 -> 27x27x96 -> CONV 5x5 "same"
(256) -> MAX POOL -> 13x13x256 -> CONV 3x3 "same" (384, 384, 256) -> MAX POOL -> 6x6x256 = 9216
-> FC 4096 -> FC 4096 -> softmax. Like LeNet-5 but much bigger (about 60M parameters), with ReLU.

This is torchvision's single-GPU variant ("One weird trick", 64/192/384/256/256 filters, 2 padding
on the first convolution), with its state_dict keys and shapes: ``features.0/3/6/8/10.*`` and
``classifier.1/4/6.*``; 61,100,840 parameters for 1000 classes.

Small images: the 11x11 stride-4 stem and three 3x3 stride-2 pools need n_H, n_W >= 63
(n = 63 gives 15 -> 7 -> 3 -> 1), so ``input_size = 64`` and the CLI resizes smaller images to it.
The adaptive average pool then copies the 1x1x256 map to 6x6x256 for the classifier.
Shape comments are for a 224x224 input.
"""

from __future__ import annotations

from torch import nn

from deepnotes.models.classifier import ConvClassifier
from deepnotes.nn import Conv2d, MaxPool2d


class AlexNet(ConvClassifier):
    """``features`` (keys ``features.N``) is the convolution stack, reached as ``self.body``
    because ``features(x)`` is the method every model of ours has; ``classifier[-1]`` is the head.
    """

    input_kind = "image"
    input_size = 64
    min_input_size = 64  # the pooling before the head is adaptive

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        # the key "features" as torchvision has it; not an attribute, which would hide features(x)
        self._modules["features"] = nn.Sequential(
            Conv2d(in_channels, 64, 11, stride=4, padding=2),  # (B, 64, 55, 55)
            nn.ReLU(inplace=True),
            MaxPool2d(3, 2),  # (B, 64, 27, 27)
            Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),  # "same": (B, 192, 27, 27)
            MaxPool2d(3, 2),  # (B, 192, 13, 13)
            Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),  # (B, 384, 13, 13)
            Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),  # (B, 256, 13, 13)
            Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),  # (B, 256, 13, 13)
            MaxPool2d(3, 2),  # (B, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
