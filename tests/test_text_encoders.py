"""Local Hugging Face model folders as encoders: loaded from safetensors only, never with the
folder's own code, and a folder transformers cannot load is bad input, not a traceback."""
import json

import numpy as np
import pytest

from cli_helpers import assert_bad_input, run
from quickadapt.encoders import create_encoder, embed
from quickadapt.encoders.hf_text import minilm_path
from quickadapt.errors import BadInput


def model_folder(tmp_path, edit=None, drop=(), pooling="mean_tokens"):
    """MiniLM's folder, linked file by file, with config.json edited by `edit`, `drop` left out
    and its sentence-transformers pooling set to `pooling`."""
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    for item in minilm_path().iterdir():
        if item.name not in (*drop, "config.json", "1_Pooling"):
            (folder / item.name).symlink_to(item)
    config = json.loads((minilm_path() / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config) if edit else config))
    (folder / "1_Pooling").mkdir()
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, **{f"pooling_mode_{m}": m == pooling for m in modes}}))
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


def test_a_setting_a_folder_s_encoder_lacks_is_named_with_the_valid_ones(tmp_path):
    """--set encoder.pooling=cls on a text folder ended in a TypeError traceback."""
    folder = model_folder(tmp_path)
    data = tmp_path / "t.csv"
    data.write_text("text,label\nhi,a\nhello,a\nbye,b\nciao,b\n")
    assert_bad_input(run("fit", "--data", data, "--encoder", folder, "--set", "encoder.pooling=cls", "--cv", 0,
                         "--out", tmp_path / "m", "--quiet"),
                     "unknown setting 'pooling' for encoder")
    with pytest.raises(BadInput, match="valid settings are layers, max_length, normalize"):
        create_encoder(str(folder), pooling="cls")


def test_the_folder_s_pooling_is_used_and_keys_the_cache_and_the_model(tmp_path, monkeypatch):
    """Pooling and tokenizer shape the features as much as the weights: each pooling gives other
    features (so the cache keeps them apart), one that cannot be done is refused, and a model
    whose folder changed after the fit is refused at loading instead of predicting from other features."""
    from quickadapt.encoders.base import embed, encoder_fingerprint

    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    texts = ["what is my balance", "play some jazz please"]
    feats, prints = {}, set()
    for mode in ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens"):
        encoder = create_encoder(str(model_folder(tmp_path / mode, pooling=mode)), layers=1)
        feats[mode] = embed(encoder, texts)
        prints.add(encoder_fingerprint(encoder))
    assert len(prints) == 4
    assert not np.allclose(feats["mean_tokens"], feats["cls_token"]) and not np.allclose(feats["mean_tokens"], feats["max_tokens"])
    # sum / sqrt(length) is the mean scaled per text: the same direction once normalised
    assert np.allclose(feats["mean_tokens"], feats["mean_sqrt_len_tokens"], atol=1e-6)
    assert np.allclose(feats["mean_tokens"], embed(create_encoder("minilm", layers=1), texts, cache=False), atol=1e-6)
    with pytest.raises(BadInput, match="pooling weightedmean_tokens is not supported"):
        create_encoder(str(model_folder(tmp_path / "w", pooling="weightedmean_tokens")))

    folder = model_folder(tmp_path / "fit")
    data = tmp_path / "t.csv"
    data.write_text("text,label\n" + "".join(f"{t} {i},{t.split()[0]}\n" for i in range(3) for t in texts))
    assert run("fit", "--data", data, "--encoder", folder, "--cv", 0, "--out", tmp_path / "m", "--quiet").exit_code == 0
    assert run("predict", tmp_path / "m", "--data", data, "--quiet").exit_code == 0
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"pooling_mode_cls_token": false', '"pooling_mode_cls_token": true')
                       .replace('"pooling_mode_mean_tokens": true', '"pooling_mode_mean_tokens": false'))
    assert_bad_input(run("predict", tmp_path / "m", "--data", data, "--quiet"),
                     "is not the one the model was fit on (other weights, tokenizer or pooling")


