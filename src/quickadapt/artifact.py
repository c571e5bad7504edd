"""An adapted model on disk: a folder with `model.safetensors` and `manifest.json`.

Writes go to a temporary sibling folder that is renamed into place, so a crash never leaves a
half-written model. Loading rebuilds the encoder and heads through the registries and reads
tensors with safetensors only: nothing is unpickled. The schema is documented in
docs/artifact.md; `FORMAT_VERSION` changes whenever a reader of the old layout would misread."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from quickadapt import __version__
from quickadapt.encoders import ENCODER_MODALITY, ENCODERS, PRETRAINED, create_encoder, create_encoder_for_cache
from quickadapt.encoders.base import encoder_fingerprint
from quickadapt.errors import BadInput, option
from quickadapt.heads import HEADS, create_head
from quickadapt.model import AdaptedModel, BlendedModel, is_probability
from quickadapt.output import as_path, check_output, finite_json
from quickadapt.progress import log
from quickadapt.train import random_state_kept, usual_torch_modes

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
DAMAGED = "it was edited or damaged (fit it again)"


@contextlib.contextmanager
def manifest_errors(folder: Path):
    """Loading a model whose manifest was edited or damaged (a key gone, a value of the wrong
    kind) is bad input like any other: one line naming the folder, not a traceback from deep
    inside the rebuild."""
    try:
        yield
    except BadInput:
        raise
    except KeyError as exc:
        raise BadInput(f"{folder}: {MANIFEST} lacks {exc.args[0]!r}; {DAMAGED}") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise BadInput(f"{folder}: {MANIFEST} holds a value of the wrong kind ({exc}); {DAMAGED}") from None


def prepare_out_dir(out: str | Path, force: bool, inputs=(), flag: str | None = None) -> Path:
    """Refuse an output folder that cannot or must not be written (quickadapt/output.py);
    `flag` names it in messages (default: --out, or out in Python)."""
    return check_output(out, force, inputs=inputs, flag=flag)


def temp_stem(path: Path) -> str:
    """The start of a temp name beside `path`: its name, cut so that the temp name stays legal
    (a 250-character name is, but '.NAME.xxxxxxxx' was not, and failed only after the work)."""
    return path.name[:TEMP_STEM]


TEMP_STEM = 100


def write_folder_atomically(out: Path, files: dict[str, callable], *, replace: bool = True) -> None:
    """Write each `name -> writer(path)` into a temp folder beside `out`, then swap it into place.
    Without `replace`, never over a folder: one that appeared while this one was written (checked
    only before the work) is another run's, as for predict's --out (cli._publish)."""
    # `name` and `parent` must mean something for "models/.." too, and a link to a folder is
    # followed: the model goes where it points (and the temp folder onto the same file system)
    out = Path(os.path.realpath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temp_folders(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{temp_stem(out)}.", dir=out.parent))
    try:
        mark = tmp / WRITING_MARK
        mark.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        for name, writer in files.items():
            writer(tmp / name)
        mark.unlink()
        _usual_modes(tmp)
        old = None
        if out.exists() and not replace:
            raise _appeared(out)
        if out.exists() and exchange_folders(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old version
            return
        if out.exists():
            old = out.with_name(f".{temp_stem(out)}.old-{os.getpid()}")
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError as exc:  # a folder with files appeared since the check just above
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and not replace:
                raise _appeared(out) from None
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Linux's renameat2 (since 3.15) swaps two paths in one step, so a reader of the folder finds
# the old version or the new one, never nothing, as between the two renames of the fallback.
AT_FDCWD = -100
RENAME_EXCHANGE = 2
# what a kernel, C library or file system (some network ones) that cannot exchange answers
EXCHANGE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


def exchange_folders(a: Path, b: Path) -> bool:
    """Swap `a` and `b` atomically; False where this system or file system cannot, untouched."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)  # glibc 2.28 and later
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in EXCHANGE_UNSUPPORTED or code == errno.ENOENT:  # ENOENT: `b` went meanwhile, a plain rename will do
        return False
    raise OSError(code, os.strerror(code), str(b))


def _appeared(out: Path) -> BadInput:
    # named without the option: save_model's callers call it --out, out or path
    return BadInput(f"{out} appeared while this model was written (another run wrote it, and keeps it); write to "
                    f"another folder or pass {option('force', python='force=True')} to replace it")


