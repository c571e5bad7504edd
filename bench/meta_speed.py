"""Meta-step speed: second-order MAML, conv4 (GroupNorm), 28x28 Omniglot, 5-way 1-shot,
5 queries per class, meta-batch 32, one inner step (the issue's fixed work).

Times, in one run and interleaved (repeat r runs every path once before repeat r+1), the
library's paths against `higher` (Grefenstette et al. 2019) on the same model and meta-batch:
- loop: the plain per-task reference (one task at a time, ops using every torch thread);
- threads: the same loop with the tasks split over one Python thread per torch thread, each
  op on one core (the CPU default);
- batched: tasks folded into grouped convolutions (the GPU default);
- higher: `higher.innerloop_ctx` per task, the usual way to write second-order MAML, on the
  textbook conv4 block (conv, norm, ReLU, max-pool) with the library's weights;
- higher-pooled: the same on the library's own conv4, which pools before the ReLU (the same
  function and gradients, less work), to show what that reordering alone is worth.
Every path's body gradients are checked against the loop's; FLOPs are counted once on the loop
(torch.utils.flop_counter); the fp32 matmul peak is measured in the same run (2048^3 matmuls);
peak memory is each path's own (a fresh process per path running two meta-steps on the same
meta-batch, saved to a file so that process never loads the dataset). Like the library's
training loops, the script keeps freed memory for reuse (quickadapt/allocator.py), for every
path alike; rows from before that carry no "allocator" in their spec.

    OMP_NUM_THREADS=2 .venv/bin/python bench/meta_speed.py [--repeats 5] [--meta-batch 32]

`higher` is a benchmark anchor, not a dependency: `uv pip install --python .venv/bin/python higher`
(without it the higher column is skipped). Results: bench/results/meta_speed.jsonl (+ .md); reruns
skip done settings unless --force."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ResultStore, machine  # noqa: E402

PATHS = ("loop", "threads", "batched")
HIGHER = ("higher", "higher-pooled")


def setup(method: str, meta_batch: int):
    from quickadapt.allocator import keep_freed_memory
    from quickadapt.data import load_dataset
    from quickadapt.data.episodes import EpisodeSampler, default_split
    from quickadapt.encoders import create_encoder
    from quickadapt.meta import create_meta

    keep_freed_memory()  # as the CLI and the training loops do; every path in this process gets it
    data = load_dataset("builtin:omniglot")
    torch.manual_seed(0)
    encoder = create_encoder("conv4")
    learner = create_meta(method, encoder, inner_steps=1)
    sampler = EpisodeSampler(data, 5, 1, 5, seed=0, rotations=True, classes=default_split(data).train, prepare=encoder.prepare)
    return learner, sampler.sample_batch(meta_batch)


class TextbookConv4(torch.nn.Module):
    """The library's conv4 weights run in the textbook block order: conv, norm, ReLU, max-pool."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        h = self.encoder.normalize(x)
        for conv, norm, *_ in self.encoder.blocks:
            h = F.max_pool2d(F.relu(norm(conv(h))), 2)
        return h.flatten(1)


class HigherMAML:
    """Second-order MAML written the usual `higher` way: the same encoder weights plus a
    zero-initialised linear head (what the library's MAML adapts), one differentiable SGD step
    per task. `textbook`: run conv4 in the textbook block order (the anchor)."""

    def __init__(self, learner, textbook: bool = True):
        head = torch.nn.Linear(learner.encoder.embed_dim, 5)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        body = TextbookConv4(learner.encoder) if textbook else learner.encoder
        self.model = torch.nn.Sequential(body, head)
        self.inner_lr = learner.cfg.inner_lr

    def step(self, batch) -> None:
        import higher

        inner = torch.optim.SGD(self.model.parameters(), lr=self.inner_lr)
        T = batch.n_tasks
        for t in range(T):
            with higher.innerloop_ctx(self.model, inner, copy_initial_weights=False) as (fmodel, diffopt):
                diffopt.step(F.cross_entropy(fmodel(batch.support_x[t]), batch.support_y[t]))
                (F.cross_entropy(fmodel(batch.query_x[t]), batch.query_y[t]) / T).backward()


