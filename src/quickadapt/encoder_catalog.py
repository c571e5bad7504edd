"""The registered encoders' modalities and the defaults of their settings, readable without
importing torch: `quickadapt encoders` lists them from here (reading them off the encoder
classes' signatures imported torch, 1.2-1.4 s of a call a quiet machine answers in 0.2 s).
The classes' signatures stay what building reads; tests/test_cli.py checks that this listing
says what they do, so a setting added to a class and not here fails the tests."""

# name -> (modality it reads, setting -> default), as `--set encoder.KEY=value` takes them
ENCODER_CATALOG = {
    "conv4": ("image", {"channels": 64, "grey": True, "norm": "group", "pools": 4, "size": 28}),
    "efficientnet-lite0": ("image", {"features": "head", "flip": False, "size": 224}),
    "minilm": ("text", {"layers": 3, "max_length": 128, "normalize": True}),
    "mlp": ("features", {"depth": 2, "dropout": 0.1, "hidden": 256}),
    "resnet12": ("image", {"grey": False, "norm": "group", "size": 84, "widths": (64, 160, 320, 640)}),
}
# modality each registered encoder expects, for early checks and listings
ENCODER_MODALITY = {name: modality for name, (modality, _) in ENCODER_CATALOG.items()}
# a local Hugging Face folder's path as --encoder: (what the folder holds, modality, settings), read
# as hf_image.folder_modality tells them apart
FOLDER_CATALOG = (
    ("a tokenizer", "text", {"layers": 3, "max_length": 128, "normalize": True}),
    ("preprocessor_config.json", "image", {"pooling": "auto"}),
)
