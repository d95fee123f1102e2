"""Fully connected models: the digits MLP and the INT8 benchmark model ``LinearHeavy``."""
from __future__ import annotations

import itertools
import math

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear to logits.

    Default on digits (64 inputs, hidden (128, 64), 10 classes): 64*128+128 + 128*64+64 + 64*10+10
    = 17,226 parameters.
    """

    def __init__(self, input_shape=(1, 8, 8), num_classes: int = 10, hidden=(128, 64)):
        super().__init__()
        widths = [math.prod(input_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in itertools.pairwise(widths):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearHeavy(nn.Module):
    """``depth`` x [Linear(width, width) -> ReLU]: the matmul-bound model of the INT8 speed benchmarks.

    Nearly all time goes into four 1024x1024 GEMMs, so dynamic INT8 quantization of the Linear layers shows
    its real speedup here (unlike on a small CNN). Defaults: input (1024,), width 1024, depth 4, a
    Linear(1024, 10) head: 4 * (1024*1024 + 1024) + 10,250 = 4,208,650 parameters (16.8 MB in FP32).
    An input whose size is not ``width`` gets a Linear(in, width) + ReLU projection first;
    ``num_classes=None`` drops the head (output = the last hidden layer).
    """

    def __init__(self, input_shape=(1024,), num_classes: int | None = 10, width: int = 1024, depth: int = 4):
        super().__init__()
        n_in = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        if n_in != width:
            layers += [nn.Linear(n_in, width), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        if num_classes is not None:
            layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
