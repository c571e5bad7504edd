"""quickadapt.allocator: freed training buffers stay in the process, so steps stop page-faulting."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

STEPS = r"""
import json, resource, torch
from quickadapt.allocator import keep_freed_memory
from quickadapt.data.episodes import Episode
from quickadapt.encoders import create_encoder
from quickadapt.meta import create_meta

applied = keep_freed_memory()
torch.set_num_threads(1)
torch.manual_seed(0)
learner = create_meta("maml", create_encoder("conv4"), inner_steps=1)
T, way = 4, 5  # second-order MAML steps on random 28x28 images: megabyte activations
batch = Episode(torch.rand(T, way, 1, 28, 28) * 255, torch.arange(way).repeat(T, 1),
                torch.rand(T, way * 5, 1, 28, 28) * 255, torch.arange(way).repeat_interleave(5).repeat(T, 1), [[]] * T)
for _ in range(4):
    learner.accumulate(batch, "loop")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    learner.accumulate(batch, "loop")
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, timeout=300, env=environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kept = json.loads(proc.stdout.strip().splitlines()[-1])
    assert kept["applied"] is True
    # glibc's own policy page-faults on most such steps, not on all: the bound is on the kept side
    # over three steps; 15,000-22,000 without it in this test, up to 3,984 with it on a machine running
    # four busy processes on its two cores
    assert kept["faults"] < 6000, kept


def test_a_users_own_malloc_settings_win():
    check = "from quickadapt.allocator import keep_freed_memory; print(keep_freed_memory())"  # no steps needed
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "1000000"})
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]
