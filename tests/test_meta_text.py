"""Text episodes on real CLINC150: meta-training starts from pretrained MiniLM on the six
training domains and is tested on held-out banking and credit-card intents; methods that adapt
the whole transformer per task are refused with one line."""
import json

import pytest

from cli_helpers import assert_bad_input, run
from quickadapt.data.episodes import CLINC_SPLIT, default_split, load_episode_data
from quickadapt.errors import BadInput
from quickadapt.meta.run import run_episodes, run_meta_train


def test_clinc_domain_split_without_out_of_scope():
    data = load_episode_data("builtin:clinc150-test")  # holds 1,000 out-of-scope rows
    assert "oos" not in data.classes and len(data.classes) == 150
    split = default_split(data)
    assert split.groups["test"] == list(CLINC_SPLIT["test"])
    assert (len(split.train), len(split.val), len(split.test)) == (90, 30, 30)
    assert "transfer" in split.test and "book_flight" in split.train and "greeting" in split.val


def test_text_meta_train_beats_chance_on_held_out_domains(tmp_path):
    out = tmp_path / "text"
    r = run_meta_train("builtin:clinc150-train", method="protonet", n_way=5, k_shot=1, n_query=2, out=out, steps=3,
                       meta_batch=2, settings={"validate_every": 0}, progress=False)
    assert r["start"] == {"encoder": "minilm", "weights": "pretrained"}
    assert r["classes"] == {"train": 90, "val": 30, "test": 30}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "minilm" and manifest["meta"]["rotations"] is False
    assert manifest["meta"]["settings"]["outer_lr"] == 3e-5  # a transformer's fine-tuning rate, not conv4's
    e = run_episodes(out, "builtin:clinc150-train", n_way=5, k_shot=1, episodes=16, n_query=3, progress=False)
    assert e["split"] == "test" and e["classes"] == 30
    assert e["accuracy"] > 0.6, e  # chance is 20%


def test_text_bad_inputs(tmp_path):
    base = ("meta-train", "--data", "builtin:clinc150-train", "--ways", 5, "--shots", 1, "--steps", 1, "--quiet")
    assert_bad_input(run(*base, "--method", "maml", "--out", tmp_path / "a"), "use protonet, matchingnet or anil")
    assert_bad_input(run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 5, "--shots", 1,
                         "--encoder", "minilm", "--out", tmp_path / "b", "--quiet"), "reads text but the data is image")
    with pytest.raises(BadInput, match="rotations turn images"):
        run_meta_train("builtin:clinc150-train", method="protonet", n_way=5, k_shot=1, out=tmp_path / "c",
                       rotations=True, progress=False)


def test_packed_text_rows_encode_like_the_tokenizer_dict():
    import torch

    from quickadapt.encoders import create_encoder

    enc = create_encoder("minilm").eval()
    texts = ["what is my balance", "please book me a flight to paris tomorrow morning"]
    packed = enc.prepare_tensor(texts)
    assert packed.shape == (2, 2, enc.max_length)
    with torch.no_grad():
        assert torch.allclose(enc(packed), enc(enc.prepare(texts)), atol=1e-5)
        view = enc.augment(packed, torch.Generator().manual_seed(0))  # hides words inside the rows
        assert torch.equal(view[:, 0], packed[:, 0]) and view[:, 1].sum() < packed[:, 1].sum()
        tok = {"input_ids": packed[:, 0], "attention_mask": view[:, 1]}
        assert torch.allclose(enc(view), enc(tok), atol=1e-5)  # cutting padding keeps every used column
