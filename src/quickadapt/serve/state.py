"""Tasks on disk (`quickadapt serve --state DIR`), so that they survive a restart: one folder a
task, `DIR/<task_id>/` with `task.json` (its name, settings and the examples as posted, which
POST /examples re-adapts on) and `model/` (the adapted classifier, a model folder as `fit` writes
one). Each is written whole beside its place and renamed into it (artifact.write_folder_atomically),
so a crash or a kill mid-write leaves the task as it was before, never half of it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from quickadapt import FewShotClassifier
from quickadapt.artifact import write_folder_atomically
from quickadapt.errors import BadInput, first_line

TASK_FILE = "task.json"
MODEL = "model"
LOCK = ".serve.lock"  # held by the service using the folder (State.claim)
STATE_FORMAT = 1  # raise it when a reader of the old task.json would misread the new


class State:
    def __init__(self, folder):
        self.folder = Path(folder).expanduser()
        if self.folder.exists() and not self.folder.is_dir():
            raise BadInput(f"--state {folder}: not a folder")
        try:
            # one it makes is this user's alone (0700), as the embedding cache's feature files are
            # (0600): it holds every example posted, in task.json as sent, which the umask's usual
            # 0755/0644 left readable by every local user. A folder given that exists keeps its modes
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"--state {folder}: cannot create it ({exc.strerror})") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise BadInput(f"--state {folder}: not writable, so tasks could not be kept")

    def claim(self) -> None:
        """Hold the folder for this process, as long as it runs: two services on one folder each
        answered from their own copy of a task, and each write of it undid the other's added examples.
        The lock is the kernel's (flock), so a service killed with -9 leaves none behind."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; docs/serve.md says not to share a folder
            return
        handle = open(self.folder / LOCK, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise BadInput(f"--state {self.folder}: another quickadapt serve uses it"
                           f"{f' (pid {holder})' if holder else ''}; two services on one folder overwrite each "
                           "other's tasks: stop it or pick another folder") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self.lock = handle  # kept open: closing it would let the lock go

    def write(self, task) -> None:
        record = {"state_format": STATE_FORMAT, "task_id": task.task_id, "name": task.name, "encoder": task.encoder,
                  "strategy": task.strategy, "cv": task.cv, "created": task.created, "adapt_ms": task.adapt_ms,
                  "examples": task.examples}
        write_folder_atomically(self.folder / task.task_id, {
            TASK_FILE: lambda path: path.write_text(json.dumps(record), encoding="utf-8"),
            MODEL: lambda path: task.classifier.save(path),
        })

    def remove(self, task_id: str) -> None:
        folder = self.folder / task_id
        if folder.exists():  # renamed first: a crash mid-removal leaves no half task to load
            aside = folder.with_name(f".{task_id}.deleted-{os.getpid()}")
            os.replace(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)

    def load(self) -> list:
        from quickadapt.serve.tasks import Task

        tasks = []
        for folder in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (folder / TASK_FILE).is_file():
                continue  # not one of ours
            try:
                record = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
                if record.get("state_format") != STATE_FORMAT:
                    raise BadInput(f"state_format {record.get('state_format')!r}, this quickadapt reads {STATE_FORMAT}")
                # the id is where the task is written and removed (DIR/<task_id>): one naming another folder
                # (a copy, or '..') would be saved over that folder, and DELETE would leave this one to come back
                if record.get("task_id") != folder.name:
                    raise BadInput(f"task.json names the task {record.get('task_id')!r}, not its folder's name; a "
                                   "task's folder is named by its task_id (a copied or renamed folder?)")
                clf = FewShotClassifier.load(folder / MODEL)
                tasks.append(Task(record["task_id"], record["name"], record["encoder"], record["strategy"], clf,
                                  record["examples"], record.get("adapt_ms"), record["created"],
                                  cv=record.get("cv", 0)))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise BadInput(f"--state {self.folder}: task {folder.name} cannot be read ({first_line(exc)}); move it "
                               "out of the folder to start without it") from None
        return tasks
