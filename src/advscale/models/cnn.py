"""Small convolutional network with a width multiplier rho (paper A's capacity study)."""

from __future__ import annotations

from torch import Tensor, nn

from advscale.models.registry import register_model


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Four 3x3 conv layers with batch norm in two stages, then a two-layer head.

    Channels are ``round(32*width)`` and ``round(64*width)``; ``width`` is paper A's rho.
    Works for any input size of at least 4x4 (global average pooling before the head).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        c1, c2 = max(1, round(32 * width)), max(1, round(64 * width))
        self.features = nn.Sequential(
            *_conv_bn(in_channels, c1),
            *_conv_bn(c1, c1),
            nn.MaxPool2d(2),
            *_conv_bn(c1, c2),
            *_conv_bn(c2, c2),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        hidden = max(8, round(128 * width))
        self.head = nn.Sequential(
            nn.Linear(c2 * 4, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@register_model("small_cnn")
def small_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=width)