# Inside a temp folder while it is written: who writes it. A run killed by SIGKILL (the OOM
# killer) cannot remove its temp folder, a model's weights; the mark tells a later write to the
# same place that the folder is ours and its writer gone, where a hidden folder of the user's
# with a like name has no mark and is left alone.
WRITING_MARK = ".quickadapt-writing"
ABANDONED_ELSEWHERE_S = 86400  # a writer on another machine (a shared folder): gone after a day


def remove_abandoned_temp_folders(out: Path) -> None:
    """Remove the temp folders beside `out` that a killed write to `out` left."""
    for path in out.parent.glob(f".{glob.escape(temp_stem(out))}.*"):
        mark = path / WRITING_MARK
        try:
            writer = json.loads(mark.read_text())
            pid, host = int(writer["pid"]), str(writer["host"])
            age = time.time() - mark.stat().st_mtime
        except (OSError, ValueError, TypeError, KeyError):
            continue  # not ours, or a writer that has only just made it
        gone = not _process_alive(pid) if host == socket.gethostname() else age > ABANDONED_ELSEWHERE_S
        if gone:
            shutil.rmtree(path, ignore_errors=True)
            log(f"note: removed {path.name} beside {out.name}: an unfinished model folder that a killed run left")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _usual_modes(folder: Path) -> None:
    """The modes a plain mkdir and open would have given (0777 and 0666 less the umask): the temp
    folder is private (0700) and some writers make private files, but a saved model is meant to be
    read by other users and services as the user's umask allows."""
    mask = current_umask()
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def current_umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _manifest(kind: str, encoder, out: Path, *, weights: str, strategy: dict, tasks: dict, threshold,
              data_fingerprint, seed, metrics, info) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "quickadapt_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": {
            "name": encoder.name,
            "settings": encoder.settings,
            "modality": encoder.modality,
            "embed_dim": encoder.embed_dim,
            "weights": weights,
            **encoder_folder_from(out, encoder.name),
            # rebuilt at loading from a package or folder that may change: what it must match
            **({"fingerprint": rebuilt_fingerprint(encoder)} if weights == "pretrained" else {}),
        },
        "strategy": strategy,
        "tasks": tasks,
        "threshold": threshold,
        "data_fingerprint": data_fingerprint,
        "seed": seed,
        "metrics": metrics or {},
        "info": info,
        **plugin_modules([(ENCODERS, encoder.name),
                          *((HEADS, task["head"]["kind"]) for task in tasks.values() if task.get("head"))]),
    }


def plugin_modules(named: list) -> dict:
    """{"plugins": the modules outside quickadapt that registered what a model names, as
    (registry, name) pairs}, or {} for none: a process that loads the model without them is
    told what to import (`unregistered`), never imports them itself. A script run as
    `python fit.py` registers in `__main__`, which names nothing."""
    modules = {registry.module(name) for registry, name in named if name in registry}
    modules = sorted(m for m in modules if m and m != "__main__" and m.split(".")[0] != "quickadapt")
    return {"plugins": modules} if modules else {}


def unregistered(folder: Path, what: str, manifest: dict) -> BadInput:
    """The error for a model naming an encoder, head or method that no module of this process registered."""
    listed = manifest.get("plugins")
    # names only, and only shown: an edited manifest must not put escapes or prose in the message
    modules = [m for m in listed if isinstance(m, str) and re.fullmatch(r"[A-Za-z_][\w.]{0,199}", m)
               ] if isinstance(listed, list) else []
    where = (f"import {', '.join(modules)} (which registered it when the model was saved)" if modules
             else "import the module that registers it")
    return BadInput(f"{folder}: its {what} is not registered in this process; {where} before loading the model, "
                    "or install the package that provides it")


def encoder_folder_from(out: Path, name: str) -> dict:
    """{"relative": the encoder's Hugging Face folder as a path from the model folder `out`}, or
    {} for a registry name: a model and its encoder folder moved together (a project copied to
    a server, another user's home) still find each other when the stored absolute path is gone."""
    if not Path(name).is_absolute():
        return {}
    try:
        return {"relative": Path(os.path.relpath(name, os.path.realpath(out))).as_posix()}
    except ValueError:  # another drive (Windows): no relative path leads there
        return {}