def test_an_edited_config_json_keys_the_cache_and_the_model(tmp_path, monkeypatch):
    """The same weights read with another config.json (num_attention_heads 6 for 12: the same
    shapes) give other features: they were served the old config's cached ones, and a model fit
    before the edit passed the check at loading. A folder saved again by another transformers
    version keeps its cache, and a model that recorded the fingerprint before config.json was part
    of it still loads."""
    from quickadapt.artifact import rebuilt_fingerprint
    from quickadapt.encoders.cache import cache_key

    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    folder = model_folder(tmp_path)
    texts = ["what is my balance", "play some jazz please"]
    before = create_encoder(str(folder), layers=1)
    cached = embed(before, texts)
    data = tmp_path / "t.csv"
    data.write_text("text,label\n" + "".join(f"{t} {i},{t.split()[0]}\n" for i in range(3) for t in texts))
    assert run("fit", "--data", data, "--encoder", folder, "--cv", 0, "--out", tmp_path / "m", "--quiet").exit_code == 0

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "transformers_version": "9.9.9"}, indent=4))
    assert cache_key(create_encoder(str(folder), layers=1)) == cache_key(before)
    (folder / "config.json").write_text(json.dumps({**config, "num_attention_heads": 6}))
    after = create_encoder(str(folder), layers=1)
    assert cache_key(after) != cache_key(before)
    fresh = embed(after, texts, cache=False)
    assert np.abs(fresh - cached).max() > 1e-3  # another model indeed
    assert np.array_equal(embed(after, texts), fresh)
    assert_bad_input(run("predict", tmp_path / "m", "--data", data, "--quiet"), "an edited config.json")
    (folder / "config.json").write_text(json.dumps(config))
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model.safetensors").symlink_to(tmp_path / "m" / "model.safetensors")
    manifest["encoder"]["fingerprint"] = rebuilt_fingerprint(create_encoder(str(folder)), with_config=False)
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    assert run("predict", legacy, "--data", data, "--quiet").exit_code == 0


def test_texts_past_max_length_are_named_at_fit_and_predict(tmp_path):
    """The rest of a long text reads as nothing; a user must hear of it, and how to read more."""
    long = " ".join(["word"] * 150)
    rows = [f"{long} topic {lab},{lab}" for lab in "ab" * 3] + ["short one,a", "short two,b"]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    r = run("fit", "--data", tmp_path / "t.csv", "--encoder", "minilm", "--cv", "0", "--out", tmp_path / "m")
    assert r.exit_code == 0, r.stderr
    assert "6 of 8 texts are longer than 128 tokens" in r.stderr and "encoder.max_length=N (up to 512)" in r.stderr
    r = run("predict", tmp_path / "m", "--data", tmp_path / "t.csv")
    assert "6 of 8 texts are longer than 128 tokens" in r.stderr
    r = run("fit", "--data", tmp_path / "t.csv", "--encoder", "minilm", "--set", "encoder.max_length=512", "--cv", "0",
            "--out", tmp_path / "n")
    assert r.exit_code == 0 and "longer than" not in r.stderr


def test_html_markup_is_named_at_fit_and_predict(tmp_path):
    """An HTML e-mail's head and style block read as words before its first own word: 24 tickets
    read alike (25 % where their plain text scored 100 %), while the only note said to read more."""
    head = ('<html><head><style type="text/css">p.MsoNormal{margin:0cm;font-family:Calibri,sans-serif}</style>'
            '</head><body><p class="MsoNormal">')
    rows = [json.dumps({"text": f"{head}{t}</p></body></html>", "label": lab}) for t, lab in
            (("my card was charged twice", "bill"), ("refund my payment", "bill"), ("I cannot log in", "login"),
             ("reset my password", "login"))]
    (tmp_path / "t.jsonl").write_text("\n".join(rows) + "\n")
    r = run("fit", "--data", tmp_path / "t.jsonl", "--encoder", "minilm", "--cv", "0", "--out", tmp_path / "m")
    assert r.exit_code == 0, r.stderr
    assert "4 of 4 texts hold HTML markup (89 % of their characters, such as <html> <head> <style>)" in r.stderr
    (tmp_path / "p.csv").write_text("text\n<p>where is my <b>refund</b></p>\na < b and <3\n")
    r = run("predict", tmp_path / "m", "--data", tmp_path / "p.csv")
    assert r.exit_code == 0 and "1 of 2 texts hold HTML markup (" in r.stderr and "such as <p> <b>)" in r.stderr
    (tmp_path / "q.csv").write_text("text\nwhere is my refund\nis 3 < 4 or 5 > 4\n")
    assert "HTML markup" not in run("predict", tmp_path / "m", "--data", tmp_path / "q.csv").stderr


def test_characters_outside_the_vocabulary_are_named_at_fit_and_predict(tmp_path):
    """MiniLM learned English: most Chinese characters and emoji read as one same unknown token,
    which no score shows (a probe on Chinese intents scored 33 % out of fold, the baseline 73 %)."""
    rows = ["我的银行卡丢了,lost", "卡不见了请帮我挂失,lost", "帮我看看账户余额,balance", "my card 💳 is lost,lost",
            "what is my balance,balance"]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    r = run("fit", "--data", tmp_path / "t.csv", "--encoder", "minilm", "--cv", "0", "--out", tmp_path / "m")
    assert r.exit_code == 0, r.stderr
    assert "4 of 5 texts hold words or characters the encoder's vocabulary lacks" in r.stderr
    assert "such as 银 卡 丢 了 见" in r.stderr and "(minilm learned English)" in r.stderr
    (tmp_path / "p.csv").write_text("text\nwhere is my card 💳\nwhat is my balance\n")
    r = run("predict", tmp_path / "m", "--data", tmp_path / "p.csv")
    assert r.exit_code == 0 and "1 of 2 texts hold" in r.stderr and "(1 of 9 tokens, such as 💳)" in r.stderr
    (tmp_path / "e.csv").write_text("text\nwhat is my balance\ncafé, naïve, Überweisung\n")
    assert "vocabulary lacks" not in run("predict", tmp_path / "m", "--data", tmp_path / "e.csv").stderr


