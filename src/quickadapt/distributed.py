"""Data-parallel runs under torchrun: `torchrun --nproc_per_node N -m quickadapt meta-train ...`.

Every process samples the same meta-batch (the samplers share their seed, so their generators
stay equal) and takes its own contiguous share of the tasks; the gradients are summed across
processes, each weighted by its share of the tasks, so every process steps with the mean
gradient over the whole meta-batch, as a single process would, and all weights stay equal.
Only the first process (rank 0) validates, writes checkpoints and the model, and prints.

Without torchrun (no WORLD_SIZE above 1 in the environment) `Group` is the trivial group of one
process and every call below is free: single-process runs are unchanged, bit for bit.
CPU processes talk through gloo, GPU processes through NCCL, one GPU each (LOCAL_RANK)."""
from __future__ import annotations

import contextlib
import datetime
import functools
import importlib
import math
import os
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

from quickadapt.errors import BadInput, LostProcess, option
from quickadapt.progress import set_quiet
from quickadapt.train import pick_device


TIMEOUT_VAR = "QUICKADAPT_TORCHRUN_TIMEOUT"
# How long a process waits for the others, to join at the start and at each exchange, before it
# gives up. Gloo's own 30 minutes held every process of a run that long after one hung (or
# never started); 10 still covers a slow start and the first process validating and writing a
# checkpoint while the others wait for it at the next step.
DEFAULT_TIMEOUT_S = 600
MAX_TIMEOUT_S = 86400


def timeout_s() -> float:
    """$QUICKADAPT_TORCHRUN_TIMEOUT in seconds, DEFAULT_TIMEOUT_S when unset or empty."""
    value = os.environ.get(TIMEOUT_VAR, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise BadInput(f"{TIMEOUT_VAR}={value}: give the seconds a process waits for the others, above 0 and at most "
                       f"{MAX_TIMEOUT_S} (unset: {DEFAULT_TIMEOUT_S})")
    return seconds


@contextlib.contextmanager
def _collective() -> Iterator[None]:
    """Within: a failed collective raises `LostProcess`. Gloo's own error came as a traceback, or
    not at all: torchrun's SIGTERM, sent a moment after the other process died, killed this one
    while Python still drew that traceback (exit -15, not a word about the checkpoint kept)."""
    try:
        yield
    except RuntimeError as exc:  # gloo's errors are RuntimeErrors, NCCL's DistBackendError one too
        first = _first_line(exc)
        # "[.../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:21182: Connection reset
        # by peer. This is typically caused by a remote worker ...": the middle says what happened
        reason = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". This is typically")[0].rstrip(".")
        raise _gave_up(exc) or LostProcess(
            f"another of the {dist.get_world_size()} torchrun processes stopped or stopped answering mid-run ({reason}); "
            "its own output or torchrun's report says why") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _gave_up(exc: RuntimeError) -> LostProcess | None:
    """The one line for a wait past timeout_s(): gloo's "Timed out waiting 600000ms for recv
    operation to complete", or the store's "wait timeout after 600000ms, keys: ..." while the
    group forms, name neither the process nor the setting; None for any other error."""
    if not re.search(r"timed out|timeout", _first_line(exc), re.IGNORECASE):
        return None
    return LostProcess(f"another of the {os.environ.get('WORLD_SIZE')} torchrun processes stopped answering: nothing "
                       f"from it for {timeout_s():g} s ({TIMEOUT_VAR} sets how long to wait); its own output or "
                       "torchrun's report says why")


