"""What every meta-learner shares: the interface, functional forwards, and the inner loop.

A meta-learner wraps an encoder (the body) plus its own meta-parameters (a head init, learned
inner learning rates). `accumulate(batch, path)` fills `.grad` of `parameters()` for one
meta-batch (a stacked `Episode`, tensors (T, n, ...)) and returns its query loss and accuracy;
`predict(batch)` gives query logits (T, n_query, n_way) after adapting on each support set.

Three paths compute the same thing. `loop`: the plain reference, one task at a time with
`torch.func.functional_call`. `threads`: the same loop with the meta-batch's tasks split over
`torch.get_num_threads()` Python threads, each on its own copy of the learner and running its
ops on one core (small per-task convolutions barely use a second core inside one op, but two
tasks run side by side; ops and autograd release the GIL), each task's backward right after its
forward; gradients are summed in a fixed order, so it is deterministic.
`batched`: all tasks at once; for conv4 the T tasks' parameter copies are folded into grouped
convolutions (one conv call per layer for the whole meta-batch), for other bodies
`torch.func.vmap` runs the per-task function. Tests check that all give the same loss and
gradients. Normalisation is per example (GroupNorm), so nothing is transductive."""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from quickadapt.data.episodes import Episode
from quickadapt.errors import BadInput

PATHS = ("auto", "loop", "threads", "batched")
Params = dict[str, torch.Tensor]


