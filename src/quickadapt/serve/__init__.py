"""The HTTP adaptation service behind `quickadapt serve` (docs/serve.md).

JSON over HTTP: a client posts a few labelled examples, the service adapts a model to them in
memory (`FewShotClassifier`, the library's fast default: a probe on frozen embeddings) and
answers predictions for the task it made. It only calls the public library API, as cli.py does:
`app.py` routes requests, `tasks.py` keeps the tasks, `inputs.py` reads a request's texts and
images, `state.py` keeps tasks on disk across restarts, `run.py` is the command's server."""
from quickadapt.serve.app import create_app
from quickadapt.serve.limits import Limits
from quickadapt.serve.tasks import TaskStore

__all__ = ["Limits", "TaskStore", "create_app"]
