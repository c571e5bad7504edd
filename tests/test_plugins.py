"""A user's own methods (docs/python.md, "Adding your own method"): the page's example module is
the user's, registered as the page says, fit, saved and loaded in this process and in others."""
import json
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cli_helpers import assert_bad_input, run
from quickadapt import FewShotClassifier
from quickadapt.encoders import ENCODERS, Encoder, create_encoder
from quickadapt.encoders.mlp import create_mlp
from quickadapt.heads import HEADS
from quickadapt.transfer import STRATEGIES, Strategy
from quickadapt.transfer.probe import Probe

ROOT = Path(__file__).resolve().parent.parent


def example_blocks():
    """The Python blocks of the page's section: the module `my_methods.py`, then its use."""
    page = (ROOT / "docs" / "python.md").read_text()
    section = page[page.index("## Adding your own method"):]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def python(*args, cwd, path=()):
    """A new Python process (nothing registered in it but what it imports) with quickadapt from src/."""
    env = {**__import__("os").environ, "PYTHONPATH": ":".join([str(ROOT / "src"), *map(str, path)]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def own_registries(monkeypatch):
    """Registrations made by a test are gone after it (the others see the built-in names only)."""
    from quickadapt.meta import META

    for registry in (ENCODERS, STRATEGIES, HEADS, META):
        monkeypatch.setattr(registry, "_items", dict(registry._items))


@pytest.fixture
def my_methods(tmp_path, monkeypatch, own_registries):
    """The page's module, imported as a user's own."""
    (tmp_path / "my_methods.py").write_text(example_blocks()[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_methods

    yield my_methods
    sys.modules.pop("my_methods", None)


def test_the_documented_example_runs_and_its_model_names_what_to_import(tmp_path, clinc_small):
    module, use = example_blocks()
    (tmp_path / "my_methods.py").write_text(module)
    (tmp_path / "use.py").write_text(use)
    proc = python("use.py", cwd=tmp_path, path=[tmp_path])
    assert proc.returncode == 0, proc.stderr
    # 5 intents, 8 examples each: chance is 0.2
    assert float(re.search(r"test accuracy ([\d.]+)", proc.stdout).group(1)) > 0.6, proc.stdout
    manifest = json.loads((tmp_path / "trigram-model" / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "trigrams" and manifest["plugins"] == ["my_methods"]
    assert manifest["encoder"]["weights"] == "stored"  # random weights: never rebuilt from the module
    # here, as in any process that did not import my_methods: one line naming it, exit 2
    result = run("predict", tmp_path / "trigram-model", "--data", clinc_small["test"])
    assert_bad_input(result, "its encoder 'trigrams' is not registered in this process; import my_methods")


def test_own_strategy_and_encoder_learn_and_round_trip_through_the_lower_level_api(my_methods, tmp_path, clinc_small):
    from quickadapt.adapt import adapt
    from quickadapt.artifact import load_model, save_model
    from quickadapt.data import load_dataset

    model = adapt(clinc_small["train"], encoder="trigrams", strategy="ridge", strategy_params={"alpha": 0.5},
                  progress=False)
    test = load_dataset(clinc_small["test"])
    labels, _ = model.predict(test.inputs)
    assert np.mean(np.asarray(labels) == test.labels) > 0.5  # 6 intents, 6 examples each: chance is 1/6
    folder = save_model(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.safetensors"]
    loaded = load_model(folder)
    assert loaded.strategy == "ridge" and loaded.strategy_params == {"alpha": 0.5}
    np.testing.assert_array_equal(loaded.predict_proba(test.inputs), model.predict_proba(test.inputs))


def test_a_head_not_registered_where_the_model_loads_names_the_module_to_import(tmp_path, clinc_small):
    assert run("fit", "--data", clinc_small["train"], "--out", tmp_path / "m", "--cv", "0").exit_code == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["tasks"]["main"]["head"]["kind"] = "their-head"
    manifest["plugins"] = ["their_heads", "\x1b[31mred"]  # only module names are shown
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    result = run("predict", tmp_path / "m", "--data", clinc_small["test"])
    assert_bad_input(result, "task 'main''s head 'their-head' is not registered in this process; import their_heads "
                             "(which registered it")


def test_an_installed_plugin_serves_the_command_line_and_a_broken_one_is_skipped(tmp_path, clinc_small):
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_methods.py").write_text(example_blocks()[0])
    for dist, entry in (("my_methods", "mine = my_methods"), ("broken", "broken = no_such_module")):
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[quickadapt.plugins]\n{entry}\n")
    fit = python("-m", "quickadapt", "fit", "--data", clinc_small["train"], "--out", "m", "--encoder", "trigrams",
                 "--strategy", "ridge", "--cv", "0", cwd=tmp_path, path=[site])
    assert fit.returncode == 0, fit.stderr
    assert "note: quickadapt plugin 'broken' (no_such_module) failed to import and is skipped" in fit.stderr
    predict = python("-m", "quickadapt", "predict", "m", "--data", clinc_small["test"], "--out", "p.csv",
                     cwd=tmp_path, path=[site])
    assert predict.returncode == 0, predict.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 6 * 30
    # and `quickadapt encoders` lists the plugin's encoder beside the built-in ones
    listing = python("-m", "quickadapt", "encoders", "--json", cwd=tmp_path, path=[site])
    assert listing.returncode == 0, listing.stderr
    listed = {e["name"]: e for e in json.loads(listing.stdout)["encoders"]}
    assert listed["trigrams"]["modality"] == "text" and listed["trigrams"]["plugin"] == "my_methods"
    assert "minilm" in listed and "plugin" not in listed["minilm"]
    human = python("-m", "quickadapt", "encoders", cwd=tmp_path, path=[site]).stdout
    assert any(line.startswith("trigrams") and line.endswith("(plugin my_methods)") for line in human.splitlines())


def test_a_name_taken_is_refused_and_the_same_definition_again_replaces_it(own_registries):
    class Mine(Strategy):
        name = "probe"

    with pytest.raises(ValueError, match=r"already a strategy called 'probe' \(quickadapt.transfer.probe.Probe\)"):
        STRATEGIES.register("probe")(Mine)
    assert STRATEGIES.get("probe") is Probe
    STRATEGIES.register("probe")(Probe)  # a notebook cell run twice, a module reloaded

    class Unnamed(Strategy):
        pass

    with pytest.raises(ValueError, match="says its name is '' but is registered as 'ridge'"):
        STRATEGIES.register("ridge")(Unnamed)
    assert "ridge" not in STRATEGIES


def test_an_encoder_named_otherwise_than_registered_is_refused(own_registries):
    # the model would say `mlp` and load as the built-in mlp, whatever this one computes
    ENCODERS.register("my-mlp")(lambda pretrained=False, **settings: create_mlp(**settings))
    with pytest.raises(ValueError, match="encoder 'my-mlp' builds a MLPEncoder whose name is 'mlp'; set its class"):
        create_encoder("my-mlp", in_dim=4)


class FixedProjection(Encoder):
    """Feature rows through weights that every build reads alike, as a wrapper of a pretrained model's."""
    name = "fixed-projection"
    modality = "features"

    def __init__(self, width: int = 64, dim: int = 32):  # not `in_dim`, as the mlp calls it
        super().__init__()
        self.settings = {"width": width, "dim": dim}
        self.embed_dim = dim
        self.proj = nn.Linear(width, dim)

    def prepare(self, rows):
        return torch.as_tensor(np.asarray(rows, dtype=np.float32))

    def forward(self, x):
        return torch.tanh(self.proj(x / 16))


PRETRAINED_SEED = {"seed": 0}  # which weights "the package" holds


def create_fixed_projection(pretrained: bool = False, **settings) -> FixedProjection:
    encoder = FixedProjection(**settings)
    if pretrained:
        torch.manual_seed(PRETRAINED_SEED["seed"])
        encoder.proj.reset_parameters()
        encoder.is_pretrained = True  # read weights of its own: rebuilt at loading, not stored
    return encoder


def test_a_user_encoder_with_weights_of_its_own_is_rebuilt_not_stored_and_checked(own_registries, tmp_path,
                                                                                   monkeypatch):
    from quickadapt.adapt import adapt
    from quickadapt.artifact import load_model, save_model
    from quickadapt.data import Dataset, load_dataset

    ENCODERS.register("fixed-projection")(create_fixed_projection)
    digits = load_dataset("builtin:digits-features")
    train = np.concatenate([np.flatnonzero(digits.labels == c)[:5] for c in np.unique(digits.labels)])
    test = np.setdiff1d(np.arange(len(digits)), train)
    rows = np.asarray(digits.inputs)
    model = adapt(Dataset("features", rows[train], digits.labels[train]), encoder="fixed-projection", cv=0,
                  progress=False)
    assert np.mean(np.asarray(model.predict(rows[test])[0]) == digits.labels[test]) > 0.5  # 10 digits
    folder = save_model(model, tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encoder"]["weights"] == "pretrained"
    assert not [k for k in load_file(folder / "model.safetensors") if k.startswith("encoder.")]
    np.testing.assert_array_equal(load_model(folder).predict_proba(rows[test]), model.predict_proba(rows[test]))
    # FewShotClassifier alike, its width known from the data it was fit on, not from a setting
    clf = FewShotClassifier(encoder="fixed-projection").fit(rows[train], digits.labels[train])
    clf.save(tmp_path / "clf")
    np.testing.assert_array_equal(FewShotClassifier.load(tmp_path / "clf").predict_proba(rows[test]),
                                  clf.predict_proba(rows[test]))
    monkeypatch.setitem(PRETRAINED_SEED, "seed", 1)  # the package now builds other weights
    with pytest.raises(ValueError, match="its encoder fixed-projection is not the one the model was fit on"):
        load_model(folder)


THEIR_META = """
import torch.nn.functional as F

from quickadapt.meta import META
from quickadapt.meta.protonet import ProtoNet, prototypes


@META.register("cosproto")
class CosProto(ProtoNet):
    name = "cosproto"

    def _logits(self, batch, path):
        n_way = int(batch.support_y.max()) + 1
        fs, fq = self.features(batch.support_x), self.features(batch.query_x)
        protos = F.normalize(prototypes(fs, batch.support_y, n_way), dim=-1)
        return 10 * F.normalize(fq, dim=-1) @ protos.transpose(-1, -2)
"""


def test_a_meta_trained_model_of_an_own_method_names_it_where_it_is_not_registered(own_registries, tmp_path,
                                                                                   monkeypatch):
    from quickadapt.meta import META
    from quickadapt.meta.run import run_meta_train

    (tmp_path / "their_meta.py").write_text(THEIR_META)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "their_meta", raising=False)
    import their_meta  # noqa: F401

    run_meta_train("builtin:omniglot", method="cosproto", n_way=3, k_shot=1, n_query=2, meta_batch=2, steps=2,
                   encoder_settings={"channels": 8}, out=tmp_path / "meta", progress=False)
    assert json.loads((tmp_path / "meta" / "manifest.json").read_text())["plugins"] == ["their_meta"]
    args = ("episodes", tmp_path / "meta", "--data", "builtin:omniglot", "--ways", 3, "--shots", 1, "--episodes", 2)
    assert run(*args).exit_code == 0
    del META._items["cosproto"]  # a process that did not import their_meta
    assert_bad_input(run(*args), "its meta-learning method 'cosproto' is not registered in this process; "
                                 "import their_meta")
    sys.modules.pop("their_meta", None)
