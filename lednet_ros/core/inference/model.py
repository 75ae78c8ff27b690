"""LEDNet (Wang et al., ICIP 2019): a split-shuffle encoder and an attention pyramid decoder.

Facts followed here are listed in the project's LEDNET_SPEC: every convolution has a bias, every
BatchNorm has eps=1e-3, activations are ReLU, and the logits come out at the input's size for any
input size and any class count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from lednet_ros.core.inference.checkpoint import DECODER_VARIANTS  # noqa: F401 (the variants' one home)

BN_EPS = 1e-3
# DECODER_VARIANTS: ``apn``, the paper's 1-channel attention pyramid (0.92M parameters for 19
# classes); ``apn128``, the 128-channel pyramid drawn in the paper's Fig. 1 (2.28M parameters).

ENCODER_DILATIONS = (1, 2, 5, 9, 2, 5, 9, 17)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet's channel shuffle)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize used everywhere in the network (align_corners=False)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """Convolution (with bias), BatchNorm (eps 1e-3) and ReLU; 'CBR' in the spec."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=True),
            nn.BatchNorm2d(out_ch, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )


class DownsamplingUnit(nn.Module):
    """Concatenate a 3x3 stride-2 conv (out-in channels) with a 2x2 max-pool, then BN and ReLU.

    The pool uses ``ceil_mode`` so that on odd sizes it covers the same ceil(H/2) x ceil(W/2) grid
    as the convolution (the last row/column is pooled over the pixels that exist).
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


def _factorised_pair(channels: int, first: str, dilation: int) -> list[nn.Conv2d]:
    """Two 1D convolutions, ``first`` ('3x1' or '1x3') then the other orientation."""
    vertical = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0), dilation=(dilation, 1))
    horizontal = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation),
                           dilation=(1, dilation))
    return [vertical, horizontal] if first == "3x1" else [horizontal, vertical]


class SSBranch(nn.Module):
    """One branch of an SS-nbt unit.

    conv -> ReLU -> conv -> BN -> ReLU -> dilated conv pair -> BN.
    """

    def __init__(self, channels: int, first: str, dilation: int, dropout: float):
        super().__init__()
        self.conv1a, self.conv1b = _factorised_pair(channels, first, 1)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv2a, self.conv2b = _factorised_pair(channels, first, dilation)
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1b(F.relu(self.conv1a(x)))))
        x = self.bn2(self.conv2b(F.relu(self.conv2a(x))))
        return self.dropout(x)


class SSnbtUnit(nn.Module):
    """Split-shuffle-non-bottleneck unit.

    Split, two mirrored 1D-factorised branches, add, shuffle.
    """

    def __init__(self, channels: int, dilation: int, dropout: float):
        super().__init__()
        half = channels // 2
        self.left = SSBranch(half, "3x1", dilation, dropout)
        self.right = SSBranch(half, "1x3", dilation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x.chunk(2, dim=1)
        out = F.relu(x + torch.cat([self.left(left), self.right(right)], 1))
        return channel_shuffle(out, 2)


class Encoder(nn.Module):
    """Table 1's encoder: 3 -> 32 -> 64 -> 128 channels at 1/8 of the input size.

    ``checkpoint_segments`` > 0 (adaptation sets it while it trains): where gradients are
    computed, the layers run in that many segments whose activations the backward pass
    recomputes instead of keeping (gradient checkpointing: less memory, more time, the same
    gradients; dropout masks replayed).
    """

    out_channels = 128
    checkpoint_segments = 0

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = [DownsamplingUnit(3, 32)]
        layers += [SSnbtUnit(32, 1, 0.03) for _ in range(3)]
        layers.append(DownsamplingUnit(32, 64))
        layers += [SSnbtUnit(64, 1, 0.03) for _ in range(2)]
        layers.append(DownsamplingUnit(64, 128))
        layers += [SSnbtUnit(128, d, 0.3) for d in ENCODER_DILATIONS]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_segments and torch.is_grad_enabled():
            return checkpoint_sequential(self.layers, min(self.checkpoint_segments,
                                                          len(self.layers)), x,
                                         use_reentrant=False)
        return self.layers(x)


class AttentionPyramidDecoder(nn.Module):
    """APN: a pyramid attention map times a 1x1 projection, plus a global-context branch.

    ``pyramid_channels=1`` is the paper's 0.92M model; 128 is the Fig. 1 variant, whose levels are
    each projected to ``num_classes`` channels by a 1x1 CBR.
    """

    def __init__(self, num_classes: int, in_ch: int = 128, pyramid_channels: int = 1):
        super().__init__()
        p = pyramid_channels
        self.global_branch = ConvBNReLU(in_ch, num_classes, 1)
        self.middle = ConvBNReLU(in_ch, num_classes, 1)
        self.down1 = ConvBNReLU(in_ch, p, 7, stride=2)
        self.down2 = ConvBNReLU(p, p, 5, stride=2)
        if p == 1:
            self.down3 = nn.Sequential(ConvBNReLU(1, 1, 3, stride=2), ConvBNReLU(1, 1, 3))
            self.lateral2 = ConvBNReLU(1, 1, 5)
            self.lateral1 = ConvBNReLU(1, 1, 7)
        else:
            self.down3 = nn.Sequential(ConvBNReLU(p, p, 3, stride=2),
                                       ConvBNReLU(p, num_classes, 1))
            self.lateral2 = ConvBNReLU(p, num_classes, 1)
            self.lateral1 = ConvBNReLU(p, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        # Bilinear upsampling of the 1x1 global map to h x w is a broadcast: added as is below.
        context = self.global_branch(F.adaptive_avg_pool2d(x, 1))
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        attention = resize_bilinear(d3, d2.shape[-2:]) + self.lateral2(d2)
        attention = resize_bilinear(attention, d1.shape[-2:]) + self.lateral1(d1)
        attention = resize_bilinear(attention, size)
        return attention * self.middle(x) + context


class LEDNet(nn.Module):
    """LEDNet: logits of shape (N, num_classes, H, W) for an input of shape (N, 3, H, W).

    Args:
        num_classes: number of output classes (any positive count).
        decoder: ``"apn"`` (the paper's 0.92M model, default) or ``"apn128"`` (Fig. 1 variant).
    """

    def __init__(self, num_classes: int = 19, *, decoder: str = "apn"):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if decoder not in DECODER_VARIANTS:
            raise ValueError(f"decoder must be one of {DECODER_VARIANTS}, got {decoder!r}")
        self.num_classes = num_classes
        self.decoder_variant = decoder
        self.encoder = Encoder()
        self.decoder = AttentionPyramidDecoder(
            num_classes, Encoder.out_channels, pyramid_channels=1 if decoder == "apn" else 128
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_bilinear(self.decoder(self.encoder(x)), x.shape[-2:])


def lednet(*, num_classes: int = 19, decoder: str = "apn") -> LEDNet:
    """Build an LEDNet; keyword-only arguments, as torchvision's segmentation models."""
    return LEDNet(num_classes, decoder=decoder)


def count_parameters(model: nn.Module) -> int:
    """Count the learnable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