def rebuilt_fingerprint(encoder, *, with_config: bool = True) -> str:
    return hashlib.sha256(encoder_fingerprint(encoder, with_config=with_config).encode()).hexdigest()[:32]


def _write_artifact(out: Path, manifest: dict, tensors: dict[str, torch.Tensor], extra_files: dict | None = None, *,
                    force: bool) -> Path:
    # safetensors refuses shared or non-contiguous storage: store plain copies
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    write_folder_atomically(
        out,
        {
            WEIGHTS: lambda p: save_file(tensors, str(p)),
            MANIFEST: lambda p: p.write_text(json.dumps(finite_json(manifest), indent=2, default=_json_default,
                                                        allow_nan=False)),
            **(extra_files or {}),
        },
        replace=force,
    )
    return out


def save_model(
    model: AdaptedModel, out: str | Path, *, force: bool = False, data_fingerprint: str | None = None,
    seed: int | None = None, metrics: dict | None = None, extra: dict | None = None, flag: str | None = None,
) -> Path:
    """Save `model` as a folder. `extra` adds keys to the manifest. The data fingerprint and
    metrics default to what `adapt()` recorded in `model.info`. `flag`: what messages call `out`
    (a caller's own argument name)."""
    out = prepare_out_dir(out, force, flag=flag)
    data_fingerprint = data_fingerprint or model.info.get("data_fingerprint")
    metrics = fit_metrics(model) if metrics is None else metrics
    if isinstance(model, BlendedModel):
        return _save_blend(model, out, data_fingerprint=data_fingerprint, seed=seed, metrics=metrics, extra=extra,
                           force=force)
    manifest = _manifest(
        model.kind, model.encoder, out, weights="stored" if model.encoder_tuned else "pretrained",
        strategy={"name": model.strategy, "params": model.strategy_params},
        tasks={task: {"classes": model.classes[task], "head": model.heads[task].config()} for task in model.heads},
        threshold=model.threshold, data_fingerprint=data_fingerprint, seed=seed, metrics=metrics, info=model.info,
    )
    manifest.update(extra or {})
    tensors = {f"heads.{k}": v for k, v in model.heads.state_dict().items()}
    if model.encoder_tuned:
        tensors.update({f"encoder.{k}": v for k, v in model.encoder.state_dict().items()})
    return _write_artifact(out, manifest, tensors, force=force)


def fit_metrics(model: AdaptedModel) -> dict:
    """What `adapt()` measured of a fit (the manifest's `metrics`, and `fit --json`'s figures)."""
    keys = ("n_examples", "n_distinct", "n_classes", "label_names", "cv", "cv_folds", "cv_accuracy",
            "cv_accuracy_ci95", "cv_balanced_accuracy", "cv_scored", "cv_note", "baseline", "negative_transfer",
            "p_transfer_better", "p_baseline_better", "blend", "auto")
    out = {k: model.info[k] for k in keys if k in model.info}
    out["threshold"] = model.threshold
    return out


def _save_blend(model: BlendedModel, out: Path, *, data_fingerprint, seed, metrics, extra, force: bool) -> Path:
    """A blend is a folder of its parts, each an ordinary model folder, and a manifest naming
    them with their weights; its own model.safetensors holds nothing."""
    names = [f"part-{i}" for i in range(len(model.parts))]
    manifest = _manifest(
        model.kind, model.encoder, out, weights="parts", strategy={"name": model.strategy, "params": model.strategy_params},
        tasks={task: {"classes": model.classes[task], "head": None} for task in model.heads},
        threshold=model.threshold, data_fingerprint=data_fingerprint, seed=seed, metrics=metrics, info=model.info,
    )
    manifest["blend"] = {"parts": names, "weights": model.weights}
    manifest.update(extra or {})
    parts = {name: (lambda p, part=part: save_model(part, p, data_fingerprint=data_fingerprint, seed=seed, metrics={}))
             for name, part in zip(names, model.parts)}
    return _write_artifact(out, manifest, {}, parts, force=force)


