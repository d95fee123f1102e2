"""Convolutional image classifiers: LeNet (LeCun et al. 1998) and a compact ResNet (He et al. 2016)."""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, batchnorm: bool) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU()] if batchnorm else [conv, nn.ReLU()]


class LeNet(nn.Module):
    """LeNet-5-style CNN (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
    recognition"): two conv -> ReLU -> 2x2 max-pool stages (6 and 16 channels, 5x5 kernels, "same" padding),
    then fully connected 120 -> 84 -> classes. Modernised: ReLU instead of tanh, max- instead of average
    pooling, optional BatchNorm after each conv (then the conv has no bias: the BN shift replaces it, the
    layout that BN folding in chapter 02 expects).

    Parameters: digits (1, 8, 8) with BN 21,408 (without BN 21,386); MNIST (1, 28, 28) with BN 107,808;
    CIFAR-10 (3, 32, 32) with BN 136,908. Input height and width must be divisible by 4.
    """

    def __init__(self, input_shape=(1, 8, 8), num_classes: int = 10, batchnorm: bool = True,
                 channels=(6, 16), kernel_size: int = 5):
        super().__init__()
        c, h, w = input_shape
        if h % 4 or w % 4:
            raise ValueError(f"input_shape={tuple(input_shape)}: LeNet needs height and width divisible by 4")
        c1, c2 = channels
        self.features = nn.Sequential(
            *_conv_bn_relu(c, c1, kernel_size, batchnorm), nn.MaxPool2d(2),
            *_conv_bn_relu(c1, c2, kernel_size, batchnorm), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Residual block of He et al. 2016 (eq. 1-2): y = ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x)).
    The shortcut is the identity, or a strided 1x1 conv + BN when the shape changes (option B)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Compact ResNet in the CIFAR style of He, Zhang, Ren & Sun 2016 ("Deep residual learning for image
    recognition", section 4.2): a 3x3 stem, three stages of BasicBlocks with ``width``, 2x``width`` and
    4x``width`` channels (stride 2 between stages), global average pooling and one Linear layer. Works for
    any input of at least 4x4 pixels: 8x8 digits become 8 -> 4 -> 2, 32x32 CIFAR 32 -> 16 -> 8.

    Parameters with the defaults (width 16, blocks (1, 1, 1)): 77,754 for 1-channel input and 10 classes
    (78,042 for 3-channel input). ``blocks=(3, 3, 3)`` gives the paper's ResNet-20 (272,474 parameters on
    CIFAR-10; the paper reports 0.27 M).
    """

    def __init__(self, input_shape=(1, 8, 8), num_classes: int = 10, width: int = 16, blocks=(1, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        layers, c_in = [], width
        for stage, n_blocks in enumerate(blocks):
            c_out = width * 2 ** stage
            for b in range(n_blocks):
                layers.append(BasicBlock(c_in, c_out, stride=2 if stage > 0 and b == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
