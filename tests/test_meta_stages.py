"""Pretrain, meta-train, fine-tune on real Omniglot: supervised pretraining gives conv4 a far
better start than its random init, test-time fine-tuning runs per episode without touching the
stored model or leaking between episodes, and bad settings exit 2 with one line."""
import hashlib
import json

import pytest
import torch

from cli_helpers import assert_bad_input, run
from quickadapt.data.episodes import EpisodeSampler, default_split, load_episode_data
from quickadapt.meta.finetune import EpisodeFinetuner, FinetuneConfig
from quickadapt.meta.io import load_meta_model
from quickadapt.meta.run import run_episodes, run_meta_train

VAL = dict(n_way=5, k_shot=1, n_query=5, split="val", progress=False)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """conv4 (32 channels) pretrained for 300 steps on the 161 meta-training characters, then 2 meta-steps."""
    out = tmp_path_factory.mktemp("stages") / "model"
    r = run_meta_train("builtin:omniglot", method="protonet", n_way=5, k_shot=1, n_query=2, out=out, steps=2,
                       meta_batch=2, rotations=False, encoder_settings={"channels": 32}, progress=False,
                       settings={"pretrain_steps": 300, "pretrain_lr": 3e-3, "validate_every": 0})
    return out, r


def test_pretraining_beats_a_random_start(pretrained):
    out, r = pretrained
    assert r["start"]["encoder"] == "conv4" and r["start"]["weights"] == "random init"
    assert r["start"]["pretrain"]["steps"] == 300 and r["start"]["pretrain"]["classes"] == 161
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["meta"]["start"]["pretrain"]["steps"] == 300
    assert json.loads((out / "pretrained" / "manifest.json").read_text())["pretrain"]["steps"] == 300
    # the pretrained body alone (no meta-training) against conv4 from its random init, both as
    # prototypes over their features on the validation alphabet's characters
    pre = run_episodes(out / "pretrained", "builtin:omniglot", episodes=60, **VAL)
    rand = run_episodes("conv4", "builtin:omniglot", episodes=60, **VAL)
    assert pre["method"] is None and pre["adapt"] == "prototypes" and pre["classes"] == 22
    assert pre["accuracy"] > rand["accuracy"] + 0.15, (pre, rand)  # measured: ~0.87 against ~0.49


def test_finetune_runs_per_episode_and_leaves_the_model_alone(pretrained):
    out, _ = pretrained
    weights = out / "model.safetensors"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    r = run_episodes(out, "builtin:omniglot", episodes=16, adapt="finetune", settings={"finetune_steps": 5}, **VAL)
    assert r["adapt"] == "finetune" and r["accuracy"] > 0.4  # chance is 20%
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before

    learner, _ = load_meta_model(out)
    start = {k: v.clone() for k, v in learner.encoder.state_dict().items()}
    data = load_episode_data("builtin:omniglot")
    sampler = EpisodeSampler(data, 5, 1, 3, seed=1, classes=default_split(data).val,
                             prepare=learner.encoder.prepare_tensor)
    ep, other = sampler.sample(), sampler.sample()
    ft = EpisodeFinetuner(learner.encoder, FinetuneConfig(finetune_steps=5), seed=0)

    def logits(episode):
        torch.manual_seed(0)
        ft.generator.manual_seed(0)
        return ft.task_logits(episode)

    first = logits(ep)
    assert any(not torch.equal(v, ft.snapshot[k]) for k, v in ft.work.state_dict().items())  # it did train
    logits(other)
    assert torch.equal(logits(ep), first)  # every episode starts again from the model's weights
    assert all(torch.equal(v, start[k]) for k, v in learner.encoder.state_dict().items())


def test_cli_finetune_and_bad_settings(pretrained, tmp_path):
    out, _ = pretrained
    r = run("episodes", out, "--data", "builtin:omniglot", "--ways", 5, "--shots", 1, "--episodes", 4, "--adapt",
            "finetune", "--set", "finetune_steps=2", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["adapt"] == "finetune"
    base = ("episodes", out, "--data", "builtin:omniglot", "--ways", 5, "--shots", 1, "--episodes", 2, "--quiet")
    assert_bad_input(run(*base, "--adapt", "tune"), "--adapt must be one of method, prototypes, finetune")
    assert_bad_input(run(*base, "--adapt", "finetune", "--set", "finetune_steps=0"), "'finetune_steps' for --adapt finetune must be at least 1")
    assert_bad_input(run(*base, "--set", "finetune_steps=3"), "apply to --adapt finetune only")
    assert_bad_input(run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 5, "--shots", 1,
                         "--out", tmp_path / "x", "--set", "pretrain_steps=-1", "--quiet"), "'pretrain_steps' for meta-train must be at least 0")


