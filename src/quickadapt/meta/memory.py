"""Whether one meta-step's episodes can fit in memory, checked before meta-training starts.

`meta-train --ways 500` on Omniglot (644 classes allow it) grew to 22 GB and was killed by the
out-of-memory killer with no message. What a step holds is mostly what autograd keeps for the
backward pass, which grows with the examples in the episodes alive at once: measured on a few
examples, scaled to a step, and compared with the machine's (or the GPU's) memory."""
from __future__ import annotations

import os

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


def memory_bytes(device: torch.device) -> int | None:
    """The GPU's memory on cuda, else the machine's physical memory (None where it cannot be read)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this system
        return None


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
        where = "the GPU's" if device.type == "cuda" else "this machine's"
        raise BadInput(f"one meta-step of {tasks} episode{'s' if tasks != 1 else ''} of {n_way} ways x "
                       f"({k_shot} shots + {n_query} queries) needs at least {need / 2**30:.1f} GiB, more than "
                       f"{where} {total / 2**30:.1f} GiB; lower {option('n_way', '--ways')}, "
                       f"{option('n_query', '--queries')} or {option('meta_batch', '--meta-batch')}")