def steppers(learner, batch, paths) -> dict:
    """path -> a function running one meta-step (gradients zeroed first) and returning its seconds."""
    anchors = {p: HigherMAML(learner, textbook=p == "higher") for p in HIGHER if p in paths}

    def make(path):
        def run() -> float:
            learner.zero_grad(set_to_none=True)  # the anchors share the learner's encoder
            for anchor in anchors.values():
                anchor.model.zero_grad(set_to_none=True)
            started = time.perf_counter()
            anchors[path].step(batch) if path in anchors else learner.accumulate(batch, path)
            return time.perf_counter() - started
        return run

    return {path: make(path) for path in paths}


def body_grads(learner) -> dict:
    return {k: p.grad.clone() for k, p in learner.encoder.named_parameters() if p.grad is not None}


def matmul_peak(sizes=(1024, 2048, 4096), repeats: int = 5) -> float:
    """The best fp32 GFLOP/s of square matmuls (the machine's practical ceiling for this work)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        best = max(best, 2 * n**3 / min(_timed(lambda: a @ b) for _ in range(repeats)) / 1e9)
    return best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def memory_worker(method: str, batch_file: str, path: str) -> dict:
    """Peak memory of two meta-steps on `path`, in a process that never loaded the dataset (the
    meta-batch comes from `batch_file`), next to the same process's peak before the steps."""
    from safetensors.torch import load_file

    from quickadapt.allocator import keep_freed_memory
    from quickadapt.data.episodes import Episode
    from quickadapt.encoders import create_encoder
    from quickadapt.meta import create_meta

    keep_freed_memory()
    torch.manual_seed(0)
    learner = create_meta(method, create_encoder("conv4"), inner_steps=1)
    t = load_file(batch_file)
    batch = Episode(t["support_x"], t["support_y"], t["query_x"], t["query_y"], [[]] * len(t["support_x"]))
    run = steppers(learner, batch, [path])[path]
    before = peak_rss_mb()
    for _ in range(2):
        run()
    return {"peak_rss_mb": peak_rss_mb(), "rss_before_mb": before}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, it does not carry over the
    parent's peak through fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_memories(method: str, batch, paths) -> dict:
    """path -> memory_worker's figures, each path in a fresh process reading one saved meta-batch."""
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        batch_file = str(Path(tmp) / "batch.safetensors")
        save_file({k: getattr(batch, k).contiguous() for k in ("support_x", "support_y", "query_x", "query_y")}, batch_file)
        return {path: _memory_process(method, batch_file, path) for path in paths}