def test_views_average_each_image_on_its_own(pretrained, tmp_path):
    """views=N: each image's features are the mean over it and N random affine views, computed
    per image (changing one input leaves the others' features alone), seeded, off at 0."""
    from quickadapt.meta.views import embed_views

    out, _ = pretrained
    plain = run_episodes(out, "builtin:omniglot", episodes=40, **VAL)
    assert run_episodes(out, "builtin:omniglot", episodes=40, settings={"views": 0}, **VAL)["accuracy"] == plain["accuracy"]
    four = run_episodes(out, "builtin:omniglot", episodes=40, settings={"views": 4}, **VAL)
    assert four["views"] == 4 and four["accuracy"] > 0.5  # chance is 20%; the pretrained body ~0.87
    assert run_episodes(out, "builtin:omniglot", episodes=40, settings={"views": 4}, **VAL) == four

    learner, _ = load_meta_model(out)
    data = load_episode_data("builtin:omniglot")
    a, b, c = (data.inputs[i] for i in (0, 100, 200))
    with_b = embed_views(learner.encoder, [a, b], 3, seed=5, device="cpu")
    with_c = embed_views(learner.encoder, [a, c], 3, seed=5, device="cpu")
    assert torch.allclose(with_b[0], with_c[0]) and not torch.allclose(with_b[1], with_c[1])
    own = embed_views(learner.encoder, [a, b], 0, seed=5, device="cpu")
    with torch.no_grad():
        assert torch.allclose(own, learner.encoder.eval()(learner.encoder.prepare_tensor([a, b])))
    assert not torch.allclose(own[0], with_b[0])  # the views did change the features

    base = ("episodes", out, "--data", "builtin:omniglot", "--ways", 5, "--shots", 1, "--episodes", 2, "--quiet")
    assert_bad_input(run(*base, "--set", "views=-1"), "views must be a whole number >= 0")
    maml = tmp_path / "maml"
    run_meta_train("builtin:omniglot", method="maml", n_way=2, k_shot=1, n_query=1, out=maml, steps=1, meta_batch=1,
                   rotations=False, encoder_settings={"channels": 8}, progress=False, settings={"validate_every": 0})
    assert_bad_input(run("episodes", maml, *base[2:], "--set", "views=2"), "views apply to predictions from fixed features")
    assert_bad_input(run("episodes", "minilm", "--data", "builtin:clinc150-train", "--ways", 5, "--shots", 1,
                         "--episodes", 2, "--set", "views=2", "--quiet"), "views change images; minilm reads text")


def test_fixed_feature_episodes_match_the_per_episode_path():
    """Embedding every held-out example once gives the same episodes and the same accuracy as
    running the body on each episode (prototypes, protonet, matchingnet never change it)."""
    from quickadapt.data.episodes import EpisodeSampler, default_split, load_episode_data
    from quickadapt.evaluate.episodes import episode_accuracy
    from quickadapt.meta.io import load_episode_learner
    from quickadapt.meta.run import fixed_feature_episodes
    from quickadapt.train import seed_everything

    seed_everything(0)
    learner, manifest = load_episode_learner("conv4")
    data = load_episode_data("builtin:omniglot")
    present = sorted(default_split(data).test)
    per_episode = EpisodeSampler(data, 5, 1, 3, 7, classes=present, prepare=learner.encoder.prepare_tensor)
    slow = episode_accuracy(learner.eval().predict, per_episode, 12)
    sampler, predict = fixed_feature_episodes(learner, manifest, data, present, "method", n_way=5, k_shot=1,
                                              n_query=3, seed=7, device="cpu")
    fast = episode_accuracy(predict, sampler, 12)
    assert fast["accuracy"] == pytest.approx(slow["accuracy"], abs=1e-6) and fast["episodes"] == 12


def test_views_after_finetuning(pretrained):
    """--adapt finetune with views=N: the fine-tuned body's features are averaged over views, seeded."""
    out, _ = pretrained
    settings = {"finetune_steps": 2, "views": 3}
    r = run_episodes(out, "builtin:omniglot", episodes=12, adapt="finetune", settings=settings, **VAL)
    assert r["adapt"] == "finetune" and r["views"] == 3 and r["accuracy"] > 0.4  # chance is 20%
    assert run_episodes(out, "builtin:omniglot", episodes=12, adapt="finetune", settings=settings, **VAL) == r

    learner, _ = load_meta_model(out)
    data = load_episode_data("builtin:omniglot")
    ep = EpisodeSampler(data, 5, 1, 3, seed=1, classes=default_split(data).val,
                        prepare=learner.encoder.prepare_tensor).sample()
    cfg = FinetuneConfig(finetune_steps=2)

    def logits(views):
        torch.manual_seed(0)
        return EpisodeFinetuner(learner.encoder, cfg, seed=0, views=views).task_logits(ep)

    assert torch.equal(logits(3), logits(3)) and not torch.allclose(logits(3), logits(0))


def test_the_cli_summary_reports_pretraining(tmp_path):
    args = ("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 3, "--shots", 1,
            "--queries", 2, "--steps", 2, "--meta-batch", 2, "--set", "encoder.channels=8", "--set", "validate_every=0")
    r = run(*args, "--set", "pretrain_steps=5", "--out", tmp_path / "pre", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("pretrained 5 steps on ") and "then meta-trained protonet 3-way 1-shot for 2 steps" in r.stdout
    assert str(tmp_path / "pre" / "pretrained") in r.stdout
    r = run(*args, "--out", tmp_path / "plain", "--quiet")
    assert r.exit_code == 0 and r.stdout.startswith("meta-trained protonet")
