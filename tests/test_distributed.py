"""Meta-training under torchrun: two CPU processes (gloo) share each meta-batch's tasks and step
with the same gradients as one process; only the first writes and reports."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from quickadapt.meta.run import run_meta_train

TORCHRUN = Path(sys.executable).with_name("torchrun")
ARGS = ["--data", "builtin:omniglot", "--method", "maml", "--ways", "3", "--shots", "1", "--queries", "2",
        "--meta-batch", "4", "--set", "encoder.channels=8"]


def torchrun(*args, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", "-m", "quickadapt",
                           "meta-train", *ARGS, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_step_with_one_process_gradients(tmp_path):
    run_meta_train("builtin:omniglot", method="maml", n_way=3, k_shot=1, n_query=2, meta_batch=4, steps=1,
                   encoder_settings={"channels": 8}, settings={"validate_every": 0}, out=tmp_path / "one",
                   progress=False)
    r = torchrun("--steps", 1, "--set", "validate_every=0", "--out", tmp_path / "two", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    one = load_file(str(tmp_path / "one" / "checkpoint" / "state.safetensors"))
    two = load_file(str(tmp_path / "two" / "checkpoint" / "state.safetensors"))
    assert torch.equal(one["rng.sampler"], two["rng.sampler"])  # the same episodes were drawn
    # Adam's first moment after one step is a tenth of the gradient: equal up to summation order
    moments = [k for k in one if k.endswith(".exp_avg")]
    assert len(moments) == 16
    for k in moments:
        assert torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-8), k
    assert json.loads(r.stdout)["steps"] == 1  # one report, from the first process


def test_validation_checkpoint_and_model_come_from_the_first_process(tmp_path):
    out = tmp_path / "m"
    r = torchrun("--steps", 3, "--set", "validate_every=2", "--set", "validate_episodes=4", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, (r.stdout, r.stderr)  # everything, should this ever fail again
    result = json.loads(lines[0])
    assert [s for s, _ in result["validation"]["curve"]] == [2, 3]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["meta"]["train"]["steps"] == 3 and (out / "checkpoint" / "state.json").is_file()
    # continuing with more steps works the same way
    r = torchrun("--steps", 4, "--set", "validate_every=2", "--set", "validate_episodes=4", "--out", out,
                 "--resume", "--json", "--quiet")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["steps"] == 4


def test_a_meta_batch_smaller_than_the_processes_is_refused(tmp_path):
    r = torchrun("--steps", 1, "--meta-batch", 1, "--out", tmp_path / "m", "--quiet")
    assert r.returncode != 0
    assert "error: --meta-batch 1 is below the 2 processes: each needs a task" in r.stderr
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_other_commands_are_refused_under_torchrun(tmp_path, monkeypatch):
    """Only meta-train shares its work out: fit, predict, episodes ... under torchrun would run whole
    in every process (two fits raced for one --out, episodes printed its answer twice)."""
    from cli_helpers import assert_bad_input, run

    train = tmp_path / "train.csv"
    train.write_text("f1,f2,label\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(12)))
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it in each process
    monkeypatch.setenv("RANK", "1")
    assert_bad_input(run("fit", "--data", train, "--strategy", "probe", "--out", tmp_path / "m", "--quiet"),
                     "fit runs in one process: under torchrun (WORLD_SIZE=2) each of the 2 processes would run it whole")
    assert not (tmp_path / "m").exists()
    assert_bad_input(run("episodes", "conv4", "--data", "builtin:omniglot", "--ways", 2, "--shots", 1), "without torchrun")
    assert_bad_input(run("datasets"), "without torchrun")


def test_a_device_this_machine_lacks_is_refused_before_the_processes_join(monkeypatch):
    """--device cuda without a GPU failed in every process with NCCL's traceback ("Distributed
    package doesn't have NCCL built in"); more processes than GPUs would share one."""
    import pytest
    from quickadapt.distributed import session
    from quickadapt.errors import BadInput

    for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():  # as torchrun sets them
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BadInput, match="no CUDA GPU is available here"):
        with session("cuda"):
            pass
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("cuda", "auto"):
        with pytest.raises(BadInput, match="torchrun started 2 processes on a machine with 1 GPU: each needs its own"):
            with session(device):
                pass


