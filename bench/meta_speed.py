"""Meta-step speed: second-order MAML, conv4 (GroupNorm), 28x28 Omniglot, 5-way 1-shot,
5 queries per class, meta-batch 32, one inner step (the issue's fixed work). Times the plain
per-task loop (reference) against the batched path (tasks folded into grouped convolutions),
checks their gradients agree, counts FLOPs on the loop, and reports peak memory.

    OMP_NUM_THREADS=2 python bench/meta_speed.py [--repeats 5] [--meta-batch 32] [--method maml]

Results: bench/results/meta_speed.jsonl (one row per run setting; reruns skip done rows unless
--force). Not yet measured: higher, learn2learn, torch.compile, channels-last."""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultStore  # noqa: E402

from quickadapt.data import load_dataset  # noqa: E402
from quickadapt.data.episodes import EpisodeSampler, default_split  # noqa: E402
from quickadapt.encoders import create_encoder  # noqa: E402
from quickadapt.meta import create_meta  # noqa: E402


def step_seconds(learner, batch, path: str, repeats: int) -> float:
    learner.zero_grad(set_to_none=True)
    learner.accumulate(batch, path)  # warm-up
    times = []
    for _ in range(repeats):
        learner.zero_grad(set_to_none=True)
        t = time.perf_counter()
        learner.accumulate(batch, path)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="maml")
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    spec = {"method": a.method, "meta_batch": a.meta_batch, "n_way": 5, "k_shot": 1, "n_query": 5, "inner_steps": 1,
            "threads": torch.get_num_threads(), "device": "cpu", "torch": torch.__version__}
    store = ResultStore("meta_speed")
    if store.done(spec) and not a.force:
        print("already measured:", spec)
        return
    data = load_dataset("builtin:omniglot")
    torch.manual_seed(0)
    encoder = create_encoder("conv4")
    learner = create_meta(a.method, encoder, inner_steps=1)
    sampler = EpisodeSampler(data, 5, 1, 5, seed=0, rotations=True, classes=default_split(data).train, prepare=encoder.prepare)
    batch = sampler.sample_batch(a.meta_batch)

    from torch.utils.flop_counter import FlopCounterMode

    learner.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fc:
        learner.accumulate(batch, "loop")
    gflop = fc.get_total_flops() / 1e9
    grads = {}
    for path in ("loop", "batched"):
        learner.zero_grad(set_to_none=True)
        learner.accumulate(batch, path)
        grads[path] = {k: p.grad.clone() for k, p in learner.named_parameters() if p.grad is not None}
    max_rel = max(float((grads["batched"][k] - g).abs().max() / (g.abs().max() + 1e-12)) for k, g in grads["loop"].items())
    secs = {path: step_seconds(learner, batch, path, a.repeats) for path in ("loop", "batched")}
    result = {
        "gflop_per_step": round(gflop, 2),
        "seconds": {k: round(v, 4) for k, v in secs.items()},
        "gflops": {k: round(gflop / v, 1) for k, v in secs.items()},
        "speedup_batched_vs_loop": round(secs["loop"] / secs["batched"], 3),
        "max_rel_grad_diff": max_rel,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "repeats": a.repeats,
    }
    store.add(spec, result)
    print(result)


if __name__ == "__main__":
    main()
