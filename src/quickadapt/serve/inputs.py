"""A request's inputs as the library reads them: texts as they are, base64 images as files (the
library's own image reading then applies: any format PIL reads, EXIF rotation, bit depths, and
its one-line refusal of a corrupt file), feature rows as an array. Library messages name inputs
as `X[3]` or by file path; here they are named as the request's fields (`inputs[3]`)."""
from __future__ import annotations

import base64
import binascii
import contextlib
import re
import tempfile
from pathlib import Path

import numpy as np

from quickadapt.errors import first_line
from quickadapt.serve.errors import ApiError

DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)  # what a browser's FileReader gives
# how image files begin (png, jpeg, gif, webp, bmp, tiff), to tell a base64 image sent to a text task
IMAGE_STARTS = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


def json_type(value) -> str:
    """A JSON value's type as the client wrote it."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def image_bytes(value, field: str) -> bytes:
    """The bytes of a base64 image (standard or URL-safe alphabet, with or without a data: URL's
    prefix); 400 naming `field` for anything else."""
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be a base64-encoded image (a string), got {json_type(value)}")
    text = DATA_URL.sub("", value.strip())
    if not text:
        raise ApiError(400, f"{field} is empty; send the image file's bytes in base64")
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{field} is not valid base64 (send the image file's bytes base64-encoded)") from None


def check_text(value, field: str) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be text (a string), got {json_type(value)}")
    if looks_like_image(value):  # else its base64 is read as words, and answered with a class
        raise ApiError(400, f"{field} is a base64 image, but this task reads text; send images to a task "
                            "adapted on images")
    return value


def looks_like_image(text: str) -> bool:
    """Whether `text` is an image file in base64 (or a data: URL of one), not words: one run of
    base64 characters whose bytes begin as an image file does."""
    text = text.strip()
    if re.match(r"^data:image/", text, re.IGNORECASE):
        return True
    if len(text) < 24 or not re.fullmatch(r"[A-Za-z0-9+/_=-]+", text):
        return False
    try:
        start = base64.b64decode(text[:16].replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return start.startswith(IMAGE_STARTS)


@contextlib.contextmanager
def library_inputs(values: list, modality: str, field: str, known: int = 0):
    """Yield `values` (the request's `field` list) as the library's inputs for `modality`; any
    ValueError the library raises within (BadInput is one) becomes a 400 naming the request's fields.
    `known`: the first values are a task's own examples, read before: the request's come after them,
    and are named from 0."""
    with tempfile.TemporaryDirectory(prefix="quickadapt-serve-") as tmp:
        if modality == "text":
            inputs = [check_text(v, f"{field}[{i - known}]") for i, v in enumerate(values)]
        elif modality == "image":
            inputs = []
            for i, v in enumerate(values):
                name = f"{field}[{i - known}]" if i >= known else f"known[{i}]"
                path = Path(tmp) / name
                path.write_bytes(image_bytes(v, name))
                inputs.append(str(path))
        else:  # a served feature-vector model (mlp): one list of numbers per input
            bad = next((i for i, v in enumerate(values) if not isinstance(v, list)), None)
            if bad is not None:
                raise ApiError(400, f"{field}[{bad}] must be a feature vector (an array of numbers), "
                                    f"got {json_type(values[bad])}")
            try:
                inputs = np.asarray(values, dtype=np.float64) if values else np.zeros((0, 0))
            except (TypeError, ValueError):
                raise ApiError(400, f"{field} must be arrays of numbers, all of one length") from None
        try:
            yield inputs
        except ApiError:
            raise
        except ValueError as exc:
            raise ApiError(400, named_as_fields(first_line(exc), field, tmp, known)) from None


def named_as_fields(message: str, field: str, tmp: str, known: int = 0) -> str:
    """A library message about `X[3]`, `y[3]` or a temp file, said of the request's own fields."""
    message = message.replace(tmp + "/", "")
    message = re.sub(r"\bX\[(\d+)\]", lambda m: f"{field}[{int(m.group(1)) - known}]", message)
    message = re.sub(r"\by\[(\d+)\]", lambda m: f"examples[{int(m.group(1)) - known}].label", message)
    message = re.sub(r"\bX (must|has)\b", rf"{field} \1", message)
    return re.sub(r"^data: ", f"{field}: ", message)