def test_a_usage_error_under_torchrun_prints_one_json_object(tmp_path):
    """An unknown option is found before the command runs: every process printed its own
    {"error": ...} on stdout with --json (two objects for two processes), as other errors do not."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "OMP_NUM_THREADS": "1"}  # torchrun's second process
    r = subprocess.run([sys.executable, "-m", "quickadapt", "meta-train", "--data", "builtin:omniglot", "--bogus",
                        "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: No such option: --bogus") and r.stdout == ""
    r = subprocess.run([sys.executable, "-m", "quickadapt", "meta-train", "--data", "builtin:omniglot", "--bogus",
                        "--json"], capture_output=True, text=True, env={**env, "RANK": "0"}, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and json.loads(r.stdout) == {"error": "No such option: --bogus"}


def test_a_stopped_launch_is_reported_once_by_the_first_process(tmp_path):
    """SIGTERM to torchrun (as `timeout` or `kill` send it) stops every process at once: the first
    said the checkpoint was kept, and the second, in the same log, "nothing was written"."""
    import signal
    import time

    out = tmp_path / "m"
    launch = subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "quickadapt", "meta-train",
                               *ARGS, "--steps", "10000", "--set", "validate_every=0", "--checkpoint-every", "0",
                               "--out", str(out)],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while not (out / "checkpoint" / "state.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    launch.send_signal(signal.SIGTERM)
    _, stderr = launch.communicate(timeout=120)
    assert f"the last checkpoint is kept in {out / 'checkpoint'}" in stderr, stderr
    assert "nothing was written" not in stderr, stderr


def test_a_world_size_without_torchrun_is_refused(monkeypatch):
    """WORLD_SIZE left in the environment by something other than torchrun: torch's ValueError
    traceback ("environment variable RANK expected, but not set")."""
    import pytest
    from quickadapt.distributed import session
    from quickadapt.errors import BadInput

    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BadInput, match="WORLD_SIZE=2 is set, but not RANK, MASTER_ADDR, MASTER_PORT, as torchrun sets "
                                       "them: launch with torchrun --nproc_per_node 2, or unset WORLD_SIZE"):
        with session("cpu"):
            pass


def test_the_group_is_gone_when_the_run_returns(tmp_path):
    """The first optimizer imports torch._dynamo, which, imported while the group was up, kept it
    past destroy_process_group: its gloo threads and connections lived on into the interpreter's
    exit, where now and then they aborted a process (SIGABRT, "terminate called without an active
    exception") after a run that had written everything."""
    import pytest

    if not Path("/proc/self/task").is_dir():
        pytest.skip("reads the process's threads from /proc")
    script = tmp_path / "run.py"
    script.write_text(
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "from quickadapt.meta.run import run_meta_train\n"
        "run_meta_train('builtin:omniglot', method='maml', n_way=3, k_shot=1, n_query=2, meta_batch=4, steps=1,\n"
        "               encoder_settings={'channels': 8}, settings={'validate_every': 0}, out=sys.argv[1], progress=False)\n"
        "names = [p.read_text() for p in Path('/proc/self/task').glob('*/comm')]\n"
        # a file each: both printing to the one pipe, their lines ran together now and then ('["python"]["python"]')
        "Path(sys.argv[2], 'threads-' + os.environ['RANK'] + '.json').write_text(json.dumps([n.strip() for n in names]))\n")
    r = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path / "m"),
                        str(tmp_path)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       timeout=300)
    assert r.returncode == 0, r.stderr
    threads = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("threads-*.json"))]
    assert len(threads) == 2, r.stdout  # one list from each process
    assert not [name for names in threads for name in names if "gloo" in name], threads


