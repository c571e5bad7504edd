"""Local Hugging Face model folders as encoders: loaded from safetensors only, never with the
folder's own code, and a folder transformers cannot load is bad input, not a traceback."""
import json

import pytest

from cli_helpers import assert_bad_input, run
from quickadapt.encoders import create_encoder
from quickadapt.encoders.hf_text import minilm_path
from quickadapt.errors import BadInput


def model_folder(tmp_path, edit=None, drop=()):
    """MiniLM's folder, linked file by file, with config.json edited by `edit` and `drop` left out."""
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    for item in minilm_path().iterdir():
        if item.name not in drop and item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((minilm_path() / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config) if edit else config))
    return folder


def test_a_model_folder_embeds_as_the_named_encoder_does(tmp_path):
    folder = model_folder(tmp_path)
    texts = ["what is my balance", "play some jazz"]
    named = create_encoder("minilm")
    assert create_encoder(str(folder)).embed_dim == named.embed_dim
    data = tmp_path / "t.csv"
    data.write_text("text,label\n" + "".join(f"{t} {i},{t.split()[0]}\n" for i in range(3) for t in texts))
    r = run("fit", "--data", data, "--encoder", folder, "--cv", 0, "--out", tmp_path / "m", "--quiet")
    assert r.exit_code == 0, r.stderr


def test_a_folder_that_needs_its_own_code_is_refused_and_none_of_it_runs(tmp_path):
    marker = tmp_path / "ran"
    folder = model_folder(tmp_path, lambda c: {**c, "model_type": "custom",
                                               "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                                                            "AutoModel": "modeling_custom.CustomModel"}})
    for name in ("configuration_custom.py", "modeling_custom.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(BadInput, match=r"config.json maps to the folder's own code \(auto_map\)"):
        create_encoder(str(folder))
    data = tmp_path / "t.csv"
    data.write_text("text,label\nhi,a\nhello,a\nbye,b\nciao,b\n")
    assert_bad_input(run("fit", "--data", data, "--encoder", folder, "--cv", 0, "--out", tmp_path / "m", "--quiet"),
                     "never runs a model folder's code")
    assert not marker.exists()


def test_a_folder_transformers_cannot_load_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="transformers cannot load this model folder"):
        create_encoder(str(model_folder(tmp_path, lambda c: {**c, "model_type": "no-such-architecture"})))
    with pytest.raises(BadInput, match=r"no \.safetensors weights"):
        create_encoder(str(model_folder(tmp_path / "x", drop=("model.safetensors",))))
