"""Local Hugging Face image model folders as encoders (ViT, ConvNeXt, a CLIP folder's vision tower):
told from text folders by their image processor, read by the folder's preprocessing, pooled as the
family's features are used, with every strategy, the cache and the model folder; a folder of a
kind quickadapt cannot use is refused in one line. The models are tiny and random, built here."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import assert_bad_input, run
from quickadapt import FewShotClassifier
from quickadapt.data import load_dataset
from quickadapt.encoders import create_encoder, embed
from quickadapt.encoders.base import encoder_fingerprint
from quickadapt.errors import BadInput

VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8,
           initializer_range=0.2)  # random features that still vary with the image (0.02 leaves them near alike)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """save_pretrained folders: a ViT backbone, a ViT saved from an image classifier (no pooler
    weights), a ConvNeXt and a whole CLIP (text and vision towers), each with its image processor."""
    from transformers import (CLIPConfig, CLIPImageProcessorPil, CLIPModel, ConvNextConfig, ConvNextImageProcessorPil,
                              ConvNextModel, ViTConfig, ViTForImageClassification, ViTImageProcessorPil, ViTModel)

    root = tmp_path_factory.mktemp("hf-image")
    torch.manual_seed(0)
    models = {
        "vit": (ViTModel(ViTConfig(**VIT)), ViTImageProcessorPil(size={"height": 32, "width": 32})),
        "vit-classifier": (ViTForImageClassification(ViTConfig(**VIT, num_labels=3)),
                           ViTImageProcessorPil(size={"height": 32, "width": 32})),
        "convnext": (ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
                     ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=0.875)),
        "clip": (CLIPModel(CLIPConfig(text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                       intermediate_size=32, vocab_size=100),
                                      vision_config={**VIT, "initializer_factor": 5.0}, projection_dim=24)),
                 CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    }
    for name, (model, processor) in models.items():
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return {name: root / name for name in models}


@pytest.fixture(scope="module")
def digits():
    """Real handwritten digits 0-3 (8x8 grey arrays): 25 to train on and 25 to test, each."""
    data = load_dataset("builtin:digits")
    train, test = [], []
    for digit in "0123":
        rows = np.flatnonzero(data.labels == digit)
        train += [(data.inputs[i], digit) for i in rows[:25]]
        test += [(data.inputs[i], digit) for i in rows[25:50]]
    return train, test


def copy_folder(folder, to, edit=None, edit_preprocessor=None):
    shutil.copytree(folder, to)
    for name, change in (("config.json", edit), ("preprocessor_config.json", edit_preprocessor)):
        if change:
            (to / name).write_text(json.dumps(change(json.loads((to / name).read_text()))))
    return to


def test_an_image_folder_is_read_as_images_and_a_probe_learns(folders, digits):
    """The user's first try: a saved ViT folder with image data gave "Couldn't instantiate the
    backend tokenizer"; it is now an image encoder, and even tiny random features learn digits."""
    train, test = digits
    for name in ("vit", "vit-classifier", "convnext", "clip"):
        clf = FewShotClassifier(encoder=str(folders[name]), strategy="probe").fit(*map(list, zip(*train)))
        accuracy = np.mean(clf.predict([x for x, _ in test]) == np.array([y for _, y in test]))
        # 4 classes of 25 test images: chance is 0.25, and 0.4 is 3.5 standard errors above it
        assert accuracy > 0.4, (name, accuracy)


def test_pooling_follows_the_family_and_a_missing_pooler_is_not_used(folders):
    encoders = {name: create_encoder(str(folder)) for name, folder in folders.items()}
    assert {n: e.settings["pooling"] for n, e in encoders.items()} == {
        "vit": "pooler", "vit-classifier": "cls", "convnext": "pooler", "clip": "pooler"}
    # widths: ViT's hidden size, ConvNeXt's last stage, CLIP's image projection (not its text tower)
    assert {n: e.embed_dim for n, e in encoders.items()} == {"vit": 32, "vit-classifier": 32, "convnext": 16,
                                                             "clip": 24}
    assert not any(k.startswith("text_model") for k in encoders["clip"].state_dict())
    assert create_encoder(str(folders["vit"]), pooling="mean").embed_dim == 32
    with pytest.raises(BadInput, match="pooling 'pooler' is not possible .its weights are not in the folder"):
        create_encoder(str(folders["vit-classifier"]), pooling="pooler")
    with pytest.raises(BadInput, match="pooling 'cls' needs a transformer's tokens"):
        create_encoder(str(folders["convnext"]), pooling="cls")
    with pytest.raises(BadInput, match="unknown setting 'max_length'.*valid settings are pooling"):
        create_encoder(str(folders["vit"]), max_length=16)


def test_images_are_read_by_the_project_s_rules_then_the_folder_s_processor(folders):
    """Transparency on white and grey as colour, as every image encoder here reads them; then the
    folder's processor: ViT's mean 0.5 / std 0.5 puts a white pixel at 1 and a black one at -1."""
    enc = create_encoder(str(folders["vit"]))
    ink = np.zeros((40, 40, 4), np.uint8)
    ink[10:30, 10:30] = (0, 0, 0, 255)  # a black square on transparency
    on_white = np.full((40, 40, 3), 255, np.uint8)
    on_white[10:30, 10:30] = 0
    a, b = enc.prepare([ink, on_white[:, :, 0]])
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert a.max() == 1 and a.min() == -1


