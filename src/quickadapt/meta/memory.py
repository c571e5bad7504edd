"""Whether one meta-step's episodes can fit in memory, checked before meta-training starts.

`meta-train --ways 500` on Omniglot (644 classes allow it) grew to 22 GB and was killed by the
out-of-memory killer with no message. What a step holds is mostly what autograd keeps for the
backward pass, which grows with the examples in the episodes alive at once: measured on a few
examples, scaled to a step, and compared with the machine's (or the GPU's) memory."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from quickadapt.errors import BadInput, option

PROBE_EXAMPLES = 4  # the few inputs the probe forward runs on


def saved_bytes_per_example(encoder: torch.nn.Module, inputs) -> float:
    """Bytes that one example's forward pass keeps for the backward pass (its prepared input
    included), measured on `inputs`. The weights autograd also keeps are shared by every
    example, so they are left out (MiniLM's would count 90 MB per probe)."""
    weights = {p.untyped_storage().data_ptr() for p in encoder.parameters()}
    kept = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in weights:
            kept[0] += t.numel() * t.element_size()
        return t

    batch = encoder.prepare_tensor(list(inputs))
    # in eval mode: training mode would draw dropout from the seeded random stream (changing
    # the run's weights) and move batch-norm statistics; it keeps a little more (dropout masks)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            encoder(batch)
    finally:
        encoder.train(was_training)
    return (kept[0] + batch.numel() * batch.element_size()) / len(inputs)


CGROUP_ROOT = Path("/sys/fs/cgroup")  # where control groups are mounted; tests point it at a folder of their own
OWN_CGROUPS = Path("/proc/self/cgroup")  # the groups this process belongs to, one `id:controllers:path` a line
UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2**63; v2 writes "max"


def memory_bytes(device: torch.device) -> int | None:
    """The GPU's memory on cuda, else the machine's physical memory or the memory limit of the
    control groups this process runs in, whichever is smaller (None where neither can be read):
    in a container (docker --memory 4g) the machine's memory is the host's, and a step past the
    limit was killed by the out-of-memory killer with no word, as past the machine's."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this system
        physical = None
    limits = [n for n in (physical, cgroup_limit_bytes()) if n is not None]
    return min(limits) if limits else None


def cgroup_limit_bytes(root: Path | None = None, own: Path | None = None) -> int | None:
    """The smallest memory limit of this process's control groups and the groups above them (a
    parent's limit binds its children too), cgroup v2's memory.max or v1's memory.limit_in_bytes;
    None without one. A container that shows its own group as the root of the mount (as docker
    does) has its limit there."""
    root, own = root or CGROUP_ROOT, own or OWN_CGROUPS
    try:
        lines = own.read_text().splitlines()
    except OSError:
        lines = []
    found = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: one hierarchy for every controller
            mount, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            mount, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        folder = mount / path.strip().lstrip("/")
        folder = folder if folder.is_dir() else mount  # the host's path, seen from inside a container
        while True:
            found.append(_limit(folder / name))
            if folder == mount or mount not in folder.parents:
                break
            folder = folder.parent
    limits = [n for n in found if n is not None]
    return min(limits) if limits else None


def _limit(file: Path) -> int | None:
    """A memory limit file's bytes, None for no limit or no such file."""
    try:
        text = file.read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) >= UNLIMITED:  # "max"
        return None
    return int(text)


def check_step_fits(encoder: torch.nn.Module, inputs, *, n_way: int, k_shot: int, n_query: int, tasks: int,
                    device: torch.device) -> None:
    """Refuse a meta-step whose episodes (`tasks` of them alive at once, each n_way x (k_shot +
    n_query) examples) would keep more for the backward pass than the memory there is. A lower
    bound: the inner steps of the MAML family keep more, so only settings that clearly cannot
    fit are refused."""
    total = memory_bytes(device)
    if total is None:
        return
    per_example = saved_bytes_per_example(encoder, inputs[:PROBE_EXAMPLES])
    examples = n_way * (k_shot + n_query) * tasks
    need = per_example * examples
    if need > total:
        where = ("the GPU's" if device.type == "cuda" else
                 "this machine's" if total != cgroup_limit_bytes() else "this process's memory limit (cgroup) of")
        raise BadInput(f"one meta-step of {tasks} episode{'s' if tasks != 1 else ''} of {n_way} ways x "
                       f"({k_shot} shots + {n_query} queries) needs at least {need / 2**30:.1f} GiB, more than "
                       f"{where} {total / 2**30:.1f} GiB; lower {option('n_way', '--ways')}, "
                       f"{option('n_query', '--queries')} or {option('meta_batch', '--meta-batch')}")