def predict_in_process(*args, env=None):
    """`quickadapt ARGS` in a fresh process: (stdout, notes on stderr, whether transformers was imported)."""
    import os
    import subprocess
    import sys

    code = (f"import sys\nfrom quickadapt.cli import main\nsys.argv = ['quickadapt', *{[str(a) for a in args]!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('transformers' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})})
    lines = r.stderr.strip().splitlines()
    assert lines[-1] in ("True", "False"), r.stderr
    return r.stdout, [line for line in lines if line.startswith("note:")], lines[-1] == "True"


def test_a_predict_whose_inputs_are_all_cached_does_not_build_the_encoder(tmp_path, monkeypatch):
    """Building minilm (transformers' BERT, its weights) took ~2.5 s of a 3.9 s one-text predict
    even when every feature was cached. A build remembers what the cache key and the notes need,
    so a predict or evaluate of cached inputs builds nothing, says the same notes and gives the
    same answers and scores as one that computes every feature; a cache miss builds it then."""
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    rows = ["what is my balance,balance", "how much money do i have,balance", "play some jazz,music",
            "put on my playlist,music", "my card 💳 is lost,balance", "skip this song,music"]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    long = " ".join(["word"] * 150)
    (tmp_path / "p.csv").write_text(f"text,label\nwhat is my balance,balance\nwhere is my card 💳,balance\n"
                                    f"{long} music,music\nplay the next song,music\n")
    assert run("fit", "--data", tmp_path / "t.csv", "--encoder", "minilm", "--cv", 0, "--out", tmp_path / "m",
               "--quiet").exit_code == 0
    for command in ("predict", "evaluate"):  # evaluate's features are all cached by predict's run
        args = (command, tmp_path / "m", "--data", tmp_path / "p.csv")
        computed = predict_in_process(*args, env={"QUICKADAPT_NO_CACHE": "1"})
        assert computed[2] and len(computed[1]) == 2  # the long text and the emoji, said
        if command == "predict":  # three features not cached yet: the encoder is built for them
            assert predict_in_process(*args) == computed
        assert predict_in_process(*args) == (*computed[:2], False)


@pytest.mark.parametrize("encoder, strategy", [("minilm", "probe"), ("./tiny", "prototypes")])
def test_a_frozen_fit_whose_texts_are_all_cached_does_not_build_the_encoder(tmp_path, monkeypatch, encoder, strategy):
    """predict and evaluate of cached texts built nothing, but fit with a strategy that keeps the
    encoder frozen still imported transformers and read the weights on every run (most of a
    minilm fit of 80 cached texts). Such a fit now builds the encoder only for a text the cache
    lacks, and writes the same model, says the same notes and holds long texts alike out together
    (their tokens read by the remembered tokenizer); a folder is stored by its real path either way."""
    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    tiny_folder(tmp_path / "tiny")
    long = " ".join(["word"] * 150)  # two e-mails alike up to the cut: held out together
    rows = [f"{long} signed ann,travel", f"{long} signed bob,travel", "what is my balance,bank",
            "how much money do i have,bank", "my card 💳 is lost,bank", "book a flight,travel", "a trip to rome,travel",
            "transfer money to savings,bank"]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    args = ("fit", "--data", "t.csv", "--encoder", encoder, "--strategy", strategy, "--out", "m", "--force", "--json")
    runs = []
    for _ in range(2):
        out, notes, built = predict_in_process(*args)
        manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
        for varies in ("cv_seconds", "fit_seconds", "environment"):
            del manifest["info"][varies]
        del manifest["created"]
        runs.append((json.loads(out), notes, manifest, (tmp_path / "m" / "model.safetensors").read_bytes(), built))
    assert runs[0][4] and not runs[1][4]  # built for the first run's texts, not for the cached ones
    assert runs[1][:4] == runs[0][:4]
    assert runs[1][2]["info"]["n_distinct"] == 7  # the long texts alike held out together
    assert any("2 of 8 texts are longer" in n for n in runs[1][1]) and any("vocabulary lacks" in n for n in runs[1][1])
    if encoder != "minilm":
        assert runs[1][2]["encoder"]["name"] == str((tmp_path / "tiny").resolve())


def test_caches_written_before_are_found_without_building_the_encoder(tmp_path, monkeypatch):
    """The unbuilt encoder's cache key is the built one's, setting for setting, so the caches
    filled before (by builds) still serve; its sizes and notes' reading agree too."""
    import quickadapt.encoders
    from quickadapt.encoders import create_encoder_for_cache
    from quickadapt.encoders.cache import cache_key

    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quickadapt.encoders, "_PRISTINE", {})  # each built here, remembering into this cache
    folder = model_folder(tmp_path, pooling="cls_token")
    for name, settings in (("minilm", {}), ("minilm", {"layers": 1, "max_length": 64}), (str(folder), {"layers": 2})):
        built = create_encoder(name, **settings)
        unbuilt = create_encoder_for_cache(name, **settings)
        assert "model" not in unbuilt._modules  # nothing read yet
        assert cache_key(unbuilt) == cache_key(built) and unbuilt.settings == built.settings
        assert (unbuilt.embed_dim, unbuilt.unknown_id, unbuilt.position_limit) == \
            (built.embed_dim, built.unknown_id, built.position_limit)
    texts = ["what is my balance", "where is my card 💳"]
    assert np.array_equal(embed(unbuilt, texts, cache=False), embed(built, texts, cache=False))  # built at first use
    assert cache_key(unbuilt) == cache_key(built)


