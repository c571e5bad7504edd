"""Every meta-learner on small real Omniglot: batched and per-task loop agree on loss and
gradients, and a short meta-training beats chance clearly on held-out alphabets."""
import pytest
import torch

from quickadapt.data import load_dataset
from quickadapt.data.episodes import EpisodeSampler, default_split
from quickadapt.encoders import create_encoder
from quickadapt.meta import create_meta, list_methods
from quickadapt.meta.train import MetaTrainConfig, meta_train
from quickadapt.progress import set_quiet

METHODS = ["protonet", "matchingnet", "maml", "fomaml", "anil", "metasgd", "reptile"]
# meta-steps (meta-batch 4, 5-way 1-shot, conv4 with 16 channels) enough to be clearly above chance
STEPS = {"protonet": 40, "matchingnet": 40, "anil": 60, "maml": 100, "fomaml": 160, "metasgd": 100, "reptile": 120}
# first-order MAML learns slowest from so few steps: three smaller inner steps. (With two and a
# larger outer rate, 3e-3, its result swung between 22 and 39 % with the summation order of the
# gradients, i.e. between the loop, threads and batched paths; this setting gave 43-45 % on all three)
SETTINGS = {"fomaml": {"inner_steps": 3, "inner_lr": 0.2}}


@pytest.fixture(scope="module")
def omniglot():
    data = load_dataset("builtin:omniglot")
    return data, default_split(data)


def test_registry_lists_every_method():
    assert list_methods() == sorted(METHODS)


# pools=3: conv4 with an unpooled last block, whose grouped convolutions must skip that pool too
@pytest.mark.parametrize("method, pools", [(m, 4) for m in METHODS] + [("maml", 3)])
def test_batched_matches_loop(omniglot, method, pools):
    data, split = omniglot
    torch.manual_seed(0)
    encoder = create_encoder("conv4", channels=8, pools=pools)
    settings = {"inner_steps": 2} if method in ("maml", "metasgd", "fomaml", "anil") else {}
    learner = create_meta(method, encoder, **settings)
    batch = EpisodeSampler(data, 5, 2, 2, seed=3, rotations=True, classes=split.train, prepare=encoder.prepare).sample_batch(3)
    grads, losses = {}, {}
    for path in ("loop", "batched"):
        learner.zero_grad(set_to_none=True)
        losses[path] = learner.accumulate(batch, path)["loss"]
        grads[path] = {k: p.grad.clone() for k, p in learner.named_parameters() if p.grad is not None}
    assert losses["loop"] == pytest.approx(losses["batched"], rel=1e-5)
    assert grads["loop"].keys() == grads["batched"].keys() and len(grads["loop"]) >= 16
    # a conv bias right before a GroupNorm of one channel per group has a gradient of exactly 0,
    # computed as rounding noise: the absolute tolerance also scales with the largest gradient
    noise = 2e-6 * max(float(g.abs().max()) for g in grads["loop"].values())
    for k, g in grads["loop"].items():
        torch.testing.assert_close(grads["batched"][k], g, rtol=1e-3, atol=1e-4 * float(g.abs().max()) + noise, msg=k)
    logits = {p: learner.predict(batch, p) for p in ("loop", "batched")} if method not in ("anil",) else None
    if logits:
        torch.testing.assert_close(logits["batched"], logits["loop"], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["maml", "metasgd"])
