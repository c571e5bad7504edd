"""Episodic meta-training, resumable. Read it top to bottom.

`meta_train(learner, sampler, cfg, checkpoint_dir=...)` runs `cfg.steps` meta-steps: sample a
meta-batch of episodes, `learner.accumulate` (fills .grad), optimizer step. Every
`checkpoint_every` seconds (and every `checkpoint_steps` steps, and at the end) it writes a
checkpoint folder: `state.safetensors` (learner weights, optimizer tensors, the sampler's and
torch's RNG states, the best weights so far) and `state.json` (step, running figures, the
validation curve, optimizer settings, `spec`). `resume=True` continues from it; with the same
steps, seed and thread count the final weights equal (torch.equal) those of an uninterrupted run.
Ctrl-C stops the loop after the step in progress and ends the run as a time budget does
(stopped: "interrupt"): checkpoint, best weights, model; --resume continues it.

Early stopping: given `val_sampler`, every `validate_every` steps (and at the end) the learner
is scored on the same `validate_episodes` validation episodes; a copy of the best weights is
kept, and loaded into the learner when training ends. Validation runs on a step count, not a
clock, so where it happens does not depend on the machine's speed and a resumed run validates
at the same steps as an uninterrupted one."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from quickadapt import distributed
from quickadapt.allocator import keep_freed_memory
from quickadapt.artifact import refuse_oversized, temp_stem, write_folder_atomically
from quickadapt.data.episodes import EpisodeSampler
from quickadapt.errors import STOP_SIGNALS, BadInput, Stopped, option
from quickadapt.meta.base import MetaLearner
from quickadapt.meta.validate import val_accuracy
from quickadapt.progress import log, progress_bar
from quickadapt.settings import Settings, count, positive
from quickadapt.train import weights_finite

STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"


@dataclass(frozen=True)
class MetaTrainConfig(Settings):
    steps: int = count(2000)
    meta_batch: int = count(16)
    time_budget: float | None = positive(None)  # seconds for this run; stops early (the checkpoint allows more)
    checkpoint_every: float = 300.0  # seconds between checkpoints
    checkpoint_steps: int | None = None  # also every N steps
    path: str = "auto"  # how tasks run: loop (reference) or batched
    grad_clip: float | None = None
    # steps, not seconds, so validation falls at the same steps on any machine and after a resume.
    # 100 steps at meta-batch 16 on this 2-core CPU are ~1 min (ProtoNet) to ~2 min (MAML) of
    # training; a pass over 100 five-way episodes costs a few percent of that. 0: no validation
    validate_every: int = 100
    validate_episodes: int = count(100)
    # Adam's outer rate halves every this many steps (Snell et al. halved ProtoNet's every 2000
    # episodes); 0 keeps it constant. Counted in steps, so a resumed run follows the same schedule
    lr_halve_every: int = 0


def make_optimizer(learner: MetaLearner) -> torch.optim.Optimizer:
    params = [p for p in learner.parameters() if p.requires_grad]
    if learner.outer_optimizer == "sgd":
        return torch.optim.SGD(params, lr=learner.cfg.outer_lr)
    return torch.optim.Adam(params, lr=learner.cfg.outer_lr)


def outer_lr(learner: MetaLearner, step: int, steps: int, halve_every: int = 0) -> float:
    """Adam: constant, or halved every `halve_every` steps. Reptile's SGD on its pseudo-gradient:
    linearly annealed to 0 (Nichol et al.)."""
    base = learner.cfg.outer_lr
    if learner.outer_optimizer == "sgd":
        return base * (1 - step / steps)
    return base * 0.5 ** (step // halve_every) if halve_every else base


def meta_train(
    learner: MetaLearner,
    sampler: EpisodeSampler,
    cfg: MetaTrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    spec: dict | None = None,
    device: torch.device | str = "cpu",
    description: str | None = "meta-training",
    on_step: Callable[[int], None] | None = None,
    val_sampler: EpisodeSampler | None = None,
    interrupted: Callable[[], bool] | None = None,
) -> dict:
    """Meta-train `learner` in place on episodes from `sampler`. Returns a summary dict.

    `spec` (JSON) is stored in each checkpoint: what rebuilds this run (method, settings, data).
    `on_step(step)` is called after each completed step (tests use it to simulate a kill).
    `val_sampler`: validation episodes for early stopping (None: no validation).
    `interrupted()`: true once Ctrl-C was pressed (None: this loop catches Ctrl-C itself).

    Under torchrun (quickadapt/distributed.py) each process runs its share of every meta-batch's
    tasks and the gradients are summed across processes; only the first validates and saves."""
    group = distributed.current()
    if cfg.meta_batch < group.size:
        raise BadInput(f"{option('meta_batch')} {cfg.meta_batch} is below the {group.size} processes: each needs a task")
    keep_freed_memory()
    learner.to(device).train()
    optimizer = make_optimizer(learner)
    state = {"step": 0, "loss": None, "accuracy": None, "seconds": 0.0}
    best: dict[str, torch.Tensor] = {}  # the best weights by validation accuracy
    if resume:
        state, best = load_checkpoint(checkpoint_dir, learner, optimizer, sampler)
    group.barrier()  # every process has read the checkpoint before the first one rewrites it
    validating = val_sampler is not None and cfg.validate_every > 0 and group.is_main
    curve = state.setdefault("val_curve", [])  # [step, accuracy] pairs
    state.setdefault("val_seconds", 0.0)
    started = time.perf_counter()
    elapsed_before = state["seconds"]
    last_save = started

    def save():
        state["seconds"] = elapsed_before + time.perf_counter() - started
        if checkpoint_dir is not None and group.is_main:
            save_checkpoint(checkpoint_dir, learner, optimizer, sampler, state, cfg, spec, best=best)

    def validate():
        t = time.perf_counter()
        acc = val_accuracy(learner, val_sampler, cfg.validate_episodes, device)
        # strictly better only: on a tie the earlier (less trained) weights stay
        if not curve or acc > max(a for _, a in curve):
            best.clear()
            best.update({k: v.detach().clone() for k, v in learner.state_dict().items()})
        curve.append([state["step"], acc])
        state["val_seconds"] += time.perf_counter() - t

    stopped = "steps"
    catching = contextlib.nullcontext(interrupted) if interrupted is not None else stop_on_interrupt()
    with progress_bar(description, total=cfg.steps) as advance, catching as interrupted:
        advance(state["step"])
        while state["step"] < cfg.steps:
            if group.any(interrupted()):  # Ctrl-C: stop between steps, and save as at the end
                stopped = "interrupt"
                break
            # the first process's clock decides for all: they must stop at the same step
            if cfg.time_budget is not None and group.any(
                    group.is_main and time.perf_counter() - started > cfg.time_budget):
                stopped = "time_budget"
                break
            step = state["step"]
            batch = sampler.sample_batch(cfg.meta_batch)  # the same on every process
            lo, hi = group.shard(batch.n_tasks)
            batch = batch.slice(lo, hi).to(device)  # one process: all of it
            for g in optimizer.param_groups:
                g["lr"] = outer_lr(learner, step, cfg.steps, cfg.lr_halve_every)
            optimizer.zero_grad(set_to_none=True)
            out = learner.accumulate(batch, cfg.path)
            if group.size > 1:
                out = group.sum_gradients([p for p in learner.parameters() if p.requires_grad],
                                          (hi - lo) / cfg.meta_batch, {k: out[k] for k in ("loss", "accuracy")})
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in learner.parameters() if p.grad is not None], cfg.grad_clip)
            optimizer.step()
            check_diverged(out["loss"], state["step"] + 1, "meta-training", "outer_lr")
            for key in ("loss", "accuracy"):  # running means (exponential, 0.95)
                state[key] = out[key] if state[key] is None else 0.95 * state[key] + 0.05 * out[key]
            state["step"] = step + 1
            if validating and state["step"] % cfg.validate_every == 0:
                validate()  # before the checkpoint below, so it holds this point of the curve
            val = f" val {max(a for _, a in curve):.1%}" if curve else ""
            advance(1, description=f"{description} acc {state['accuracy']:.1%} loss {state['loss']:.3f}{val}")
            now = time.perf_counter()
            if now - last_save >= cfg.checkpoint_every or (cfg.checkpoint_steps and state["step"] % cfg.checkpoint_steps == 0):
                save()
                last_save = time.perf_counter()
            if on_step is not None:
                on_step(state["step"])
    if not weights_finite(learner):
        check_diverged(math.nan, state["step"], "meta-training", "outer_lr")  # the last step's update
    if validating and (not curve or curve[-1][0] != state["step"]):
        validate()  # the last weights too, so the steps since the last validation are not lost
    save()  # the checkpoint keeps the last weights (a resume continues from them) and the best
    validation = None
    if validating:
        best_step, best_acc = max(curve, key=lambda c: (c[1], -c[0]))
        if best:
            learner.load_state_dict(best)  # early stopping: the model is the best validated one
        validation = {"every": cfg.validate_every, "episodes": cfg.validate_episodes, "n_way": val_sampler.n_way,
                      "curve": curve, "best_step": best_step, "best_accuracy": best_acc,
                      "seconds": round(state["val_seconds"], 3)}
    return {"steps": state["step"], "stopped": stopped, "running_loss": state["loss"],
            "running_accuracy": state["accuracy"], "seconds": round(state["seconds"], 3), "validation": validation}


def check_diverged(loss, step: int, stage: str, rate: str) -> None:
    """Stop a run whose loss is no longer a number (a learning rate or scale far too large): it
    would train on to weights that are all NaN, save them, and score chance on every episode."""
    if not math.isfinite(float(loss)):
        raise BadInput(f"{stage} diverged at step {step}: the loss is {float(loss)}; lower {rate} (or the setting "
                       "that scales the method's scores)")


@contextlib.contextmanager
def stop_on_interrupt():
    """Yields `interrupted()`: true once Ctrl-C (SIGINT), SIGTERM or SIGHUP has come. The first
    only asks the loop to stop after the step it is in, so the checkpoint and the model hold
    whole steps (a container's stop gives seconds before it kills); a second quits at once.
    Under torchrun, SIGTERM and SIGHUP quit at once: torchrun sends them when another process
    died, and the step's collective would then wait for it in vain. Outside the main thread
    (where signals cannot be caught) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    pressed = []

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)
        pressed.append(signum)
        how = "press Ctrl-C again" if signum == signal.SIGINT else f"send {signal.Signals(signum).name} again"
        log(f"{'interrupt' if signum == signal.SIGINT else signal.Signals(signum).name}: stopping after this step "
            f"and saving ({how} to quit at once)")

    caught = (signal.SIGINT,) + (STOP_SIGNALS if distributed.current().size == 1 else ())
    previous = {s: signal.signal(s, handler) for s in caught}
    try:
        yield lambda: bool(pressed)
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


