"""Reading images and turning them into encoder input (PIL + numpy only; torchvision is not used).

Any mode (L, RGB, RGBA, P, I;16, CMYK, ...) and any size is accepted: images are converted to
grey or RGB and resized to a square, so a folder of mixed files never fails halfway."""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from quickadapt.errors import BadInput

# How image files become pixels, for the embedding cache's key: raise it with every change to the
# pixels a file gives (load_image, transparency, bit depth, orientation), or features cached by the
# older reading are served for the same file bytes (a cache filled before 2: 12-bit PNGs read 16
# times too dark and light glyphs on transparency as blank, 79 % -> 54 % accuracy on them).
IMAGE_READING = 3  # 3: a PIL image given in Python is turned upright by its EXIF, as its file was

_HIGH_BIT_MODES = ("I", "F")  # 32-bit int / float: 16-bit files come through as "I;16*" or "I"


def load_image(x) -> Image.Image:
    """An image from a file path, a PIL image or a uint8 array (HxW grey, HxWx1, HxWx3 or HxWx4)."""
    if isinstance(x, (str, os.PathLike, Image.Image)):
        # a PIL image from Image.open is read as its file is: decoded here (a truncated one fails
        # with this message, not PIL's OSError) and turned upright by its EXIF (a phone photo
        # passed as Image.open(path) was read sideways, its path upright)
        shown = (getattr(x, "filename", "") or "a PIL image") if isinstance(x, Image.Image) else x
        try:
            with warnings.catch_warnings(record=True) as caught:
                # PIL warns (a raw Python warning) above ~89 megapixels and refuses twice that.
                # Every warning is recorded here, none shown or raised (by a program's "error" filter)
                warnings.simplefilter("always")
                img = x if isinstance(x, Image.Image) else Image.open(x)
                img.load()  # open() is lazy: decode now so truncated or corrupt files fail here
                # phone photos store their rotation in EXIF; apply it so the pixels are upright.
                # Damaged EXIF (a photo app's) gives PIL's "Corrupt EXIF data" warnings, raw lines
                # naming no file on the command line: PIL reads what it can, as viewers do, unsaid
                upright = ImageOps.exif_transpose(img)
            if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
                from quickadapt.progress import log

                log(f"note: {shown}: a very large image ({img.width}x{img.height}); it is read, then resized")
            return upright
        except AssertionError:
            if getattr(x, "fp", "") is None:  # PIL asserts it has a file to decode from
                raise BadInput(f"{shown}: a PIL image whose file was closed before it was read (Image.open in a "
                               "`with` block reads nothing yet): call .load() on it inside the block, or pass "
                               "the path") from None
            raise
        except Image.DecompressionBombError as exc:
            # a sound file, only past the size PIL reads unasked: "not a readable image" sent its
            # owner looking for damage, and PIL's words ("could be decompression bomb DOS attack")
            # gave no way on
            raise BadInput(f"{shown}: an image too large to read ({exc}); shrink it below "
                           f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels (in Python, PIL.Image.MAX_IMAGE_PIXELS "
                           "sets half that limit)") from None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise BadInput(f"{shown}: not a readable image ({exc})") from None
    arr = np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise BadInput(
            f"an image array must be uint8 with shape HxW, HxWx1, HxWx3 or HxWx4, got {arr.dtype} {arr.shape}"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


# PIL modes that hold no colour (1-bit, 8-bit, with alpha, 16- and 32-bit, float); "P" is grey
# when its palette is
_GREY_MODES = ("1", "L", "LA", "La", "I", "F")


def all_grey(inputs: Sequence) -> bool:
    """Whether every image holds no colour by its storage: a grey mode, a palette of greys, or a
    uint8 array of shape HxW / HxWx1. Read from file headers and array shapes, never pixels
    (PIL's open is lazy), so it is cheap; an RGB file is colour even when R == G == B, which
    costs a colour-reading encoder nothing. A file PIL cannot open does not decide (reading it
    fails later, with its own message)."""
    for x in inputs:
        if isinstance(x, (str, os.PathLike)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # load_image notes it
                    with Image.open(x) as img:
                        grey = _grey_mode(img)
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
                continue
        elif isinstance(x, Image.Image):
            grey = _grey_mode(x)
        else:
            shape = np.shape(x)
            grey = len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)
        if not grey:
            return False
    return True


def _grey_mode(img: Image.Image) -> bool:
    if img.mode in _GREY_MODES or img.mode.startswith("I;16"):
        return True
    if img.mode in ("P", "PA"):
        rgb = np.asarray(img.getpalette("RGB") or [], dtype=np.int64).reshape(-1, 3)
        return bool(np.all(rgb == rgb[:, :1]))
    return False


# the formats whose files may hold several images (animations, pages): only the first is read
_MULTI_FRAME_EXTS = (".gif", ".tif", ".tiff", ".webp", ".png")  # .png: animated PNG (APNG)


def has_several_frames(path) -> bool:
    """Whether the image file holds more than one frame or page, from its header (PIL's open is
    lazy: nothing is decoded). JPEG is not asked: phones' extra frames there are previews and
    depth maps, not the picture. A file PIL cannot open is not judged here: reading it fails later."""
    if not str(path).lower().endswith(_MULTI_FRAME_EXTS):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # load_image notes it
            with Image.open(path) as img:
                return bool(getattr(img, "is_animated", False))  # GIF: seeks one frame, not all
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _to_8bit(img: Image.Image, grey: bool) -> Image.Image:
    """`img` as mode "L" (grey) or "RGB"."""
    if img.mode.startswith("I;16") or img.mode in _HIGH_BIT_MODES:
        # PIL's own convert("L") clips these to 255; scale the content down instead
        arr = np.asarray(img, dtype=np.float32)
        if img.mode == "F" and arr.size and arr.min() >= 0 and arr.max() <= 1:
            arr = arr * 255.0  # float images are usually stored in [0, 1]; read as 0..255 they turn black
        else:
            arr = arr * (255.0 / _full_scale(arr.max(initial=0)))
        img = Image.fromarray(arr.clip(0, 255).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # transparent pixels often hide black: put them on a background, as any viewer shows them
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, _background(rgba)), rgba)
    return img.convert("L" if grey else "RGB")


def _background(rgba: Image.Image) -> tuple[int, int, int, int]:
    """The opaque colour to put a transparent image on: white (as viewers show it) unless what
    is visible is light, then black. White glyphs or icons on white would be a blank image, every
    one alike; dark ink on transparency, the usual case, stays on white."""
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64)
    if alpha.sum() == 0:  # nothing visible: nothing to contrast with
        return (255, 255, 255, 255)
    luminance = np.asarray(rgba.convert("L"), dtype=np.float64)  # from R, G, B alone
    light = (alpha * luminance).sum() / alpha.sum() > 127.5  # the visible pixels' mean, weighted by opacity
    return (0, 0, 0, 255) if light else (255, 255, 255, 255)


