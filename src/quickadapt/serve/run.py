"""`quickadapt serve`: load the served model folders and the kept tasks, bind the port, and run
the application under uvicorn until Ctrl-C, SIGTERM or SIGHUP, which end it cleanly (requests in flight
are answered first)."""
from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from quickadapt.errors import BadInput, first_line, on_command_line
from quickadapt.progress import log
from quickadapt.serve.limits import Limits
from quickadapt.serve.tasks import Task, TaskStore

TOKEN_ENV = "QUICKADAPT_TOKEN"


def serve(*, host: str = "127.0.0.1", port: int = 8000, models=(), state=None, limits: Limits | None = None,
          seed: int = 0, device: str = "auto", quiet: bool = False) -> None:
    import uvicorn

    from quickadapt.artifact import check_model
    from quickadapt.serve.app import create_app
    from quickadapt.serve.state import State

    token = token_from_environment()
    folders = [Path(m).expanduser() for m in models]
    for folder in folders:  # the manifests only: a wrong folder fails in a moment, before the port is taken
        try:
            check_model(folder)
        except BadInput as exc:
            raise BadInput(f"--model {folder}: {first_line(exc).removeprefix(str(folder) + ': ')}") from None
    names = [f.resolve().name for f in folders]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise BadInput(f"two --model folders are named {twice!r}, which is the task id each is served under; "
                       "rename one")
    store = TaskStore(limits or Limits(), State(state) if state is not None else None, seed=seed, device=device)
    if store.state is not None:
        store.state.claim()
    sock = bound_socket(host, port)
    try:
        for folder, name in zip(folders, names):
            store.put(model_task(folder, name))
        if store.state is not None:
            for task in store.state.load():
                if task.task_id in names:
                    raise BadInput(f"--state {state}: task {task.task_id} has the id of a --model folder; rename "
                                   "the folder")
                store.put(task)
        if token is None and host not in ("127.0.0.1", "localhost", "::1"):
            log(f"warning: serving on {host} without a token: anyone who can reach the port may create, read "
                f"and delete tasks; set {TOKEN_ENV}")
        where = sock.getsockname()
        # even with --quiet: with --port 0 it is the only place the port is named
        print(f"quickadapt serve: http://{host if ':' not in host else f'[{host}]'}:{where[1]} "
              f"({len(store.all())} task{'s' if len(store.all()) != 1 else ''}, "
              f"{'token required' if token else 'no token'}); Ctrl-C, SIGTERM or SIGHUP stops it", file=sys.stderr, flush=True)
        config = uvicorn.Config(create_app(store, token=token), log_level="warning" if quiet else "info",
                                access_log=not quiet, lifespan="off")
        server = uvicorn.Server(config)
        drain_on_hangup(server)
        try:
            # a request names its settings as JSON fields (`threshold`, `none_label`), not as the
            # command line's flags (`--threshold`) that the messages of `serve`'s own flags use
            with on_command_line(False):
                server.run(sockets=[sock])
        except KeyboardInterrupt as exc:  # uvicorn shut down cleanly, then passed the signal on
            signum = getattr(exc, "signum", signal.SIGINT)
            log(f"quickadapt serve: stopped by {signal.Signals(signum).name}")
    finally:
        sock.close()


def token_from_environment() -> str | None:
    """QUICKADAPT_TOKEN without the whitespace around it; None when unset or empty (no token, as
    the start line says). A token read from a file keeps its newline (a Kubernetes or Docker
    secret), which no client sends (HTTP trims a header's value): every request was refused."""
    given = os.environ.get(TOKEN_ENV)
    if not given:
        return None
    if not given.strip():  # not taken as "no token": whoever set it meant the service to ask for one
        raise BadInput(f"{TOKEN_ENV} is set but holds only whitespace; set it to the token, or unset it to serve "
                       "without one")
    return given.strip()


def drain_on_hangup(server) -> None:
    """SIGHUP (the terminal closed) stops the service as SIGTERM does: uvicorn handles only SIGINT
    and SIGTERM, so SIGHUP raised the command line's stop in the event loop and cut requests in
    flight. Here it asks uvicorn to finish them first; uvicorn then raises SIGHUP again, which the
    handler it replaced turns into the usual stop (exit 0, "stopped by SIGHUP")."""
    hangup = getattr(signal, "SIGHUP", None)  # Windows has none
    if hangup is None or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(hangup)

    def on_hangup(signum, frame):
        signal.signal(hangup, previous)  # for the signal uvicorn raises again once it has drained
        server.handle_exit(signum, frame)

    signal.signal(hangup, on_hangup)


def bound_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line and exit code 2
    (uvicorn logs it and exits 1). Port 0 picks a free one, which the start line names."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop may rebind
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BadInput(f"--port {port}: already in use on {host}; stop what serves there or pick another "
                           "port") from None
        raise BadInput(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def model_task(folder: Path, task_id: str) -> Task:
    """A model folder (`quickadapt fit`'s, or FewShotClassifier.save's) as a read-only task."""
    from quickadapt import FewShotClassifier
    from quickadapt.serve.tasks import now

    try:
        clf = FewShotClassifier.load(folder)
    except ValueError as exc:  # a BadInput, or an estimator record the library refuses
        raise BadInput(f"--model {folder}: {first_line(exc).removeprefix(str(folder) + ': ')}") from None
    model = clf.model_
    log(f"task {task_id}: model folder {folder} ({len(clf.classes_)} classes, {model.encoder.name}, {model.strategy})")
    # a model fit on a folder (a meta-trained encoder, a Hugging Face one) is named by the folder, not
    # by the architecture its manifest rebuilds
    encoder = Path(model.info["encoder_folder"]).name if model.info.get("encoder_folder") else model.encoder.name
    return Task(task_id, task_id, encoder, model.strategy, clf, None, None, now(), model_folder=str(folder))
