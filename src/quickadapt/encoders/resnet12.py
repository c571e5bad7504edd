"""`resnet12`: the standard ResNet-12 few-shot backbone (Oreshkin et al. 2018, Lee et al. 2019).

Four residual blocks of three 3x3 convs (widths 64, 160, 320, 640), each followed by 2x2
max-pool, LeakyReLU(0.1) as in MetaOptNet/FEAT; global average pooled, so embed_dim is the last
width at any input size. DropBlock is left out. No pretrained weights exist in any installed
package, so `pretrained=True` still gives a random initialisation (like conv4)."""
from __future__ import annotations

import torch
from torch import nn

from quickadapt.data.images import prepare_images
from quickadapt.errors import BadInput
from quickadapt.encoders.base import Encoder
from quickadapt.encoders.conv4 import ImageNormalize, check_image_settings, norm_layer


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        layers = []
        for i in range(3):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), norm_layer(norm, cout)]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), norm_layer(norm, cout))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class ResNet12Encoder(Encoder):
    name = "resnet12"
    modality = "image"

    def __init__(self, *, size: int = 84, grey: bool = False, widths=(64, 160, 320, 640), norm: str = "group"):
        super().__init__()
        check_image_settings(self.name, size, norm, min_size=16)
        if (isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) or not widths
                or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)):
            raise BadInput(f"setting 'widths' for encoder 'resnet12' must be a list of channel counts >= 1, one a "
                           f"block, such as [64, 160, 320, 640]; got {widths!r}")
        widths = [int(w) for w in widths]
        # a list, not a tuple: settings go through JSON manifests and must compare equal after
        self.settings = {"size": int(size), "grey": bool(grey), "widths": widths, "norm": norm}
        self.normalize = ImageNormalize(bool(grey))
        cins = [1 if grey else 3] + widths[:-1]
        self.blocks = nn.ModuleList(ResidualBlock(cin, cout, norm) for cin, cout in zip(cins, widths))
        self.embed_dim = widths[-1]

    def prepare(self, inputs):
        return prepare_images(inputs, self.settings["size"], self.settings["grey"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))

    def layer_groups(self):
        return list(self.blocks)


def create_resnet12(pretrained: bool = False, **settings) -> ResNet12Encoder:
    return ResNet12Encoder(**settings)
