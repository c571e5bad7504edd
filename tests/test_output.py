"""Output paths are checked before any work, and `--force` replaces only an earlier output:
never an input, the current folder, or a folder of the user's own files."""
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_bad_input, run
from quickadapt.errors import BadInput
from quickadapt.output import check_output


def test_check_output_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\nhi,a\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    a_file = tmp_path / "a.csv"
    a_file.write_text("x")

    cases = [
        (dict(out=a_file / "model", force=False), "is a file"),
        (dict(out=a_file, force=False), "not a folder"),
        (dict(out=mine, force=False), "already exists"),
        (dict(out=".", force=True), "current folder"),
        (dict(out=tmp_path.parent, force=True), "current folder"),
        (dict(out=data, force=True, inputs=(data / "train.csv",)), "replace the input"),
        (dict(out=data / "train.csv", force=True, inputs=(data / "train.csv",), file=True), "replace the input"),
        (dict(out=mine, force=True), "no quickadapt output"),
        (dict(out=data / "model", force=False, inputs=(data,)), "lies inside the input"),  # a new class folder
        (dict(out=data / "train.csv", force=True, inputs=(data,), file=True), "lies inside the input"),
        (dict(out=mine, force=True, file=True), "is a folder"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(BadInput, match=fragment):
            check_output(**kwargs)
    assert (mine / "notes.txt").read_text() == "precious" and (data / "train.csv").exists()

    # allowed: a new path, an empty folder, an earlier output with force, a builtin input
    assert check_output(tmp_path / "new" / "model", False, inputs=("builtin:digits",)) == tmp_path / "new" / "model"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", True)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "manifest.json").write_text("{}")
    check_output(earlier, True)
    check_output(a_file, True, file=True)


def test_check_output_unwritable():
    # /proc refuses new folders even to root, for whom permission bits mean nothing
    with pytest.raises(BadInput, match="cannot write in /proc"):
        check_output("/proc/quickadapt-model", False)


def test_cli_force_never_replaces_inputs_or_user_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.csv").write_text("f1,f2,label\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(12)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    base = ("--encoder", "mlp", "--cv", "0", "--quiet", "--force")

    assert_bad_input(run("fit", "--data", data / "train.csv", "--out", data, *base), "replace the input")
    assert_bad_input(run("fit", "--data", data / "train.csv", "--out", ".", *base), "current folder")
    assert_bad_input(run("fit", "--data", data / "train.csv", "--out", mine, *base), "no quickadapt output")
    assert_bad_input(run("meta-train", "--data", data, "--method", "protonet", "--ways", "2", "--shots", "1",
                         "--out", data, "--force", "--quiet"), "replace the input")
    assert (data / "train.csv").exists() and (mine / "notes.txt").read_text() == "precious"

    r = run("fit", "--data", data / "train.csv", "--out", tmp_path / "m", *base)
    assert r.exit_code == 0, r.stderr
    assert_bad_input(run("predict", tmp_path / "m", "--data", data / "train.csv", "--out", data / "train.csv",
                         "--force", "--quiet"), "replace the input")
    assert_bad_input(run("predict", tmp_path / "m", "--data", data / "train.csv", "--out", mine, "--quiet"),
                     "is a folder")
    weights = tmp_path / "m" / "model.safetensors"  # predictions over the model's own weights
    before = weights.read_bytes()
    assert_bad_input(run("predict", tmp_path / "m", "--data", data / "train.csv", "--out", weights,
                         "--force", "--quiet"), "lies inside the input")
    assert weights.read_bytes() == before
    r = run("fit", "--data", data / "train.csv", "--out", tmp_path / "m", *base)  # an earlier output: replaced
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_saved_folders_get_the_umask_modes(tmp_path, umask, folder_mode, file_mode):
    import os
    import stat

    from quickadapt.artifact import write_folder_atomically

    def private(path):  # a writer that makes its file private, as some libraries do
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    old = os.umask(umask)
    try:
        write_folder_atomically(tmp_path / "m", {"model.safetensors": private,
                                                 "manifest.json": lambda p: p.write_text("{}")})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == folder_mode
    for name in ("model.safetensors", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "m" / name).stat().st_mode) == file_mode, name


def test_a_link_to_a_model_folder_is_followed_and_kept(tmp_path):
    """--out LINK --force writes the model where the link points and leaves the link as it was,
    instead of replacing the link with a folder and leaving a hidden copy of it behind."""
    from quickadapt.artifact import write_folder_atomically

    real = tmp_path / "models" / "m1"
    write_folder_atomically(real, {"manifest.json": lambda p: p.write_text('{"v": 1}')})
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    write_folder_atomically(tmp_path / "link", {"manifest.json": lambda p: p.write_text('{"v": 2}')})
    assert (tmp_path / "link").is_symlink() and (real / "manifest.json").read_text() == '{"v": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "models"]
    assert [p.name for p in real.parent.iterdir()] == ["m1"]


def test_replacing_a_folder_swaps_it_in_one_step_so_a_reader_never_finds_it_missing(tmp_path, monkeypatch):
    """fit --force over a model that serve or predict loads: the old folder renamed aside, then
    the new one into place, left a moment with no folder at all (a reader polling it found it
    missing); on Linux the two are exchanged in one step (renameat2), the old one then removed."""
    import threading

    from quickadapt import artifact

    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's; elsewhere the two renames remain")
    out = tmp_path / "m"

    def write(version):
        artifact.write_folder_atomically(out, {"manifest.json": lambda p: p.write_text(version)})

    write("0")
    renames, real_replace = [], os.replace
    monkeypatch.setattr(artifact.os, "replace", lambda a, b: renames.append((a, b)) or real_replace(a, b))
    missing, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            if not out.exists():
                missing.append(True)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for version in range(1, 300):
            write(str(version))
    finally:
        stop.set()
        reader.join()
    assert len(missing) == 0 and renames == []
    assert (out / "manifest.json").read_text() == "299" and [p.name for p in tmp_path.iterdir()] == ["m"]


class _LibcWithoutExchange:
    """A C library whose renameat2 fails as a kernel or file system without RENAME_EXCHANGE does."""
    def __init__(self, code):
        self.code = code

    def renameat2(self, *args):
        import ctypes
        ctypes.set_errno(self.code)
        return -1


@pytest.mark.parametrize("system", ["EINVAL", "ENOSYS", "EOPNOTSUPP", "no renameat2", "darwin"])
def test_replacing_a_folder_falls_back_to_two_renames_where_it_cannot_be_exchanged(tmp_path, monkeypatch, system):
    import errno

    from quickadapt import artifact

    out = tmp_path / "m"
    artifact.write_folder_atomically(out, {"manifest.json": lambda p: p.write_text("old")})
    if system == "darwin":
        monkeypatch.setattr(artifact.sys, "platform", "darwin")
    else:
        libc = _LibcWithoutExchange(getattr(errno, system)) if system.startswith("E") else object()
        monkeypatch.setattr(artifact.ctypes, "CDLL", lambda *args, **kwargs: libc)
    renames, real_replace = [], os.replace
    monkeypatch.setattr(artifact.os, "replace", lambda a, b: renames.append((a, b)) or real_replace(a, b))
    artifact.write_folder_atomically(out, {"manifest.json": lambda p: p.write_text("new")})
    assert (out / "manifest.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["m"]
    assert len(renames) == 2 and renames[0][0] == out  # the old one aside, then the new one in


@pytest.mark.parametrize("signum, code, said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM"),
                                                ("SIGHUP", 129, "stopped by SIGHUP")])