def save_encoder(
    encoder, out: str | Path, *, force: bool = False, extra_tensors: dict[str, torch.Tensor] | None = None,
    data_fingerprint: str | None = None, seed: int | None = None, metrics: dict | None = None,
    strategy: dict | None = None, extra: dict | None = None, extra_files: dict | None = None,
) -> Path:
    """Save a trained encoder alone (kind "encoder"), e.g. a meta-trained one: `--encoder DIR`
    accepts it. `extra_tensors` keys must not start with "encoder." (e.g. "meta.*"); `extra`
    adds manifest keys (e.g. the meta-training class split); `extra_files` more `name -> writer(path)`
    entries for the folder (e.g. the last training checkpoint)."""
    out = prepare_out_dir(out, force)
    manifest = _manifest(
        "encoder", encoder, out, weights="stored", strategy=strategy or {"name": None, "params": {}}, tasks={},
        threshold=None, data_fingerprint=data_fingerprint, seed=seed, metrics=metrics, info={},
    )
    manifest.update(extra or {})
    tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        if k.startswith("encoder."):
            raise ValueError(f"extra tensor {k!r} would shadow an encoder weight")
        tensors[k] = v
    return _write_artifact(out, manifest, tensors, extra_files, force=force)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a manifest")


def stored_class_split(manifest: dict) -> dict | None:
    """The class split a model folder's manifest keeps: a meta-trained model's (meta.class_split),
    a pretrained stage's (class_split), or one a fitted model copied from its encoder's folder
    (info.class_split); None where there is none."""
    return ((manifest.get("meta") or {}).get("class_split") or manifest.get("class_split")
            or (manifest.get("info") or {}).get("class_split"))


# A write swaps its new folder in (write_folder_atomically) in one step where the file system
# can (exchange_folders), else with two renames: the old one aside, the new one into place, and
# a reader in between finds no folder. Either way one that read the old manifest can find the
# new weights: in 20 s of loading while another process rewrote the
# model, 790 of 3047 loads failed ('no such model folder', 'no model.safetensors').
SWAP_WAIT_S = 5.0  # the renames take microseconds; a writer paused by a busy machine, longer
SWAP_TRIES = 5


def moved_aside(folder: Path) -> list[Path]:
    """The old versions of `folder` that a write renamed aside and has not yet removed."""
    real = Path(os.path.realpath(folder))
    return sorted(real.parent.glob(f".{glob.escape(temp_stem(real))}.old-*"))


def wait_for_swap(folder: Path) -> None:
    """Return once `folder` exists, or once no write is swapping it (nothing moved aside), or
    after SWAP_WAIT_S."""
    deadline = time.monotonic() + SWAP_WAIT_S
    while not folder.exists() and moved_aside(folder) and time.monotonic() < deadline:
        time.sleep(0.01)