# --- checkpoints: tensors in safetensors, the rest in JSON -------------------------------------

def save_checkpoint(folder, learner, optimizer, sampler, state: dict, cfg: MetaTrainConfig, spec: dict | None,
                    *, best: dict | None = None) -> None:
    tensors = {f"model.{k}": v for k, v in learner.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in (best or {}).items()})
    opt = optimizer.state_dict()
    opt_json = {"param_groups": opt["param_groups"], "state": {}}
    for idx, entry in opt["state"].items():
        opt_json["state"][str(idx)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
                opt_json["state"][str(idx)][key] = "tensor"
            else:
                opt_json["state"][str(idx)][key] = value
    tensors["rng.sampler"] = sampler.state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = {"state": state, "optimizer": opt_json, "config": asdict(cfg), "spec": spec or {},
            "threads": torch.get_num_threads()}
    write_folder_atomically(Path(folder), {
        STATE_TENSORS: lambda p: save_file(tensors, str(p)),
        STATE_JSON: lambda p: p.write_text(json.dumps(meta, indent=1)),
    })


def recover_checkpoint(folder) -> None:
    """A kill between the two renames of `write_folder_atomically` leaves the previous
    checkpoint as `.NAME.old-PID` and no `NAME`: put it back."""
    folder = Path(folder)
    if not folder.exists():
        old = sorted(folder.parent.glob(f".{temp_stem(folder)}.old-*"), key=lambda p: p.stat().st_mtime)
        if old and (old[-1] / STATE_JSON).is_file():
            os.replace(old[-1], folder)


def read_checkpoint_json(folder) -> dict:
    recover_checkpoint(folder)
    path = Path(folder) / STATE_JSON
    if not path.is_file():
        raise BadInput(f"{folder}: no checkpoint to resume from (no {STATE_JSON})")
    refuse_oversized(path, "checkpoint state")  # read whole, as a manifest is
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: unreadable checkpoint ({exc})") from None
    # what --resume reads before the tensors: a value of another kind here was a traceback
    # ('<' not supported between 'int' and 'str') from the run's checks or its first step
    loop = saved.get("state") if isinstance(saved, dict) else None
    step, seconds = (loop.get("step"), loop.get("seconds")) if isinstance(loop, dict) else (None, None)
    curve = loop.get("val_curve", []) if isinstance(loop, dict) else None  # [step, accuracy] pairs
    if (type(step) is not int or step < 0 or type(seconds) not in (int, float) or not seconds >= 0
            or not isinstance(curve, list) or not all(isinstance(c, list) and len(c) == 2
                                                      and all(type(x) in (int, float) for x in c) for c in curve)
            or not all(isinstance(saved.get(k, {}), dict) for k in ("spec", "config", "optimizer"))):
        raise BadInput(f"{path}: unreadable checkpoint (its state, step {step!r} and seconds {seconds!r}, its "
                       "validation curve, or its spec, config or optimizer are not what meta-train writes); "
                       "it was edited or damaged")
    return saved


def load_checkpoint(folder, learner, optimizer, sampler) -> tuple[dict, dict]:
    """Restore learner, optimizer and RNG states; return the loop state (step, running figures,
    validation curve) and the best validated weights ({} when none)."""
    meta = read_checkpoint_json(folder)
    try:
        tensors = load_file(str(Path(folder) / STATE_TENSORS))
    except Exception as exc:  # safetensors has its own error types
        raise BadInput(f"{folder}: unreadable checkpoint tensors ({exc})") from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
    own = {k: (v.shape, v.dtype) for k, v in learner.state_dict().items()}
    # loading would cast another dtype silently, and the best weights are loaded only at the run's
    # end, where another shape was a traceback after all the training
    differ = next((name for name, weights in (("model", model), ("best", best))
                   if weights and {k: (v.shape, v.dtype) for k, v in weights.items()} != own), None)
    if differ:
        raise BadInput(f"{folder}: checkpoint does not fit this model (its {differ} weights' names, shapes or dtypes "
                       "differ); it was edited or damaged")
    try:
        learner.load_state_dict(model)
    except RuntimeError as exc:
        raise BadInput(f"{folder}: checkpoint does not fit this model ({str(exc).splitlines()[0]})") from None
    # an edited or damaged checkpoint (a key gone, a value of the wrong kind) was a traceback
    # (a KeyError, 'RNG state must be a torch.ByteTensor'): one line naming it instead
    try:
        opt = meta["optimizer"]
        state = {}
        for idx, entry in opt["state"].items():
            state[int(idx)] = {k: tensors[f"optim.{idx}.{k}"] if v == "tensor" else v for k, v in entry.items()}
        optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
        sampler.set_state(tensors["rng.sampler"])
        torch.set_rng_state(tensors["rng.torch"])
        loop = dict(meta["state"])
    except KeyError as exc:
        raise BadInput(f"{folder}: checkpoint lacks {exc.args[0]!r}; it was edited or damaged") from None
    except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise BadInput(f"{folder}: checkpoint holds a value of the wrong kind ({str(exc).splitlines()[0]}); "
                       "it was edited or damaged") from None
    return loop, best
