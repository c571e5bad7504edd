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


def clinc_csv(path, domains, intents=3, per_class=6, group_column="group"):
    """Real CLINC150 utterances of the first `intents` intents of each domain, as a user's csv of
    text,label and (unless `group_column` is None) their domain under that column name."""
    import csv

    import numpy as np

    from quickadapt.data import load_dataset

    data = load_dataset("builtin:clinc150-train")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"] + ([group_column] if group_column else []))
        for domain in domains:
            for intent in sorted(set(data.labels[data.groups == domain].tolist()))[:intents]:
                for i in np.flatnonzero(data.labels == intent)[:per_class]:
                    w.writerow([data.inputs[i], intent] + ([domain] if group_column else []))
    return path


DOMAINS = ("banking", "home", "travel", "work", "utility")


def test_a_folder_of_txt_files_is_told_where_text_goes(tmp_path):
    root = tmp_path / "txtroot"
    for cls in ("money/pay_bill", "money/bill_due", "travel/plug_type"):
        (root / cls).mkdir(parents=True)
        (root / cls / "1.txt").write_text("pay my bill")
    hint = "the class folders hold .txt files, not images; text data goes in one .csv or .jsonl file: with columns text,label"
    assert_bad_input(run("meta-train", "--data", root, "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "m", "--quiet"), hint)
    assert_bad_input(run("episodes", "conv4", "--data", root, "--ways", 2, "--shots", 1, "--quiet"), hint)


def test_a_group_column_of_a_text_file_splits_its_classes_by_group(tmp_path):
    from quickadapt.data.episodes import default_split

    path = clinc_csv(tmp_path / "own.csv", DOMAINS, group_column="Domain")  # not `group`: no groups
    assert load_episode_data(str(path)).groups is None
    path = clinc_csv(tmp_path / "own.csv", DOMAINS, group_column="Group")  # any capitalisation, as text and label
    data = load_episode_data(str(path))
    assert sorted(set(data.groups.tolist())) == sorted(DOMAINS)
    split = default_split(data, seed=0)
    assert split.by == "group" and [len(split.groups[p]) for p in ("train", "val", "test")] == [3, 1, 1]
    domain_of = dict(zip(data.labels.tolist(), data.groups.tolist()))
    for part in ("train", "val", "test"):  # no domain in two parts
        assert {domain_of[c] for c in split.part(part)} == set(split.groups[part])
    out = tmp_path / "m"
    r = run("meta-train", "--data", path, "--method", "protonet", "--ways", 3, "--shots", 1, "--queries", 2,
            "--steps", 1, "--meta-batch", 1, "--set", "validate_every=0", "--out", out, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "manifest.json").read_text())["meta"]["class_split"] == split.to_dict()
    # the same rows as jsonl read the same groups
    jsonl = tmp_path / "own.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": y, "group": g}) + "\n"
                             for t, y, g in zip(data.inputs, data.labels, data.groups)))
    assert load_episode_data(str(jsonl)).groups.tolist() == data.groups.tolist()


def test_bad_group_cells_are_refused_by_line_and_class(tmp_path):
    rows = ["text,label,group", "pay my bill,pay_bill,money", "when is my bill due,bill_due,money",
            "what plug do i need,plug_type,travel"]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows + ["settle the bill,pay_bill,"]) + "\n")
    with pytest.raises(BadInput, match=r"line 5 has no group; give every row a group \(or drop the `group` column\)"):
        load_episode_data(str(bad))
    bad.write_text("\n".join(rows + ["settle the bill,pay_bill,travel"]) + "\n")
    assert_bad_input(run("meta-train", "--data", bad, "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "m", "--quiet"),
                     "class 'pay_bill' is in group 'money' (line 2) and in group 'travel' (line 5); a class belongs "
                     "to one group")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "pay my bill", "label": "pay_bill", "group": "money"}\n'
                     '{"text": "bill due", "label": "bill_due"}\n')
    with pytest.raises(BadInput, match="line 2 has no group; give every row a group \\(or drop the `group` key\\)"):
        load_episode_data(str(jsonl))


def test_other_commands_note_the_group_column_they_ignore(tmp_path, capsys):
    from quickadapt.data import load_dataset

    path = tmp_path / "g.csv"
    # a blank group and a class in two groups do not matter where groups are not read; a group
    # named `oos` is a user's group like any other (only CLINC150's out-of-scope rows are dropped)
    path.write_text("text,label,group\npay my bill,pay_bill,money\nsettle it,pay_bill,\nplug,plug_type,oos\n"
                    "plug type,plug_type,oos\n")
    data = load_dataset(str(path))
    assert data.groups is None and data.labels.tolist() == ["pay_bill", "pay_bill", "plug_type", "plug_type"]
    assert "the `group` column is read only by meta-train and episodes (to split classes by group); ignored here" \
        in capsys.readouterr().err
    load_dataset(str(path), labels="ignore")  # predict: nothing is grouped there
    assert "group" not in capsys.readouterr().err
    path.write_text("text,label,group\npay my bill,pay_bill,money\nplug,plug_type,oos\n")
    assert load_episode_data(str(path)).groups.tolist() == ["money", "oos"]


def test_a_plain_encoder_names_its_classes_and_borrows_a_models_split(tmp_path):
    """A baseline and a meta-trained model compare only on the same test classes: episodes names
    them, and --split-from scores a plain encoder on the split a model stored."""
    from quickadapt.data.episodes import default_split

    path = clinc_csv(tmp_path / "own.csv", ("banking", "home"), intents=6, group_column=None)
    data = load_episode_data(str(path))
    out = tmp_path / "m"
    r = run("meta-train", "--data", path, "--method", "protonet", "--ways", 3, "--shots", 1, "--queries", 2,
            "--steps", 1, "--meta-batch", 1, "--set", "validate_every=0", "--seed", 1, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    stored = json.loads((out / "manifest.json").read_text())["meta"]["class_split"]
    assert stored["by"] == "class" and stored["test"] == default_split(data, seed=1).test
    seed0 = default_split(data, seed=0).test
    assert seed0 != stored["test"]  # the episodes' seed alone would test other classes
    ep = ("--data", path, "--ways", 2, "--shots", 1, "--queries", 2, "--episodes", 2)
    r = run("episodes", "minilm", *ep, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    plain = json.loads(r.stdout)
    assert plain["class_names"] == seed0 and plain["split_source"] == "the default split (seed 0)"
    r = run("episodes", "minilm", *ep, "--split-from", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[1] == f"test classes from the class split stored with {out}: {', '.join(stored['test'])}"
    r = run("episodes", out, *ep, "--json", "--quiet")
    assert json.loads(r.stdout)["class_names"] == stored["test"]
    assert_bad_input(run("episodes", "minilm", *ep, "--split-from", tmp_path, "--quiet"),
                     f"--split-from {tmp_path}: stores no class split")