def _stamp(folder: Path) -> tuple | None:
    """Which folder is at `folder` now: a swapped-in one is another inode (and a newer ctime)."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def read_whole(folder: Path, read):
    """`read()` of the model folder at `folder`, again when a write replaced the folder while it
    was read (fit --force over a model another process loads), so the result is one version's
    manifest and weights, never a mix, nor an error about a folder only briefly missing."""
    for attempt in range(SWAP_TRIES):
        wait_for_swap(folder)
        before = _stamp(folder)
        try:
            result = read()
        except BadInput:
            if _stamp(folder) == before or attempt == SWAP_TRIES - 1:  # nothing replaced it: a real error
                raise
            continue
        if _stamp(folder) == before:
            return result
    raise BadInput(f"{folder}: replaced by another run {SWAP_TRIES} times while it was read; try again once "
                   "that run has finished writing it")


# A manifest is metadata, its largest part info.cv_disagreements (about 110 bytes an example
# cross-validation put in another class): a fit on 2 million examples, all misplaced, stays
# below this. Read whole, JSON takes some 6 times its size in memory (a 189 MB manifest of
# numbers: 1.2 GB and 23 s), so a larger one from elsewhere is refused unread.
MAX_MANIFEST_BYTES = 256 * 2**20


def refuse_oversized(path: Path, what: str) -> None:
    """Refuse, unread, a JSON file of quickadapt's metadata (a manifest, a checkpoint's state)
    larger than MAX_MANIFEST_BYTES: one from elsewhere may ask for any amount of memory."""
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BadInput(f"{path}: {path.stat().st_size / 2**20:,.0f} MB, not a quickadapt {what} (they hold metadata: "
                       f"at most {MAX_MANIFEST_BYTES // 2**20} MB are read)")


OBJECT_KEYS = ("encoder", "strategy", "tasks", "metrics", "info", "estimator", "blend", "meta")


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.exists():
        aside = moved_aside(folder)
        if aside:  # a write killed between its two renames: the previous version is still there
            raise BadInput(f"{folder}: no such model folder; a write to it stopped halfway and left its previous "
                           f"version at {aside[-1]}")
        raise BadInput(f"{folder}: no such model folder")
    if not path.is_file():
        raise BadInput(f"{folder}: not a quickadapt model (no {MANIFEST})")
    refuse_oversized(path, "manifest")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: unreadable manifest ({exc})") from None
    except OSError as exc:  # gone since the check above: a write swapped the folder (read_whole reads again)
        raise BadInput(f"{path}: unreadable manifest ({exc.strerror})") from None
    if not isinstance(manifest, dict):
        raise BadInput(f"{path}: unreadable manifest (a JSON {type(manifest).__name__}, not an object)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BadInput(
            f"{folder}: model format_version {manifest.get('format_version')!r}; this quickadapt reads {FORMAT_VERSION}"
        )
    # read with .get() everywhere (predict, --encoder, episodes, FewShotClassifier.load), far from
    # manifest_errors: `info` as a list, or its feature_columns as a number, was a traceback
    wrong = next((k for k in OBJECT_KEYS if manifest.get(k) is not None and not isinstance(manifest[k], dict)), None)
    if wrong is None and not isinstance((manifest.get("info") or {}).get("feature_columns") or [], list):
        wrong = "info.feature_columns"
    if wrong is not None:
        raise BadInput(f"{folder}: {MANIFEST} holds a value of the wrong kind ({wrong} is not a JSON "
                       f"{'array' if wrong == 'info.feature_columns' else 'object'}); {DAMAGED}")
    return manifest


@random_state_kept()  # the layers are built with random weights before the saved ones replace them
@usual_torch_modes()  # its tensors are ordinary ones, which predict can check for changes
def load_model(folder: str | Path, *, device: str | torch.device = "cpu", for_cache: bool = False) -> AdaptedModel:
    """The model in `folder`. `for_cache`: it only predicts, so a pretrained text encoder is
    built at the first input whose features are not cached (encoders.create_encoder_for_cache)."""
    # a quoted '~/m' too, as fit --out and --data read it
    folder = as_path(folder, "the model folder").expanduser()
    return read_whole(folder, lambda: _read_model(folder, device, for_cache))


def check_model(folder: str | Path) -> None:
    """Raise BadInput where load_model would for a missing or unreadable model folder, reading
    only its manifest: predict checks it before the data and builds the encoder after, so a bad
    data file fails in a second or two, not after the ~6 s that building minilm takes."""
    folder = as_path(folder, "the model folder").expanduser()
    read_whole(folder, lambda: read_manifest(folder))


def _read_model(folder: Path, device, for_cache: bool = False) -> AdaptedModel:
    manifest = read_manifest(folder)
    with manifest_errors(folder):
        return _load_model(folder, manifest, device, for_cache)


def _load_model(folder: Path, manifest: dict, device, for_cache: bool = False) -> AdaptedModel:
    if manifest["kind"] not in ("classifier", "multitask"):
        raise BadInput(f"{folder}: {'an' if manifest['kind'][0] in 'aeiou' else 'a'} {manifest['kind']} model has no classifier; use it as {option('encoder')} instead")
    _check_threshold(folder, manifest.get("threshold"))
    if "blend" in manifest:
        return _load_blend(folder, manifest, device, for_cache)
    tensors = _load_tensors(folder)
    encoder = build_encoder(manifest, tensors, folder, for_cache)
    heads, classes = {}, {}
    if not manifest["tasks"]:
        raise BadInput(f"{folder}: {MANIFEST} names no tasks; {DAMAGED}")
    for task, spec in manifest["tasks"].items():
        if spec["head"].get("n_classes") != len(spec["classes"]):  # a hand-edited manifest: fail here, not mid-predict
            raise BadInput(f"{folder}: task {task!r} names {len(spec['classes'])} classes but its head has "
                           f"{spec['head'].get('n_classes')!r} outputs; the manifest does not match the weights")
        if len(set(spec["classes"])) != len(spec["classes"]):
            raise BadInput(f"{folder}: task {task!r} names a class twice; {DAMAGED}")
        # labels are stored as text (a FewShotClassifier's own values go under `estimator`):
        # a 1 or null here was answered as '1' or 'None'
        odd = [c for c in spec["classes"] if not isinstance(c, str)]
        if odd:
            raise BadInput(f"{folder}: task {task!r} names a class that is not a string ({odd[0]!r}); {DAMAGED}")
        if spec["head"].get("kind") not in HEADS:
            raise unregistered(folder, f"task {task!r}'s head {spec['head'].get('kind')!r}", manifest)
        prefix = f"heads.{task}."
        state, what = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, f"task {task!r}'s head"
        fit_weights(skeleton(lambda: create_head(spec["head"]), state, folder, what), state, folder, what)
        head = create_head(spec["head"])
        fit_weights(head, state, folder, what)
        heads[task], classes[task] = head, spec["classes"]
    model = AdaptedModel(
        encoder, heads, classes, encoder_tuned=manifest["encoder"]["weights"] == "stored",
        strategy=manifest["strategy"]["name"], strategy_params=manifest["strategy"]["params"],
    )
    model.threshold = manifest.get("threshold")
    model.info = manifest.get("info", {})
    return model.to(device).eval()


def _check_threshold(folder: Path, threshold) -> None:
    if threshold is not None and not is_probability(threshold):
        raise BadInput(f"{folder}: the manifest's threshold {threshold!r} is not a probability in [0, 1]; {DAMAGED}")


def _load_blend(folder: Path, manifest: dict, device, for_cache: bool = False) -> BlendedModel:
    blend = manifest["blend"]
    named = len(set(map(str, blend["parts"])))
    if named != len(blend["parts"]) or len(blend["weights"]) != named:
        # each part is a whole model, loaded before the weights are read: one part named 10^4 times
        # would build its encoder 10^4 times
        raise BadInput(f"{folder}: the blend names {len(blend['parts'])} parts ({named} different) and "
                       f"{len(blend['weights'])} weights; {DAMAGED}")
    parts = []
    for name in blend["parts"]:
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise BadInput(f"{folder}: blended model part {name!r} is not a folder inside the model's own")
        if not (folder / name / MANIFEST).is_file():
            raise BadInput(f"{folder}: blended model part {name!r} is missing")
        parts.append(load_model(folder / name, device=device, for_cache=for_cache))
    model = BlendedModel(parts, blend["weights"], strategy=manifest["strategy"]["name"],
                         strategy_params=manifest["strategy"]["params"])
    model.threshold = manifest.get("threshold")
    model.info = manifest.get("info", {})
    return model.to(device).eval()


def _load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS
    if not path.is_file():
        raise BadInput(f"{folder}: no {WEIGHTS}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise BadInput(f"{path}: unreadable weights ({exc})") from None


def build_encoder(manifest: dict, tensors: dict[str, torch.Tensor], folder: Path, for_cache: bool = False):
    """Rebuild the encoder the manifest names; load stored weights, checking every key matches.
    `for_cache` (predicting only): pretrained weights may come unbuilt (create_encoder_for_cache)."""
    spec = manifest["encoder"]
    if spec["weights"] not in ("pretrained", "stored"):
        raise BadInput(f"{folder}: encoder weights {spec['weights']!r} are neither 'pretrained' nor 'stored'; {DAMAGED}")
    stored = spec["weights"] == "stored"
    if not stored and any(k.startswith("encoder.") for k in tensors):  # they would be dropped unread
        raise BadInput(f"{folder}: {WEIGHTS} holds encoder weights but the manifest says 'pretrained'; {DAMAGED}")
    name = encoder_folder_now(spec, folder)
    # a registry name: a folder's is stored absolute (where loading looks for it may be relative)
    if not Path(spec["name"]).is_absolute() and name not in ENCODERS:
        raise unregistered(folder, f"encoder {name!r}", manifest)
    if not stored and name in ENCODER_MODALITY and name not in PRETRAINED:  # built in: known before building it
        raise no_pretrained_weights(folder, name)
    state, what = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}, f"encoder {spec['name']!r}"
    with encoder_rebuild(folder, name):
        if stored:  # its size comes from the manifest's settings: checked against the stored tensors before it is built
            fit_weights(check_encoder(skeleton(lambda: create_encoder(name, pretrained=False, **spec["settings"]), state,
                                               folder, what), spec, name, folder), state, folder, what)
        if for_cache and not stored:
            encoder = create_encoder_for_cache(name, **spec["settings"])
        else:
            encoder = create_encoder(name, pretrained=not stored, **spec["settings"])
    check_encoder(encoder, spec, name, folder)
    if not stored and not encoder.is_pretrained:  # a user's encoder, whose factory read no weights of its own
        raise no_pretrained_weights(folder, name)
    # a model written before config.json was part of the fingerprint is checked without it
    if not stored and spec.get("fingerprint") not in (None, rebuilt_fingerprint(encoder),
                                                      rebuilt_fingerprint(encoder, with_config=False)):
        raise BadInput(f"{folder}: its encoder {name} is not the one the model was fit on (other weights, "
                       "tokenizer or pooling, or an edited config.json: the package or folder changed since); "
                       "fit the model again")
    if stored:
        fit_weights(encoder, state, folder, what)
    return encoder.eval()


def no_pretrained_weights(folder: Path, name: str) -> BadInput:
    """Such an encoder starts from random weights, so a model of it always stores them: with none
    stored it would predict from new random features, silently."""
    return BadInput(f"{folder}: the manifest says encoder {name!r} is 'pretrained', but it has no pretrained "
                    f"weights and {WEIGHTS} holds none of its own; {DAMAGED}")


@contextlib.contextmanager
def encoder_rebuild(folder: Path, name: str):
    """The encoder a model's manifest names, built: a refusal names the model too. predict said
    "encoder setting layers must be between 1 and 6 ...; set it with --set encoder.layers=N" for
    an edited manifest, with no word of which model, and advice that is fit's, not predict's; an
    encoder path edited to /etc: "/etc: not a Hugging Face model folder"."""
    try:
        yield
    except BadInput as exc:
        said = str(exc)
        if said.startswith(f"{folder}:"):
            raise
        # the fit's way to change a setting (errors.option's "; set it with ...") is no help here
        reason = said.split("; set it with ")[0]
        raise BadInput(f"{folder}: the encoder its manifest names ({name}) cannot be built: {reason}") from None


def check_encoder(encoder, spec: dict, name: str, folder: Path):
    """`encoder`, once it reads the modality into the size the manifest says; else BadInput."""
    if (encoder.modality, encoder.embed_dim) != (spec["modality"], spec["embed_dim"]):
        if name != spec["name"]:  # the folder found in place of a moved one is another encoder, not a damaged manifest
            raise BadInput(f"{folder}: the encoder folder {name} is not the one the model was fit on ({spec['name']}): "
                           f"it reads {encoder.modality} into {encoder.embed_dim} features, the model's into "
                           f"{spec['embed_dim']}")
        raise BadInput(f"{folder}: the manifest's encoder reads {spec['modality']} into {spec['embed_dim']} features, "
                       f"but {spec['name']!r} rebuilds as {encoder.modality} into {encoder.embed_dim}; {DAMAGED}")
    return encoder


ENCODER_FOLDER_VAR = "QUICKADAPT_ENCODER_FOLDER"


def encoder_folder_now(spec: dict, folder: Path) -> str:
    """What to rebuild the encoder from: a registry name as stored; a Hugging Face folder (which
    holds the config and tokenizer even when the weights are stored) at its stored absolute
    path, else at `relative` from the model folder (both moved together), else at
    $QUICKADAPT_ENCODER_FOLDER. The fingerprint check after the build still refuses a folder
    of other weights or tokenizer, wherever it was found."""
    name = spec["name"]
    if not Path(name).is_absolute() or Path(name).exists():
        return name
    beside = folder / spec["relative"] if spec.get("relative") else None
    if beside is not None and beside.is_dir():
        return str(beside)
    moved = os.environ.get(ENCODER_FOLDER_VAR)
    if moved:
        if not Path(moved).expanduser().is_dir():
            raise BadInput(f"{ENCODER_FOLDER_VAR}={moved} is not a folder")
        return str(Path(moved).expanduser())
    where = f", and not at {os.path.normpath(beside)} either" if beside is not None else ""
    raise BadInput(f"{folder}: its encoder folder {name} is gone{where}; put that folder back, or set "
                   f"{ENCODER_FOLDER_VAR} to where it is now (a folder of other weights is refused)")


SKELETON_PARAMETERS = 10  # how many times more parameters than stored tensors a skeleton may build


class _MoreTensorsThanStored(Exception):
    """Raised inside a skeleton's build (not a ValueError, which the builders rewrap)."""