def test_save_and_load_predict_identically_after_every_kind_of_strategy(folders, digits, tmp_path):
    train, test = digits
    X, y = map(list, zip(*train))
    inputs = [x for x, _ in test]
    for name, strategy, params in (("vit-classifier", "probe", {}),
                                   ("clip", "lora", {"epochs": 1, "min_steps": 2}),
                                   ("convnext", "freeze", {"epochs": 1, "min_steps": 2, "k": 1})):
        clf = FewShotClassifier(encoder=str(folders[name]), strategy=strategy, strategy_params=params).fit(X, y)
        clf.save(tmp_path / name)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["encoder"]["weights"] == ("pretrained" if strategy == "probe" else "stored")
        again = FewShotClassifier.load(tmp_path / name)
        assert np.array_equal(clf.predict_proba(inputs), again.predict_proba(inputs)), name


def test_layer_groups_and_lora_targets_cover_the_model(folders):
    from quickadapt.transfer.lora import lora_targets

    for name, blocks in (("vit", 2), ("convnext", 2), ("clip", 2)):
        enc = create_encoder(str(folders[name]))
        groups = enc.layer_groups()
        assert len(groups) == blocks + 2, name  # before the blocks, each block, after them
        grouped = {id(p) for g in groups for p in g.parameters()}
        assert grouped == {id(p) for p in enc.parameters()}, name
        assert lora_targets(enc), name
    vit = create_encoder(str(folders["vit"]))
    assert list(vit.layer_groups()[0]) == [vit.model.embeddings]


def test_the_cache_and_the_model_are_keyed_by_the_folder_s_preprocessing(folders, digits, tmp_path):
    """Other image mean and std give other features from the same weights: the cache keeps them
    apart, and a model fit before the folder's processor changed is refused at loading."""
    folder = copy_folder(folders["convnext"], tmp_path / "convnext")
    images = [x for x, _ in digits[0][:4]]
    before = create_encoder(str(folder))
    first = embed(before, images)
    assert np.array_equal(embed(create_encoder(str(folder)), images), first)  # read back from the cache
    r = run("fit", "--data", "builtin:digits", "--encoder", folder, "--cv", 0, "--out", tmp_path / "m", "--quiet")
    assert r.exit_code == 0, r.stderr
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**config, "image_mean": [0.4, 0.4, 0.4]}))
    after = create_encoder(str(folder))
    assert encoder_fingerprint(after) != encoder_fingerprint(before)
    assert not np.allclose(embed(after, images), first)
    assert_bad_input(run("predict", tmp_path / "m", "--data", "builtin:digits"), "is not the one the model was fit on")


@pytest.mark.parametrize("kind, fragment", [
    ("pickled weights only", "no .safetensors weights"),
    ("unknown processor", "names FancyImageProcessor, an image processor transformers"),
    ("own code", "never runs a model folder's code"),
    ("unknown model type", "model type `myvit`"),
    ("audio model", "an audio model (model_type 'vit', preprocessor_config.json names Wav2Vec2FeatureExtractor"),
    ("no processor", "holds no tokenizer"),
    ("varying size", "gives images of varying size"),
    ("needs text too", "its model (ViltModel) cannot read an image alone"),
])
def test_a_folder_of_a_kind_quickadapt_cannot_use_is_refused_naming_what_it_holds(folders, tmp_path, kind, fragment):
    folder = tmp_path / "model"
    if kind == "pickled weights only":
        copy_folder(folders["vit"], folder)
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif kind == "unknown processor":
        copy_folder(folders["vit"], folder, edit_preprocessor=lambda c: {**c, "image_processor_type": "FancyImageProcessor"})
    elif kind == "own code":
        copy_folder(folders["vit"], folder, edit=lambda c: {**c, "model_type": "myvit",
                                                            "auto_map": {"AutoModel": "modeling_my.MyModel"}})
    elif kind == "unknown model type":
        copy_folder(folders["vit"], folder, edit=lambda c: {**c, "model_type": "myvit"})
    elif kind == "audio model":
        copy_folder(folders["vit"], folder, edit_preprocessor=lambda c: {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 16000, "feature_size": 1})
    elif kind == "no processor":
        copy_folder(folders["vit"], folder)
        (folder / "preprocessor_config.json").unlink()
    elif kind == "needs text too":  # ViLT reads an image with a question: the image alone is not an input
        from transformers import ViltConfig, ViltImageProcessorPil, ViltModel

        ViltModel(ViltConfig(**{k: v for k, v in VIT.items() if k != "initializer_range"}, vocab_size=100,
                             max_image_length=-1)).save_pretrained(folder)
        ViltImageProcessorPil(size={"shortest_edge": 32}, do_pad=False).save_pretrained(folder)
    else:  # CLIP's processor without its centre crop keeps each image's proportions
        copy_folder(folders["clip"], folder, edit_preprocessor=lambda c: {**c, "do_center_crop": False})
    data = tmp_path / "images"
    for label in "ab":
        (data / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), (i * 90, 0, 0)).save(data / label / f"{i}.png")
    assert_bad_input(run("fit", "--data", data, "--encoder", folder, "--out", tmp_path / "m", "--quiet"), fragment)
    assert not (tmp_path / "m").exists()


def test_the_encoder_listing_names_both_kinds_of_folder_and_their_settings():
    r = run("encoders", "--json")
    folders = {f["modality"]: f for f in json.loads(r.stdout)["folders"]}
    assert folders["image"]["settings"] == {"pooling": "auto"} and folders["text"]["settings"]["layers"] == 3
    assert "PATH                 image     pooling='auto'  (a Hugging Face folder with preprocessor_config.json)" in \
        run("encoders").stdout.splitlines()
