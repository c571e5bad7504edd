"""The one training loop every gradient-trained method uses. Read it top to bottom.

`train(param_groups, loss_fn, batches, cfg)`: AdamW, linear warm-up then linear decay, gradient
clipping, an optional time budget, a progress bar with the running loss. `loss_fn(batch)` returns
a scalar tensor or a dict whose "loss" entry is optimised (the other entries are logged)."""
from __future__ import annotations

import contextlib
import platform
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from quickadapt.allocator import keep_freed_memory
from quickadapt.errors import BadInput, option
from quickadapt.progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    warmup: float = 0.1  # fraction of steps with a linearly rising learning rate
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    time_budget: float | None = None  # seconds; stop early once spent


NORM_STATS = ("auto", "frozen", "train")


def check_norm_stats(value: str) -> None:
    if value not in NORM_STATS:
        raise ValueError(f"norm_stats must be one of {', '.join(NORM_STATS)}, got {value!r}")


def has_trained_norm_stats(module: torch.nn.Module) -> bool:
    """True when some BatchNorm layer's running statistics have moved from their initial zeros
    and ones: the encoder came with trained weights (pretrained, or a saved model)."""
    return any(
        not (bool((m.running_mean == 0).all()) and bool((m.running_var == 1).all()))
        for m in module.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )


def train_mode(module: torch.nn.Module, norm_stats: str = "auto") -> None:
    """`module.train()` (dropout on), except that BatchNorm layers stay in eval mode, normalising
    with their running statistics and never updating them, when `norm_stats` is "frozen", or
    "auto" and the statistics were trained. A few dozen examples, often far from the data the
    statistics came from, would replace them with noise and give training and prediction
    different normalisations (Fashion-MNIST, efficientnet-lite0, 20 shots, held-out training
    images: fine-tuning 75.3 % with statistics updated, 82.0 % frozen). A network trained from
    scratch ("auto" with initial statistics, or "train") updates them as usual."""
    check_norm_stats(norm_stats)
    module.train()
    if norm_stats == "frozen" or (norm_stats == "auto" and has_trained_norm_stats(module)):
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of `module` is a finite number: a run
    that diverged leaves NaN or inf in them."""
    return all(bool(torch.isfinite(t).all()) for t in (*module.parameters(), *module.buffers()) if t.is_floating_point())


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator for samplers to own."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInput(f"seed must be a whole number >= 0, got {seed!r}")  # as the CLI's --seed
    seed = int(seed)  # numpy's (a grid over np.arange) is refused by random.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def random_state_kept():
    """Within (also as a decorator): Python's, numpy's and torch's global random generators may be
    seeded (seed_everything) and drawn from; after, each is as it was. A fit, or a model built
    with random weights before its own are loaded, otherwise reset or moved the calling program's
    random numbers: after every fit random.random(), np.random.rand() and torch.rand() gave the
    same numbers again. CUDA's generators are kept where the process had used CUDA before (before
    that, torch seeds them with a fixed number anyway: nothing of the caller's is lost)."""
    python, numpy = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


@contextlib.contextmanager
def usual_torch_modes():
    """Within (also as a decorator): gradients are recorded and tensors are ordinary ones, whatever
    the calling thread had switched off. A service that turns autograd off for good
    (torch.set_grad_enabled(False)) or runs its handlers under torch.inference_mode() saw a fit
    fail ("element 0 of tensors does not require grad"), and a model loaded under inference_mode
    (the second load on) fail at its predict ("Inference tensors do not track version counter"). Both modes
    belong to the thread, so the caller's other threads are untouched. torch's default dtype
    belongs to the whole process, so another one than float32 is refused, not changed."""
    if torch.get_default_dtype() != torch.float32:
        # layers built in float64 met float32 inputs: "mat1 and mat2 must have the same dtype"
        raise BadInput(f"torch's default dtype is {str(torch.get_default_dtype()).replace('torch.', '')} "
                       "(torch.set_default_dtype): quickadapt builds float32 models; set it back to torch.float32 "
                       "while fitting or loading one")
    with torch.inference_mode(False), torch.enable_grad():
        yield


def run_environment(device: torch.device) -> dict:
    """What besides the seed and data a fit's exact numbers depend on, recorded in its model (in
    `info`, so a model loaded and saved again keeps its fit's): one fit with 1 and with 2 torch
    threads differed by up to 9e-6 in its weights (float sums split another way); a GPU's kernels
    round otherwise than a CPU's, and another library version may change any kernel."""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "device": device.type}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput(f"{option('device')} cuda: no CUDA GPU is available here; use {option('device')} cpu or auto")
    if device not in ("cpu", "cuda"):
        raise BadInput(f"{option('device')} must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def train(
    param_groups: list[dict],
    loss_fn: Callable[[object], torch.Tensor | dict],
    batches: Iterable,
    cfg: TrainConfig,
    *,
    description: str | None = "training",
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Run `cfg.steps` optimiser steps over `batches` (cycled if shorter). Returns a summary."""
    keep_freed_memory()
    groups = [g for g in param_groups if any(p.requires_grad for p in g["params"])]
    for g in groups:
        g.setdefault("initial_lr", g["lr"])
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    warmup = max(1, int(cfg.warmup * cfg.steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warmup))

    started = time.perf_counter()
    running = None
    step = 0
    stream = _cycle(batches)
    with progress_bar(description, total=cfg.steps) as advance:
        while step < cfg.steps:
            if cfg.time_budget is not None and time.perf_counter() - started > cfg.time_budget:
                break
            if on_step is not None:
                on_step(step)  # e.g. gradual unfreezing
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * lr_factor(step)
            out = loss_fn(next(stream))
            loss = out["loss"] if isinstance(out, dict) else out
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            value = float(loss.detach())
            running = value if running is None else 0.9 * running + 0.1 * value
            step += 1
            advance(1)
    return {"steps": step, "final_loss": running, "seconds": time.perf_counter() - started}


def _cycle(batches: Iterable) -> Iterator:
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("no training batches")