def test_a_folder_saved_without_its_pooler_loads_as_the_same_model_every_time(tmp_path, monkeypatch):
    """A BERT saved without its pooler (BertModel(add_pooling_layer=False), many exported sentence
    encoders) got a pooler drawn at random at every load, which the pooling here never reads but
    the weights' fingerprint does: fit worked, and every predict then refused the model as fit on
    another encoder. The missing pooler now starts at zero, transformers' load report stays off
    stderr, and a folder lacking other tensors (weights of another architecture) is refused."""
    from safetensors.torch import load_file, save_file

    weights = load_file(minilm_path() / "model.safetensors")
    no_pooler = model_folder(tmp_path / "a", drop=("model.safetensors",))
    save_file({k: v for k, v in weights.items() if not k.startswith("pooler.")}, no_pooler / "model.safetensors")
    data = tmp_path / "t.csv"
    data.write_text("text,label\n" + "".join(f"book a flight to city {i},travel\nwhat is my balance {i},bank\n"
                                             for i in range(6)))
    r = run("fit", "--data", data, "--encoder", no_pooler, "--out", tmp_path / "m", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "LOAD REPORT" not in r.stderr and "MISSING" not in r.stderr
    for cache_off in (False, True):  # the encoder built again, not only its cached features
        if cache_off:
            monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
        p = run("predict", tmp_path / "m", "--data", data, "--quiet")
        assert p.exit_code == 0, p.stderr
        assert [line.split(",")[1] for line in p.stdout.splitlines()[1:]] == ["travel", "bank"] * 6

    no_embeddings = model_folder(tmp_path / "b", drop=("model.safetensors",))
    save_file({k: v for k, v in weights.items() if "word_embeddings" not in k}, no_embeddings / "model.safetensors")
    assert_bad_input(run("fit", "--data", data, "--encoder", no_embeddings, "--out", tmp_path / "m2"),
                     "lack 1 of the model's tensors")


def test_building_an_encoder_leaves_transformers_logging_as_it_was():
    """A service that loads a model and also uses transformers (downloads with their progress
    bars) must find its settings as it left them; the bars stayed off after the first load."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.enable_progress_bar()
    try:
        create_encoder("minilm")
        assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == level
        hf_logging.disable_progress_bar()  # and one turned off stays off
        create_encoder("minilm")
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


def tiny_folder(path, config_class="BertConfig", model_class="BertModel", dtype=None, seed=0, **config):
    """A tiny random transformers text model saved in `path`, with MiniLM's tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(vocab_size=30522, hidden_size=32, num_hidden_layers=3,
                                                 num_attention_heads=2, intermediate_size=64, **config)
    model = getattr(transformers, model_class)(config)
    (model.to(dtype) if dtype else model).save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(path)
    return path


TEXTS = ["what is my balance", "play some jazz please", "book a flight to paris tomorrow morning " * 8]


@pytest.mark.parametrize("modules", ["cls pooling, Dense, Normalize", "max pooling, max_seq_length 16",
                                     "default prompt", "legacy configs: Dense, max_seq_length 8"])
