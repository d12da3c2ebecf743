"""Reference model architectures (untrained): LeNet-5, a CIFAR-style ResNet-8, a
depthwise-separable net.

Plain ``torch.nn`` modules that :func:`hwq.quant.graph.trace` takes as they are; the
workloads train them (:mod:`hwq.workloads`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "ResNet8", "SepNet", "lenet5", "resnet8", "sepnet"]


def lenet5(in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """Caffe's LeNet-5 on 28x28: conv 20@5x5, max pool 2, conv 50@5x5, max pool 2,
    fc 500 + ReLU, fc 10 (431k weights)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(50 * 4 * 4, 500), nn.ReLU(), nn.Linear(500, classes))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut (identity, or a
    1x1 conv + BN when the stride or the width changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet8(nn.Module):
    """CIFAR-style ResNet-8: a 3x3 stem, three stages of one basic block (16, 32, 64
    channels; the last two with stride 2 and a 1x1 shortcut), global average pool, Linear."""

    def __init__(self, in_channels: int = 3, classes: int = 10,
                 widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        a, b, c = widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, a, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(a), nn.ReLU())
        self.stage1 = BasicBlock(a, a)
        self.stage2 = BasicBlock(a, b, stride=2)
        self.stage3 = BasicBlock(b, c, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet8(in_channels: int = 3, classes: int = 10) -> ResNet8:
    return ResNet8(in_channels, classes)


def _separable(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in), nn.ReLU6(),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]


class SepNet(nn.Module):
    """Depthwise-separable net (MobileNet-v1 blocks): a 3x3 stem, four depthwise 3x3 +
    pointwise 1x1 blocks (two of stride 2), global average pool, Dropout, Linear."""

    def __init__(self, in_channels: int = 3, classes: int = 10,
                 widths: tuple[int, ...] = (16, 32, 32, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU6()]
        strides = (1, 2, 1, 2)
        for (c_in, c_out), s in zip(zip(widths, widths[1:], strict=False), strides, strict=True):
            layers += _separable(c_in, c_out, s)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.fc(self.drop(torch.flatten(x, 1)))


def sepnet(in_channels: int = 3, classes: int = 10) -> SepNet:
    return SepNet(in_channels, classes)
