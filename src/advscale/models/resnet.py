"""PreAct ResNet-18 (He et al. 2016) and WideResNet (Zagoruyko & Komodakis 2016), CIFAR-style stems."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from advscale.models.registry import register_model


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, drop: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = F.relu(self.bn2(out))
        if self.drop > 0:
            out = F.dropout(out, self.drop, self.training)
        return self.conv2(out) + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet; ``blocks`` per stage, ``widths`` channels per stage."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 10,
        in_channels: int = 3,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                layers.append(PreActBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1, drop=drop))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.stem(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))


@register_model("preact_resnet18")
def preact_resnet18(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    widths = tuple(max(1, round(w * width)) for w in (64, 128, 256, 512))
    return PreActResNet((2, 2, 2, 2), widths, num_classes=num_classes, in_channels=in_channels)


@register_model("wide_resnet")
def wide_resnet(
    num_classes: int = 10, in_channels: int = 3, depth: int = 28, widen: int = 10, drop: float = 0.0
) -> nn.Module:
    """WRN-depth-widen: ``(depth - 4) / 6`` pre-activation blocks in each of three stages."""
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got depth={depth}")
    n = (depth - 4) // 6
    widths = (16 * widen, 32 * widen, 64 * widen)
    net = PreActResNet(
        (n, n, n), widths, num_classes=num_classes, in_channels=in_channels, drop=drop
    )
    # WRN's stem has 16 channels before the first widened stage.
    net.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    net.layers[0] = PreActBlock(16, widths[0], 1, drop)
    return net
