"""`conv4`: the standard 4-block few-shot backbone (Vinyals et al. 2016; Snell et al. 2017).

Each block is 3x3 conv (64 filters), norm, ReLU, 2x2 max-pool; the output is flattened
(64-d at 28x28, 1600-d at 84x84). The blocks pool before the ReLU: the same function with the
same gradients (ReLU is monotonic, so it commutes with max), but the ReLU and its backward see a
quarter of the values (a second-order MAML step with `higher` on 2 CPU threads: 1.01-1.09x in
four runs of bench/meta_speed.py). `pools=3` leaves the last block unpooled: at 28x28 its 3x3
map stays whole (576-d features) instead of max-pooling into 1x1, which keeps only its top-left
2x2 corner (floor division). There are no pretrained weights: it is trained from
scratch, by meta-training or by fine-tuning, so `pretrained=True` still gives a random init."""
from __future__ import annotations

import math

import torch
from torch import nn

from quickadapt.data.images import prepare_images
from quickadapt.encoders.base import Encoder
from quickadapt.errors import BadInput

# ImageNet channel statistics; grey images use their mean. Fixed constants, never fitted to a
# batch, so an image's features do not depend on what it is batched with.
_RGB_MEAN, _RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_GREY_MEAN, _GREY_STD = (0.449,), (0.226,)
NORMS = ("group", "batch")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """GroupNorm (per image: non-transductive, the default) or BatchNorm (batch statistics in training)."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.BatchNorm2d(channels)


def check_image_settings(owner: str, size: int, norm: str, min_size: int) -> None:
    if norm not in NORMS:
        raise BadInput(f"setting 'norm' for encoder {owner!r} must be one of {', '.join(NORMS)}, got {norm!r}")
    if int(size) < min_size:
        raise BadInput(f"setting 'size' for encoder {owner!r} must be at least {min_size}, got {size!r}")


class ImageNormalize(nn.Module):
    """0..255 pixels to (x / 255 - mean) / std with fixed per-channel constants."""

    def __init__(self, grey: bool):
        super().__init__()
        mean, std = (_GREY_MEAN, _GREY_STD) if grey else (_RGB_MEAN, _RGB_STD)
        # not persistent: constants of the architecture, not weights to save
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Conv4Encoder(Encoder):
    name = "conv4"
    modality = "image"

    def __init__(self, *, size: int = 28, grey: bool = True, channels: int = 64, norm: str = "group", pools: int = 4):
        super().__init__()
        check_image_settings(self.name, size, norm, min_size=16)
        if pools not in (3, 4):
            raise BadInput(f"setting 'pools' for encoder 'conv4' must be 3 or 4 (blocks that max-pool), got {pools!r}")
        if int(channels) < 1:
            raise BadInput(f"setting 'channels' for encoder 'conv4' must be at least 1, got {channels!r}")
        self.settings = {"size": int(size), "grey": bool(grey), "channels": int(channels), "norm": norm}
        if pools != 4:  # only when set, so existing models' settings (and cache keys) stay as they were
            self.settings["pools"] = int(pools)
        self.normalize = ImageNormalize(bool(grey))
        width, side = (1 if grey else 3), int(size)
        blocks = []
        for i in range(4):
            pool = [nn.MaxPool2d(2)] if i < pools else []
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(width, int(channels), 3, padding=1),
                    norm_layer(norm, int(channels)),
                    *pool,
                    nn.ReLU(inplace=True),
                )
            )
            width, side = int(channels), side // 2 if pool else side
        self.blocks = nn.ModuleList(blocks)
        self.embed_dim = width * side * side

    def prepare(self, inputs):
        return prepare_images(inputs, self.settings["size"], self.settings["grey"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for block in self.blocks:
            x = block(x)
        return x.flatten(1)

    def layer_groups(self):
        return list(self.blocks)


def create_conv4(pretrained: bool = False, **settings) -> Conv4Encoder:
    # no pretrained conv4 weights exist in any installed package; `pretrained` is accepted so
    # every encoder is called the same way, and a random init is the standard start for conv4
    return Conv4Encoder(**settings)
