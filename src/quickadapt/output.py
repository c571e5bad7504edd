"""Where results go: an output path is checked before any work, so a fit never runs for
minutes only to fail at the end, and `--force` never destroys anything but an earlier output.

Refused: a path below a file; an existing path without `force`; a path the user cannot write;
the current folder or one above it; an input (data, source, encoder folder), a folder that
holds one or a path inside an input folder; and, even with `force`, an existing folder that is not a quickadapt output (it
holds files but no manifest or checkpoint), since replacing it would delete the user's files.

A file output that is a character device or a fifo (/dev/null, a terminal, a named pipe read by
another process) is written into as a shell's `>` writes it, never replaced: no `force` needed.
A block device or a socket is refused, and so is any of them as a folder output."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import stat
import tempfile
from pathlib import Path

from quickadapt.errors import BadInput, option

# what an earlier quickadapt output folder holds: a model's manifest, a meta-training checkpoint,
# a report's figures (evaluate/report.py)
OUTPUT_MARKERS = ("manifest.json", "checkpoint", "pretrained/manifest.json", "quickadapt-report.json")


def as_path(value, name: str) -> Path:
    """`value` as a Path; anything but a str or a path-like (None, a number) is refused with one
    line, where Path() failed deep inside pathlib ("expected str, bytes or os.PathLike object")."""
    if not isinstance(value, (str, os.PathLike)):
        raise BadInput(f"{name} must be a path (a str or a pathlib.Path), got {type(value).__name__}")
    return Path(value)


def check_output(out: str | Path, force: bool, *, inputs=(), file: bool = False, flag: str | None = None,
                 other_way: str = "") -> Path:
    """Raise BadInput unless `out` (a folder, or a file with `file=True`) can be written now.
    `inputs`: paths (or `builtin:` names, skipped) that the output must not replace;
    `other_way`: what else an existing output allows (e.g. ", pass --resume to continue it")."""
    flag = flag or option("out")
    out = as_path(out, flag).expanduser()
    full = Path(os.path.realpath(out))  # symlinks resolved, as the current folder's path is
    replace = f"pass {option('force', python='force=True')} to replace it"
    for parent in full.parents:
        if parent.exists() and not parent.is_dir():
            raise BadInput(f"{flag} {out}: {parent} is a file, not a folder")
    if full == Path.cwd() or full in Path.cwd().parents:
        raise BadInput(f"{flag} {out} is the current folder or one above it; name a new folder for the output")
    for spec in inputs:
        if spec is None or not str(spec).strip() or str(spec).startswith("builtin:"):  # "" is refused by its reader
            continue
        source = Path(os.path.realpath(Path(spec).expanduser()))
        if full == source or full in source.parents:
            raise BadInput(f"{flag} {out} would replace the input {spec}; choose another {flag}")
        if source.is_dir() and source in full.parents:  # a new class folder, a model's own file
            raise BadInput(f"{flag} {out} lies inside the input {spec} and would change it; choose a path outside it")
    kind = special_file(out)
    if kind:
        return _check_special(out, kind, file, flag)
    if out.exists():
        if file and out.is_dir():
            raise BadInput(f"{flag} {out} is a folder; give the path of a file to write")
        if not file and not out.is_dir():
            raise BadInput(f"{flag} {out} exists and is not a folder")
        if not force:
            raise BadInput(f"{out} already exists; choose another {flag}{other_way} or {replace}")
        if not file and any(out.iterdir()) and not any((out / m).exists() for m in OUTPUT_MARKERS):
            raise BadInput(f"{flag} {out} holds files but no quickadapt output (no manifest.json); "
                           "refusing to replace it: remove it yourself or choose another folder")
    _check_writable(out, full, flag)
    return out


# what the kernel's file types are called in messages; the first two are written into in place
SPECIAL_FILES = ((stat.S_ISCHR, "character device"), (stat.S_ISFIFO, "fifo"),
                 (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
WRITTEN_IN_PLACE = ("character device", "fifo")


def special_file(path: str | Path) -> str | None:
    """What `path` (links followed) is when it exists and is neither a file nor a folder, else None."""
    try:
        mode = os.stat(Path(path).expanduser()).st_mode
    except (OSError, ValueError):  # missing, a dangling link, a name with a NUL
        return None
    return next((name for test, name in SPECIAL_FILES if test(mode)), None)


def written_in_place(path: str | Path) -> bool:
    """Whether an output at `path` is written into, not replaced: renaming a file over /dev/null
    (as root, in a container) replaced the system's /dev/null, and over a fifo cut off its reader."""
    return special_file(path) in WRITTEN_IN_PLACE


