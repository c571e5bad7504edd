"""On-disk embedding cache: safetensors shards, no pickle, atomic writes.

A cache directory is keyed by the encoder's weights hash, its preprocessing and the library
version; inside it each row is keyed by the sha256 of one input's content (text or image
bytes, never its label)."""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from quickadapt.data.dataset import content_key
from quickadapt.encoders.base import CACHE_CHUNK
from quickadapt.errors import BadInput, first_line
from quickadapt.output import own_temp_folder


def cache_dir() -> Path:
    """$QUICKADAPT_CACHE, or $XDG_CACHE_HOME/quickadapt, or ~/.cache/quickadapt when they are unset
    or empty (an empty value would put the caches in whatever folder a command runs from). Without
    a home folder (HOME unset and no user entry, as in some containers run as a bare uid; it was a
    traceback), a folder of this user's in the temp folder, said once. A `~` in the value (quoted,
    so no shell expanded it) is the home folder, as in every path option: it made a folder named
    `~` wherever a command ran."""
    if os.environ.get("QUICKADAPT_CACHE"):
        return _expand_home(os.environ["QUICKADAPT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # where a cluster's small home quota moves every tool's cache (pip's, torch's, Hugging Face's):
    # this one alone went on writing to the home folder; a relative value is ignored, as the XDG spec says
    if os.path.isabs(xdg):
        return Path(xdg) / "quickadapt"
    try:
        return Path.home() / ".cache" / "quickadapt"
    except (RuntimeError, KeyError):
        fallback = Path(tempfile.gettempdir()) / f"quickadapt-cache-{os.getuid()}"
        with contextlib.suppress(OSError):  # nothing can be made there: no cache is kept
            own_temp_folder(fallback, "set QUICKADAPT_CACHE to a folder of yours (there is no home folder to keep the "
                                      "cache in)")
        if not _SAID_NO_HOME:
            _SAID_NO_HOME.append(True)
            from quickadapt.progress import log

            log(f"note: no home folder to keep the cache in; using {fallback} (set QUICKADAPT_CACHE to choose)")
        return fallback


def _expand_home(value: str) -> Path:
    try:
        return Path(value).expanduser()
    except RuntimeError:  # no home folder to expand to
        raise BadInput(f"QUICKADAPT_CACHE={value} starts with ~ but there is no home folder; "
                       "give the cache folder's full path") from None


_SAID_NO_HOME: list = []
STALE_TEMP_SECONDS = 24 * 3600
# shards of fewer rows than embed writes at a time (a call's inputs past its last full chunk)
# are merged once there are more than MAX_SMALL_SHARDS of them, into shards of at least that
# many; a merge holds under twice that many rows in memory
SMALL_SHARD_ROWS = CACHE_CHUNK
MAX_SMALL_SHARDS = 32


def cache_root() -> Path:
    return cache_dir() / "embeddings"


# QUICKADAPT_NO_CACHE values that leave the cache on: `=false` turned it off, as any value did
CACHE_STAYS_ON = ("", "0", "false", "no", "off")


def caching_off() -> bool:
    """QUICKADAPT_NO_CACHE set to anything but empty, 0, false, no or off (any case) turns the embedding cache off."""
    return os.environ.get("QUICKADAPT_NO_CACHE", "").strip().lower() not in CACHE_STAYS_ON


# rows embedded during one fit, by cache key, while the on-disk cache is off (see kept_in_memory)
_IN_MEMORY: contextvars.ContextVar[dict | None] = contextvars.ContextVar("embeddings_in_memory", default=None)


@contextlib.contextmanager
def kept_in_memory():
    """Within (also as a decorator): with the on-disk cache off, what a frozen encoder embeds is
    kept in memory until the outermost one ends. A fit embeds the same examples in every
    cross-validation fold, again to score each held-out part, and once more in the final fit:
    300 CLINC texts at --cv 3 ran the encoder 24 times instead of 6 (18.5 s against 9 s)."""
    token = _IN_MEMORY.set({}) if _IN_MEMORY.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _IN_MEMORY.reset(token)


def cache_key(encoder) -> str:
    """What an encoder's features depend on: weights, preprocessing, library version (and how
    image files become pixels), hashed into a folder name."""
    from quickadapt import __version__
    from quickadapt.encoders.base import encoder_fingerprint

    reading = ""
    if encoder.modality == "image":  # a row's key is its file's bytes; how they become pixels is the folder's
        from quickadapt.data.images import IMAGE_READING

        reading = f"|images-{IMAGE_READING}"
    return hashlib.sha256(f"{encoder_fingerprint(encoder)}|{__version__}{reading}".encode()).hexdigest()[:32]


class EmbeddingCache:
    def __init__(self, directory: Path):
        self.directory = directory

    @classmethod
    def for_encoder(cls, encoder) -> "EmbeddingCache | MemoryCache | None":
        """The on-disk cache of `encoder`'s features; with it off, the in-memory one of the
        `kept_in_memory` scope running, if any, else None."""
        if caching_off():
            rows = _IN_MEMORY.get()
            return None if rows is None else MemoryCache(rows.setdefault(cache_key(encoder), {}))
        return cls(cache_root() / cache_key(encoder))

    def read_into(self, keys: Sequence[bytes], out: np.ndarray) -> np.ndarray:
        """Copy the stored rows of finite values for the inputs whose `content_key`s are `keys`
        into `out`'s rows (every position of an input given twice); return which were found. A
        damaged shard or row is only a cache miss. A shard's features are read only when it holds
        a wanted key, and dropped before the next is read: holding the rows found as views kept
        every shard touched in memory at once."""
        found = np.zeros(len(keys), dtype=bool)
        if not self.directory.is_dir():
            return found
        wanted: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            wanted.setdefault(k, []).append(i)
        wanted_keys = np.frombuffer(b"".join(wanted), dtype="S32")
        looked: set[Path] = set()
        while wanted:
            # a shard gone since the listing was merged by another process meanwhile: its rows are
            # in a shard written before it was removed, listed again (a miss rebuilt the encoder)
            listed = sorted(set(self.directory.glob("*.safetensors")) - looked)
            looked.update(listed)
            if not self._read_shards(listed, wanted, wanted_keys, out, found):
                break
        return found

    def _read_shards(self, listed: list[Path], wanted: dict, wanted_keys: np.ndarray, out: np.ndarray,
                     found: np.ndarray) -> bool:
        """read_into's reading of the `listed` shards; whether one of them was gone when opened."""
        gone = False
        for shard in listed:
            try:
                with safe_open(str(shard), framework="numpy") as f:
                    shard_keys = f.get_tensor("keys")
                    # matched in numpy: a Python bytes object per stored row made every lookup
                    # walk the whole cache (3 ms for one text beside 15,000 stored rows)
                    rows = np.flatnonzero(np.isin(np.ascontiguousarray(shard_keys, dtype=np.uint8).view("S32")[:, 0],
                                                  wanted_keys)).tolist()
                    features = f.get_tensor("features") if rows else None
                    checks = f.get_tensor(CHECKS) if rows and CHECKS in f.keys() else None
            except FileNotFoundError:
                gone = True
                continue
            except Exception:  # unreadable, or not a shard of ours
                continue
            if features is None or not written_here(shard_keys, features, checks) or features.shape[1] != out.shape[1]:
                continue
            for j in rows:
                key = shard_keys[j].tobytes()
                if key in wanted and np.isfinite(features[j]).all() and row_intact(checks, j, shard_keys, features):
                    positions = wanted.pop(key)
                    out[positions] = features[j]
                    found[positions] = True
            if not wanted:  # every position asked for (the shard's own names once shadowed it)
                break
        return gone

    def add(self, keys: Sequence[bytes], features: np.ndarray) -> None:
        """Store `features`, one row per `content_key` in `keys`."""
        self._write(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32), features)
        self.merge_small_shards()
        self.remove_stale_temp_files()

    def _write(self, keys: np.ndarray, features: np.ndarray) -> bool:
        """A new shard of these (n, 32) keys and their rows, written whole or not at all; whether it was."""
        name = uuid.uuid4().hex
        tmp = self.directory / f".{name}.tmp"
        features = np.ascontiguousarray(features, dtype=np.float32)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save_file({"keys": keys, "features": features, CHECKS: row_checks(keys, features)}, str(tmp))
            os.replace(tmp, self.directory / f"{name}.safetensors")
            return True
        except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a read-only or full disk only costs recomputation
            say_unwritable(self.directory, exc)
            return False

    def merge_small_shards(self) -> None:
        """Past MAX_SMALL_SHARDS shards of under SMALL_SHARD_ROWS rows, merge those into shards
        of at least that many (what is left over into one more). A script that predicts one input
        per call writes a one-row shard each time, a daily batch of 300 texts a 300-row one, and
        every lookup opens every shard: after 3,000 one-input calls a lookup took 0.1 s, and with
        shards of 256 rows or more never merged again, 1,000 batches of 300 left 1,000 shards and
        a lookup of one new text took 87-328 ms, growing with every run. Another process reading
        meanwhile at worst misses a row (recomputed). One process merges at a time: two at once
        (predicts run with `xargs -P 4`) each wrote the same rows, and 4 processes adding 40 batches
        each left 131,018 rows for 29,199 inputs, in shards of 4,096 or more never merged again."""
        if len(list(self.directory.glob("*.safetensors"))) <= MAX_SMALL_SHARDS:
            return
        with merging_alone(self.directory) as alone:
            if alone:  # else another process is merging these shards now; the next write merges what it left
                self._merge_small_shards()

    def _merge_small_shards(self) -> None:
        shard_files = list(self.directory.glob("*.safetensors"))  # listed with the lock held: none merged since
        small = [(shard, rows) for shard in shard_files if (rows := _small_shard_rows(shard))]
        if len(small) <= MAX_SMALL_SHARDS:
            return
        group: list[Path] = []
        held = 0
        for shard, rows in small:
            group.append(shard)
            held += rows
            if held >= SMALL_SHARD_ROWS:  # a merged shard of this many leaves the small ones for good
                self._merge(group)
                group, held = [], 0
        if len(group) > 1:
            self._merge(group)

    def _merge(self, shard_files: list[Path]) -> None:
        """Write the rows of these shards as one shard, then remove them (a shard that is not
        one of ours, or of another width than the first, is left as it is)."""
        merged: list[Path] = []
        keys: dict[bytes, None] = {}  # in order, each once
        features: list[np.ndarray] = []
        width = None
        for shard in shard_files:
            try:
                with safe_open(str(shard), framework="numpy") as f:
                    shard_keys, shard_features = f.get_tensor("keys"), f.get_tensor("features")
                    checks = f.get_tensor(CHECKS) if CHECKS in f.keys() else None
            except Exception:  # unreadable, or gone (another process merged it): left as it is
                continue
            if not written_here(shard_keys, shard_features, checks):
                continue
            if width is not None and shard_features.shape[1] != width:  # a foreign file's width: left as it is
                continue
            width = shard_features.shape[1]
            merged.append(shard)
            for j, (key, row) in enumerate(zip(shard_keys, shard_features)):
                # a row stored twice (two runs at once) is kept once; a damaged one, never served, not at all
                intact = np.isfinite(row).all() and row_intact(checks, j, shard_keys, shard_features)
                if key.tobytes() not in keys and intact:
                    keys[key.tobytes()] = None
                    features.append(row)
        if len(merged) < 2:
            return
        if features and not self._write(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32),
                                        np.stack(features)):
            return  # nothing written (a full or read-only disk): the shards stay
        for shard in merged:
            with contextlib.suppress(OSError):  # another process merged it already
                shard.unlink()

    def remove_stale_temp_files(self) -> None:
        """Temp files a killed process left (SIGKILL, the OOM killer: 19 MB each, never read
        again); a day old, no writer is still at them. Ours are `.NAME.tmp`, safetensors' own `.tmpNAME`."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for stale in self.directory.glob(".*tmp*"):
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                if stale.is_file() and stale.stat().st_mtime < cutoff:
                    stale.unlink()


_SAID_UNWRITABLE: list = []


def say_unwritable(directory: Path, exc: Exception) -> None:
    """Say once per process that features cannot be stored: a read-only or full cache folder (a
    container's read-only file system, a home quota used up) made every run embed its inputs again
    without a word (a one-text predict 3.9 s instead of 1.4), where the EfficientNet weights' note said it."""
    if _SAID_UNWRITABLE:
        return
    _SAID_UNWRITABLE.append(True)
    from quickadapt.progress import log

    why = getattr(exc, "strerror", None) or first_line(exc)  # an OSError's own names the path again
    log(f"note: cannot store features in the embedding cache {directory} ({why}); every run computes "
        "them again (set QUICKADAPT_CACHE to a writable folder to keep them, or QUICKADAPT_NO_CACHE=1)")


def written_here(keys: np.ndarray, features: np.ndarray, checks: np.ndarray | None = None) -> bool:
    """Whether a shard's arrays are as `EmbeddingCache._write` stores them: (n, 32) uint8 keys,
    (n, d) float32 features and, where it has them, (n,) uint32 checks. Features of another dtype
    (a damaged or foreign file: integers of the right shape) were served cast, and predicted
    silently from other values; merged, they were stored as float32 and passed for ours."""
    return (keys.dtype == np.uint8 and keys.ndim == 2 and keys.shape[1] == 32 and features.dtype == np.float32
            and features.ndim == 2 and len(keys) == len(features)
            and (checks is None or checks.dtype == np.uint32 and checks.shape == (len(keys),)))


CHECKS = "checks"  # a shard's third tensor: each row's crc32 over its key and features


def row_checks(keys: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Each row's crc32 over its key and its features as stored."""
    return np.fromiter((zlib.crc32(row.tobytes(), zlib.crc32(key.tobytes())) for key, row in zip(keys, features)),
                       dtype=np.uint32, count=len(keys))


def row_intact(checks: np.ndarray | None, j: int, keys: np.ndarray, features: np.ndarray) -> bool:
    """Whether row `j` is as it was written: safetensors checks a file's layout, not its values, so
    a bit flipped on disk in a row was served as that input's features (a predict's score moved
    from 0.931 to 0.917, silently). Checked per row served, not per shard: a crc of a whole shard
    of 4,096 rows made a lookup of one of them 8.2 ms instead of 1.4. A shard written before rows
    had checks has none, and is read as before (a merge gives its rows theirs)."""
    return checks is None or int(checks[j]) == zlib.crc32(features[j].tobytes(), zlib.crc32(keys[j].tobytes()))


MERGE_LOCK = ".merging.lock"


@contextlib.contextmanager
def merging_alone(directory: Path):
    """Yield whether this process holds `directory`'s merge lock, taken without waiting. The lock
    is the kernel's (flock): it ends with the process however it ends, so a killed merge never
    leaves it held; its file stays, as removing it could let two processes lock two files. Where
    there are no such locks (no fcntl) or no file can be made, merges go unguarded as before."""
    try:
        import fcntl

        fd = os.open(directory / MERGE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without flock
            yield True
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _small_shard_rows(shard: Path) -> int:
    """How many rows the shard holds, read from its header, where that is under SMALL_SHARD_ROWS;
    else (a full shard, an unreadable file, not a shard of ours) 0."""
    try:
        with safe_open(str(shard), framework="numpy") as f:
            rows = f.get_slice("keys").get_shape()[0]
    except Exception:
        return 0
    return rows if rows < SMALL_SHARD_ROWS else 0


class MemoryCache:
    """`EmbeddingCache`'s reading and storing on a dict of rows by content key, for `kept_in_memory`."""

    def __init__(self, rows: dict[bytes, np.ndarray]):
        self.rows = rows

    def read_into(self, keys: Sequence[bytes], out: np.ndarray) -> np.ndarray:
        found = np.array([k in self.rows for k in keys], dtype=bool)
        for i in np.flatnonzero(found):
            out[i] = self.rows[keys[i]]
        return found

    def add(self, keys: Sequence[bytes], features: np.ndarray) -> None:
        for k, row in zip(keys, features):
            self.rows[k] = np.array(row, dtype=np.float32)
