"""Image loading and the image encoders: conv4, resnet12, efficientnet-lite0."""
import os
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch
from PIL import Image

from quickadapt.data import Dataset, load_dataset
from quickadapt.data.images import load_image, prepare_images, to_tensor
from quickadapt.encoders import ENCODER_MODALITY, create_encoder, embed
from quickadapt.encoders import efficientnet_lite0
from quickadapt.errors import BadInput

# two real photos shipped with scikit-learn: the Summer Palace and a daisy-like flower
PHOTOS = Path(sklearn.datasets.__file__).parent / "images"
CHINA, FLOWER = str(PHOTOS / "china.jpg"), str(PHOTOS / "flower.jpg")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def mixed_images(tmp_path):
    """Files of different modes and sizes, as a user's folder might hold."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    paths = {}
    Image.fromarray(rgb).save(paths.setdefault("rgb", tmp_path / "rgb.png"))
    rgba = np.dstack([rgb, np.full((40, 30), 255, np.uint8)])
    Image.fromarray(rgba).save(paths.setdefault("rgba", tmp_path / "rgba.png"))
    Image.fromarray(rgb[:, :, 0]).save(paths.setdefault("grey", tmp_path / "grey.png"))
    Image.fromarray(rgb).convert("P").save(paths.setdefault("palette", tmp_path / "palette.png"))
    Image.fromarray(rgb).convert("CMYK").save(paths.setdefault("cmyk", tmp_path / "cmyk.jpg"))
    Image.fromarray(np.full((17, 50), 65535, np.uint16)).save(paths.setdefault("grey16", tmp_path / "grey16.png"))
    return {k: str(v) for k, v in paths.items()}


def test_mixed_modes_and_sizes_are_converted(mixed_images):
    files = list(mixed_images.values())
    for grey, channels in ((True, 1), (False, 3)):
        x = prepare_images(files + [np.zeros((5, 9), np.uint8), np.zeros((9, 5, 4), np.uint8)], 28, grey)
        assert x.shape == (len(files) + 2, channels, 28, 28) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 255
    # 16-bit white is scaled to 255, not clipped from some other value
    assert torch.all(prepare_images([mixed_images["grey16"]], 8, grey=True) == 255)


def test_16_bit_files_holding_12_bit_data_are_not_read_16_times_too_dark(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (12, 12))
    grey[0, 0] = 255  # white present, as in most images
    Image.fromarray((grey * 4095 // 255).astype(np.uint16)).save(tmp_path / "twelve.png")  # 12-bit data, 16-bit PNG
    Image.fromarray((grey * 257).astype(np.uint16)).save(tmp_path / "sixteen.png")  # the full 16-bit range
    Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "eight.png")
    files = [str(tmp_path / f) for f in ("twelve.png", "sixteen.png", "eight.png")]
    assert [Image.open(f).mode for f in files[:2]] != ["L", "L"]  # PIL keeps 16 bits: I;16 or I
    x = prepare_images(files, 12, grey=True)
    assert torch.allclose(x[0], x[2], atol=1) and torch.allclose(x[1], x[2], atol=1)


def test_float_images_in_0_1_are_read_as_0_255(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (12, 12)).astype(np.float32)
    Image.fromarray(grey / 255).save(tmp_path / "float.tif")  # mode "F", values in [0, 1]
    Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "same.png")
    x = prepare_images([str(tmp_path / "float.tif"), str(tmp_path / "same.png")], 12, grey=True)
    assert torch.allclose(x[0], x[1], atol=1)


def test_a_very_large_image_gets_a_note_not_a_python_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL warns above this, refuses above twice it
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "big.png")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping load_image fails the test
        assert load_image(str(tmp_path / "big.png")).size == (12, 12)
    assert "big.png: a very large image (12x12)" in capsys.readouterr().err
    # past twice the limit PIL refuses it: a sound file, said to be too large, not unreadable
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "huge.png")
    with pytest.raises(BadInput, match=r"^.*huge.png: an image too large to read \(.*\); shrink it below 200 pixels"):
        load_image(str(tmp_path / "huge.png"))


def test_damaged_exif_is_read_as_pil_can_without_a_python_warning(tmp_path):
    import struct
    import warnings

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(photo)
    jpeg = photo.read_bytes()
    # an EXIF block whose one entry (Orientation 6) is followed by nothing: no next-directory offset
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 1, 6)
    photo.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping load_image fails the test
        assert load_image(str(photo)).size == (4, 6)  # its orientation still read: turned upright


def test_transparent_pixels_become_white():
    clear = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent
    assert torch.all(to_tensor([load_image(clear)], 4, grey=False) == 255)


def test_light_content_on_transparency_goes_on_black_dark_content_stays_on_white(tmp_path):
    ink = np.round(sklearn.datasets.load_digits().images[:5] * (255 / 16)).astype(np.uint8)  # 0 paper .. 255 ink
    for i, a in enumerate(ink):  # ink drawn only by opacity, as icon and glyph files are
        Image.fromarray(np.dstack([np.zeros_like(a)] * 3 + [a])).save(tmp_path / f"black{i}.png")
        Image.fromarray(np.dstack([np.full_like(a, 255)] * 3 + [a])).save(tmp_path / f"white{i}.png")
    black = prepare_images([str(tmp_path / f"black{i}.png") for i in range(5)], 8, grey=True)
    white = prepare_images([str(tmp_path / f"white{i}.png") for i in range(5)], 8, grey=True)
    on_paper = prepare_images([255 - a for a in ink], 8, grey=True)  # the same digits, dark ink on white paper
    assert torch.equal(black, on_paper)  # dark ink keeps its white background
    assert torch.all(white.flatten(1).std(1) > 50)  # white ink is not a blank image...
    assert torch.allclose(white, 255 - black, atol=1)  # ...but the dark-ink digit inverted


def test_unreadable_inputs_raise_badinput(tmp_path):
    broken = tmp_path / "broken.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(broken)
    broken.write_bytes(broken.read_bytes()[:60])  # truncated
    with pytest.raises(BadInput, match="broken.png: not a readable image"):
        load_image(str(broken))
    with pytest.raises(BadInput, match="not a readable image"):
        load_image(str(tmp_path / "missing.png"))
    with pytest.raises(BadInput, match="uint8"):
        load_image(np.zeros((4, 4), np.float32))


def test_a_pil_image_is_read_upright_by_its_exif_as_its_file_is(tmp_path):
    from quickadapt.data.dataset import content_key

    upright = np.zeros((8, 12, 3), np.uint8)
    upright[:2] = 255  # a white band at the top, as a viewer shows the photo
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored turned a quarter, as phones save a photo taken upright
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    stored.save(tmp_path / "phone.png", exif=exif)
    path = str(tmp_path / "phone.png")
    from_path = prepare_images([path], 12, grey=True)
    assert torch.equal(prepare_images([Image.open(path)], 12, grey=True), from_path)
    assert not torch.equal(prepare_images([np.asarray(stored)], 12, grey=True), from_path)
    # the embedding cache tells the tagged image from its pixels untagged: they read differently
    assert content_key(Image.open(path), "image") != content_key(stored, "image")


def test_an_unreadable_pil_image_raises_badinput_naming_its_file(tmp_path):
    from quickadapt.data.dataset import content_key

    broken = tmp_path / "broken.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(broken)
    broken.write_bytes(broken.read_bytes()[:3000])  # truncated: PIL opens it lazily, fails on decoding
    for read in (lambda img: prepare_images([img], 8, grey=False), lambda img: content_key(img, "image")):
        with pytest.raises(BadInput, match="broken.jpg: not a readable image"):
            read(Image.open(broken))
    # a JPEG opened in a `with` block and passed after it: PIL's bare AssertionError on decoding
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(photo)
    with Image.open(photo) as closed:
        pass
    with pytest.raises(BadInput, match="photo.jpg: a PIL image whose file was closed before it was read"):
        prepare_images([closed], 8, grey=False)


def colour_task(n, seed):
    """Digits drawn in red or green ink of the same luminance on white: the ink's colour is the
    label, the digit is noise, so a grey reading is at chance."""
    digits = sklearn.datasets.load_digits().images
    rng = np.random.default_rng(seed)
    ink = {"red": (255, 0, 0), "green": (0, 130, 0)}  # grey levels 76 and 76
    images, labels = [], []
    for i in rng.choice(len(digits), n, replace=False):
        label = ("red", "green")[len(labels) % 2]
        a = digits[i][..., None] / 16.0
        images.append(np.round((1 - a) * 255 + a * np.array(ink[label])).astype(np.uint8))
        labels.append(label)
    return Dataset("image", images, np.asarray(labels, dtype=object))


def test_grey_is_read_from_the_file_modes_and_array_shapes(tmp_path):
    from quickadapt.data.images import all_grey

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    files = {"L": Image.fromarray(grey), "LA": Image.fromarray(grey).convert("LA"), "1": Image.fromarray(grey).convert("1"),
             "I16": Image.fromarray(grey.astype(np.uint16) * 257), "Pgrey": Image.fromarray(grey).convert("P"),
             "RGBgrey": Image.fromarray(np.dstack([grey] * 3)), "Pcolour": Image.fromarray(grey).convert("P"),
             "CMYK": Image.fromarray(np.dstack([grey] * 3)).convert("CMYK")}
    files["Pcolour"].putpalette([v for i in range(256) for v in (i, 0, 0)])  # shades of red
    paths = {}
    for name, img in files.items():
        paths[name] = str(tmp_path / (name + (".jpg" if name == "CMYK" else ".png")))
        img.save(paths[name])
    greys = [paths[k] for k in ("L", "LA", "1", "I16", "Pgrey")]
    assert all_grey(greys) and all_grey([grey, grey[..., None]] + greys)
    for colour in (paths["RGBgrey"], paths["Pcolour"], paths["CMYK"], np.dstack([grey] * 3), np.dstack([grey] * 4)):
        assert not all_grey(greys + [colour])  # one colour image is enough, even one whose channels agree
    for builtin in ("digits", "omniglot"):  # the benchmarks' images: grey, as conv4 read them before
        assert all_grey(load_dataset(f"builtin:{builtin}").inputs)


def test_fit_and_its_baseline_read_colour_when_the_images_have_it(tmp_path):
    from quickadapt.adapt import adapt
    from quickadapt.artifact import load_model, save_model

    colour = colour_task(24, seed=0)
    model = adapt(colour, encoder="conv4", strategy="probe", cv=2, baseline=True, progress=False)
    assert model.encoder.settings["grey"] is False
    assert model.info["cv_accuracy"] >= 0.9 and model.info["baseline"]["cv_accuracy"] >= 0.9  # chance is 0.5
    save_model(model, tmp_path / "m")
    test = colour_task(40, seed=1)
    pred, _ = load_model(tmp_path / "m").predict(test.inputs)
    assert np.mean(np.asarray(pred) == test.labels) >= 0.9
    # the user's setting wins; grey images keep conv4 grey, as before
    assert adapt(colour, encoder="conv4", encoder_params={"grey": True}, cv=0, progress=False).encoder.settings["grey"]
    digits = load_dataset("builtin:digits").subset(range(20))
    assert adapt(digits, encoder="conv4", cv=0, progress=False).encoder.settings["grey"] is True


@pytest.mark.parametrize(
    "name, settings, dim, groups",
    [
        ("conv4", {}, 64, 4),
        ("conv4", {"size": 84, "grey": False}, 64 * 5 * 5, 4),
        ("conv4", {"pools": 3}, 64 * 3 * 3, 4),
        ("resnet12", {"size": 32}, 640, 4),
        ("resnet12", {"size": 32, "widths": [8, 16, 16, 24], "norm": "batch"}, 24, 4),
        ("efficientnet-lite0", {"size": 64}, 1280, 9),
        ("efficientnet-lite0", {"size": 64, "features": "stages"}, 192 + 320 + 1280, 9),
    ],
)
def test_shapes_and_layer_groups(name, settings, dim, groups, mixed_images, tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    enc = create_encoder(name, pretrained=False, **settings)
    assert ENCODER_MODALITY[name] == "image" and enc.modality == "image"
    feats = embed(enc, list(mixed_images.values()), cache=False)
    assert feats.shape == (len(mixed_images), dim) == (len(mixed_images), enc.embed_dim)
    assert np.isfinite(feats).all()
    # the groups cover every parameter, bottom to top
    assert len(enc.layer_groups()) == groups
    in_groups = sum(p.numel() for g in enc.layer_groups() for p in g.parameters())
    assert in_groups == sum(p.numel() for p in enc.parameters())


def test_bad_settings_raise_badinput():
    with pytest.raises(BadInput, match="norm"):
        create_encoder("conv4", norm="layer")
    with pytest.raises(BadInput, match="size"):
        create_encoder("resnet12", size=8)
    with pytest.raises(BadInput, match="unknown setting .colour. for encoder .conv4."):
        create_encoder("conv4", colour=True)
    with pytest.raises(BadInput, match="pools"):
        create_encoder("conv4", pools=2)


def test_conv4_groupnorm_is_not_transductive():
    torch.manual_seed(0)
    enc = create_encoder("conv4")
    images = [np.random.default_rng(i).integers(0, 256, (28, 28), dtype=np.uint8) for i in range(5)]
    batch = enc.prepare(images)
    for mode in (enc.train, enc.eval):  # per-image statistics even in training mode
        mode()
        with torch.no_grad():
            assert torch.allclose(enc(batch[:1]), enc(batch)[:1], atol=1e-5)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_conv4_pooling_before_relu_is_the_textbook_block(norm):
    """conv4 pools before its ReLU for speed; features and second-order gradients (what MAML
    differentiates) must equal the textbook conv, norm, ReLU, pool order: features exactly,
    gradients up to float summation order."""
    torch.manual_seed(0)
    enc = create_encoder("conv4", norm=norm).train()
    x = enc.prepare([np.random.default_rng(i).integers(0, 256, (28, 28), dtype=np.uint8) for i in range(6)])

    def textbook(x):
        h = enc.normalize(x)
        for conv, norm_, *_ in enc.blocks:
            h = torch.nn.functional.max_pool2d(torch.relu(norm_(conv(h))), 2)
        return h.flatten(1)

    results = []
    for forward in (enc, textbook):
        feats = forward(x)
        first = torch.autograd.grad(feats.square().sum(), list(enc.parameters()), create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in first), list(enc.parameters()))
        results.append((feats, first, second))
    (feats, *ours), (ref_feats, *reference) = results
    assert torch.equal(feats, ref_feats)
    for mine, theirs in zip(ours, reference):  # per order: a tolerance on that order's scale
        scale = max(float(g.detach().abs().max()) for g in theirs)  # (a conv bias before BatchNorm gets ~0)
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * scale)


def test_efficientnet_lite0_pretrained_from_safetensors(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    enc = create_encoder("efficientnet-lite0").eval()
    weights = tmp_path / "weights" / "efficientnet-lite0.safetensors"
    assert weights.is_file() and not list(weights.parent.glob("*.tmp"))
    source = torch.load(efficientnet_lite0.source_checkpoint(), weights_only=True, map_location="cpu")
    assert torch.equal(enc._conv_stem.weight, source["_conv_stem.weight"])

    # later runs read only the safetensors copy, never the pickle
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called at run time"))
    again = create_encoder("efficientnet-lite0").eval()
    with torch.no_grad():
        x = enc.prepare([CHINA, FLOWER])
        feats = enc(x)
        assert torch.equal(feats, again(x))  # deterministic

        # really ImageNet-trained: the shipped classifier names the photos
        logits = feats @ source["_fc.weight"].T + source["_fc.bias"]
        assert 698 in logits[0].topk(5).indices  # palace
        assert logits[1].argmax() == 985  # daisy

        # and its features know a crop of a photo from another photo
        crop = np.asarray(Image.open(CHINA).convert("RGB"))[50:350, 100:500]
        a, b, c = torch.nn.functional.normalize(enc(enc.prepare([CHINA, crop, FLOWER])), dim=1)
        assert a @ b > a @ c + 0.2


def test_efficientnet_lite0_survives_a_damaged_or_unwritable_weights_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    reference = efficientnet_lite0.pretrained_state()  # converted and stored
    weights = tmp_path / "weights" / "efficientnet-lite0.safetensors"
    weights.write_bytes(weights.read_bytes()[:100000])  # cut short, as by a full disk or a killed copy
    again = efficientnet_lite0.pretrained_state()
    assert again.keys() == reference.keys() and all(torch.equal(again[k], reference[k]) for k in reference)
    assert len(weights.read_bytes()) > 100000  # converted again and replaced
    from safetensors.torch import save_file

    save_file({**reference, "_conv_stem.weight": reference["_conv_stem.weight"] * 0 + 0.01}, str(weights))
    again = efficientnet_lite0.pretrained_state()  # still readable, but other values: converted again too
    assert all(torch.equal(again[k], reference[k]) for k in reference)
    assert "is damaged; converting the EfficientNet-Lite0 weights again" in capsys.readouterr().err

    (tmp_path / "a_file").write_text("x")  # the cache "folder" is a file: nothing can be stored there
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "a_file"))
    stateless = efficientnet_lite0.pretrained_state()
    assert all(torch.equal(stateless[k], reference[k]) for k in reference)
    assert "note: cannot store the EfficientNet-Lite0 weights" in capsys.readouterr().err


def test_efficientnet_lite0_conversion_leaves_another_writer_s_temp_file_alone(tmp_path, monkeypatch):
    """Two containers (each its process 1) converting into one shared cache at once wrote one
    temp file named by the process id; each now writes its own."""
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    (tmp_path / "weights").mkdir()
    theirs = tmp_path / "weights" / f".efficientnet-lite0.safetensors.{os.getpid()}.tmp"
    theirs.write_bytes(b"another container's conversion, half written")
    reference = efficientnet_lite0.pretrained_state()
    assert theirs.read_bytes() == b"another container's conversion, half written"
    assert efficientnet_lite0.state_hash(reference) == efficientnet_lite0.CONVERTED_SHA256
    assert (tmp_path / "weights" / "efficientnet-lite0.safetensors").is_file()


def test_efficientnet_lite0_stage_features_end_with_the_normalised_head():
    """features="stages": the pools of stages 6 (192 channels) and 7 (320), then the head's,
    each unit length; the last part is the default head feature, normalised."""
    torch.manual_seed(0)
    stages = create_encoder("efficientnet-lite0", pretrained=False, size=64, features="stages").eval()
    head = create_encoder("efficientnet-lite0", pretrained=False, size=64).eval()
    head.load_state_dict(stages.state_dict())
    with torch.no_grad():
        x = stages.prepare([CHINA, FLOWER])
        f, h = stages(x), head(x)
    parts = torch.split(f, [192, 320, 1280], dim=1)
    for p in parts:
        torch.testing.assert_close(p.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(parts[2], torch.nn.functional.normalize(h, dim=1))
    assert stages.preprocess_id() != head.preprocess_id()  # cached embeddings never mix
    with pytest.raises(BadInput, match="features"):
        create_encoder("efficientnet-lite0", pretrained=False, features="all")


def test_efficientnet_lite0_flip_features_ignore_mirroring():
    """flip=true: the mean of an image's features and its mirror's, so a mirrored photo gets
    the same features; the plain encoder's differ."""
    flip = create_encoder("efficientnet-lite0", size=64, flip=True).eval()  # pretrained: features of real size
    plain = create_encoder("efficientnet-lite0", size=64).eval()
    with torch.no_grad():
        x = flip.prepare([CHINA, FLOWER])
        mirrored = x.flip(-1)
        f, fm, p, pm = flip(x), flip(mirrored), plain(x), plain(mirrored)
    torch.testing.assert_close(f, fm, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(f, (p + pm) / 2, rtol=1e-4, atol=1e-5)
    assert (p - pm).norm() > 0.1 * p.norm()
    assert flip.preprocess_id() != plain.preprocess_id() and "flip" not in plain.settings  # caches never mix
    with pytest.raises(BadInput, match="flip"):
        create_encoder("efficientnet-lite0", pretrained=False, flip="sometimes")  # "yes" reads as true, as for any setting


def test_efficientnet_lite0_checks_sha256(tmp_path, monkeypatch):
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"not the checkpoint")
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path))
    monkeypatch.setattr(efficientnet_lite0, "source_checkpoint", lambda: fake)
    with pytest.raises(BadInput, match="sha256 .* does not match"):
        efficientnet_lite0.create_efficientnet_lite0()  # the factory itself: create_encoder may reuse a loaded copy
    assert not (tmp_path / "weights" / "efficientnet-lite0.safetensors").exists()


def test_colour_inputs_to_a_model_fit_on_grey_images_get_a_note(tmp_path):
    """Its colour-reading encoder never saw colour: the same digits in blue ink scored far lower."""
    from cli_helpers import run

    digits = sklearn.datasets.load_digits()
    for name, tint in (("train", None), ("grey", None), ("blue", (0, 0, 255))):
        for i in range(12):
            folder = tmp_path / name / str(digits.target[i] % 2)
            folder.mkdir(parents=True, exist_ok=True)
            a = digits.images[i] / 16.0
            pixels = np.round((1 - a) * 255).astype(np.uint8)
            if tint is not None:
                pixels = np.round((1 - a[..., None]) * 255 + a[..., None] * np.array(tint)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    r = run("fit", "--data", tmp_path / "train", "--encoder", "resnet12", "--set", "encoder.size=32", "--cv", "0",
            "--out", tmp_path / "m")
    assert r.exit_code == 0, r.stderr
    note = "fit on grey images only and some of these are stored in colour"
    assert note in run("predict", tmp_path / "m", "--data", tmp_path / "blue").stderr
    assert note not in run("predict", tmp_path / "m", "--data", tmp_path / "grey").stderr
