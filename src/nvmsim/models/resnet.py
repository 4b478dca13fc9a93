"""CIFAR-style ResNets (He et al. 2016, the 3x3-stem variant for 32x32 inputs).

Written here because torchvision cannot be installed beside the CPU torch wheel. ``resnet18``
has 11,173,962 parameters at ``width=64``; smaller ``width`` gives the same topology for tests.
``sigma_neu > 0`` adds paper 000's neuron noise before every ReLU in training.
"""

from __future__ import annotations

import torch
from torch import nn

from nvmsim.nn.activations import NoisyActivation


def _noise(sigma_neu: float) -> nn.Module:
    """Gaussian noise of ``sigma_neu`` in training (no module, no draw, when it is 0)."""
    return NoisyActivation(None, sigma_neu) if sigma_neu > 0 else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, sigma_neu: float = 0.0) -> None:
        super().__init__()
        self.noise = _noise(sigma_neu)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.noise(self.bn1(self.conv1(x))))
        return torch.relu(self.noise(self.bn2(self.conv2(y)) + self.shortcut(x)))


class ResNet(nn.Module):
    """Stem 3x3 conv, four stages of :class:`BasicBlock`, global average pool, linear head."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        sigma_neu: float = 0.0,
    ) -> None:
        super().__init__()
        noise = [NoisyActivation(None, sigma_neu)] if sigma_neu > 0 else []
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
            *noise, nn.ReLU(),
        )  # fmt: skip
        stages, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(c, c_out, 2 if (j == 0 and i > 0) else 1, sigma_neu))
                c = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def resnet18(
    num_classes: int = 10, in_channels: int = 3, width: int = 64, sigma_neu: float = 0.0
) -> ResNet:
    """CIFAR ResNet-18: 20 convolutions (17 3x3, 3 1x1 shortcuts) and one linear layer."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, sigma_neu)
