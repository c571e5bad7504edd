"""Keep freed CPU memory in the process for the next training step.

A training step allocates and frees the same large activation buffers (megabytes each) over
and over. glibc's malloc serves such blocks with mmap and gives them back to the system on
free, adapting that threshold as it goes; in practice some steps then pay for thousands of
fresh page faults and some do not. Fixing the mmap threshold at glibc's ceiling (32 MiB) and
never trimming the heap keeps those blocks for reuse: on this 2-core machine a second-order
MAML task step went from a median of 45-47 ms (7,000-37,000 page faults a step) to 35 ms (none),
and bench/meta_speed.py's threads path ran a meta-step in 0.53 s against 0.59-0.74 s in three
earlier runs without it. The price is that memory freed after the peak stays with the process
until it exits.

`keep_freed_memory()` is called by the CLI and by the training loops; it does nothing off glibc,
or when the user has chosen for themselves (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in
the environment, or another allocator preloaded)."""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the largest value glibc accepts on 64-bit systems
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks below 32 MiB for reuse (once per process).
    True when the setting is in force, False when it does not apply here."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    chosen = any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"))
    preloaded = any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc"))
    if chosen or preloaded or not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it (musl's mallopt does nothing)
    except (OSError, AttributeError):
        return _applied
    _applied = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _applied