def test_ctrl_c_while_saving_leaves_nothing_and_says_so(tmp_path, signum, code, said):
    """A SIGINT (a terminal's Ctrl-C), SIGTERM (`docker stop`, `kill`) or SIGHUP in the middle of
    writing the model: exit code 128 + the signal, a line saying nothing was written, no
    traceback, and neither the model folder nor its temp folder (SIGTERM left the temp folder)."""
    import subprocess
    import sys

    # a foreground terminal's Ctrl-C handler, also where the suite runs as a background job (which
    # starts with SIGINT ignored, so the signal did nothing and the fit ended with exit 0)
    code_text = ("import os, signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
                 "import quickadapt.artifact as artifact\n"
                 f"artifact._usual_modes = lambda folder: os.kill(os.getpid(), signal.{signum})\n"
                 "from quickadapt.cli import main\n"
                 f"sys.argv = ['quickadapt', 'fit', '--data', 'builtin:digits', '--encoder', 'conv4', '--cv', '0',"
                 f" '--out', {str(tmp_path / 'm')!r}, '--quiet', '--json']\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code_text], capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr
    assert f"{said}: nothing was written" in proc.stderr and "Traceback" not in proc.stderr
    assert said in json.loads(proc.stdout)["error"]
    assert list(tmp_path.iterdir()) == []


def test_a_platform_without_sighup_or_sigpipe_still_runs_commands():
    """Windows has neither: naming SIGHUP at import failed every command there (AttributeError)."""
    import subprocess
    import sys

    code_text = ("import signal, sys\ndel signal.SIGHUP, signal.SIGPIPE\n"
                 "from quickadapt.errors import STOP_SIGNALS\nfrom quickadapt.cli import main\n"
                 "print(STOP_SIGNALS == (signal.SIGTERM,), flush=True)\n"
                 "sys.argv = ['quickadapt', 'datasets']\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code_text], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("True\n") and "clinc150" in proc.stdout


def test_a_full_disk_is_one_line_and_leaves_no_model(tmp_path, monkeypatch):
    import errno

    from safetensors import SafetensorError

    import quickadapt.artifact as artifact

    data = tmp_path / "f.csv"
    data.write_text("f1,f2,label\n" + "".join(f"{i % 5},{i % 3},{'abc'[i % 3]}\n" for i in range(30)))

    def full(tensors, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    def full_as_safetensors_says(tensors, path):  # what safetensors raises itself on a full disk
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    for error in (full, full_as_safetensors_says):
        monkeypatch.setattr(artifact, "save_file", error)
        r = run("fit", "--data", data, "--encoder", "mlp", "--cv", "0", "--out", tmp_path / "m", "--quiet")
        assert_bad_input(r, "no space left")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["f.csv"]  # no model, no temp folder


def test_fit_and_domain_adapt_refuse_an_out_another_run_is_writing(tmp_path):
    import os

    from quickadapt.output import sole_writer

    data = tmp_path / "f.csv"
    data.write_text("f1,f2,label\n" + "".join(f"{i % 5},{i % 3},{'abc'[i % 3]}\n" for i in range(30)))
    out = tmp_path / "m"
    out.mkdir()
    (out / "checkpoint").mkdir()  # a meta-training run's folder, still being written
    with sole_writer(out):
        for args in (("fit", "--data", data, "--encoder", "mlp", "--cv", 0),
                     ("domain-adapt", "--source", data, "--target", data, "--method", "source-only")):
            assert_bad_input(run(*args, "--out", out, "--force", "--quiet"),
                             f"another quickadapt run (process {os.getpid()}) is writing --out")
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint"]
    assert run("fit", "--data", data, "--encoder", "mlp", "--cv", 0, "--out", out, "--force", "--quiet").exit_code == 0


def test_a_lock_folder_another_user_could_make_is_refused_and_nothing_is_written_through_it(tmp_path, monkeypatch):
    """quickadapt-locks-UID in the temp folder, whose name is known in advance, was used whoever
    made it: another user's folder with a symlink of a lock's name in it made a fit truncate the
    file it named and write its process id into it."""
    import hashlib

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    locks = temp / f"quickadapt-locks-{os.getuid()}"
    locks.mkdir()
    locks.chmod(0o777)  # as another user's umask 000 or chmod leaves it
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    out = tmp_path / "m"
    planted = locks / f"{hashlib.sha256(os.path.realpath(out).encode()).hexdigest()[:32]}.lock"
    planted.symlink_to(victim)
    data = tmp_path / "f.csv"
    data.write_text("f1,f2,label\n" + "".join(f"{i % 5},{i % 3},{'abc'[i % 3]}\n" for i in range(30)))
    assert_bad_input(run("fit", "--data", data, "--encoder", "mlp", "--cv", 0, "--out", out, "--quiet"),
                     "is not a folder of this user's alone (another user made it, or others can write to it); "
                     "set TMPDIR")
    assert victim.read_text() == "precious" and not out.exists()
    planted.unlink()
    locks.chmod(0o700)  # as it is made now: this user's alone
    assert run("fit", "--data", data, "--encoder", "mlp", "--cv", 0, "--out", out, "--quiet").exit_code == 0


def quickadapt_in_shell(redirect: str, *args) -> subprocess.CompletedProcess:
    """The CLI in a fresh Python whose stdout the shell points at `redirect` (`>/dev/full`, `>&-`)."""
    command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "quickadapt", *args])
    return subprocess.run(["bash", "-c", f"{command} {redirect}"], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_that_cannot_be_written_is_one_line_naming_what_was_saved(tmp_path):
    """A full disk behind stdout raised again while printing the --json error: a traceback, exit 1;
    without --json, fit said only 'No space left on device' though its model was saved."""
    for args in (["encoders", "--json"], ["datasets"]):
        proc = quickadapt_in_shell(">/dev/full", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == "error: cannot write the result to stdout (No space left on device)"
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "d.npz", X=x[:200], y=y[:200])
    proc = quickadapt_in_shell(">/dev/full", "fit", "--data", tmp_path / "d.npz", "--cv", "0", "--out", tmp_path / "m",
                               "--quiet")
    assert proc.returncode == 2 and proc.stderr.strip().endswith(f"; the model was saved to {tmp_path / 'm'}"), proc.stderr
    assert (tmp_path / "m" / "manifest.json").is_file()
    # evaluate --out saves the rows, not a model
    proc = quickadapt_in_shell(">/dev/full", "evaluate", tmp_path / "m", "--data", tmp_path / "d.npz", "--out",
                               tmp_path / "rows.csv", "--quiet")
    assert proc.stderr.strip().endswith(f"; every row's prediction was saved to {tmp_path / 'rows.csv'}"), proc.stderr
    assert (tmp_path / "rows.csv").is_file()
    closed = quickadapt_in_shell(">&-", "predict", tmp_path / "m", "--data", tmp_path / "d.npz", "--quiet")
    assert closed.returncode == 2 and closed.stderr.strip() == "error: stdout is closed, so the result cannot be written"


def test_a_long_but_legal_output_name_is_written(tmp_path):
    """A 250-character name is legal (255 is the limit), but the temp name beside it was not, and
    fit failed after all its work naming a path the user never gave."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "d.npz", X=x[:100], y=y[:100])
    long = tmp_path / ("m" * 250)
    r = run("fit", "--data", tmp_path / "d.npz", "--cv", "0", "--out", long, "--quiet")
    assert r.exit_code == 0, r.stderr
    r = run("fit", "--data", tmp_path / "d.npz", "--cv", "0", "--out", long, "--quiet", "--force")  # the swap too
    assert r.exit_code == 0, r.stderr
    r = run("predict", long, "--data", tmp_path / "d.npz", "--out", tmp_path / ("p" * 246 + ".csv"), "--quiet")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["d.npz", "m" * 250, "p" * 246 + ".csv"])


def test_a_deleted_current_folder_is_named(tmp_path):
    """From a folder deleted under it, the command died in MKL while torch loaded, exit code 2."""
    script = Path(sys.executable).with_name("quickadapt")
    proc = subprocess.run(["bash", "-c", f"mkdir gone && cd gone && rmdir ../gone && {shlex.quote(str(script))} encoders"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: the current folder no longer exists (deleted or moved); cd to one that does"), proc.stderr
    proc = subprocess.run(["bash", "-c", f"mkdir gone && cd gone && rmdir ../gone && {shlex.quote(str(script))} encoders --json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert json.loads(proc.stdout) == {"error": "the current folder no longer exists (deleted or moved); cd to one that does"}


def test_a_temp_folder_that_a_killed_write_left_is_removed_by_the_next_write(tmp_path, capsys):
    """SIGKILL (the OOM killer) leaves the temp folder of a model being written; the next write
    beside it removes that one, and leaves a live writer's and a hidden folder of the user's."""
    import os
    import socket

    from quickadapt.artifact import WRITING_MARK, write_folder_atomically

    killed = ("import os, signal, sys\nfrom pathlib import Path\n"
              "from quickadapt.artifact import write_folder_atomically\n"
              "def die(path):\n    path.write_bytes(b'half of a model')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
              "write_folder_atomically(Path(sys.argv[1]), {'model.safetensors': die})\n")
    proc = subprocess.run([sys.executable, "-c", killed, str(tmp_path / "m")], capture_output=True)
    assert proc.returncode == -9
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".m.")]
    assert len(left) == 1 and (left[0] / WRITING_MARK).is_file()
    users = tmp_path / ".m.backup"  # the user's own hidden folder, a like name without the mark
    users.mkdir()
    (users / "notes.txt").write_text("precious")
    live = tmp_path / ".m.live1234"  # a write in progress in another process (this one stands in)
    live.mkdir()
    (live / WRITING_MARK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))

    write_folder_atomically(tmp_path / "m", {"manifest.json": lambda p: p.write_text("{}")})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.backup", ".m.live1234", "m"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json"]  # no mark in the model
    assert f"removed {left[0].name}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model fit on 200 digits (features, mlp: the encoder does not matter here) and its data."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    x, y = load_digits(return_X_y=True)
    np.savez(folder / "d.npz", X=x[:200], y=y[:200])
    r = run("fit", "--data", folder / "d.npz", "--encoder", "mlp", "--cv", "0", "--out", folder / "m", "--quiet")
    assert r.exit_code == 0, r.stderr
    return folder / "m", folder / "d.npz"


def test_a_quoted_tilde_is_the_home_folder_for_predict_and_evaluate(digits_model, tmp_path, monkeypatch):
    """predict --out '~/p.csv' checked HOME/p.csv but wrote ./~/p.csv, replacing a file there
    without --force; a model given as '~/m' was not found."""
    import shutil

    model, data = digits_model
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    (work / "~").mkdir(parents=True)
    (work / "~" / "p.csv").write_text("precious")
    shutil.copytree(model, home / "m")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)

    r = run("predict", model, "--data", data, "--out", "~/p.csv", "--quiet", "--json")
    assert (work / "~" / "p.csv").read_text() == "precious"
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"out": str(home / "p.csv"), "n": 200}
    assert (home / "p.csv").read_text().startswith("input,label,score\n0,0,")
    assert_bad_input(run("predict", model, "--data", data, "--out", "~/p.csv", "--quiet"), "already exists")
    r = run("predict", "~/m", "--data", data, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == (home / "p.csv").read_text()
    r = run("evaluate", "~/m", "--data", data, "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 200


def read_fifo_in_background(fifo: Path) -> dict:
    """Read `fifo` to its end in a thread, as another process reading a named pipe would."""
    import threading

    got = {}

    def reader():
        with open(fifo) as f:
            got["text"] = f.read()

    got["thread"] = threading.Thread(target=reader, daemon=True)
    got["thread"].start()
    return got


def test_predict_writes_into_a_fifo_or_device_and_never_replaces_it(digits_model, tmp_path):
    """--out FIFO --force replaced the fifo with a file (its reader waited forever), and --out on
    a copy of /dev/null replaced the device: as root in a container, the system's /dev/null."""
    import os
    import stat

    model, data = digits_model
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    for force in ((), ("--force",)):  # as a shell's `>` writes it: no --force needed, and --force changes nothing
        got = read_fifo_in_background(fifo)
        r = run("predict", model, "--data", data, "--out", fifo, "--quiet", *force)
        assert r.exit_code == 0, r.stderr
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        got["thread"].join(60)  # the writer has closed it: the reader is at its end
        lines = got["text"].splitlines()
        assert len(lines) == 200 and json.loads(lines[0])["input"] == "0"  # .jsonl by the fifo's name
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
    except PermissionError:
        null = Path(os.devnull)  # not root: /dev/null itself, which only root could have lost
    for force in ((), ("--force",)):
        r = run("predict", model, "--data", data, "--out", null, "--quiet", *force)
        assert r.exit_code == 0, r.stderr
        assert stat.S_ISCHR(null.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["null", "p.jsonl"] if null.parent == tmp_path else ["p.jsonl"])


def test_devices_fifos_and_sockets_are_refused_where_they_cannot_be_written(digits_model, tmp_path):
    import os
    import socket

    model, data = digits_model
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, kind in ((fifo, "fifo"), (os.devnull, "character device")):  # the commands that write folders
        said = f"--out {out} is a {kind}, not a folder"
        assert_bad_input(run("fit", "--data", data, "--encoder", "mlp", "--cv", "0", "--out", out, "--force", "--quiet"), said)
        assert_bad_input(run("domain-adapt", "--source", data, "--target", data, "--method", "source-only",
                             "--out", out, "--force", "--quiet"), said)
        assert_bad_input(run("meta-train", "--data", data, "--method", "protonet", "--ways", "2", "--shots", "1",
                             "--out", out, "--quiet"), said)
        assert stat_kind(out) == kind
    sock = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        assert_bad_input(run("predict", model, "--data", data, "--out", sock, "--force", "--quiet"),
                         f"--out {sock} is a socket; give the path of a file")
    assert stat_kind(sock) == "socket"


def stat_kind(path) -> str:
    from quickadapt.output import special_file

    return special_file(path) or "file"


def test_out_dash_and_dev_stdout_write_to_stdout_as_no_out_does(digits_model, tmp_path, monkeypatch):
    """--out - wrote a file named '-'; --out /dev/stdout said 'cannot write in /proc/PID/fd'."""
    model, data = digits_model
    monkeypatch.chdir(tmp_path)
    for json_flag in ((), ("--json",)):
        plain = run("predict", model, "--data", data, "--quiet", *json_flag)
        dash = run("predict", model, "--data", data, "--out", "-", "--quiet", *json_flag)
        assert plain.exit_code == dash.exit_code == 0, dash.stderr
        assert dash.stdout == plain.stdout and dash.stdout.startswith("input,label,score\n" if not json_flag else '{"predictions"')
        for redirect in ("| cat", f"> {shlex.quote(str(tmp_path / 'into.txt'))}"):  # stdout a pipe, then a file
            proc = quickadapt_in_shell(redirect, "predict", model, "--data", data, "--out", "/dev/stdout", "--quiet", *json_flag)
            assert proc.returncode == 0, proc.stderr
            written = proc.stdout if redirect == "| cat" else (tmp_path / "into.txt").read_text()
            assert written == plain.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["into.txt"]


def test_an_out_ending_in_a_slash_is_refused(digits_model, tmp_path, monkeypatch):
    """--out results/ (a folder was meant) silently wrote a file named results."""
    model, data = digits_model
    monkeypatch.chdir(tmp_path)
    assert_bad_input(run("predict", model, "--data", data, "--out", "results/", "--quiet"),
                     "--out results/ ends with a slash, so it names a folder")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_appears_while_predicting_is_not_replaced_without_force(digits_model, tmp_path, monkeypatch):
    """The check ran only before the work: a file someone wrote meanwhile was overwritten."""
    import quickadapt.cli as cli

    model, data = digits_model
    late = tmp_path / "late.csv"
    original = cli._model_inputs

    def someone_writes_late(*args, **kwargs):
        late.write_text("theirs")
        return original(*args, **kwargs)

    monkeypatch.setattr(cli, "_model_inputs", someone_writes_late)
    assert_bad_input(run("predict", model, "--data", data, "--out", late, "--quiet"),
                     f"{late} appeared while predicting; choose another --out or pass --force")
    assert late.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["late.csv"]  # no temp file left
    r = run("predict", model, "--data", data, "--out", late, "--quiet", "--force")
    assert r.exit_code == 0, r.stderr
    assert late.read_text().startswith("input,label,score\n")


def test_a_temp_file_of_another_writer_with_our_process_id_is_left_alone(digits_model, tmp_path):
    """Temp files were named by the process id, which two containers (each its process 1) or two
    machines sharing the folder have alike: both wrote one temp file, the first to finish
    published a mix of the two and removed the other's file under it."""
    model, data = digits_model
    theirs = tmp_path / f".preds.csv.{os.getpid()}.tmp"
    theirs.write_text("another machine's predictions, half written")
    r = run("predict", model, "--data", data, "--out", tmp_path / "preds.csv", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert theirs.read_text() == "another machine's predictions, half written"
    assert (tmp_path / "preds.csv").read_text().startswith("input,label,score\n")


def test_a_link_to_a_predictions_file_is_followed_and_kept(digits_model, tmp_path):
    """--out LINK --force wrote a file in the link's place, as for model folders it did not."""
    model, data = digits_model
    real = tmp_path / "results" / "p.csv"
    real.parent.mkdir()
    real.write_text("old")
    (tmp_path / "p.csv").symlink_to(real)
    r = run("predict", model, "--data", data, "--out", tmp_path / "p.csv", "--force", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "p.csv").is_symlink() and real.read_text().startswith("input,label,score")
    assert sorted(p.name for p in real.parent.iterdir()) == ["p.csv"]  # no temp file left


def test_a_model_that_fit_force_is_replacing_is_loaded_whole(digits_model, tmp_path, monkeypatch):
    """fit --force swaps its new folder in with two renames: a loader in between found no folder
    ('no such model folder'), and one that had read the old manifest read the new weights beside
    it. Both moments are made here by hand, where a real run hits them by chance."""
    import shutil

    from quickadapt import artifact

    model, data = digits_model
    m = tmp_path / "m"
    shutil.copytree(model, m)
    # between the two renames: the old folder moved aside, the new one not yet in place
    aside = tmp_path / f".m.old-{os.getpid()}"
    m.rename(aside)
    real_sleep = time.sleep
    monkeypatch.setattr(artifact.time, "sleep", lambda s: aside.exists() and aside.rename(m))  # the writer goes on
    r = run("predict", m, "--data", data, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert m.is_dir() and not aside.exists()
    monkeypatch.setattr(artifact.time, "sleep", real_sleep)
    # a write killed between them: said, with where the previous version lies
    m.rename(aside)
    monkeypatch.setattr(artifact, "SWAP_WAIT_S", 0.05)
    assert_bad_input(run("predict", m, "--data", data), "stopped halfway and left its previous version at")
    assert aside.name in run("predict", m, "--data", data).stderr
    aside.rename(m)
    # replaced after its manifest was read: read again, all of the new model (labels renamed)
    other = tmp_path / "other"
    x, y = np.load(data)["X"], np.load(data)["y"]
    np.savez(tmp_path / "letters.npz", X=x, y=np.array(list("abcdefghij"))[y])
    r = run("fit", "--data", tmp_path / "letters.npz", "--encoder", "mlp", "--cv", "0", "--out", other, "--quiet")
    assert r.exit_code == 0, r.stderr
    read_tensors = artifact._load_tensors

    def swapped_midway(folder):
        if folder == m and not swapped_midway.done:
            swapped_midway.done = True
            copies = {n: (lambda p, n=n: shutil.copy(other / n, p)) for n in os.listdir(other)}
            artifact.write_folder_atomically(m, copies)
        return read_tensors(folder)

    swapped_midway.done = False
    monkeypatch.setattr(artifact, "_load_tensors", swapped_midway)
    loaded = artifact.load_model(m)
    assert swapped_midway.done and loaded.classes["main"] == list("abcdefghij")