def skeleton(build, state: dict[str, torch.Tensor], folder: Path, what: str) -> torch.nn.Module:
    """What `build()` makes, on the meta device: shapes without memory. The sizes of heads and
    stored encoders come from the manifest (a head reading 10^9 features, an mlp of depth 10^5),
    and building one at once took 2.5 GB before its weights were found not to fit, or ran until
    the out-of-memory killer ended it (20 GB); its skeleton is checked against `state` first. A
    build that registers ten times more parameters than `state` holds tensors is stopped there:
    it cannot fit, and a depth of 10^5 took a minute even on the meta device. (Fewer may: a
    CLIP-like folder builds its text tower too, then keeps the vision tower alone.)"""
    import threading

    from torch.nn.modules.module import register_module_parameter_registration_hook

    registered, thread = [0], threading.get_ident()

    def count(module, name, param):
        if threading.get_ident() == thread:  # the hook is global: other threads build their own models
            registered[0] += 1
            if registered[0] > SKELETON_PARAMETERS * len(state):
                raise _MoreTensorsThanStored

    handle = register_module_parameter_registration_hook(count)
    try:
        with torch.device("meta"):
            return build()
    except _MoreTensorsThanStored:
        raise BadInput(f"{folder}: stored weights do not fit {what} (the manifest describes over "
                       f"{SKELETON_PARAMETERS} times the {len(state)} tensors stored); {DAMAGED}") from None
    finally:
        handle.remove()


