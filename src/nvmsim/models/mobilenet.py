"""A MobileNet-style (Howard et al. 2017) depthwise-separable network for 32x32 inputs.

Each block is a 3x3 depthwise convolution (``groups = channels``: one array set per channel)
and a 1x1 pointwise convolution, both with batch norm and ReLU. At ``width=1.0`` this is
MobileNet v1's layer table with CIFAR strides (3,217,226 parameters).
"""

from __future__ import annotations

import torch
from torch import nn

#: (output channels, stride) of the 13 separable blocks of MobileNet v1.
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU()]


class MobileNet(nn.Module):
    """Stem 3x3 conv, depthwise-separable blocks, global average pool, linear head."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0, depth: int = 13
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * width))

        c = ch(32)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, 1, 1, bias=False), *_bn_relu(c)]
        for c_out, stride in BLOCKS[:depth]:
            c_out = ch(c_out)
            layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), *_bn_relu(c)]
            layers += [nn.Conv2d(c, c_out, 1, bias=False), *_bn_relu(c_out)]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def mobilenet(
    num_classes: int = 10, in_channels: int = 3, width: float = 1.0, depth: int = 13
) -> MobileNet:
    """MobileNet v1 for 32x32 inputs; ``width`` scales channels, ``depth`` keeps blocks."""
    return MobileNet(num_classes, in_channels, width, depth)