@dataclass(frozen=True)
class Group:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This process's contiguous share [lo, hi) of n tasks (the first processes take one more
        when n does not divide evenly)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: cuda:LOCAL_RANK when `device` is a GPU."""
        if device.type == "cuda" and self.size > 1:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def sum_gradients(self, params: Sequence[torch.Tensor], share: float, figures: dict) -> dict:
        """Replace each parameter's .grad by the sum over processes of `share` x its .grad (share:
        this process's fraction of the meta-batch), and `figures` (floats) by their share-weighted
        sums. A parameter keeps no gradient only when no process gave it one, as in one process."""
        ref = next(iter(params))
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        given = [float(p.grad is not None) for p in params]
        flat = torch.cat([g.reshape(-1) * share for g in grads]
                         + [torch.tensor(given + [v * share for v in figures.values()], dtype=ref.dtype, device=ref.device)])
        with _collective():
            dist.all_reduce(flat)
        at = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[at:at + n].view_as(p).clone()
            at += n
        tail = flat[at:].tolist()
        for p, got in zip(params, tail[:len(params)]):
            if got == 0:
                p.grad = None
        return dict(zip(figures, tail[len(params):]))

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a stop decision all must share)."""
        if self.size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self._collective_device())
        with _collective():
            dist.all_reduce(t)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.size > 1:
            with _collective():
                dist.barrier()

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def current() -> Group:
    """The group this process belongs to (the trivial one outside a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Group()


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Group]:
    """The process group of a torchrun launch (set up here when WORLD_SIZE > 1, and closed on
    the way out), or the trivial group. An outer caller's group is used as it is. Processes
    other than the first are quiet: one progress bar and one log, not N."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    if not dist.is_available():
        raise BadInput("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:  # a WORLD_SIZE left in the environment by something else: torch's ValueError traceback
        raise BadInput(f"WORLD_SIZE={size} is set, but not {', '.join(missing)}, as torchrun sets them: launch with "
                       f"torchrun --nproc_per_node {size}, or unset WORLD_SIZE to run in one process")
    # checked before the group forms: NCCL's own errors (no GPU: "Distributed package doesn't
    # have NCCL built in"; two processes on one GPU) come as a traceback from every process
    gpu = pick_device(device).type == "cuda"
    gpus = torch.cuda.device_count() if gpu else 0
    here = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # this machine's processes: each needs a GPU
    if gpu and here > gpus:
        raise BadInput(f"torchrun started {here} processes on a machine with {gpus} GPU{'s' if gpus != 1 else ''}: "
                       f"each needs its own (--nproc_per_node {gpus}, or {option('device')} cpu)")
    if gpu:  # before the barrier below, which NCCL runs on this process's current GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # before the group forms: the first optimizer imports torch._dynamo, and imported while a
    # group is up it keeps references to it that destroy_process_group cannot drop, so the
    # group's gloo threads and connections outlived it into the interpreter's exit, where now
    # and then they aborted the process ("terminate called without an active exception",
    # SIGABRT, after a run that had written everything)
    importlib.import_module("torch._dynamo")
    timeout = datetime.timedelta(seconds=timeout_s())
    try:
        dist.init_process_group(backend="nccl" if gpu else "gloo", timeout=timeout)
    except RuntimeError as exc:  # one process never joined; any other error as torch words it
        lost = _gave_up(exc)
        if lost is None:
            raise
        raise lost from exc
    try:
        # every process has joined before any goes on: one that failed on its input at once and
        # closed its end could break another's joining, which then died with a traceback
        # ("Gloo connectFullMesh failed ... Connection closed by peer") instead of its own one line
        with _collective():
            dist.barrier()
        group = current()
        if not group.is_main:
            set_quiet(True)
        yield group
        # all processes leave together: none closes its connections while another still uses
        # them (once suspected of the SIGABRT that the torch._dynamo import above ends). Only on
        # success: after an error in one process the others would wait here until torchrun, which
        # stops the rest when one fails, ends them. One that is gone by now had nothing left to do:
        # the run is complete, and this process ends as it would have
        with contextlib.suppress(LostProcess), _collective():
            dist.barrier()
    finally:
        dist.destroy_process_group()


def launched(fn):
    """Run `fn` (which takes `device=`) inside `session(device)`: under torchrun, in the group."""
    @functools.wraps(fn)
    def wrapper(*args, device: str = "auto", **kwargs):
        with session(device):
            return fn(*args, device=device, **kwargs)
    return wrapper


__all__ = ["Group", "current", "launched", "session"]
