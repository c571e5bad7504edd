"""Meta-training end to end: kill-and-resume gives equal weights, the CLI chain
meta-train -> episodes -> fit --encoder DIR works, and bad inputs exit 2 with one line."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from cli_helpers import assert_bad_input, assert_top_ranks_the_model_s_probabilities, run
from quickadapt.errors import BadInput
from quickadapt.meta.run import run_meta_train

TINY = dict(method="maml", n_way=3, k_shot=1, n_query=2, meta_batch=2, encoder_settings={"channels": 8},
            progress=False)


class Killed(Exception):
    pass


VALIDATE = {"validate_every": 2, "validate_episodes": 4}  # validation (and early stopping) on, tiny


def test_kill_and_resume_gives_equal_weights(tmp_path):
    settings = {**VALIDATE, "augment": True}  # the random image jitter resumes with the episodes' generator
    full = run_meta_train("builtin:omniglot", out=tmp_path / "full", steps=6, settings=settings, **TINY)
    assert full["steps"] == 6
    val = full["validation"]
    assert [s for s, _ in val["curve"]] == [2, 4, 6] and val["n_way"] == 3
    assert val["best_accuracy"] == max(a for _, a in val["curve"])
    manifest = json.loads((tmp_path / "full" / "manifest.json").read_text())
    assert manifest["meta"]["train"]["validation"]["curve"] == val["curve"]

    def kill(step):
        if step == 4:  # checkpoints every 3 steps: the work of step 4 is lost and redone
            raise Killed

    with pytest.raises(Killed):
        run_meta_train("builtin:omniglot", out=tmp_path / "part", steps=6, checkpoint_steps=3, on_step=kill,
                       settings=settings, **TINY)
    state = json.loads((tmp_path / "part" / "checkpoint" / "state.json").read_text())
    assert state["state"]["step"] == 3 and not (tmp_path / "part" / "manifest.json").exists()
    assert [s for s, _ in state["state"]["val_curve"]] == [2]  # the curve and best weights are in the checkpoint
    resumed = run_meta_train("builtin:omniglot", out=tmp_path / "part", steps=6, resume=True, settings=settings, **TINY)
    assert resumed["steps"] == 6
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["running_accuracy"] == full["running_accuracy"]
    # early stopping: the saved model is the best validated one, not the last
    ckpt = load_file(str(tmp_path / "full" / "checkpoint" / "state.safetensors"))
    assert all(torch.equal(a[k], ckpt[f"best.{k}"]) for k in a if k.startswith("encoder."))
    if val["best_step"] != 6:
        assert not all(torch.equal(a[k], ckpt[f"model.{k}"]) for k in a if k.startswith("encoder."))
    assert resumed["validation"]["curve"] == full["validation"]["curve"]


def test_sigkill_and_resume_gives_equal_weights(tmp_path):
    """A real kill: SIGKILL a `quickadapt meta-train` process mid-run, resume it, and get the weights of
    an uninterrupted run (one thread everywhere, so both runs do the same arithmetic)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(out, *extra):
        return [sys.executable, "-m", "quickadapt.cli", "meta-train", "--data", "builtin:omniglot", "--method", "maml",
                "--ways", "3", "--shots", "1", "--queries", "2", "--meta-batch", "2", "--steps", "100",
                "--set", "encoder.channels=8", "--set", "checkpoint_steps=1", "--set", "validate_every=20",
                "--set", "validate_episodes=4", "--out", str(out), "--quiet", "--json", *extra]

    full = subprocess.run(cmd(tmp_path / "full"), env=env, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr

    proc = subprocess.Popen(cmd(tmp_path / "part"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file, step, deadline = tmp_path / "part" / "checkpoint" / "state.json", 0, time.monotonic() + 60
    try:
        while step < 2 and time.monotonic() < deadline and proc.poll() is None:
            try:
                step = json.loads(state_file.read_text())["state"]["step"]
            except (OSError, ValueError, KeyError):  # not written yet, or caught mid-swap
                pass
            time.sleep(0.005)
        assert proc.poll() is None, "meta-train finished before it could be killed; raise --steps"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and 2 <= step < 100
    assert not (tmp_path / "part" / "manifest.json").exists()

    resumed = subprocess.run(cmd(tmp_path / "part", "--resume"), env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = json.loads(full.stdout), json.loads(resumed.stdout)
    assert rb["steps"] == 100 and rb["validation"]["curve"] == ra["validation"]["curve"]


@pytest.fixture(scope="module")
def one_per_class(tmp_path_factory):
    """Real Omniglot test characters as a user image folder: one training image per class, and others to predict."""
    from quickadapt.data import load_dataset

    data = load_dataset("builtin:omniglot")
    root = tmp_path_factory.mktemp("imgs")
    for c in ("Sanskrit/character01", "Sanskrit/character02", "Tagalog/character03"):
        idx = np.flatnonzero(data.labels == c)
        for part, rows in (("train", idx[:1]), ("test", idx[1:6])):
            folder = root / part / c.replace("/", "_")
            folder.mkdir(parents=True)
            for i in rows:
                Image.fromarray(data.inputs[i]).save(folder / f"{i}.png")
    return root


def test_cli_meta_train_episodes_and_fit_with_the_encoder(tmp_path, one_per_class):
    out = tmp_path / "meta"
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 5, "--shots", 1,
            "--out", out, "--steps", 30, "--meta-batch", 4, "--set", "encoder.channels=16", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["steps"] == 30 and result["classes"] == {"train": 161, "val": 22, "test": 59}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "encoder" and manifest["meta"]["method"] == "protonet"
    assert len(manifest["meta"]["class_split"]["test"]) == 59

    r = run("episodes", out, "--data", "builtin:omniglot", "--ways", 5, "--shots", 1, "--episodes", 40, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    ep = json.loads(r.stdout)
    assert ep["split"] == "test" and ep["classes"] == 59 and ep["episodes"] == 40
    assert ep["accuracy"] > 0.33 and 0 < ep["ci95"] < 0.1  # chance is 20%
    # one episode has no confidence interval: null in strict JSON (NaN is not JSON), said in the text
    r = run("episodes", out, "--data", "builtin:omniglot", "--ways", 5, "--shots", 1, "--episodes", 1, "--json", "--quiet")
    assert r.exit_code == 0 and json.loads(r.stdout, parse_constant=pytest.fail)["ci95"] is None
    r = run("episodes", out, "--data", "builtin:omniglot", "--ways", 5, "--shots", 1, "--episodes", 1, "--quiet")
    assert "(one episode: no confidence interval) over 1 episode from" in r.stdout

    fitted = tmp_path / "fitted"
    r = run("fit", "--data", one_per_class / "train", "--encoder", out, "--strategy", "prototypes", "--out", fitted,
            "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    r = run("evaluate", fitted, "--data", one_per_class / "test", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] > 0.5  # 3 classes, one example each: chance is 33%
    assert_top_ranks_the_model_s_probabilities(fitted, one_per_class / "test", 2)  # prototypes on it, ranked

    # --resume with more steps continues the stored run; a different method is refused
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 5, "--shots", 1,
            "--out", out, "--steps", 33, "--meta-batch", 4, "--set", "encoder.channels=16", "--resume", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 33
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "maml", "--ways", 5, "--shots", 1,
            "--out", out, "--steps", 40, "--set", "encoder.channels=16", "--resume", "--quiet")
    assert_bad_input(r, "was trained with 'protonet'")


def test_validation_is_capped_or_skipped_without_enough_classes(tmp_path, one_per_class):
    # 25-way training still validates, 22-way: Early_Aramaic has 22 characters
    r = run_meta_train("builtin:omniglot", out=tmp_path / "wide", method="protonet", n_way=25, k_shot=1, n_query=1,
                       steps=1, meta_batch=1, encoder_settings={"channels": 8}, settings={"validate_episodes": 2},
                       progress=False)
    assert r["validation"]["n_way"] == 22 and [s for s, _ in r["validation"]["curve"]] == [1]
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 25, "--shots", 1,
            "--queries", 1, "--steps", 1, "--meta-batch", 1, "--set", "encoder.channels=8", "--set",
            "validate_episodes=2", "--out", tmp_path / "wide2", "--quiet")
    assert r.exit_code == 0 and "on 22-way episodes: fewer validation classes" in r.stdout, r.stdout + r.stderr
    # 3 classes of a flat folder split at random: none left for validation, so training goes on without it
    r = run("meta-train", "--data", one_per_class / "test", "--method", "protonet", "--ways", 2, "--shots", 1,
            "--queries", 2, "--no-rotations", "--steps", 2, "--set", "encoder.channels=8", "--out", tmp_path / "m",
            "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["validation"] == {"skipped": "no validation classes"}


def omniglot_folder(root, n_classes, per_class=3):
    """The first `n_classes` Omniglot characters as a flat user folder of class folders."""
    from quickadapt.data import load_dataset

    data = load_dataset("builtin:omniglot")
    for c in sorted(set(data.labels.tolist()))[:n_classes]:
        folder = root / c.replace("/", "_")
        folder.mkdir(parents=True)
        for i in np.flatnonzero(data.labels == c)[:per_class]:
            Image.fromarray(data.inputs[i]).save(folder / f"{i}.png")
    return root


def test_one_validation_class_is_named_and_noted(tmp_path):
    # 6 classes split at random: 1 for testing, 1 for validation (no episode), 4 to train on
    data = omniglot_folder(tmp_path / "six", 6)
    r = run("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--steps", 2, "--set", "encoder.channels=8", "--out", tmp_path / "m", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["validation"] == {"skipped": "1 validation class (validation episodes need 2)"}
    assert "note: no early stopping: 1 validation class" in r.stderr
    assert "leave 1 held out for testing" in r.stderr


def test_resume_refuses_changed_data_and_fewer_steps(tmp_path):
    data = omniglot_folder(tmp_path / "data", 4)
    out = tmp_path / "m"
    args = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--set", "encoder.channels=8", "--out", out, "--quiet")
    assert run(*args, "--steps", 2).exit_code == 0
    assert_bad_input(run(*args, "--steps", 1, "--resume"), "has done 2 steps, more than --steps 1")
    state_file = out / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    assert len(state["spec"]["data_fingerprint"]) == 64
    # the same data spelt another way (a trailing slash here; ./data or a moved copy alike) resumes
    respelt = [f"{data}/" if a == data else a for a in args]
    r = run(*respelt, "--steps", 2, "--resume", "--json")
    assert r.exit_code == 0, r.stderr
    # one image replaced by another: same path, same classes, other data
    images = sorted(data.rglob("*.png"))
    images[0].write_bytes(images[-1].read_bytes())
    assert_bad_input(run(*args, "--steps", 3, "--resume"), "differs from the data the checkpoint")
    # a checkpoint written before fingerprints were stored still resumes
    del state["spec"]["data_fingerprint"]
    state_file.write_text(json.dumps(state))
    # and a checkpoint write that a SIGKILL cut short, before any model was written, leaves its temp
    # folder: swept, not refused as "files but no quickadapt output"
    for name in ("manifest.json", "model.safetensors"):
        (out / name).unlink()
    (out / ".checkpoint.k1ll3d").mkdir()
    (out / ".checkpoint.k1ll3d" / "state.json").write_text("{")
    r = run(*args, "--steps", 3, "--resume", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 3 and not (out / ".checkpoint.k1ll3d").exists()


@pytest.mark.parametrize("edit, fragment", [
    # each was a traceback: a KeyError, 'RNG state must be a torch.ByteTensor', and a TypeError
    # ('<' between int and str) from the run's checks
    ("del tensors['rng.torch']", "checkpoint lacks 'rng.torch'; it was edited or damaged"),
    ("tensors['rng.torch'] = torch.zeros(3)", "checkpoint holds a value of the wrong kind (rng state must be a"),
    ("state['state']['step'] = 'x'", "unreadable checkpoint (its state, step 'x' and seconds"),
    # a traceback at the run's end, after the training: max() over the curve, the best weights loaded
    ("state['state']['val_curve'] = [[1, 'x']]", "its validation curve,"),
    ("tensors.update({'best.' + k[6:]: v[:1].clone() for k, v in tensors.items() if k.startswith('model.')})",
     "checkpoint does not fit this model (its best weights' names, shapes or dtypes differ)"),
    ("tensors.update({k: v.double() for k, v in tensors.items() if k.startswith('model.')})",  # was cast silently
     "checkpoint does not fit this model (its model weights' names, shapes or dtypes differ)"),
    # read whole whatever its size, where a manifest over 256 MB is refused unread (the limit lowered here)
    ("state['junk'] = list(range(5000)); import quickadapt.artifact; "
     "monkeypatch.setattr(quickadapt.artifact, 'MAX_MANIFEST_BYTES', 2**14)",
     "state.json: 0 MB, not a quickadapt checkpoint state"),
])
def test_a_damaged_checkpoint_is_refused_in_one_line_on_resume(tmp_path, monkeypatch, edit, fragment):
    from safetensors.torch import save_file

    data = omniglot_folder(tmp_path / "data", 4)
    out = tmp_path / "m"
    args = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--set", "encoder.channels=8", "--out", out, "--quiet")
    assert run(*args, "--steps", 2).exit_code == 0
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    tensors = load_file(str(out / "checkpoint" / "state.safetensors"))
    exec(edit)
    (out / "checkpoint" / "state.json").write_text(json.dumps(state))
    save_file(tensors, str(out / "checkpoint" / "state.safetensors"))
    assert_bad_input(run(*args, "--steps", 3, "--resume"), fragment)


@pytest.mark.parametrize("edit, fragment", [
    ("torch.zeros(3)", "stored weights do not fit method 'metasgd''s meta-parameters (size mismatch for lrs."),  # a traceback
    ("tensor.to(torch.int8)", "is int8, not float32"),  # cast silently: every learned rate rounded
])
def test_stored_meta_parameters_that_do_not_fit_are_refused_in_one_line(tmp_path, edit, fragment):
    from safetensors.torch import save_file

    data = omniglot_folder(tmp_path / "data", 4)
    out = tmp_path / "m"
    assert run("meta-train", "--data", data, "--method", "metasgd", "--ways", 2, "--shots", 1, "--queries", 2,
               "--no-rotations", "--set", "encoder.channels=8", "--out", out, "--steps", 1, "--quiet").exit_code == 0
    tensors = load_file(str(out / "model.safetensors"))
    key = next(k for k in tensors if k.startswith("meta."))
    tensors[key] = eval(edit, {"torch": torch, "tensor": tensors[key]})
    save_file(tensors, str(out / "model.safetensors"))
    assert_bad_input(run("episodes", out, "--data", data, "--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 1,
                         "--split", "all", "--quiet"), fragment)

def test_cli_bad_inputs_exit_2(tmp_path, one_per_class):
    base = ("meta-train", "--data", "builtin:omniglot", "--shots", 1, "--steps", 1, "--quiet")
    assert_bad_input(run(*base, "--method", "mamll", "--ways", 5, "--out", tmp_path / "a"), "did you mean maml")
    for budget in ("0", "nan", "inf"):
        assert_bad_input(run(*base, "--method", "maml", "--ways", 5, "--out", tmp_path / "a", "--time-budget", budget),
                         f"--time-budget must be a number of seconds above 0, got {budget}")
    assert_bad_input(run(*base, "--method", "maml", "--ways", 5, "--out", tmp_path / "a", "--set", "inner_lr=-1"),
                     "inner_lr")
    assert_bad_input(run(*base, "--method", "maml", "--ways", 5, "--out", tmp_path / "a", "--set", "nope=1"),
                     "unknown setting 'nope'")
    assert_bad_input(run(*base, "--method", "protonet", "--ways", 5, "--out", tmp_path / "a", "--set", "steps=10"),
                     "steps is set by --steps, not --set")
    assert_bad_input(run(*base, "--method", "protonet", "--ways", 5, "--out", tmp_path / "a", "--set", "bogus=1"),
                     "unknown setting 'bogus' for meta-train: protonet takes outer_lr, scale; the run takes")
    assert_bad_input(run(*base, "--method", "protonet", "--ways", 5, "--out", tmp_path / "a", "--set", "warp=0.1"),
                     "needs --set augment=elastic")
    assert_bad_input(run(*base, "--method", "protonet", "--ways", 5, "--out", tmp_path / "a", "--set", "mirrors=2"),
                     "mirrors must be true or false")
    assert_bad_input(run("meta-train", "--data", "builtin:clinc150-train", "--method", "protonet", "--ways", 5,
                         "--shots", 1, "--steps", 1, "--quiet", "--out", tmp_path / "a", "--set", "mirrors=true"),
                     "mirrors flip images")
    assert_bad_input(run("meta-train", "--data", one_per_class / "test", "--method", "protonet", "--ways", 5, "--shots", 1,
                         "--queries", 1, "--no-rotations", "--out", tmp_path / "b", "--quiet"), "classes available but 5-way")
    assert_bad_input(run("meta-train", "--data", one_per_class / "test", "--method", "protonet", "--ways", 2, "--shots", 4,
                         "--queries", 2, "--out", tmp_path / "c", "--quiet", "--no-rotations"), "4 shots + 2 queries need 6")
    (tmp_path / "empty").mkdir()
    assert_bad_input(run("meta-train", "--data", tmp_path / "empty", "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "d", "--quiet"), "no images found")
    assert_bad_input(run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "e", "--resume", "--quiet"), "no checkpoint to resume")
    assert_bad_input(run("episodes", tmp_path / "nothing", "--data", "builtin:omniglot", "--ways", 5, "--shots", 1,
                         "--quiet"), "neither a model folder nor an encoder name")
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 2, "--shots", 1,
            "--out", tmp_path / "m", "--steps", 1, "--set", "encoder.channels=8", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert_bad_input(run("episodes", tmp_path / "m", "--data", "builtin:omniglot", "--ways", 60, "--shots", 1,
                         "--quiet", "--json"), "59 of its 242 classes are test classes, fewer than 60-way episodes need; "
                     "pass --split all to use every class, or lower --ways")
    assert_bad_input(run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "m", "--quiet"), "already exists")
    assert_bad_input(run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "m", "--resume", "--force", "--quiet"), "pass one of them")
    (tmp_path / "afile").write_text("x")  # a file: --force cannot help, so the message must not suggest it
    assert_bad_input(run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 2, "--shots", 1,
                         "--out", tmp_path / "afile", "--quiet"), "exists and is not a folder")


def test_episodes_messages_name_the_real_problem(tmp_path):
    two = omniglot_folder(tmp_path / "two", 2)
    base = ("--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 2, "--quiet")
    # a plain encoder on 2 classes: the default split holds none out
    assert_bad_input(run("episodes", "conv4", "--data", two, *base), "the default split (seed 0) leaves none of its 2 classes for test; pass --split all")
    four = omniglot_folder(tmp_path / "four", 4)
    r = run("episodes", "conv4", "--data", four, *base[:-1], "--ways", 3, "--quiet")
    assert_bad_input(r, "1 of its 4 classes is a test class, fewer than 3-way episodes need; pass --split all")
    assert "lower --ways" not in r.stderr  # 2 ways is the least: one class makes no episode
    assert_bad_input(run("episodes", "conv4", "--data", two, *base, "--set", "bogus=2"),
                     "unknown setting 'bogus' for episodes: valid settings are finetune_lr, finetune_steps, views")
    assert_bad_input(run("episodes", "convv4", "--data", two, *base), "neither a model folder nor an encoder name")
    assert_bad_input(run("episodes", "mlp", "--data", two, *base), "encoder 'mlp' reads feature vectors; episodes are "
                     "drawn from images or text: use one of conv4")
    r = run("episodes", "conv4", "--data", two, *base[:-1], "--split", "all")
    assert r.exit_code == 0, r.stderr
    assert "from 2 classes (all)" in r.stdout


def run_in_child(out, prelude: str = "", **kwargs) -> tuple[dict, str]:
    """A tiny ProtoNet run_meta_train on Omniglot in a fresh Python, after `prelude` (which may
    arrange a SIGINT, as a terminal's Ctrl-C); returns what it stopped by, and its stderr."""
    args = {"out": str(out), "method": "protonet", "n_way": 3, "k_shot": 1, "n_query": 2, "meta_batch": 2,
            "encoder_settings": {"channels": 8}, "progress": False, **kwargs}
    code = ("import os, signal, threading, json\nfrom quickadapt.meta.run import run_meta_train\n" + prelude
            + f"r = run_meta_train('builtin:omniglot', on_step=globals().get('press'), **{args!r})\n"
            "print(json.dumps({'steps': r['steps'], 'stopped': r['stopped'],"
            " 'pretrain': (r['start'].get('pretrain') or {}).get('stopped')}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("signum, said", [("SIGINT", "interrupt"), ("SIGTERM", "SIGTERM")])
def test_ctrl_c_stops_after_the_step_and_saves(tmp_path, signum, said):
    """The first SIGINT (or SIGTERM: `docker stop`, `kill`, which once lost the whole run) asks
    the loop to stop between steps: the run ends as with a time budget (checkpoint and model
    written), and --resume continues from it."""
    press = f"def press(step):\n    if step == 2: os.kill(os.getpid(), signal.{signum})\n"
    result, stderr = run_in_child(tmp_path / "m", press, steps=50, settings={"validate_every": 0})
    assert result == {"steps": 2, "stopped": "interrupt", "pretrain": None}
    assert f"{said}: stopping after this step" in stderr
    assert (tmp_path / "m" / "manifest.json").is_file()
    state = json.loads((tmp_path / "m" / "checkpoint" / "state.json").read_text())
    assert state["state"]["step"] == 2
    r = run_meta_train("builtin:omniglot", out=tmp_path / "m", steps=4, resume=True, method="protonet", n_way=3,
                       k_shot=1, n_query=2, meta_batch=2, encoder_settings={"channels": 8},
                       settings={"validate_every": 0}, progress=False)
    assert r["steps"] == 4 and r["stopped"] == "steps"


def test_time_budget_and_ctrl_c_cover_pretraining_too(tmp_path):
    r = run_meta_train("builtin:omniglot", out=tmp_path / "tb", time_budget=2.0, method="protonet", n_way=3, k_shot=1,
                       n_query=2, meta_batch=2, steps=100000, encoder_settings={"channels": 8}, progress=False,
                       settings={"pretrain_steps": 100000, "validate_every": 0})
    assert r["start"]["pretrain"]["stopped"] == "time_budget" and r["stopped"] == "time_budget"
    assert (tmp_path / "tb" / "manifest.json").is_file() and (tmp_path / "tb" / "pretrained" / "manifest.json").is_file()
    # pretraining keeps no checkpoint: a resume meta-trains from the encoder it left, and says so
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 3, "--shots", 1, "--queries", 2,
            "--meta-batch", 2, "--steps", 2, "--set", "encoder.channels=8", "--set", "pretrain_steps=100000",
            "--set", "validate_every=0", "--out", tmp_path / "tb", "--resume")
    assert r.exit_code == 0, r.stderr
    assert "of 100000 (time_budget); the resumed run meta-trains from that encoder and does not pretrain further" in r.stderr
    # Ctrl-C once pretraining has begun (a fixed 4 s timer fired while Omniglot still loaded on a
    # busy machine, before any stage ran): the stop request is seen at its first step
    press = ("import quickadapt.meta.run as meta_run\n"
             "begin_pretraining = meta_run.pretrain\n"
             "def pretrain_then_press(*args, **kwargs):\n"
             "    os.kill(os.getpid(), signal.SIGINT)\n"
             "    return begin_pretraining(*args, **kwargs)\n"
             "meta_run.pretrain = pretrain_then_press\n")
    result, _ = run_in_child(tmp_path / "ci", press, steps=100000,
                             settings={"pretrain_steps": 100000, "validate_every": 0})
    assert result == {"pretrain": "interrupt", "stopped": "interrupt", "steps": 0}
    assert (tmp_path / "ci" / "manifest.json").is_file()


def test_help_paragraphs_wrap_to_the_terminal_not_to_the_source():
    from typer.testing import CliRunner

    from quickadapt.cli import app

    wide = CliRunner().invoke(app, ["meta-train", "--help"], env={"COLUMNS": "200"})
    assert wide.exit_code == 0 and "over every meta-training class, rotations included" in wide.stdout
    narrow = CliRunner().invoke(app, ["meta-train", "--help"], env={"COLUMNS": "60"})
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60


def test_force_keeps_the_old_model_when_the_new_run_is_refused(tmp_path):
    base = ("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 3, "--queries", 2,
            "--steps", 1, "--meta-batch", 2, "--set", "encoder.channels=8", "--set", "validate_every=0", "--quiet")
    r = run(*base, "--shots", 1, "--out", tmp_path / "m")
    assert r.exit_code == 0, r.stderr
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    # refused by the episode sampler, after the data and the encoder are read
    assert_bad_input(run(*base, "--shots", 30, "--out", tmp_path / "m", "--force"), "30 shots + 2 queries need 32")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before


def test_a_second_run_on_the_same_out_is_refused_while_the_first_writes(tmp_path):
    from quickadapt.output import sole_writer

    base = ("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 3, "--shots", 1,
            "--queries", 2, "--steps", 1, "--meta-batch", 2, "--set", "encoder.channels=8",
            "--set", "validate_every=0", "--quiet")
    with sole_writer(tmp_path / "m"):  # what a first run, still training, holds
        r = run(*base, "--out", tmp_path / "m")
        assert_bad_input(r, f"another quickadapt run (process {os.getpid()}) is writing --out")
        assert not (tmp_path / "m").exists()
    r = run(*base, "--out", tmp_path / "m")  # the first run ended: the lock went with it
    assert r.exit_code == 0, r.stderr


def test_a_full_disk_at_the_first_checkpoint_leaves_no_empty_out(tmp_path, monkeypatch):
    import errno

    import quickadapt.meta.train as meta_train

    def full(tensors, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(meta_train, "save_file", full)
    args = ("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 3, "--shots", 1,
            "--queries", 2, "--steps", 2, "--meta-batch", 2, "--set", "encoder.channels=8",
            "--set", "validate_every=0", "--set", "checkpoint_steps=1", "--out", tmp_path / "m", "--quiet")
    assert_bad_input(run(*args), "no space left")
    assert list(tmp_path.iterdir()) == []  # the rerun needs no --force
    monkeypatch.undo()
    assert run(*args).exit_code == 0


def test_resume_refuses_changed_run_settings_and_the_model_records_them(tmp_path):
    """A resume that drops or changes a setting shaping the weights (the schedule, clipping,
    validation) would end elsewhere than the run it claims to continue: refused by name; the
    model's manifest keeps every --set value and the run settings."""
    data = omniglot_folder(tmp_path / "data", 4)
    out = tmp_path / "m"
    args = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--set", "encoder.channels=8", "--set", "validate_every=0", "--out", out, "--quiet")
    assert run(*args, "--steps", 2, "--set", "lr_halve_every=1", "--set", "grad_clip=1").exit_code == 0
    meta = json.loads((out / "manifest.json").read_text())["meta"]
    assert meta["set"] == {"lr_halve_every": 1, "grad_clip": 1, "validate_every": 0}
    assert set(meta["settings"]) >= {"outer_lr", "scale"}  # the method's own settings, as before
    assert meta["run"]["lr_halve_every"] == 1 and meta["run"]["validate_every"] == 0
    assert_bad_input(run(*args, "--steps", 3, "--resume", "--set", "grad_clip=1"),
                     "lr_halve_every is 0 but the checkpoint in")
    assert_bad_input(run(*args, "--steps", 3, "--resume", "--set", "lr_halve_every=1", "--set", "grad_clip=2"),
                     "grad_clip is 2.0 but the checkpoint in")
    r = run(*args, "--steps", 3, "--resume", "--set", "lr_halve_every=1", "--set", "grad_clip=1", "--meta-batch", 4)
    assert r.exit_code == 0, r.stderr


def test_the_model_records_the_meta_batch_and_where_it_ran(tmp_path):
    """--meta-batch shapes the weights (5 Omniglot steps with 4 and 16 episodes: up to 0.009
    apart) but a resume may change it, so it is not a run setting: it was in no manifest, and
    two such models' manifests differed only in their times and running figures."""
    data = omniglot_folder(tmp_path / "data", 4)
    args = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--set", "encoder.channels=8", "--set", "validate_every=0", "--quiet")
    metas = {}
    for batch in (2, 3):
        assert run(*args, "--steps", 2, "--meta-batch", batch, "--out", tmp_path / f"b{batch}").exit_code == 0
        manifest = json.loads((tmp_path / f"b{batch}" / "manifest.json").read_text())
        metas[batch] = manifest["meta"]
        assert manifest["meta"]["environment"]["threads"] == torch.get_num_threads()
    assert metas[2]["meta_batch"] == 2 and metas[3]["meta_batch"] == 3
    assert metas[2]["processes"] == 1 and metas[2]["environment"]["device"] == "cpu"
    assert metas[2]["augment"] is False and "warp" not in metas[2]  # the default, though no --set gave it
    # a resume with another meta-batch records the last one, as its checkpoint does
    assert run(*args, "--steps", 3, "--resume", "--meta-batch", 4, "--out", tmp_path / "b2").exit_code == 0
    assert json.loads((tmp_path / "b2" / "manifest.json").read_text())["meta"]["meta_batch"] == 4


def test_a_resume_with_another_thread_count_says_it_ends_equal_only_to_rounding(tmp_path):
    """The kill-and-resume equality holds at the checkpoint's thread count (3 maml steps at 1
    thread resumed to 5 at 2 ended 3e-8 from the uninterrupted run): the checkpoint kept its
    thread count but nothing read it, so such a resume said nothing."""
    data = omniglot_folder(tmp_path / "data", 4)
    args = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--set", "encoder.channels=8", "--set", "validate_every=0", "--out", tmp_path / "m")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert run(*args, "--steps", 1).exit_code == 0
        r = run(*args, "--steps", 2, "--resume")
        assert r.exit_code == 0 and "torch thread" not in r.stderr, r.stderr
        torch.set_num_threads(2)
        r = run(*args, "--steps", 3, "--resume")
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.stderr
    assert (f"note: the checkpoint in {tmp_path / 'm'} was written with 1 torch thread and this run has 2: the weights "
            "will equal an uninterrupted run's only to rounding (OMP_NUM_THREADS=1 keeps them equal)") in r.stderr


def test_a_second_ctrl_c_names_the_checkpoint_it_leaves(tmp_path):
    """Two Ctrl-Cs quit at once (exit code 130), and the message says that the last checkpoint is
    kept for --resume, not that nothing was written (which invites --force, deleting it)."""
    code = ("import os, signal, sys\nimport quickadapt.meta.train as t\nsave = t.save_checkpoint\n"
            "def save_then_press_twice(*a, **k):\n    save(*a, **k)\n"
            "    os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGINT)\n"
            "t.save_checkpoint = save_then_press_twice\nfrom quickadapt.cli import main\n"
            "sys.argv = ['quickadapt', 'meta-train', '--data', 'builtin:omniglot', '--method', 'protonet', '--ways', '3',"
            " '--shots', '1', '--queries', '2', '--meta-batch', '2', '--steps', '50', '--set', 'encoder.channels=8',"
            " '--set', 'validate_every=0', '--set', 'checkpoint_steps=2', '--out', sys.argv[1], '--json']\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr
    message = f"interrupted: the last checkpoint is kept in {tmp_path / 'm' / 'checkpoint'}; --resume continues from it"
    assert message in proc.stderr and json.loads(proc.stdout) == {"error": message}
    assert (tmp_path / "m" / "checkpoint" / "state.json").is_file()


def alphabet_folder(root, alphabets, characters=3, per_class=3):
    """The first `characters` characters of each Omniglot alphabet as root/<alphabet>/<character>/*.png:
    a user's folder of groups."""
    from quickadapt.data import load_dataset

    data = load_dataset("builtin:omniglot")
    for alphabet in alphabets:
        for c in sorted({c for c in data.classes if c.startswith(alphabet + "/")})[:characters]:
            folder = root / c
            folder.mkdir(parents=True)
            for i in np.flatnonzero(data.labels == c)[:per_class]:
                Image.fromarray(data.inputs[i]).save(folder / f"{i}.png")
    return root


def test_a_folder_of_groups_trains_tests_and_resumes_on_its_split_by_group(tmp_path):
    from quickadapt.data.episodes import load_episode_data, split_classes_randomly

    data = alphabet_folder(tmp_path / "data", ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"))
    out = tmp_path / "m"
    args = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--set", "encoder.channels=8", "--out", out, "--json")
    r = run(*args, "--steps", 2)
    assert r.exit_code == 0, r.stderr
    split = json.loads((out / "manifest.json").read_text())["meta"]["class_split"]
    assert split["by"] == "group" and [len(split["groups"][p]) for p in ("train", "val", "test")] == [3, 1, 1]
    for part in ("train", "val", "test"):  # no alphabet in two parts
        assert {c.split("/")[0] for c in split[part]} == set(split["groups"][part])
    assert json.loads(r.stdout)["classes"] == {"train": 9, "val": 3, "test": 3}
    # episodes measures the held-out alphabet's 3 characters
    r = run("episodes", out, "--data", data, "--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 2, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["classes"] == 3
    # the checkpoint keeps the split and a resume trains on it
    state_file = out / "checkpoint" / "state.json"
    assert json.loads(state_file.read_text())["spec"]["class_split"] == split
    assert run(*args, "--steps", 3, "--resume").exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["meta"]["class_split"] == split
    # a checkpoint written before splits were stored was split by class then: its resume keeps that split
    state = json.loads(state_file.read_text())
    del state["spec"]["class_split"]
    state_file.write_text(json.dumps(state))
    r = run(*args, "--steps", 4, "--resume")
    assert r.exit_code == 0, r.stderr
    assert "the resumed run keeps its split by class" in r.stderr
    resumed = json.loads((out / "manifest.json").read_text())["meta"]["class_split"]
    assert resumed == split_classes_randomly(load_episode_data(str(data)), seed=0).to_dict()


def test_a_split_by_group_that_leaves_a_part_too_few_classes_says_what_helps(tmp_path):
    from quickadapt.data.episodes import default_split, load_episode_data

    data = alphabet_folder(tmp_path / "data", ("Greek", "Korean", "Latin"))  # one alphabet a part
    split = default_split(load_episode_data(str(data)))
    (train,), (val,), (test,) = (split.groups[p] for p in ("train", "val", "test"))
    for c in split.val[1:] + split.test[1:]:  # validation and test keep one character each
        shutil.rmtree(data / c)
    base = ("meta-train", "--data", data, "--method", "protonet", "--shots", 1, "--queries", 2, "--steps", 1,
            "--set", "encoder.channels=8")
    assert_bad_input(run(*base, "--ways", 4, "--no-rotations", "--out", tmp_path / "a", "--quiet"),
                     f"the split by group trains on 3 classes (group {train}), fewer than 4-way episodes need; "
                     "lower --ways, or add classes to the folder's groups, or more groups")
    assert_bad_input(run(*base, "--ways", 13, "--out", tmp_path / "a", "--quiet"),
                     f"trains on 3 classes (group {train}), 12 with their rotations, fewer than 13-way")
    r = run(*base, "--ways", 3, "--no-rotations", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.stderr
    assert (f"note: the split by group gave validation 1 class (group {val}): to validate, add classes to the "
            "folder's groups, or more groups") in r.stderr
    assert (f"note: the split by group holds out 1 class for testing (group {test}), too few for `quickadapt "
            "episodes` on them (add classes to the folder's groups, or more groups, or use episodes --split all)") in r.stderr


def test_an_encoder_folder_keeps_the_class_split_stored_with_it(tmp_path):
    """OUT/pretrained, a model fitted on a meta-trained encoder and a run started from one keep the
    split their encoder was trained on: its training classes are never validated or tested on."""
    from quickadapt.data.episodes import default_split, load_episode_data, split_kept_on
    from quickadapt.meta.io import stored_class_split

    data = tmp_path / "data"
    for alphabet, n in (("Balinese", 2), ("Early_Aramaic", 3), ("Greek", 4), ("Korean", 5), ("Latin", 6)):
        alphabet_folder(data, (alphabet,), characters=n)  # sizes tell the parts apart
    out = tmp_path / "m"
    base = ("--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2, "--no-rotations", "--steps", 2)
    r = run("meta-train", "--data", data, *base, "--set", "encoder.channels=8", "--set", "pretrain_steps=2",
            "--out", out, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    split = json.loads((out / "manifest.json").read_text())["meta"]["class_split"]
    assert stored_class_split(out / "pretrained").to_dict() == split
    ep_args = ("--data", data, "--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 2, "--json", "--quiet")
    for seed in range(1, 6):  # a seed whose default split tests another alphabet
        other = default_split(load_episode_data(str(data)), seed=seed)
        if len(other.test) != len(split["test"]):
            break
    assert len(other.test) != len(split["test"])
    r = run("episodes", out / "pretrained", *ep_args, "--seed", seed)
    assert r.exit_code == 0, r.stderr
    ep = json.loads(r.stdout)
    assert ep["classes"] == len(split["test"]) and ep["method"] is None and ep["trained"] == "pretrain"
    r = run("episodes", out / "pretrained", *ep_args[:-2], "--quiet")
    assert f"(encoder of {out / 'pretrained'}: pretrain, adapt: prototypes)" in r.stdout
    assert json.loads(run("episodes", "conv4", *ep_args).stdout)["trained"] is None  # a plain encoder
    # a model fitted on the meta-trained encoder leads back to its split
    fitted = tmp_path / "fitted"
    r = run("fit", "--data", data / "Greek", "--encoder", out, "--strategy", "prototypes", "--out", fitted, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert stored_class_split(fitted).to_dict() == split
    ep = json.loads(run("episodes", fitted, *ep_args, "--seed", seed).stdout)
    assert ep["classes"] == len(split["test"]) and ep["trained"] == "prototypes on meta-train:protonet"
    # the fitted model keeps the split itself: moving the encoder's folder does not lose it
    moved = tmp_path / "moved"
    out.rename(moved)
    assert stored_class_split(fitted).to_dict() == split
    moved.rename(out)
    # a run started from the model keeps its split; the data's new group goes to training
    digits = tmp_path / "data" / "Digits"
    for c in range(2):
        (digits / str(c)).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * c + i, np.uint8)).save(digits / str(c) / f"{i}.png")
    r = run("meta-train", "--data", data, *base, "--encoder", out, "--seed", seed, "--out", tmp_path / "chain")
    assert r.exit_code == 0, r.stderr
    assert f"the class split stored with the start encoder {out} is kept" in r.stderr
    assert "the data's 2 other classes go to training" in r.stderr
    chained = json.loads((tmp_path / "chain" / "manifest.json").read_text())["meta"]["class_split"]
    assert (chained["val"], chained["test"]) == (split["val"], split["test"])
    assert chained["train"] == sorted(split["train"] + ["Digits/0", "Digits/1"])
    # data sharing none of the stored classes gets its own default split
    assert split_kept_on(stored_class_split(out), load_episode_data(str(digits.parent / "Digits")), "x") is None


def test_episodes_say_when_the_class_split_of_a_model_s_encoder_is_lost(tmp_path):
    """A model fitted on a meta-trained encoder before fit copied the encoder's class split into
    info.class_split found it only through info.encoder_folder: with that folder moved, episodes
    drew from the data's default split, which can test on the encoder's training classes, and
    said nothing. Now a note says the split is unknown and names --split-from."""
    data = tmp_path / "data"
    for alphabet, n in (("Balinese", 2), ("Early_Aramaic", 3), ("Greek", 4), ("Korean", 5), ("Latin", 6)):
        alphabet_folder(data, (alphabet,), characters=n)
    meta = tmp_path / "meta"
    r = run("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--steps", 2, "--set", "encoder.channels=8", "--seed", 1, "--out", meta, "--quiet")
    assert r.exit_code == 0, r.stderr
    fitted = tmp_path / "fitted"
    r = run("fit", "--data", data / "Greek", "--encoder", meta, "--strategy", "prototypes", "--out", fitted, "--quiet")
    assert r.exit_code == 0, r.stderr
    manifest = json.loads((fitted / "manifest.json").read_text())
    del manifest["info"]["class_split"]  # as fit wrote it before it kept the split itself
    (fitted / "manifest.json").write_text(json.dumps(manifest))
    ep_args = ("--data", data, "--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 2)
    r = run("episodes", fitted, *ep_args)  # the encoder's folder still leads to the split: nothing to say
    assert r.exit_code == 0 and "unknown" not in r.stderr, r.stderr
    meta.rename(tmp_path / "moved")
    r = run("episodes", fitted, *ep_args)
    assert r.exit_code == 0, r.stderr
    assert f"{meta}, which can no longer be read" in r.stderr and "--split-from" in r.stderr, r.stderr
    r = run("episodes", fitted, *ep_args, "--split-from", tmp_path / "moved", "--json")
    assert r.exit_code == 0 and "unknown" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["split_source"] == f"the class split stored with {tmp_path / 'moved'}"
    del manifest["info"]["encoder_folder"]  # older still: only that its conv4 had learned elsewhere
    (fitted / "manifest.json").write_text(json.dumps(manifest))
    r = run("episodes", fitted, *ep_args)
    assert "encoder came from another model folder, which it does not name" in r.stderr, r.stderr
    assert "unknown" not in run("episodes", "conv4", *ep_args).stderr  # a plain encoder learned nothing


def test_episodes_on_a_model_that_fit_force_is_replacing_waits_for_it(tmp_path, monkeypatch):
    """Between the two renames of a --force write the folder is missing: episodes said it was
    'neither a model folder nor an encoder name'. The gap is made here by hand."""
    from quickadapt import artifact

    data = tmp_path / "data"
    for alphabet in ("Balinese", "Greek", "Latin"):
        alphabet_folder(data, (alphabet,), characters=3)
    meta = tmp_path / "meta"
    r = run("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--steps", 2, "--set", "encoder.channels=8", "--out", meta, "--quiet")
    assert r.exit_code == 0, r.stderr
    aside = tmp_path / f".meta.old-{os.getpid()}"
    meta.rename(aside)
    monkeypatch.setattr(artifact.time, "sleep", lambda s: aside.exists() and aside.rename(meta))  # the writer goes on
    r = run("episodes", meta, "--data", data, "--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 2, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "protonet"


def test_colour_images_read_grey_by_the_default_start_are_noted(tmp_path):
    def folder(name, mode):
        for c in range(4):
            (tmp_path / name / f"c{c}").mkdir(parents=True)
            for i in range(3):
                Image.new(mode, (10, 10), (50 * c, 20 * i, 90) if mode == "RGB" else 40 * c + i).save(
                    tmp_path / name / f"c{c}" / f"{i}.png")
        return tmp_path / name

    base = ("meta-train", "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2, "--no-rotations",
            "--steps", 1, "--set", "encoder.channels=8")
    note = "images in colour are read grey by the default conv4 start; --set encoder.grey=false reads colour"
    r = run(*base, "--data", folder("colour", "RGB"), "--out", tmp_path / "a")
    assert r.exit_code == 0 and note in r.stderr, r.stderr
    r = run(*base, "--data", folder("grey", "L"), "--out", tmp_path / "b")  # grey images: nothing to say
    assert r.exit_code == 0 and "read grey" not in r.stderr, r.stderr
    r = run(*base, "--data", tmp_path / "colour", "--set", "encoder.grey=true", "--out", tmp_path / "c")  # asked for
    assert r.exit_code == 0 and "read grey" not in r.stderr, r.stderr
    r = run(*base, "--data", tmp_path / "colour", "--set", "encoder.grey=false", "--out", tmp_path / "d")
    assert r.exit_code == 0 and "read grey" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["encoder"]["settings"]["grey"] is True  # default kept


def test_split_from_scores_a_plain_encoder_on_a_models_classes_and_no_model_on_another_split(tmp_path):
    from quickadapt.data.episodes import default_split, load_episode_data

    data = alphabet_folder(tmp_path / "data", ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"))
    base = ("meta-train", "--data", data, "--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2,
            "--no-rotations", "--steps", 1, "--set", "encoder.channels=8", "--quiet")
    splits = {}
    for seed in (1, 2):
        assert run(*base, "--seed", seed, "--out", tmp_path / f"m{seed}").exit_code == 0
        splits[seed] = json.loads((tmp_path / f"m{seed}" / "manifest.json").read_text())["meta"]["class_split"]
    assert splits[1]["test"] != splits[2]["test"]
    ep = ("--data", data, "--ways", 2, "--shots", 1, "--queries", 1, "--episodes", 2, "--json", "--quiet")
    r = run("episodes", "conv4", *ep, "--split-from", tmp_path / "m1")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["class_names"] == splits[1]["test"] != default_split(load_episode_data(str(data))).test
    assert json.loads(run("episodes", tmp_path / "m1", *ep, "--split-from", tmp_path / "m1").stdout)["class_names"] \
        == splits[1]["test"]  # its own split: nothing changes
    assert_bad_input(run("episodes", tmp_path / "m1", *ep, "--split-from", tmp_path / "m2"),
                     f"{tmp_path / 'm1'} stores a class split of its own, other than {tmp_path / 'm2'}'s")
    assert_bad_input(run("episodes", "conv4", *ep, "--split-from", tmp_path / "nowhere"), "no such model folder")


@pytest.mark.parametrize("setting, said", [("outer_lr=1e9", "meta-training diverged at step"),
                                           ("pretrain_lr=1e9", "pretraining diverged at step")])
def test_a_run_that_diverges_is_refused_and_saves_no_model_of_nan_weights(tmp_path, setting, said):
    """A learning rate far too large turned every weight into NaN: the run saved that model,
    exited 0 with `"running_loss": NaN` (not JSON), and episodes scored it at chance."""
    extra = ["--set", "pretrain_steps=5"] if setting.startswith("pretrain") else []
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 5, "--shots", 1,
            "--steps", 10, "--meta-batch", 2, "--out", tmp_path / "m", "--json", "--set", setting, *extra)
    assert r.exit_code == 2, r.stdout
    assert said in json.loads(r.stdout)["error"] and "lower" in r.stderr
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_json_results_and_manifests_hold_no_nan(tmp_path):
    """NaN and Infinity are not JSON: strict readers refuse the object (Python writes them)."""
    from quickadapt.artifact import save_encoder
    from quickadapt.encoders import create_encoder
    from quickadapt.output import finite_json

    assert json.dumps(finite_json({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.int64(2)}),
                      allow_nan=False) == '{"a": null, "b": [null, 1.5], "c": 2}'
    save_encoder(create_encoder("conv4", channels=8), tmp_path / "e", seed=0, extra={"meta": {"running_loss": float("nan")}})
    text = (tmp_path / "e" / "manifest.json").read_text()
    assert "NaN" not in text and json.loads(text)["meta"]["running_loss"] is None


def test_a_meta_step_too_large_for_memory_is_refused_before_the_work(tmp_path, monkeypatch):
    """meta-train --ways 500 on Omniglot (rotations make it valid) grew to 22 GB and was killed by the
    out-of-memory killer with no word. A step that clearly cannot fit is now refused at once; 20-way
    5-shot, as every benchmark runs it, is not. Memory is set to 8 GiB, so the test reads alike everywhere."""
    from quickadapt.meta import memory

    monkeypatch.setattr(memory, "memory_bytes", lambda device: 8 * 2**30)
    base = ("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--shots", 5, "--steps", 1,
            "--set", "validate_every=0", "--quiet")
    r = run(*base, "--ways", 500, "--out", tmp_path / "big")
    assert_bad_input(r, "one meta-step of 16 episodes of 500 ways x (5 shots + 5 queries) needs at least")
    assert "more than this machine's 8.0 GiB; lower --ways, --queries or --meta-batch" in r.stderr
    assert not (tmp_path / "big").exists()
    from quickadapt.data.episodes import load_episode_data
    from quickadapt.encoders import create_encoder

    encoder, inputs = create_encoder("conv4", pretrained=False), load_episode_data("builtin:omniglot").inputs[:4]
    memory.check_step_fits(encoder, inputs, n_way=20, k_shot=5, n_query=5, tasks=16, device=torch.device("cpu"))
    with pytest.raises(BadInput, match="of 4 episodes of 200 ways"):  # the estimate grows with the examples
        memory.check_step_fits(encoder, inputs, n_way=200, k_shot=5, n_query=15, tasks=4, device=torch.device("cpu"))


def test_a_meta_step_is_checked_against_the_memory_limit_of_a_container(tmp_path, monkeypatch):
    """In a container (docker --memory 1g) the machine's memory is the host's: the check compared
    a step with it and let through one that the out-of-memory killer then stopped without a word.
    The smallest limit of the process's control groups and their parents counts (v2's memory.max,
    v1's memory.limit_in_bytes; "max" and v1's near-2**63 are no limit). A fake cgroup folder here."""
    from quickadapt.meta import memory

    v2 = tmp_path / "v2"
    (v2 / "box" / "job").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "box" / "memory.max").write_text(f"{2**30}\n")
    (v2 / "box" / "job" / "memory.max").write_text(f"{3 * 2**30}\n")  # the parent's 1 GiB binds it
    (tmp_path / "own_v2").write_text("0::/box/job\n")
    assert memory.cgroup_limit_bytes(v2, tmp_path / "own_v2") == 2**30
    (tmp_path / "own_docker").write_text("0::/\n")  # a container sees its own group as the root
    (v2 / "memory.max").write_text(f"{2 * 2**30}\n")
    assert memory.cgroup_limit_bytes(v2, tmp_path / "own_docker") == 2 * 2**30
    (tmp_path / "own_host_path").write_text("0::/system.slice/docker-1.scope\n")  # a path the mount lacks
    assert memory.cgroup_limit_bytes(v2, tmp_path / "own_host_path") == 2 * 2**30

    v1 = tmp_path / "v1"
    (v1 / "memory" / "a").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory" / "a" / "memory.limit_in_bytes").write_text(f"{5 * 2**30}\n")
    (tmp_path / "own_v1").write_text("9:pids:/\n4:memory:/a\n0::/\n")
    assert memory.cgroup_limit_bytes(v1, tmp_path / "own_v1") == 5 * 2**30
    (v1 / "memory" / "a" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert memory.cgroup_limit_bytes(v1, tmp_path / "own_v1") is None
    assert memory.cgroup_limit_bytes(tmp_path / "none", tmp_path / "no_such_file") is None

    monkeypatch.setattr(memory, "CGROUP_ROOT", v2)
    monkeypatch.setattr(memory, "OWN_CGROUPS", tmp_path / "own_v2")
    assert memory.memory_bytes(torch.device("cpu")) == 2**30  # not the machine's
    r = run("meta-train", "--data", "builtin:omniglot", "--method", "protonet", "--ways", 20, "--shots", 5,
            "--steps", 1, "--set", "validate_every=0", "--quiet", "--out", tmp_path / "m")
    assert_bad_input(r, "one meta-step of 16 episodes of 20 ways x (5 shots + 5 queries) needs at least")
    assert "more than this process's memory limit (cgroup) of 1.0 GiB" in r.stderr
    assert not (tmp_path / "m").exists()


def test_resume_finds_the_start_encoder_folder_named_from_another_directory(tmp_path, monkeypatch):
    """--resume compared --encoder as typed: a run started from a model folder as ./start in one
    directory was refused when resumed from the directory above as project/start, the same folder.
    Another folder is still refused."""
    data = omniglot_folder(tmp_path / "data", 4)
    shape = ("--method", "protonet", "--ways", 2, "--shots", 1, "--queries", 2, "--no-rotations", "--quiet")
    project = tmp_path / "project"
    assert run("meta-train", "--data", data, *shape, "--set", "encoder.channels=8", "--steps", 1,
               "--out", project / "start").exit_code == 0
    monkeypatch.chdir(project)
    args = ("meta-train", "--data", data, *shape, "--out", tmp_path / "chain")
    r = run(*args, "--encoder", "./start", "--steps", 1)
    assert r.exit_code == 0, r.stderr
    monkeypatch.chdir(tmp_path)
    r = run(*args, "--encoder", "project/start", "--steps", 2, "--resume", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 2
    shutil.copytree(project / "start", tmp_path / "other")
    assert_bad_input(run(*args, "--encoder", "other", "--steps", 3, "--resume"), "encoder is")