def test_a_sentence_transformers_folder_gives_what_its_encode_gives(tmp_path, monkeypatch, modules):
    """Folders saved by the installed sentence-transformers (its one `pooling_mode` key) were all
    refused ("pooling none is not supported"); a Dense module was skipped (other features, of
    another size), a max_seq_length below 128 and a default prompt ("query: ") ignored. With
    layers=1 the features are now SentenceTransformer.encode's, normalised; the unbuilt encoder
    of a later predict reads them alike."""
    import torch
    from sentence_transformers import SentenceTransformer
    try:  # where sentence-transformers 6 keeps them (its `models` still works, with a warning)
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    import quickadapt.encoders
    from quickadapt.encoders import create_encoder_for_cache
    from quickadapt.encoders.cache import cache_key

    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quickadapt.encoders, "_PRISTINE", {})
    base = tiny_folder(tmp_path / "base")
    torch.manual_seed(1)
    pooling = "max" if modules.startswith("max") else "cls" if modules.startswith("cls") else "mean"
    parts = [models.Transformer(str(base), max_seq_length=16 if "16" in modules else None),
             models.Pooling(32, pooling_mode=pooling)]
    parts += [models.Dense(32, 16)] if "Dense" in modules else []
    parts += [models.Normalize()] if "Normalize" in modules else []
    prompts = {"prompts": {"query": "query: "}, "default_prompt_name": "query"} if "prompt" in modules else {}
    folder = tmp_path / "st"
    SentenceTransformer(modules=parts, device="cpu", **prompts).save(str(folder))
    if modules.startswith("legacy") or "prompt" in modules:  # as sentence-transformers before 5.2 wrote it
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    if modules.startswith("legacy"):  # and most published folders
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8, "do_lower_case": False}))
        dense = folder / "2_Dense" / "config.json"
        dense.write_text(json.dumps({k: v for k, v in json.loads(dense.read_text()).items() if "module_" not in k}))
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    encoder = create_encoder(str(folder), layers=1)
    assert np.allclose(embed(encoder, TEXTS, cache=False), expected, atol=1e-5)
    full = create_encoder(str(folder))  # the last three layers, the last through the Dense modules
    assert full.embed_dim == 32 * 2 + expected.shape[1]
    assert np.allclose(embed(full, TEXTS, cache=False)[:, -expected.shape[1]:], expected, atol=1e-5)
    unbuilt = create_encoder_for_cache(str(folder))
    assert "model" not in unbuilt._modules
    assert (cache_key(unbuilt), unbuilt.embed_dim, unbuilt.max_length) == (cache_key(full), full.embed_dim, full.max_length)
    assert np.array_equal(embed(unbuilt, TEXTS, cache=False), embed(full, TEXTS, cache=False))


def older_sentence_transformers_folder(root, seed=0):
    """A sentence-transformers folder as versions before 2.0 saved it: the model (safetensors
    here) and its sentence_bert_config.json in 0_Transformer/, the pooling in 1_Pooling/, and at
    the top modules.json and a config.json holding only the library's version."""
    tiny_folder(root / "0_Transformer", seed=seed)
    (root / "0_Transformer" / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
         "pooling_mode_max_tokens": True, "pooling_mode_mean_sqrt_len_tokens": False}))
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (root / "config.json").write_text(json.dumps({"__version__": "0.3.9"}))
    return root