def _check_special(out: Path, kind: str, file: bool, flag: str) -> Path:
    if not file:
        raise BadInput(f"{flag} {out} is a {kind}, not a folder; name a folder to write to")
    if kind not in WRITTEN_IN_PLACE:
        raise BadInput(f"{flag} {out} is a {kind}; give the path of a file to write")
    if not os.access(out, os.W_OK):  # said now, not after the work
        raise BadInput(f"{flag} {out}: cannot write to this {kind} (permission denied)")
    return out


def _check_writable(out: Path, full: Path, flag: str) -> None:
    """Try to create (and remove) a temp folder where the output will be renamed into place:
    permission bits say nothing true for root or for virtual file systems such as /proc."""
    existing = next(p for p in full.parents if p.exists())
    try:
        probe = tempfile.mkdtemp(prefix=".quickadapt-probe-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise BadInput(f"{flag} {out}: cannot write in {existing} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def sole_writer(out: str | Path, *, flag: str | None = None):
    """Hold an exclusive lock on `out` while a long run (meta-training) writes it, so that a
    second run on the same `out` meanwhile is refused instead of racing the first for its
    checkpoints. The lock is the kernel's (flock on a per-user file named by the resolved path):
    it ends with the process however the process ends, so a killed run never leaves it held.
    Where there are no such locks (no fcntl, no writable temp folder) runs go unguarded."""
    try:
        import fcntl
        folder = own_temp_folder(Path(tempfile.gettempdir()) / f"quickadapt-locks-{os.getuid()}",
                                 "set TMPDIR to a folder of yours")
    except (ImportError, OSError):
        fcntl = None
    flag = flag or option("out")
    out = as_path(out, flag)  # before the lock, which is named by it
    if fcntl is None:
        yield
        return
    key = hashlib.sha256(os.path.realpath(out.expanduser()).encode()).hexdigest()[:32]
    path = folder / f"{key}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise BadInput(f"another quickadapt run{f' (process {holder})' if holder else ''} is writing {flag} {out}; "
                           f"wait for it to end or choose another {flag}") from None
        with contextlib.suppress(OSError):  # locked the file that is there now, not one a finishing run removed
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def own_temp_folder(folder: Path, instead: str) -> Path:
    """`folder`, in the temp folder every user can write, made for this user alone (0700); BadInput
    saying `instead` where another user made it or can write to it, as its name is known in
    advance: another local user could make it first, with a symlink of a lock's name in it (a fit's
    lock opened through one truncated the file it named and wrote a process id into it), or with
    features of their choosing, which the cache would serve. OSError where it cannot be made."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise BadInput(f"{folder} is not a folder of this user's alone (another user made it, or others can write "
                       f"to it); {instead}")
    return folder


def writes_alone(fn):
    """Run `fn(..., out=...)` holding `out` alone (sole_writer): a fit or domain-adapt with
    --force onto the folder a meta-training run is writing is refused, not raced."""
    @functools.wraps(fn)
    def wrapper(*args, out, **kwargs):
        with sole_writer(out):
            return fn(*args, out=out, **kwargs)
    return wrapper


def finite_json(value):
    """`value` with every NaN or infinite float as None (JSON null): Python writes them as the
    bare words NaN and Infinity, which are not JSON, and strict readers (JavaScript, Go, jq's
    own checks) refuse the whole object. numpy values become their Python ones first."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, str)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