class MetaLearner(nn.Module):
    name = ""
    outer_optimizer = "adam"  # reptile: "sgd" on its pseudo-gradient

    def __init__(self, encoder: nn.Module, cfg):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg

    per_task_body = False  # the MAML family: every task runs the body with its own weights

    # -- the two entry points -------------------------------------------------------------
    def accumulate(self, batch: Episode, path: str = "auto") -> dict:
        """Add this meta-batch's meta-gradient to `.grad`; return {"loss", "accuracy"} (floats)."""
        workers = task_workers(path, self.encoder, per_task_body=self.per_task_body, n_tasks=batch.n_tasks)
        if workers:
            return self._accumulate_tasks(batch, workers)
        loss, logits = self.meta_loss(batch, path)
        loss.backward()
        return {"loss": float(loss.detach()), "accuracy": accuracy(logits, batch.query_y)}

    def _accumulate_tasks(self, batch: Episode, workers: int) -> dict:
        """The "threads" path: the loop's tasks in `workers` contiguous chunks run side by side,
        one core each, every task's backward right after its forward (so one task's graph is
        alive per thread, not the whole meta-batch's). With several workers each thread has its
        own copy of the learner (`functional_call` swaps a module's parameters while it runs,
        so two threads must never share one), set to this one's weights."""
        T = batch.n_tasks

        def chunk(learner: "MetaLearner", lo: int, hi: int):
            params = [p for p in learner.parameters() if p.requires_grad]
            total, sums, logits = 0.0, [None] * len(params), []
            for t in range(lo, hi):
                loss, task_logits = learner.meta_loss(batch.slice(t, t + 1), "loop")
                loss = loss / T  # the task's share of the mean over all tasks
                for i, g in enumerate(torch.autograd.grad(loss, params, allow_unused=True)):
                    if g is not None:
                        sums[i] = g if sums[i] is None else sums[i] + g
                total += float(loss.detach())
                logits.append(task_logits.detach())
            return total, torch.cat(logits), sums

        if workers == 1:
            results = [chunk(self, 0, T)]
        else:
            copies = self._worker_copies(workers)
            bounds = [(T * i // workers, T * (i + 1) // workers) for i in range(workers)]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # new threads pick this up: one core per worker, no oversubscription
            try:
                with ThreadPoolExecutor(workers) as pool:
                    results = list(pool.map(lambda i: chunk(copies[i], *bounds[i]), range(workers)))
            finally:
                torch.set_num_threads(threads)
        own = [p for p in self.parameters() if p.requires_grad]
        for i, p in enumerate(own):  # a fixed order: the same sums on every run
            parts = [r[2][i] for r in results if r[2][i] is not None]
            if parts:
                g = torch.stack(parts).sum(0)
                p.grad = g if p.grad is None else p.grad + g
        logits = torch.cat([r[1] for r in results])
        return {"loss": sum(r[0] for r in results), "accuracy": accuracy(logits, batch.query_y)}

    @torch.no_grad()
    def _worker_copies(self, n: int) -> list["MetaLearner"]:
        """`n` copies of this learner (kept between steps, outside the module tree) holding its
        current parameters and buffers."""
        copies = self.__dict__.pop("_copies", [])
        while len(copies) < n:
            copies.append(copy.deepcopy(self))
        self.__dict__["_copies"] = copies
        for c in copies[:n]:
            for mine, theirs in ((self.parameters(), c.parameters()), (self.buffers(), c.buffers())):
                for a, b in zip(mine, theirs):
                    b.copy_(a)
        return copies[:n]

    def meta_loss(self, batch: Episode, path: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def predict(self, batch: Episode) -> torch.Tensor:
        """Query logits (T, n_query, n_way) after adapting to each task's support set."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Meta-parameters other than the encoder's (saved as `meta.*` in the artifact)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    # -- helpers ----------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Body features of stacked inputs (T, n, ...) -> (T, n, D), one forward for all tasks."""
        T, n = x.shape[:2]
        return self.encoder(x.flatten(0, 1)).view(T, n, -1)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    # counted, then divided in float64: a float32 mean writes 0.9 as 0.8999999761581421
    return int((logits.detach().argmax(-1) == y).sum()) / y.numel()


def resolve_path(path: str, encoder: nn.Module, *, per_task_body: bool = False) -> str:
    """"auto" picks the faster path. Methods whose body runs once per meta-batch (protonet,
    matchingnet, anil) always batch. For per-task bodies (the MAML family) grouped convolutions
    were slower than the loop on this 2-core CPU (bench/meta_speed.py: 0.86x at meta-batch 8),
    so the CPU default is the loop, run by `accumulate` as the "threads" path (`task_workers`),
    and the batched path is kept for GPUs. Inside one task "threads" is the loop."""
    if path not in PATHS:
        raise BadInput(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    if path == "threads":
        return "loop"
    if path != "auto":
        return path
    if not per_task_body:
        return "batched"
    on_gpu = any(p.is_cuda for p in encoder.parameters())
    return "batched" if on_gpu else "loop"


def task_workers(path: str, encoder: nn.Module, *, per_task_body: bool, n_tasks: int) -> int:
    """For the "threads" path (asked for, or "auto" with a per-task body on the CPU): how many
    threads run the meta-batch's tasks side by side, `torch.get_num_threads()` at most. 0: not
    that path (one call over the whole meta-batch)."""
    resolved = resolve_path(path, encoder, per_task_body=per_task_body)  # validates; "auto" -> loop on a CPU
    wanted = path == "threads" or (path == "auto" and per_task_body and resolved == "loop")
    return max(1, min(torch.get_num_threads(), n_tasks)) if wanted else 0


# --- functional forwards ---------------------------------------------------------------------

def body_params(encoder: nn.Module) -> Params:
    return dict(encoder.named_parameters())


def grouped_supported(encoder: nn.Module) -> bool:
    from quickadapt.encoders.conv4 import Conv4Encoder

    return isinstance(encoder, Conv4Encoder) and encoder.settings.get("norm") == "group"


def conv4_grouped(encoder: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """conv4 features for T tasks with T parameter copies: params (T, *shape), x (T, n, C, H, W)
    -> (T, n, D). Tasks are folded into channels: (n, T*C, H, W) with groups=T convolutions and
    a GroupNorm of T*G groups, so each task only ever sees its own weights."""
    T, n = x.shape[:2]
    h = encoder.normalize(x.flatten(0, 1))
    h = h.view(T, n, *h.shape[1:]).transpose(0, 1).flatten(1, 2)  # (n, T*C, H, W)
    for i, block in enumerate(encoder.blocks):
        norm = block[1]
        w, b = params[f"blocks.{i}.0.weight"], params[f"blocks.{i}.0.bias"]
        h = F.conv2d(h, w.flatten(0, 1), b.flatten(), padding=1, groups=T)
        h = F.group_norm(h, T * norm.num_groups, params[f"blocks.{i}.1.weight"].flatten(),
                         params[f"blocks.{i}.1.bias"].flatten(), norm.eps)
        if isinstance(block[2], nn.MaxPool2d):  # pool first, as Conv4Encoder does (pools=3: not the last)
            h = F.max_pool2d(h, 2)
        h = F.relu(h)
    c = h.shape[1] // T
    return h.view(n, T, c, *h.shape[2:]).transpose(0, 1).reshape(T, n, -1)


def body_batched(encoder: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Features of x (T, n, ...) with per-task params (T, *shape): grouped convs or vmap."""
    if grouped_supported(encoder):
        return conv4_grouped(encoder, params, x)
    return torch.func.vmap(lambda p, xx: functional_call(encoder, p, (xx,)))(params, x)


def body_one(encoder: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(encoder, params, (x,))


def linear(params: Params, feats: torch.Tensor) -> torch.Tensor:
    """Head logits; works for one task (n, D) @ (W, D) and batched (T, n, D) @ (T, W, D)."""
    return feats @ params["head.weight"].transpose(-1, -2) + params["head.bias"].unsqueeze(-2)


def expand_head(weight: torch.Tensor, bias: torch.Tensor, n_way: int) -> Params:
    """One head row repeated for every class: permutation-invariant, fits any n_way. A constant
    row (a buffer) becomes a fresh leaf that the inner loop can differentiate."""
    out = {"head.weight": weight.expand(n_way, -1), "head.bias": bias.expand(n_way)}
    return {k: v if v.requires_grad else v.clone().requires_grad_() for k, v in out.items()}


def batch_params(params: Params, T: int) -> Params:
    return {k: v.unsqueeze(0).expand(T, *v.shape) for k, v in params.items()}


# --- the inner loop --------------------------------------------------------------------------

def adapt(
    params: Params, loss_fn: Callable[[Params], torch.Tensor], *, steps: int, lr: float | Params,
    first_order: bool, keep_graph: bool = True,
) -> Params:
    """`steps` SGD steps on `loss_fn(params)`; returns new dicts (the old ones are untouched).

    `lr` is a float or a dict of per-parameter tensors (Meta-SGD). With `first_order`, inner
    gradients are constants to the outer loss; `keep_graph=False` also cuts the update from the
    outer graph (plain fine-tuning at test time)."""
    names = list(params)
    for _ in range(steps):
        loss = loss_fn(params)
        grads = torch.autograd.grad(loss, [params[k] for k in names], create_graph=keep_graph and not first_order)
        step = {k: (lr[k] if isinstance(lr, dict) else lr) * g for k, g in zip(names, grads)}
        params = {k: params[k] - step[k] for k in names}
        if not keep_graph:
            params = {k: v.detach().requires_grad_() for k, v in params.items()}
    return params


def task_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over tasks of each task's mean cross-entropy: its gradient w.r.t. task t's
    parameter copy is exactly task t's own gradient (for batched inner loops)."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="sum") / y.shape[-1]


def mean_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())