def _full_scale(top: float) -> float:
    """The white level of integer pixels whose largest value is `top`: 255, 4095 or 65535, the
    smallest that holds it. 16-bit files often carry 12-bit camera or scanner data (0..4095),
    which read as 16-bit would be 16 times too dark. Only 8, 12 and 16 bits are told apart: a
    finer guess (10, 14) would judge every dim image of a dataset brighter than its neighbours,
    while this one misjudges only images darker than a sixteenth of their range."""
    for white in (255.0, 4095.0, 65535.0):
        if top <= white:
            return white
    return float(top)  # 32-bit values beyond 16 bits: their own largest is white


def to_tensor(images: Sequence[Image.Image], size: int, grey: bool) -> torch.Tensor:
    """A float tensor (n, 1 or 3, size, size) with values 0..255.

    Each image is squashed to size x size (no crop, so nothing at the edges is lost) with PIL's
    bilinear resize, which is antialiased when shrinking."""
    channels = 1 if grey else 3
    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    for i, img in enumerate(images):
        img = _to_8bit(img, grey)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img).reshape(size, size, channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()


def picture_bytes(img: Image.Image) -> bytes:
    """The bytes that identify a PIL image given as an input: its mode and the picture every
    reader here sees (`read_rgb`). Its raw pixels missed its EXIF orientation and its palette,
    so a sideways photo, or a palette image and a grey array of the same bytes, shared one."""
    rgb = np.asarray(read_rgb(img))
    return f"PIL {img.mode} {rgb.shape}".encode() + rgb.tobytes()


def read_rgb(x) -> Image.Image:
    """An input (path, array or PIL image) as the 8-bit RGB picture every reader here sees: upright,
    first frame, transparency on its background, high bit depths scaled. For encoders that size and
    scale images their own way (a Hugging Face folder's image processor)."""
    return _to_8bit(load_image(x), grey=False)


def prepare_images(inputs: Sequence, size: int, grey: bool) -> torch.Tensor:
    """Encoder input for paths / uint8 arrays: `to_tensor` of `load_image` of each, one at a
    time, so a batch of 64 camera photos holds one at full size, not all (1.8 GB for 6 MP ones)."""
    out = torch.empty((len(inputs), 1 if grey else 3, size, size))
    for i, x in enumerate(inputs):
        out[i] = to_tensor([load_image(x)], size, grey)[0]
    return out