def _memory_process(method: str, batch_file: str, path: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--memory", json.dumps([method, batch_file, path])],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def learn2learn_run(python: str, meta_batch: int, repeats: int) -> dict:
    """bench/meta_speed_l2l.py in learn2learn's own venv (torch 2.14.1): learn2learn beside higher."""
    script = Path(__file__).resolve().parent / "meta_speed_l2l.py"
    proc = subprocess.run([python, str(script), str(meta_batch), str(repeats)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(method: str, meta_batch: int, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    learner, batch = setup(method, meta_batch)
    paths = list(PATHS)
    try:
        import higher  # noqa: F401

        paths += HIGHER
    except ImportError:
        print("higher is not installed: its column is skipped", file=sys.stderr)
    learner.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fc:
        learner.accumulate(batch, "loop")
    gflop = fc.get_total_flops() / 1e9
    step = steppers(learner, batch, paths)
    grads = {}
    for path in paths:
        step[path]()
        grads[path] = body_grads(learner)
    ref = grads["loop"]
    max_rel = {path: max(float((g[k] - ref[k]).abs().max() / (ref[k].abs().max() + 1e-12)) for k in ref)
               for path, g in grads.items()}
    times: dict = {path: [] for path in paths}
    for _ in range(repeats):  # interleaved, so a change in machine load hits every path alike
        for path in paths:
            times[path].append(step[path]())
    secs = {path: min(v) for path, v in times.items()}
    peak = matmul_peak()
    result = {
        "gflop_per_step": round(gflop, 2),
        "seconds": {k: round(v, 4) for k, v in secs.items()},
        "gflops": {k: round(gflop / v, 1) for k, v in secs.items()},
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": {k: round(gflop / v / peak, 3) for k, v in secs.items()},
        "speedup_vs_loop": {k: round(secs["loop"] / v, 3) for k, v in secs.items()},
        "max_rel_grad_diff_vs_loop": max_rel,
        "repeats": repeats,
        "load_1min": round(os.getloadavg()[0], 2),
    }
    if "higher" in secs:
        result["speedup_vs_higher"] = {k: round(secs["higher"] / v, 3) for k, v in secs.items()}
    result["peak_memory"] = peak_memories(method, batch, paths)
    return result


def report(store: ResultStore) -> str:
    lines = ["| method | meta-batch | threads | allocator | GFLOP/step | path | s/step | GFLOP/s | of matmul peak | vs loop | "
             "vs higher | max rel. grad diff | peak MB (before the steps) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in store.rows:
        s = r["spec"]
        if "fraction_of_peak" not in r:
            continue
        for path, sec in r["seconds"].items():
            vs_h = r.get("speedup_vs_higher", {}).get(path)
            m = r.get("peak_memory", {}).get(path, {})
            mem = f"{m['peak_rss_mb']:.0f} ({m['rss_before_mb']:.0f})" if "peak_rss_mb" in m else ""
            lines.append(
                f"| {s['method']} | {s['meta_batch']} | {s['threads']} | {s.get('allocator', 'glibc default')} | "
                f"{r['gflop_per_step']} | {path} | {sec:.3f} | "
                f"{r['gflops'][path]} | {r['fraction_of_peak'][path]:.0%} | {r['speedup_vs_loop'][path]:.2f}x | "
                f"{'' if vs_h is None else f'{vs_h:.2f}x'} | {r['max_rel_grad_diff_vs_loop'][path]:.1e} | {mem} |")
    for r in store.rows:
        if "learn2learn" in r and "seconds" in r["learn2learn"]:
            o = r["learn2learn"]
            lines.append("")
            lines.append(f"learn2learn {o['learn2learn']} (torch {o['torch']}, its own venv, {o['threads']} threads, meta-batch "
                         f"{o['meta_batch']}): {o['seconds']['learn2learn']:.3f} s/step against higher's "
                         f"{o['seconds'].get('higher', float('nan')):.3f} s/step in the same process "
                         f"({o.get('learn2learn_vs_higher', float('nan')):.2f}x higher's throughput).")
        elif "learn2learn" in r:
            lines += ["", f"learn2learn: failed ({r['learn2learn'].get('error')})"]
    text = ("# Meta-step speed (bench/meta_speed.py)\n\nSecond-order MAML, conv4 (GroupNorm), 28x28, 5-way 1-shot, "
            "5 queries per class, one inner step; fp32; best of the interleaved repeats. Matmul peak measured in the "
            "same run. Target of issue 7: at least 2x the throughput of `higher`. `higher` runs the textbook "
            "conv4 block (conv, norm, ReLU, max-pool); `higher-pooled` runs the library's conv4, which pools before "
            "the ReLU (the same function and gradients) like every library path. Machine: "
            + json.dumps(machine()) + "\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "meta_speed.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="maml")
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--l2l-python", help="python of a venv with learn2learn (see bench/meta_speed_l2l.py)")
    ap.add_argument("--memory", help=argparse.SUPPRESS)  # internal: one path's peak memory
    a = ap.parse_args()
    if a.memory:
        print(json.dumps(memory_worker(*json.loads(a.memory))))
        return
    store = ResultStore("meta_speed")
    spec = {"method": a.method, "meta_batch": a.meta_batch, "n_way": 5, "k_shot": 1, "n_query": 5, "inner_steps": 1,
            "threads": torch.get_num_threads(), "device": "cpu", "torch": torch.__version__, "paths": ",".join(PATHS + HIGHER),
            "allocator": "keep freed memory"}
    if not a.report:
        if store.done(spec) and not a.force:
            print("already measured:", spec, file=sys.stderr)
        else:  # --force measures again and replaces the old row
            store.rows = [r for r in store.rows if store.key(r["spec"]) != store.key(spec)]
            store.path.write_text("".join(json.dumps(r) + "\n" for r in store.rows))
            result = measure(a.method, a.meta_batch, a.repeats)
            if a.l2l_python:  # after ours, so the two runs never share the cores
                result["learn2learn"] = learn2learn_run(a.l2l_python, a.meta_batch, a.repeats)
            store.add(spec, result)
    print(report(store))


if __name__ == "__main__":
    main()