def test_a_sentence_transformers_folder_of_the_older_layout_gives_what_its_encode_gives(tmp_path, monkeypatch):
    """modules.json pointing at 0_Transformer/ was refused ("holds no tokenizer": the config.json
    beside it is the library's, not the model's); its model, pooling and max_seq_length are read
    now, and the subfolder's weights key the embedding cache as the folder's own do."""
    import shutil

    from sentence_transformers import SentenceTransformer

    import quickadapt.encoders
    from quickadapt.encoders import create_encoder_for_cache
    from quickadapt.encoders.cache import cache_key

    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quickadapt.encoders, "_PRISTINE", {})
    folder = older_sentence_transformers_folder(tmp_path / "st")
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    encoder = create_encoder(str(folder), layers=1)
    assert encoder.max_length == 8 and encoder.pooling == "max_tokens"
    assert np.allclose(embed(encoder, TEXTS, cache=False), expected, atol=1e-5)
    full = create_encoder(str(folder))
    unbuilt = create_encoder_for_cache(str(folder))
    assert "model" not in unbuilt._modules and cache_key(unbuilt) == cache_key(full)
    other = tiny_folder(tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", folder / "0_Transformer" / "model.safetensors")
    again = create_encoder_for_cache(str(folder))  # not the memo of the weights replaced
    assert cache_key(again) == cache_key(create_encoder(str(folder))) != cache_key(full)
    # still safetensors only, through the command line too
    (folder / "0_Transformer" / "model.safetensors").unlink()
    (folder / "0_Transformer" / "pytorch_model.bin").write_bytes(b"a pickle")
    data = tmp_path / "t.csv"
    data.write_text("text,label\nhi,a\nhello,a\nbye,b\nciao,b\n")
    assert_bad_input(run("fit", "--data", data, "--encoder", folder, "--cv", 0, "--out", tmp_path / "m", "--quiet"),
                     "0_Transformer: no .safetensors weights (quickadapt never loads pickled weights)")


def test_a_folder_s_dense_module_is_frozen_with_the_top_block(tmp_path):
    """The Dense modules after the pooling were in no layer group: `freeze` with every group
    frozen (its note says "only the head trains") still trained them."""
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    from quickadapt.transfer import create_strategy

    base = tiny_folder(tmp_path / "base")
    folder = tmp_path / "st"
    SentenceTransformer(modules=[models.Transformer(str(base)), models.Pooling(32, pooling_mode="mean"),
                                 models.Dense(32, 16)], device="cpu").save(str(folder))
    encoder = create_encoder(str(folder))
    dense = {id(p) for p in encoder.dense.parameters()}
    assert dense and dense <= {id(p) for p in encoder.layer_groups()[-1].parameters()}
    create_strategy("freeze", k=len(encoder.layer_groups())).prepare(encoder)
    assert not any(p.requires_grad for p in encoder.dense.parameters())


def test_a_sentence_transformers_module_quickadapt_cannot_apply_is_refused(tmp_path):
    """A module beyond Transformer, Pooling, Dense and Normalize (a LayerNorm, a CNN) was skipped
    without a word: features other than the model's."""
    folder = tiny_folder(tmp_path / "m")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}]))
    with pytest.raises(BadInput, match="module LayerNorm is not one quickadapt applies"):
        create_encoder(str(folder))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_weights_embed_in_float32(tmp_path, dtype):
    """transformers kept a bf16 folder in bf16 (embedding ended in "Got unsupported ScalarType
    BFloat16") and an fp16 one in fp16 (coarse and slow on a CPU)."""
    import torch

    half = create_encoder(str(tiny_folder(tmp_path / "half", dtype=getattr(torch, dtype))), layers=1)
    assert {p.dtype for p in half.parameters()} == {torch.float32}
    same = create_encoder(str(tiny_folder(tmp_path / "full")), layers=1)  # the same draw, kept in float32
    same.load_state_dict(half.state_dict())
    assert np.allclose(embed(half, TEXTS, cache=False), embed(same, TEXTS, cache=False), atol=1e-6)


def test_the_default_max_length_fits_the_model_s_positions(tmp_path):
    """A model of 64 positions was refused with the default (128 tokens) the user never set; a
    RoBERTa-style one numbers positions from padding_idx + 1, so max_length = all its positions
    was allowed and overflowed them at the first long text (an index error)."""
    assert create_encoder(str(tiny_folder(tmp_path / "b", max_position_embeddings=64))).max_length == 64
    roberta = tiny_folder(tmp_path / "r", "RobertaConfig", "RobertaModel", max_position_embeddings=40, pad_token_id=0)
    encoder = create_encoder(str(roberta))
    assert encoder.max_length == encoder.position_limit == 39
    assert embed(encoder, TEXTS, cache=False).shape == (3, 96)
    with pytest.raises(BadInput, match="max_length counts tokens: from 2 to 39, got 40"):
        create_encoder(str(roberta), max_length=40)


