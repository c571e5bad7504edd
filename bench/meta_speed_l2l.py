"""learn2learn beside `higher` on bench/meta_speed.py's fixed work (second-order MAML, conv4
with GroupNorm, 28x28 grey, 5-way 1-shot, 5 queries per class, meta-batch 32, one inner step
at 0.4). learn2learn needs torch 2.14.1 + torchvision, so this runs in a venv of its own and
cannot import quickadapt (pinned to torch 2.13.0): the model is written out here, the same
layers as quickadapt's conv4, and the images are random (timing does not depend on pixels).
Both libraries are timed in this one process, interleaved; meta_speed.py compares quickadapt's
paths with `higher` in the project's venv, so `higher` links the two runs.

    # the separate venv (learn2learn's sdist only builds with cython and setuptools<81, and its
    # pinned dependency qpth does not build: install learn2learn without dependencies)
    uv venv /tmp/l2l --python python3.11
    uv pip install --python /tmp/l2l/bin/python torch==2.14.1 torchvision==0.29.1 cython "setuptools<81" higher gym
    # in learn2learn-0.2.0/setup.py set `use_cython = True` (its shipped .c files predate Python 3.11), then
    uv pip install --python /tmp/l2l/bin/python --no-build-isolation --no-deps ./learn2learn-0.2.0
    OMP_NUM_THREADS=2 /tmp/l2l/bin/python bench/meta_speed_l2l.py

Prints one JSON object; meta_speed.py --l2l-python /tmp/l2l/bin/python stores it with its row."""
from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def conv4(channels: int = 64) -> nn.Module:
    layers, width = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(width, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.ReLU(), nn.MaxPool2d(2)]
        width = channels
    head = nn.Linear(channels, 5)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, nn.Flatten(), head)


def l2l_step(maml, batch) -> None:
    sx, sy, qx, qy = batch
    T = sx.shape[0]
    for t in range(T):
        learner = maml.clone()
        learner.adapt(F.cross_entropy(learner(sx[t]), sy[t]))
        (F.cross_entropy(learner(qx[t]), qy[t]) / T).backward()


def higher_step(model, batch, lr: float) -> None:
    import higher

    sx, sy, qx, qy = batch
    T = sx.shape[0]
    inner = torch.optim.SGD(model.parameters(), lr=lr)
    for t in range(T):
        with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
            diffopt.step(F.cross_entropy(fmodel(sx[t]), sy[t]))
            (F.cross_entropy(fmodel(qx[t]), qy[t]) / T).backward()


def main(meta_batch: int = 32, repeats: int = 5) -> None:
    import learn2learn as l2l

    torch.manual_seed(0)
    model = conv4()
    maml = l2l.algorithms.MAML(model, lr=0.4, first_order=False)
    batch = (torch.randn(meta_batch, 5, 1, 28, 28), torch.arange(5).repeat(meta_batch, 1),
             torch.randn(meta_batch, 25, 1, 28, 28), torch.arange(5).repeat_interleave(5).repeat(meta_batch, 1))
    steps = {"learn2learn": lambda: l2l_step(maml, batch)}
    try:
        import higher  # noqa: F401

        steps["higher"] = lambda: higher_step(model, batch, 0.4)
    except ImportError:
        pass
    times: dict = {k: [] for k in steps}
    for r in range(repeats + 1):  # the first round warms up
        for name, step in steps.items():
            model.zero_grad(set_to_none=True)
            started = time.perf_counter()
            step()
            if r:
                times[name].append(time.perf_counter() - started)
    secs = {k: min(v) for k, v in times.items()}
    out = {"torch": torch.__version__, "learn2learn": l2l.__version__, "threads": torch.get_num_threads(),
           "meta_batch": meta_batch, "seconds": {k: round(v, 4) for k, v in secs.items()}}
    if "higher" in secs:
        out["learn2learn_vs_higher"] = round(secs["higher"] / secs["learn2learn"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