def fit_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path, what: str) -> None:
    """Load `state` into `module`; weights of other names or shapes than the manifest rebuilds
    (tensors swapped from another model, an edited manifest) are refused in one line, and so
    are tensors of another dtype, which loading would cast silently (int8 weights predicted)."""
    own = module.state_dict()
    cast = next((k for k, v in state.items() if k in own and v.dtype != own[k].dtype), None)
    if cast is not None:
        raise BadInput(f"{folder}: stored weights do not fit {what} ({cast} is {dtype_name(state[cast])}, not "
                       f"{dtype_name(own[cast])}); {DAMAGED}")
    # a skeleton's tensors (see skeleton) take the stored ones as they are: copying into them does nothing
    assign = any(t.is_meta for t in own.values())
    try:
        missing, unexpected = module.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as exc:  # a tensor of another shape
        shape = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "size mismatch")
        raise BadInput(f"{folder}: stored weights do not fit {what} ({shape.rstrip('.')}); {DAMAGED}") from None
    if missing or unexpected:
        raise BadInput(f"{folder}: stored weights do not fit {what} "
                       f"(missing {len(missing)}, unexpected {len(unexpected)} keys); {DAMAGED}")


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def resolve_encoder(spec: str, *, for_cache: bool = False, frozen: bool = False, **settings):
    """An encoder from a registry name, a Hugging Face folder, or a quickadapt model folder
    (its encoder; stored weights come back with is_pretrained False, so they are stored again).
    `for_cache` (it stays frozen): pretrained text weights may come unbuilt (create_encoder_for_cache).
    `frozen` (nothing will train it): built-in pretrained weights are shared, not copied."""
    path = Path(spec)
    wait_for_swap(path)  # a model folder that a write is swapping is briefly missing: not an encoder name
    if path.is_dir() and (path / MANIFEST).is_file():
        if settings:  # they would be dropped: the stored encoder is rebuilt as it was saved
            raise BadInput(f"{option('encoder')} {spec} is a stored model: encoder settings ({', '.join(settings)}) "
                           "cannot change it")
        return read_whole(path, lambda: _read_encoder(path))
    if for_cache:
        return create_encoder_for_cache(spec, **settings)
    return create_encoder(spec, share_weights=frozen, **settings)


def _read_encoder(path: Path):
    manifest = read_manifest(path)
    with manifest_errors(path):
        return build_encoder(manifest, _load_tensors(path), path)