def test_threads_path_matches_the_loop_and_repeats_exactly(omniglot, method, monkeypatch):
    """The CPU default for the MAML family: tasks split over two threads, each on its own copy of
    the learner and one core, running at the same time. Same loss and gradients as the loop; the
    same bits on every run (so kill and resume still end on equal weights); the copies follow
    the learner's weights after a step."""
    import threading

    from quickadapt.meta.base import task_workers

    data, split = omniglot
    torch.manual_seed(0)
    encoder = create_encoder("conv4", channels=8)
    learner = create_meta(method, encoder, inner_steps=2)
    batch = EpisodeSampler(data, 5, 2, 2, seed=3, rotations=True, classes=split.train, prepare=encoder.prepare).sample_batch(5)

    def grads(path):
        learner.zero_grad(set_to_none=True)
        loss = learner.accumulate(batch, path)["loss"]
        return loss, {k: p.grad.clone() for k, p in learner.named_parameters() if p.grad is not None}

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert task_workers("auto", encoder, per_task_body=True, n_tasks=5) == 2
        assert task_workers("auto", encoder, per_task_body=False, n_tasks=5) == 0
        loop_loss, loop = grads("loop")
        thread_loss, first = grads("threads")
        _, second = grads("threads")
        with torch.no_grad():  # a meta-step moves the weights; the copies must follow
            for p in learner.parameters():
                p.add_(0.01 * torch.randn_like(p))
        moved_loop_loss, _ = grads("loop")
        moved_thread_loss, _ = grads("threads")
        # every chunk's first task waits for the other chunk's: passes only if both run at once
        both_running, calls = threading.Barrier(2, timeout=60), []
        unpatched = type(learner).meta_loss

        def recorded(self, b, path="auto"):
            if not any(c[1] == id(self) for c in calls):
                calls.append((threading.get_ident(), id(self), torch.get_num_threads()))
                both_running.wait()
            return unpatched(self, b, path)

        monkeypatch.setattr(type(learner), "meta_loss", recorded)
        grads("threads")
    finally:
        torch.set_num_threads(before)
    assert len({c[0] for c in calls}) == 2 and threading.get_ident() not in {c[0] for c in calls}
    assert len({c[1] for c in calls}) == 2 and id(learner) not in {c[1] for c in calls}
    assert [c[2] for c in calls] == [1, 1]  # one core per worker
    assert thread_loss == pytest.approx(loop_loss, rel=1e-5)
    assert moved_thread_loss == pytest.approx(moved_loop_loss, rel=1e-5) and moved_loop_loss != pytest.approx(loop_loss)
    assert first.keys() == loop.keys() and len(loop) >= 16
    for k, g in loop.items():
        torch.testing.assert_close(first[k], g, rtol=1e-3, atol=1e-4 * float(g.abs().max()) + 1e-7, msg=k)
        assert torch.equal(first[k], second[k]), k
    with pytest.raises(Exception, match="path must be one of"):
        task_workers("fast", encoder, per_task_body=True, n_tasks=5)


def test_anil_and_protonet_run_the_body_once_per_set(omniglot):
    data, split = omniglot
    for method in ("anil", "protonet"):
        encoder = create_encoder("conv4", channels=8)
        learner = create_meta(method, encoder)
        calls = []
        encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        learner.accumulate(EpisodeSampler(data, 5, 1, 2, classes=split.train, prepare=encoder.prepare).sample_batch(4))
        assert calls == [4 * 5, 4 * 10], (method, calls)  # support of all tasks, then query of all tasks


@pytest.mark.parametrize("method", METHODS)
def test_meta_training_beats_chance_on_held_out_alphabets(omniglot, method):
    set_quiet(True)
    data, split = omniglot
    torch.manual_seed(0)
    encoder = create_encoder("conv4", channels=16)
    learner = create_meta(method, encoder, **SETTINGS.get(method, {}))
    train = EpisodeSampler(data, 5, 1, 3, seed=0, rotations=True, classes=split.train, prepare=encoder.prepare)
    test = EpisodeSampler(data, 5, 1, 5, seed=1, classes=split.test, prepare=encoder.prepare)
    before = test.sample_batch(40)
    untrained = float((learner.predict(before).argmax(-1) == before.query_y).float().mean())
    meta_train(learner, train, MetaTrainConfig(steps=STEPS[method], meta_batch=4), description=None)
    learner.eval()
    acc = float((learner.predict(before).argmax(-1) == before.query_y).float().mean())
    # 5-way: chance is 20%; 40 episodes x 25 queries: 33% is over 5 standard errors above it
    assert acc > 0.33, (method, untrained, acc)


def test_outer_rate_halves_on_its_step_schedule():
    from quickadapt.meta.train import outer_lr

    learner = create_meta("protonet", create_encoder("conv4", channels=8))
    assert [outer_lr(learner, s, 10_000, 1000) for s in (0, 999, 1000, 2500)] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert outer_lr(learner, 5000, 10_000) == 1e-3  # 0: constant
    with pytest.raises(ValueError, match="lr_halve_every"):
        MetaTrainConfig(lr_halve_every=-1)