def test_a_max_length_given_is_read_as_given_even_when_it_equals_the_default(tmp_path, monkeypatch):
    """`--set encoder.max_length=128` on a folder made for 16 tokens (its max_seq_length) was
    taken for the default, 128, and read 16 tokens without a word; the model stored 16. A length
    given is now read as given, up to the model's positions, past which it is refused in one line."""
    import quickadapt.encoders
    from quickadapt.encoders import create_encoder_for_cache

    monkeypatch.setenv("QUICKADAPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quickadapt.encoders, "_PRISTINE", {})
    folder = tiny_folder(tmp_path / "st")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    assert create_encoder(str(folder)).max_length == 16  # the default reads no further than the model was made to
    for given in (128, 128.0):  # an int, and a float as a grid or a config file may give it
        encoder = create_encoder(str(folder), max_length=given)
        assert encoder.max_length == encoder.settings["max_length"] == 128
        assert embed(encoder, TEXTS, cache=False).shape == (3, 96)
        assert create_encoder_for_cache(str(folder), max_length=given).max_length == 128  # unbuilt alike
    assert create_encoder(str(folder), max_length=16).max_length == 16
    short = tiny_folder(tmp_path / "short", max_position_embeddings=64)
    (tmp_path / "t.csv").write_text(INTENTS)
    assert_bad_input(run("fit", "--data", tmp_path / "t.csv", "--encoder", short, "--set", "encoder.max_length=128",
                         "--out", tmp_path / "m"), "max_length counts tokens: from 2 to 64, got 128")


def test_a_very_long_text_is_tokenized_only_as_far_as_it_is_read(monkeypatch):
    """The tokenizer read a text whole before cutting it at max_length (3.4 MB: 4.2 s, and a fit
    read it four times). Only a start of it that holds more than the tokens read is tokenized
    now, cut at a space after a word, where the tokenizer ends the word whatever follows: the
    same token ids, features and notes as the whole text gives."""
    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    words = ["what", "is", "my", "balance", "café", "Überweisung", "💳", "我的银行卡", "a,b", "x" * 40]
    rng = np.random.default_rng(0)
    long = "".join(w + sep for w, sep in zip(rng.choice(words, 40_000), rng.choice([" ", "  ", "\n", "\t "], 40_000)))
    texts = [long, "what is my balance", "x" * 40_000, " " * 20_000 + long[:5_000]]
    for max_length in (128, 32):
        encoder = create_encoder("minilm", max_length=max_length)
        read = encoder.prompted(texts)
        assert len(read[0]) < len(long) // 50 and read[1:3] == texts[1:3]  # no space to cut at: whole
        whole = encoder.tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                                  return_tensors="pt")
        assert np.array_equal(encoder.prepare_tensor(texts)[:, 0].numpy(), whole["input_ids"].numpy())
        alike = encoder.read_alike(texts)  # 40,000 x's are one word, read as one unknown token: not cut
        assert set(alike) == {0, 3} and alike[0] == b"tokens read:" + whole["input_ids"][0].numpy().tobytes()


def test_a_base64_attachment_without_spaces_is_tokenized_only_as_far_as_it_is_read(monkeypatch):
    """An e-mail with an attachment pasted in as base64 has no space to cut at for megabytes (one
    line, or MIME's lines of 76 broken by newlines only): it was tokenized whole, 10 s a reading of
    2 MB, three readings a predict. It is cut after a word as the tokenizer ends words (for MiniLM
    a punctuation mark is one), with the same token ids as the whole text."""
    import base64

    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    blob = base64.b64encode(np.random.default_rng(0).bytes(150_000)).decode()
    texts = ["refund please, invoice attached: " + blob, "invoice:\n" + "\n".join(blob[i:i + 76] for i in range(0, len(blob), 76)),
             blob + " refund please"]
    for max_length in (128, 32):
        encoder = create_encoder("minilm", max_length=max_length)
        assert all(len(read) < 50 * max_length for read in encoder.prompted(texts))  # not 200,000 characters
        whole = encoder.tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                                  return_tensors="pt")
        assert np.array_equal(encoder.prepare_tensor(texts)[:, 0].numpy(), whole["input_ids"].numpy())


INTENTS = ("text,label\nmy card was declined,card\nwhy was my card refused,card\ncard got rejected again,card\n"
           "will it rain today,weather\nis it sunny in paris,weather\nhow hot will it be,weather\n")


def fit_in_project(project, *extra):
    """A project as a user keeps one: project/encoder (a Hugging Face folder) and project/models/m
    fit on it with `--encoder ./encoder`-style paths; returns the model folder."""
    project.mkdir()
    tiny_folder(project / "encoder")
    (project / "t.csv").write_text(INTENTS)
    r = run("fit", "--data", project / "t.csv", "--encoder", project / "encoder", "--cv", 0,
            "--out", project / "models" / "m", "--quiet", *extra)
    assert r.exit_code == 0, r.stderr
    return project / "models" / "m"


@pytest.mark.parametrize("extra", [(), ("--strategy", "finetune", "--set", "epochs=1")])
def test_a_model_moved_with_its_encoder_folder_still_loads(tmp_path, monkeypatch, extra):
    """The manifest named a Hugging Face encoder folder by its absolute path only: a project
    copied to a server, or renamed, left every model in it refusing to load ('encoder folder
    /old/path/encoder does not exist'), its pretrained weights and its fine-tuned ones alike
    (the folder still holds the config and tokenizer). The manifest now also keeps the folder's
    path from the model folder (`encoder.relative`), tried when the absolute one is gone."""
    import shutil

    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    model = fit_in_project(tmp_path / "laptop", *extra)
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["encoder"]["relative"] == "../../encoder"
    before = run("predict", model, "--data", tmp_path / "laptop" / "t.csv")
    assert before.exit_code == 0, before.stderr
    shutil.move(tmp_path / "laptop", tmp_path / "server")
    after = run("predict", tmp_path / "server" / "models" / "m", "--data", tmp_path / "server" / "t.csv")
    assert after.exit_code == 0, after.stderr
    assert after.stdout == before.stdout


