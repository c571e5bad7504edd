"""Image encoders from local Hugging Face folders (`model.save_pretrained` + the image processor's
`save_pretrained`): ViT, DeiT, BEiT, DINOv2, ConvNeXt, ResNet, Swin, ..., and the vision tower of
CLIP-like folders (CLIP, SigLIP: any model with `vision_model` and `get_image_features`).

Loaded as the text folders are (hf_text.py): transformers' AutoModel from safetensors only, never
with the folder's own code, fully offline. Images are read by quickadapt's own rules (EXIF
orientation, first frame, transparency on a background, RGB), then sized, cropped, rescaled and
normalised by the folder's image processor (`preprocessor_config.json`), through transformers'
PIL backend: torchvision is not used."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from quickadapt.encoders.base import Encoder
from quickadapt.encoders.hf_text import (TOKENIZER_FILES, check_folder, check_weight_shapes, config_hash, pooler_keys,
                                         transformer_folder, transformers_quiet, zero_missing)
from quickadapt.errors import BadInput, first_line

PREPROCESSOR = "preprocessor_config.json"
# pooler: the model's own pooled output (ViT/DeiT: dense+tanh over [CLS], DINOv2: normed [CLS],
# BEiT/Swin/ConvNeXt/ResNet: mean of the last features), then the image projection of a CLIP-like
# tower, as that family's image features are used. cls: the [CLS] token of the last layer. mean:
# the mean of the last layer's tokens or feature map. auto: pooler, unless the folder lacks the
# pooler's weights (a ViT/DeiT saved from an image classifier, whose head read [CLS] instead: its
# pooler would be random), then cls; mean for a model without a pooled output.
POOLINGS = ("auto", "pooler", "cls", "mean")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a JSON object")
    return data


def folder_modality(folder: Path) -> str:
    """"image" or "text": what a Hugging Face folder's files say its model reads. An image
    processor (`preprocessor_config.json`) makes it an image model (CLIP-like folders hold a
    tokenizer too: their vision tower is used); a tokenizer alone, a text model. A folder with an
    audio feature extractor, or with neither, is refused naming what it holds."""
    folder = transformer_folder(folder)  # a sentence-transformers folder's 0_Transformer/, where it has one
    if not (folder / "config.json").is_file():
        raise BadInput(f"{folder}: not a Hugging Face model folder (no config.json)")
    config = _read_json(folder / "config.json")
    kind = f"model_type {config.get('model_type')!r}" if config.get("model_type") else "no model_type"
    if (folder / PREPROCESSOR).is_file():
        pre = _read_json(folder / PREPROCESSOR)
        if "sampling_rate" in pre:  # audio feature extractors (wav2vec2, Whisper, AST) read sound at a rate
            found = pre.get("feature_extractor_type") or "an audio feature extractor"
            raise BadInput(f"{folder}: an audio model ({kind}, {PREPROCESSOR} names {found} at "
                           f"{pre['sampling_rate']} Hz); quickadapt reads text, images and feature rows")
        return "image"
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        return "text"
    raise BadInput(f"{folder}: holds no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...) and no {PREPROCESSOR} "
                   f"({kind}), so how to read inputs for it is unknown; save the model's tokenizer or image "
                   "processor into the folder too (processor.save_pretrained(folder))")


class HFImageEncoder(Encoder):
    modality = "image"
    finetune_lr = 1e-4  # pretrained vision features: move them gently, as efficientnet-lite0's
    embed_batch_size = 16

    def __init__(self, path: str | Path, *, pooling: str = "auto", pretrained: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        folder = Path(path)
        if pooling not in POOLINGS:
            raise BadInput(f"encoder setting pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if folder_modality(folder) != "image":
            raise BadInput(f"{folder}: no {PREPROCESSOR}: not an image model folder")
        check_folder(folder, pretrained)  # safetensors only, never the folder's own code
        pre = _read_json(folder / PREPROCESSOR)
        found = pre.get("image_processor_type") or pre.get("feature_extractor_type") or "no processor type"
        with transformers_quiet():
            if pretrained:
                check_weight_shapes(folder)
            try:
                self.processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True,
                                                                    trust_remote_code=False)
            except (ValueError, KeyError, TypeError, OSError, AttributeError, ImportError) as exc:
                import transformers

                # transformers' own message goes on to list every processor it knows: its first sentence says it
                why = first_line(exc).split(". ")[0]
                raise BadInput(f"{folder}: {PREPROCESSOR} names {found}, an image processor transformers "
                               f"{transformers.__version__} cannot build ({why})") from None
            missing: list[str] = []
            try:  # float32 whatever the file stores: CPU training and the features' dtype need it
                if pretrained:
                    model, info = AutoModel.from_pretrained(
                        str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False,
                        dtype=torch.float32, output_loading_info=True)
                    missing = list(info.get("missing_keys", ()))
                else:
                    config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
                    model = AutoModel.from_config(config, trust_remote_code=False, dtype=torch.float32)
            except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError) as exc:
                raise BadInput(f"{folder}: transformers cannot load this model folder ({first_line(exc)})") from None
        zero_missing(model, missing)  # a classifier's checkpoint has no pooler
        self.projection: nn.Module | None = None
        if hasattr(model, "vision_model") and hasattr(model, "get_image_features"):
            # a CLIP-like pair: keep the vision tower and its projection, not the text tower
            self.model, self.projection = model.vision_model, getattr(model, "visual_projection", None)
            missing = [k for k in missing if k.startswith(("vision_model.", "visual_projection."))]
            pooler = set()
        else:
            self.model = model
            pooler = pooler_keys(model)
        unread = [k for k in missing if k not in pooler]
        if unread:  # the folder's weights are for another architecture: most of this one would be missing
            raise BadInput(f"{folder}: its weights lack {len(unread)} of the model's tensors (such as {unread[0]}); "
                           "save the model again with save_pretrained")
        self.preprocessor_hash = hashlib.sha256((folder / PREPROCESSOR).read_bytes()).hexdigest()[:16]
        self.config_hash = config_hash(folder)
        self.input_shape = self._input_shape(folder)
        self.pooling = self._pooling(folder, pooling, pooler_missing=bool(missing))
        self.settings = {"pooling": self.pooling}
        self.eval()
        with torch.no_grad():
            self.embed_dim = int(self(torch.zeros(1, *self.input_shape)).shape[1])

    def _input_shape(self, folder: Path) -> tuple[int, ...]:
        """The one (C, H, W) the processor gives every image; two of other shapes tell a processor
        that keeps each image's own proportions (resize without a crop), which cannot be batched."""
        from PIL import Image

        shapes = {tuple(self._pixels(Image.new("RGB", size)).shape) for size in ((48, 32), (32, 48))}
        if len(shapes) != 1:
            raise BadInput(f"{folder}: its image processor gives images of varying size ({' and '.join(map(str, shapes))} "
                           f"for a wide and a tall one); set do_center_crop and crop_size in {PREPROCESSOR}")
        return shapes.pop()

    def _pooling(self, folder: Path, pooling: str, pooler_missing: bool) -> str:
        """`pooling` resolved ("auto" made one of the others), or refused where this model has no such output."""
        try:
            with torch.no_grad():
                out = self.model(pixel_values=torch.zeros(1, *self.input_shape))
            tokens = out.last_hidden_state.dim() == 3
        except (RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
            # a model that needs more than pixels (a document model's text, a detector's queries)
            raise BadInput(f"{folder}: its model ({type(self.model).__name__}) cannot read an image alone "
                           f"({first_line(exc)})") from None
        has_pooler = getattr(out, "pooler_output", None) is not None
        if pooling == "auto":
            return "pooler" if has_pooler and not pooler_missing else "cls" if has_pooler and tokens else "mean"
        if pooling == "pooler" and (not has_pooler or pooler_missing):
            why = "its weights are not in the folder" if has_pooler else "the model gives no pooled output"
            raise BadInput(f"{folder}: pooling 'pooler' is not possible ({why}); use cls or mean")
        if pooling == "cls" and not tokens:
            raise BadInput(f"{folder}: pooling 'cls' needs a transformer's tokens, but this model gives a "
                           "feature map; use pooler or mean")
        return pooling

    def _pixels(self, image) -> torch.Tensor:
        return self.processor(images=[image], return_tensors="pt")["pixel_values"][0].float()

    def prepare(self, inputs) -> torch.Tensor:
        """One image at a time, as prepare_images reads them: a batch holds one photo at full size."""
        from quickadapt.data.images import read_rgb

        out = torch.empty((len(inputs), *self.input_shape))
        for i, x in enumerate(inputs):
            out[i] = self._pixels(read_rgb(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)
        if self.pooling == "pooler":
            pooled = out.pooler_output.flatten(1)  # ResNet's is (n, C, 1, 1)
            return self.projection(pooled) if self.projection is not None else pooled
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return hidden.mean(1) if hidden.dim() == 3 else hidden.mean(dim=(2, 3))

    def preprocess_id(self) -> str:
        """The pooling and the image processor's settings: each changes the features of the same weights."""
        return f"{super().preprocess_id()}|{self.preprocessor_hash}"

    def layer_groups(self) -> list[nn.Module]:
        """What comes before the blocks (patch embedding, stem), each block or stage bottom to top,
        then what follows (final norm, pooler, projection), for freeze and discriminative."""
        # the first list of blocks: ViT's `layers`, CLIP's and Swin's `encoder.layers`, ConvNeXt's `encoder.stages`
        path, blocks = next(((n, m) for n, m in self.model.named_modules()
                             if isinstance(m, nn.ModuleList) and n.count(".") <= 1), ("", None))
        if blocks is None or len(blocks) < 2:
            return [self]
        children = [(n, m) for n, m in self.model.named_children() if n != path.split(".")[0]]
        before = [m for n, m in children if "embed" in n or n.startswith("pre")]
        after = [m for n, m in children if not ("embed" in n or n.startswith("pre"))]
        return [nn.ModuleList(before), *blocks, nn.ModuleList([*after, *filter(None, [self.projection])])]


def create_hf_image_folder(path: str | Path, pretrained: bool = True, **settings) -> HFImageEncoder:
    enc = HFImageEncoder(path, pretrained=pretrained, **settings)
    enc.name = str(Path(path).resolve())
    return enc