def test_a_process_killed_mid_run_ends_the_other_with_one_line(tmp_path):
    """kill -9 of one process (the out-of-memory killer, a user): the other, in the step's
    collective, got gloo's "Connection reset by peer" and a traceback, or died silently of the
    SIGTERM torchrun sends a moment later (exit -15, not a word about the checkpoint kept)."""
    import signal
    import time

    out = tmp_path / "m"
    launch = subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "quickadapt", "meta-train",
                               *ARGS, "--steps", "10000", "--set", "validate_every=0", "--checkpoint-every", "0",
                               "--out", str(out), "--quiet"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while not (out / "checkpoint" / "state.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    second = [p for p in Path("/proc").glob("[0-9]*") if _parent(p) == launch.pid and "RANK=1" in _environ(p)]
    assert len(second) == 1
    killed = time.monotonic()
    os.kill(int(second[0].name), signal.SIGKILL)
    _, stderr = launch.communicate(timeout=120)
    assert time.monotonic() - killed < 60  # not gloo's 30-minute timeout
    assert launch.returncode != 0
    kept = [line for line in stderr.splitlines() if f"the last checkpoint is kept in {out / 'checkpoint'}" in line]
    assert len(kept) == 1, stderr
    # torchrun's SIGTERM can reach the first process before gloo's error does on a loaded machine:
    # then it stops as on Ctrl-C, with that line
    assert kept[0].startswith(("error: another of the 2 torchrun processes stopped or stopped answering mid-run (",
                               "interrupted: ")), stderr
    assert "[rank0]" not in stderr, stderr  # no traceback from the first process


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _environ(proc: Path) -> list[str]:
    try:
        return (proc / "environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _as_torchrun_sets_it(monkeypatch):
    for name, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)


def test_a_process_that_never_answers_is_given_up_after_ten_minutes_or_the_set_time(monkeypatch):
    """The group was formed without a timeout: one process hung (or never started) held the others
    for gloo's 30 minutes, then a traceback at the start or a line naming milliseconds mid-run."""
    import datetime

    import pytest
    import torch.distributed as dist

    from quickadapt.distributed import _collective, session
    from quickadapt.errors import LostProcess

    _as_torchrun_sets_it(monkeypatch)
    given = []

    def never_joined(backend, timeout):  # what the store says when one process does not join in time
        given.append(timeout)
        raise dist.DistStoreError(f"wait timeout after {timeout.total_seconds() * 1000:.0f}ms, keys: /default_pg/0//cpu//0/1")

    monkeypatch.setattr(dist, "init_process_group", never_joined)
    for value, seconds in [(None, 600), ("90", 90), (" 2.5 ", 2.5)]:
        if value is None:
            monkeypatch.delenv("QUICKADAPT_TORCHRUN_TIMEOUT", raising=False)
        else:
            monkeypatch.setenv("QUICKADAPT_TORCHRUN_TIMEOUT", value)
        with pytest.raises(LostProcess, match=rf"^another of the 2 torchrun processes stopped answering: nothing from "
                                              rf"it for {seconds:g} s \(QUICKADAPT_TORCHRUN_TIMEOUT sets how long"):
            with session("cpu"):
                pass
        assert given[-1] == datetime.timedelta(seconds=seconds)
    # mid-run, gloo's own words
    with pytest.raises(LostProcess, match=r"^another of the 2 torchrun processes stopped answering: nothing from it for 2.5 s"):
        with _collective():
            raise RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out "
                               "waiting 2500ms for recv operation to complete")


def test_a_torchrun_timeout_that_is_not_a_number_of_seconds_is_refused(monkeypatch):
    import pytest
    import torch.distributed as dist

    from quickadapt.distributed import session
    from quickadapt.errors import BadInput

    _as_torchrun_sets_it(monkeypatch)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: pytest.fail("the group formed"))
    for value in ("ten", "0", "-5", "nan", "inf", "1e9", "10m"):
        monkeypatch.setenv("QUICKADAPT_TORCHRUN_TIMEOUT", value)
        with pytest.raises(BadInput, match=rf"^QUICKADAPT_TORCHRUN_TIMEOUT={value}: give the seconds a process waits "
                                           r"for the others, above 0 and at most 86400 \(unset: 600\)$"):
            with session("cpu"):
                pass