def test_a_model_whose_encoder_folder_moved_alone_says_how_to_point_at_it(tmp_path, monkeypatch):
    """When the encoder folder is at neither path, predict said only that the folder does not
    exist: nothing about which model needed it or how to go on. It now names the model and both
    places looked at, and QUICKADAPT_ENCODER_FOLDER says where the folder is now; a folder of
    other weights there, of the same size or another, is still refused."""
    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    model = fit_in_project(tmp_path / "p")
    data = tmp_path / "p" / "t.csv"
    before = run("predict", model, "--data", data)
    (tmp_path / "p" / "encoder").rename(tmp_path / "shared-encoder")
    assert_bad_input(run("predict", model, "--data", data), "set QUICKADAPT_ENCODER_FOLDER to where it is now")
    monkeypatch.setenv("QUICKADAPT_ENCODER_FOLDER", str(tmp_path / "shared-encoder"))
    after = run("predict", model, "--data", data)
    assert after.exit_code == 0, after.stderr
    assert after.stdout == before.stdout
    monkeypatch.setenv("QUICKADAPT_ENCODER_FOLDER", str(tiny_folder(tmp_path / "other", seed=1)))
    assert_bad_input(run("predict", model, "--data", data), "is not the one the model was fit on")
    monkeypatch.setenv("QUICKADAPT_ENCODER_FOLDER", str(model_folder(tmp_path / "minilm")))
    assert_bad_input(run("predict", model, "--data", data), "is not the one the model was fit on")
    monkeypatch.setenv("QUICKADAPT_ENCODER_FOLDER", str(tmp_path / "nowhere"))
    assert_bad_input(run("predict", model, "--data", data), "QUICKADAPT_ENCODER_FOLDER")


def test_a_model_loaded_in_python_after_moving_with_its_encoder_folder_refits_from_it(tmp_path, monkeypatch):
    """FewShotClassifier.load named the encoder by the manifest's old absolute path: once the
    project had moved, load failed ('not a Hugging Face model folder') where predict worked.
    It now names the folder loading found, so it predicts and refits from there."""
    import shutil

    from sklearn.base import clone

    from quickadapt.classifier import FewShotClassifier

    monkeypatch.setenv("QUICKADAPT_NO_CACHE", "1")
    fit_in_project(tmp_path / "laptop")
    shutil.move(tmp_path / "laptop", tmp_path / "server")
    clf = FewShotClassifier.load(tmp_path / "server" / "models" / "m")
    assert clf.get_params()["encoder"] == str((tmp_path / "server" / "encoder").resolve())
    texts, labels = zip(*(line.rsplit(",", 1) for line in INTENTS.splitlines()[1:]))
    new = ["my card was refused", "will it rain tomorrow"]
    assert list(clone(clf).fit(list(texts), list(labels)).predict(new)) == list(clf.predict(new))


def test_too_many_layers_for_the_model_says_how_to_set_them(tmp_path):
    """A 2-layer folder failed on the default layers=3, which the user never set, without saying
    which setting that is or how to change it."""
    data = tmp_path / "t.csv"
    data.write_text(INTENTS)
    assert_bad_input(run("fit", "--data", data, "--set", "encoder.layers=9", "--out", tmp_path / "m"),
                     "between 1 and 6 (the model's hidden layers), got 9; set it with --set encoder.layers=N")
    with pytest.raises(BadInput, match=r'encoder_params=\{"layers": N\}'):
        create_encoder("minilm", layers=9)


def test_a_config_that_does_not_fit_its_weights_is_refused_before_the_model_is_built(tmp_path):
    """transformers built each tensor at the config's size before finding the weights another
    shape: a vocab_size edited to 3*10^7 took 4 GB and 37 s, then a traceback (a RuntimeError);
    larger, the allocation itself failed with one. The shapes are now compared first, on the meta device."""
    folder = tiny_folder(tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 10**13
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match=r"model.safetensors: embeddings.word_embeddings.weight has shape \[30522, 32\], "
                                       r"but .*config.json makes it \[10000000000000, 32\]"):
        create_encoder(str(folder), layers=1)


def test_a_tokenizer_file_the_tokenizers_library_cannot_read_is_named_in_one_line(tmp_path):
    """An edited tokenizer.json (a model type tokenizers does not know) raised tokenizers' bare
    Exception through transformers: a traceback, exit code 1 (found by the untrusted pass)."""
    folder = tiny_folder(tmp_path / "bert")
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["type"] = "Nonsense"
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    data = tmp_path / "t.csv"
    data.write_text(INTENTS)
    r = run("fit", "--data", data, "--encoder", folder, "--set", "encoder.layers=1", "--out", tmp_path / "m", "--quiet")
    assert_bad_input(r, "tokenizer.json: a tokenizer file the tokenizers library cannot read (data did not match")
    assert not (tmp_path / "m").exists()
